"""The reference solutions of lesson 02 (embeddings and language-model data) against independent oracles.

Oracles: `torch.softmax`, `torch.log_softmax` and `F.cross_entropy` (with `ignore_index`, values
and gradients), including inputs of magnitude 1e4; the sinusoidal table of Vaswani et al. computed
entry by entry with `math`; `Tensor.unfold` (and a plain Python loop) for the training windows;
`F.embedding` and `nn.Embedding` for the input embeddings. Inputs are drawn by Hypothesis as
shapes plus an integer seed.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.strategies import batch_shapes, randn, seeds
from course.loader import load_notebook
from course.notebook import read_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions/02/embeddings.ipynb"
GRADED = ("make_lm_windows", "softmax", "log_softmax", "cross_entropy", "sinusoidal_positions", "embed")

ORACLE = settings(derandomize=True, database=None, deadline=None, max_examples=50)
F64 = {"rtol": 1e-10, "atol": 1e-12}
# float32 at magnitude 1e4: torch and the reference both subtract the maximum, but may round
# the log-sum-exp differently; a few ulps of 2e4 in float32 is about 1e-2.
F32_HUGE = {"rtol": 1e-5, "atol": 1e-2}


@pytest.fixture(scope="module")
def ref():
    return load_notebook(NOTEBOOK, module_name="reference_02_oracles").module


# -- make_lm_windows -----------------------------------------------------------------------------


def windows_by_unfold(ids: torch.Tensor, context_length: int, stride: int
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """unfold over ids[:-1] keeps exactly the windows whose last target ids[s + T] exists."""
    return ids[:-1].unfold(0, context_length, stride), ids[1:].unfold(0, context_length, stride)


@ORACLE
@given(st.integers(2, 200), st.integers(1, 30), st.integers(1, 40), seeds)
def test_windows_match_unfold(ref, n, context_length, stride, seed):
    ids = torch.randint(0, 50_000, (n,), generator=torch.Generator().manual_seed(seed))
    inputs, targets = ref.make_lm_windows(ids, context_length, stride)
    if n - 1 >= context_length:  # unfold needs at least one window
        want_in, want_tg = windows_by_unfold(ids, context_length, stride)
        assert torch.equal(inputs, want_in) and torch.equal(targets, want_tg)
    else:
        assert inputs.shape == targets.shape == (0, context_length)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.int16, torch.uint8])
def test_windows_every_small_case_matches_a_python_loop(ref, dtype):
    for n in range(14):
        ids = torch.arange(10, 10 + n).to(dtype)
        for context_length in range(1, 8):
            for stride in range(1, 9):
                starts = [s for s in range(0, n, stride) if s + context_length < n]
                inputs, targets = ref.make_lm_windows(ids, context_length, stride)
                assert inputs.dtype == targets.dtype == dtype
                assert inputs.shape == targets.shape == (len(starts), context_length)
                assert inputs.tolist() == [ids[s : s + context_length].tolist() for s in starts]
                assert targets.tolist() == [ids[s + 1 : s + context_length + 1].tolist() for s in starts]


def test_windows_leave_ids_alone(ref):
    ids = torch.arange(20)
    inputs, targets = ref.make_lm_windows(ids, 4, 3)
    inputs[0, 0] = targets[0, 0] = -1
    assert torch.equal(ids, torch.arange(20))


# -- softmax and log_softmax ---------------------------------------------------------------------


@st.composite
def score_case(draw, huge: bool = False):
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    seed = draw(seeds)
    x = randn(shape, seed, torch.float64, scale=draw(st.sampled_from([0.1, 1.0, 10.0, 50.0])))
    if huge:  # slices moved by offsets up to 1e4, and spreads up to 1e4 inside a slice
        off_shape = list(shape)
        off_shape[dim] = 1
        g = torch.Generator().manual_seed(seed + 1)
        offsets = (torch.rand(off_shape, generator=g, dtype=torch.float64) * 2 - 1) * 1e4
        x = x * draw(st.sampled_from([1.0, 100.0, 1e3])) + offsets
    return x, dim


SOFTMAXES = pytest.mark.parametrize("name, oracle", [("softmax", torch.softmax),
                                                     ("log_softmax", torch.log_softmax)])


@SOFTMAXES
@ORACLE
@given(case=score_case())
def test_softmaxes_match_torch(ref, name, oracle, case):
    x, dim = case
    got = getattr(ref, name)(x, dim=dim)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, oracle(x, dim=dim), **F64)
    got32 = getattr(ref, name)(x.float(), dim=dim)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32, oracle(x.float(), dim=dim))


@SOFTMAXES
@ORACLE
@given(case=score_case(huge=True), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_softmaxes_are_stable_at_1e4(ref, name, oracle, case, dtype):
    x, dim = case
    x = x.to(dtype)
    got = getattr(ref, name)(x, dim=dim)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, oracle(x, dim=dim), **(F32_HUGE if dtype == torch.float32 else F64))


@SOFTMAXES
def test_softmaxes_with_minus_inf_entries(ref, name, oracle):
    x = randn((4, 7), 3, torch.float64)
    x[:, 1:] = x[:, 1:].masked_fill(torch.rand(4, 6, generator=torch.Generator().manual_seed(4)) < 0.5,
                                    float("-inf"))
    torch.testing.assert_close(getattr(ref, name)(x), oracle(x, dim=-1), **F64)


def test_softmax_shift_invariance_and_sums(ref):
    x = randn((3, 5), 1, torch.float64)
    c = torch.tensor([[1e4], [-1e4], [0.5]], dtype=torch.float64)
    torch.testing.assert_close(ref.softmax(x + c), ref.softmax(x), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(ref.softmax(x, dim=0).sum(0), torch.ones(5, dtype=torch.float64), **F64)
    torch.testing.assert_close(ref.log_softmax(x).exp(), ref.softmax(x), **F64)


# -- cross_entropy -------------------------------------------------------------------------------


@st.composite
def ce_case(draw):
    lead = draw(batch_shapes(max_dims=3, max_side=4))
    vocab, seed = draw(st.integers(1, 12)), draw(seeds)
    scale = draw(st.sampled_from([0.5, 3.0, 1e4]))
    logits = randn((*lead, vocab), seed, torch.float64, scale=scale)
    g = torch.Generator().manual_seed(seed + 1)
    targets = torch.randint(0, vocab, lead, generator=g)
    ignore_index = draw(st.sampled_from([-100, -1, 0]))
    if ignore_index == 0 and vocab > 1:
        targets = targets.clamp(min=1)
    ignored = torch.rand(lead, generator=g) < draw(st.sampled_from([0.0, 0.3, 0.9]))
    if ignored.all():  # at least one kept target: every position ignored is outside the contract
        ignored.view(-1)[0] = False
    if ignore_index == 0 and vocab == 1:
        ignore_index = -100
    return logits, targets.masked_fill(ignored, ignore_index), ignore_index


def torch_ce(logits, targets, ignore_index):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=ignore_index)


@ORACLE
@given(ce_case())
def test_cross_entropy_matches_torch(ref, case):
    logits, targets, ignore_index = case
    got = ref.cross_entropy(logits, targets, ignore_index=ignore_index)
    assert got.shape == () and got.dtype == torch.float64
    torch.testing.assert_close(got, torch_ce(logits, targets, ignore_index), **F64)
    got32 = ref.cross_entropy(logits.float(), targets, ignore_index=ignore_index)
    assert got32.dtype == torch.float32
    huge = logits.abs().max() > 100
    torch.testing.assert_close(got32, torch_ce(logits.float(), targets, ignore_index),
                               **(F32_HUGE if huge else {}))


@settings(ORACLE, max_examples=30)
@given(ce_case())
def test_cross_entropy_gradient_matches_torch(ref, case):
    logits, targets, ignore_index = case
    mine, theirs = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ref.cross_entropy(mine, targets, ignore_index=ignore_index).backward()
    torch_ce(theirs, targets, ignore_index).backward()
    torch.testing.assert_close(mine.grad, theirs.grad, **F64)


def test_cross_entropy_unbatched_and_default_ignore_index(ref):
    logits = torch.tensor([3.0, -1.0, 0.5], dtype=torch.float64)
    torch.testing.assert_close(ref.cross_entropy(logits, torch.tensor(2)),
                               F.cross_entropy(logits, torch.tensor(2)), **F64)
    batch = randn((2, 3, 4), 0, torch.float64)
    targets = torch.tensor([[0, -100, 3], [-100, 1, 2]])
    torch.testing.assert_close(ref.cross_entropy(batch, targets), torch_ce(batch, targets, -100), **F64)


def test_cross_entropy_every_target_ignored_is_nan_like_torch(ref):
    """Outside the contract (0 / 0), documented: the reference returns nan, as torch does."""
    logits, targets = randn((2, 3), 0, torch.float64), torch.tensor([-100, -100])
    assert torch.isnan(ref.cross_entropy(logits, targets)) and torch.isnan(torch_ce(logits, targets, -100))


# -- sinusoidal_positions ------------------------------------------------------------------------


def closed_form(seq_len: int, d_model: int) -> list[list[float]]:
    """Vaswani et al. 2017, section 3.5, one entry at a time."""
    table = []
    for pos in range(seq_len):
        row = []
        for i in range((d_model + 1) // 2):
            angle = pos / 10000 ** (2 * i / d_model)
            row.append(math.sin(angle))
            if 2 * i + 1 < d_model:
                row.append(math.cos(angle))
        table.append(row)
    return table


@settings(ORACLE, max_examples=40)
@given(st.integers(0, 300), st.integers(1, 70))
def test_sinusoidal_table_matches_the_closed_form(ref, seq_len, d_model):
    got = ref.sinusoidal_positions(seq_len, d_model)
    assert got.dtype == torch.get_default_dtype() == torch.float32
    assert got.shape == (seq_len, d_model)
    want = torch.tensor(closed_form(seq_len, d_model), dtype=torch.float64).reshape(seq_len, d_model)
    torch.testing.assert_close(got.double(), want, rtol=0, atol=1e-7)  # float32 rounding only


def test_sinusoidal_table_follows_the_default_dtype(ref):
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        got = ref.sinusoidal_positions(50, 9)
    finally:
        torch.set_default_dtype(old)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, torch.tensor(closed_form(50, 9), dtype=torch.float64), **F64)


def test_sinusoidal_dot_products_depend_only_on_the_distance(ref):
    pe = ref.sinusoidal_positions(64, 16).double()
    dots = pe @ pe.T
    for k in range(5):
        diagonal = dots.diagonal(k)
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal), rtol=0, atol=1e-5)


# -- embed ---------------------------------------------------------------------------------------


@st.composite
def embed_case(draw):
    lead = draw(batch_shapes(max_dims=3, max_side=4))
    seq, vocab, d_model = draw(st.integers(1, 9)), draw(st.integers(1, 30)), draw(st.integers(1, 9))
    seed = draw(seeds)
    dtype = draw(st.sampled_from([torch.float32, torch.float64]))
    ids = torch.randint(0, vocab, (*lead, seq), generator=torch.Generator().manual_seed(seed))
    max_len = seq + draw(st.integers(0, 5))
    return ids, randn((vocab, d_model), seed + 1, dtype), randn((max_len, d_model), seed + 2, dtype)


@ORACLE
@given(embed_case())
def test_embed_matches_torch_embedding(ref, case):
    ids, token_table, pos_table = case
    got = ref.embed(ids, token_table, pos_table)
    assert got.dtype == token_table.dtype and got.shape == (*ids.shape, token_table.shape[1])
    seq = ids.shape[-1]
    want = F.embedding(ids, token_table) + F.embedding(torch.arange(seq), pos_table)
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_embed_is_gpt2_wte_plus_wpe(ref):
    """GPT-2's input layer: nn.Embedding tables for tokens (wte) and positions (wpe)."""
    torch.manual_seed(0)
    wte, wpe = torch.nn.Embedding(50, 8), torch.nn.Embedding(16, 8)
    ids = torch.randint(0, 50, (3, 11))
    with torch.no_grad():
        want = wte(ids) + wpe(torch.arange(11))[None]
        torch.testing.assert_close(ref.embed(ids, wte.weight, wpe.weight), want, rtol=0, atol=0)


# -- the notebook itself -------------------------------------------------------------------------


def test_reference_uses_no_library_versions():
    """The oracles stay independent: no graded cell calls the library functions it is checked against."""
    cells = {c.grade_id: c.source for c in read_notebook(NOTEBOOK) if c.is_solution}
    assert set(cells) == set(GRADED)
    for gid, source in cells.items():
        body = source.split("### BEGIN SOLUTION", 1)[1]
        for banned in ("torch.softmax", "torch.log_softmax", ".softmax(", ".log_softmax(", "logsumexp",
                       "torch.nn", "F.", "unfold", "Embedding", "one_hot"):
            assert banned not in body, f"the reference {gid} uses {banned}"


@pytest.mark.parametrize("function", GRADED)
def test_visible_checks_pass_on_the_reference(ref, function):
    check = {c.grade_id: c.source for c in read_notebook(NOTEBOOK)}[f"check_{function}"]
    exec(compile(check, f"check_{function}", "exec"), dict(vars(ref)))
