"""The reference solutions of lesson 03 (causal attention) against independent oracles.

Oracles: `torch.tril` for the causal mask, `torch.nn.functional.scaled_dot_product_attention`
for attention (plain and tiled), and transformers' `GPT2Attention` with copied weights for
multi-head attention. Inputs are drawn by Hypothesis as shapes plus an integer seed.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.overrides import TorchFunctionMode

from autograder.strategies import batch_shapes, randn, seeds
from course.loader import load_notebook
from course.notebook import read_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions/03/attention.ipynb"
GRADED = ("causal_mask", "scaled_dot_product_attention", "multi_head_attention", "tiled_attention")

ORACLE = settings(derandomize=True, database=None, deadline=None, max_examples=50)
F64 = {"rtol": 1e-10, "atol": 1e-12}

batch_dims = batch_shapes()


@pytest.fixture(scope="module")
def ref():
    return load_notebook(NOTEBOOK, module_name="reference_03_oracles").module


def qkv(
    batch: tuple[int, ...], tq: int, tk: int, d: int, dv: int, seed: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (
        randn((*batch, tq, d), seed, dtype),
        randn((*batch, tk, d), seed + 1, dtype),
        randn((*batch, tk, dv), seed + 2, dtype),
    )


# -- causal_mask ---------------------------------------------------------------------------------


@ORACLE
@given(st.integers(1, 64))
def test_causal_mask_is_tril(ref, n):
    got = ref.causal_mask(n)
    assert got.dtype == torch.bool
    assert torch.equal(got, torch.tril(torch.ones(n, n, dtype=torch.bool)))


def test_causal_mask_device(ref):
    assert ref.causal_mask(3, device="cpu").device == torch.device("cpu")
    assert ref.causal_mask(3, device="meta").device == torch.device("meta")


# -- scaled_dot_product_attention ----------------------------------------------------------------


@st.composite
def attention_case(draw):
    batch = draw(batch_dims)
    tq, tk, d, dv = (draw(st.integers(1, 9)) for _ in range(4))
    seed = draw(seeds)
    q, k, v = qkv(batch, tq, tk, d, dv, seed)
    mask = None
    kind = draw(st.sampled_from(["none", "full", "shared", "keys", "queries", "causal"]))
    if kind != "none":
        shape = {
            "full": (*batch, tq, tk),
            "shared": (tq, tk),
            "keys": (1, tk),
            "queries": (*batch[-1:], tq, tk),
            "causal": (tq, tk),
        }[kind]
        if kind == "causal":
            mask = torch.ones(tq, tk, dtype=torch.bool).tril()
        else:
            g = torch.Generator().manual_seed(seed + 3)
            mask = torch.rand(shape, generator=g) < 0.6
            mask[..., 0] = True  # every query keeps at least one key (the contract)
    return q, k, v, mask


@ORACLE
@given(attention_case())
def test_sdpa_matches_torch_float64(ref, case):
    q, k, v, mask = case
    got = ref.scaled_dot_product_attention(q, k, v, mask=mask)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, **F64)


@ORACLE
@given(attention_case())
def test_sdpa_matches_torch_float32(ref, case):
    q, k, v, mask = (None if t is None else t.float() if t.is_floating_point() else t for t in case)
    got = ref.scaled_dot_product_attention(q, k, v, mask=mask)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, attn_mask=mask))


@ORACLE
@given(attention_case())
def test_sdpa_leaves_inputs_alone(ref, case):
    q, k, v, mask = case
    before = [t.clone() for t in (q, k, v)] + [None if mask is None else mask.clone()]
    ref.scaled_dot_product_attention(q, k, v, mask=mask)
    for a, b in zip((q, k, v, mask), before):
        assert (a is None and b is None) or torch.equal(a, b)


def test_sdpa_scale_probe(ref):
    """Multiplying q by c and dividing k by c changes nothing; a 1/sqrt(d) slip would show."""
    q, k, v = qkv((2,), 4, 6, 8, 3, seed=11)
    base = ref.scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(ref.scaled_dot_product_attention(3 * q, k / 3, v), base, **F64)
    doubled = ref.scaled_dot_product_attention(q * 8**0.5, k, v)  # = softmax(q k^T) v
    want = torch.softmax(q @ k.transpose(-2, -1), dim=-1) @ v
    torch.testing.assert_close(doubled, want, **F64)


# -- tiled_attention -----------------------------------------------------------------------------


@st.composite
def tiled_case(draw):
    batch = draw(batch_dims)
    tq, tk = draw(st.integers(1, 12)), draw(st.integers(1, 12))
    d, dv = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    block = draw(st.one_of(st.just(1), st.just(tk), st.just(tk + 5), st.integers(1, tk + 2)))
    return qkv(batch, tq, tk, d, dv, draw(seeds)), block, draw(st.booleans())


@ORACLE
@given(tiled_case())
def test_tiled_matches_torch_float64(ref, case):
    (q, k, v), block, causal = case
    got = ref.tiled_attention(q, k, v, block, causal=causal)
    # is_causal in torch uses the top-left aligned tril(ones(Tq, Tk)): key j visible iff j <= i
    want = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, want, **F64)


@ORACLE
@given(tiled_case())
def test_tiled_matches_torch_float32(ref, case):
    (q, k, v), block, causal = case
    q, k, v = q.float(), k.float(), v.float()
    got = ref.tiled_attention(q, k, v, block, causal=causal)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, F.scaled_dot_product_attention(q, k, v, is_causal=causal))


@settings(ORACLE, max_examples=20)
@given(st.integers(2, 40), st.integers(1, 8), seeds)
def test_tiled_independent_of_block_size(ref, t, d, seed):
    q, k, v = qkv((), t, t, d, d, seed)
    outs = [ref.tiled_attention(q, k, v, b) for b in (1, 2, 3, 7, t, t + 1)]
    for out in outs[1:]:
        torch.testing.assert_close(out, outs[0], **F64)


def test_tiled_is_stable_with_huge_scores(ref):
    q, k, v = qkv((2,), 16, 16, 4, 4, seed=5, dtype=torch.float32)
    got = ref.tiled_attention(40 * q, 40 * k, v, 3)
    assert torch.isfinite(got).all()
    torch.testing.assert_close(got, F.scaled_dot_product_attention(40 * q, 40 * k, v, is_causal=True))


class LargestTensor(TorchFunctionMode):
    """Every tensor any torch operation returns inside the block; keeps the largest element count."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor):
                self.numel = max(self.numel, t.numel())
        return out


@pytest.mark.parametrize("causal", [True, False])
def test_tiled_never_builds_the_score_matrix(ref, causal):
    tq = tk = 512
    block, d = 32, 8
    q, k, v = qkv((2,), tq, tk, d, d, seed=3, dtype=torch.float32)
    with LargestTensor() as probe:
        ref.tiled_attention(q, k, v, block, causal=causal)
    assert probe.numel <= 2 * tq * block, f"a tensor of {probe.numel} elements was created"
    with LargestTensor() as probe:  # the probe does see the full matrix when there is one
        ref.scaled_dot_product_attention(q, k, v)
    assert probe.numel >= 2 * tq * tk


# -- multi_head_attention ------------------------------------------------------------------------


def gpt2_attention(x, w_q, w_k, w_v, w_o, n_heads, causal):
    """transformers' GPT2Attention (eager) with our weights copied in and zero biases."""
    from transformers import GPT2Config
    from transformers.models.gpt2.modeling_gpt2 import GPT2Attention

    batch, seq, d_model = x.shape
    config = GPT2Config(
        n_embd=d_model,
        n_head=n_heads,
        n_positions=max(seq, 8),
        attn_pdrop=0.0,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
    )
    config._attn_implementation = "eager"
    attn = GPT2Attention(config, layer_idx=0).to(x.dtype).eval()
    with torch.no_grad():
        # Conv1D computes x @ weight + bias with weight (in, out): weight = w.T; c_attn packs q, k, v
        attn.c_attn.weight.copy_(torch.cat([w_q, w_k, w_v], dim=0).T)
        attn.c_attn.bias.zero_()
        attn.c_proj.weight.copy_(w_o.T)
        attn.c_proj.bias.zero_()
        mask = None
        if causal:  # GPT2Model builds this additive mask; the attention module alone does not
            allowed = torch.ones(seq, seq, dtype=torch.bool).tril()
            mask = torch.zeros(batch, 1, seq, seq, dtype=x.dtype).masked_fill(~allowed, float("-inf"))
        return attn(x, attention_mask=mask)[0]


@st.composite
def mha_case(draw):
    batch, seq = draw(st.integers(1, 3)), draw(st.integers(1, 8))
    n_heads, head_dim = draw(st.integers(1, 4)), draw(st.integers(1, 5))
    d_model, seed = n_heads * head_dim, draw(seeds)
    x = randn((batch, seq, d_model), seed, torch.float64)
    ws = [randn((d_model, d_model), seed + 1 + i, torch.float64) / d_model**0.5 for i in range(4)]
    return x, ws, n_heads, draw(st.booleans())


@settings(ORACLE, max_examples=40)
@given(mha_case())
def test_mha_matches_gpt2_attention(ref, case):
    x, ws, n_heads, causal = case
    got = ref.multi_head_attention(x, *ws, n_heads, causal=causal)
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, gpt2_attention(x, *ws, n_heads, causal), **F64)


@settings(ORACLE, max_examples=20)
@given(mha_case())
def test_mha_future_tokens_never_change_the_past(ref, case):
    x, ws, n_heads, _ = case
    seq = x.shape[1]
    cut = seq // 2
    changed = x.clone()
    changed[:, cut:] = -changed[:, cut:] + 1.0
    before = ref.multi_head_attention(x, *ws, n_heads, causal=True)
    after = ref.multi_head_attention(changed, *ws, n_heads, causal=True)
    torch.testing.assert_close(after[:, :cut], before[:, :cut], **F64)
    if seq > cut:
        assert not torch.allclose(after[:, cut:], before[:, cut:])


def test_mha_leaves_inputs_alone_and_keeps_float32(ref):
    x = randn((2, 5, 12), 1, torch.float32)
    ws = [randn((12, 12), 2 + i, torch.float32) / 12**0.5 for i in range(4)]
    before = [t.clone() for t in (x, *ws)]
    got = ref.multi_head_attention(x, *ws, 3)
    assert got.dtype == torch.float32 and got.shape == (2, 5, 12)
    assert all(torch.equal(a, b) for a, b in zip((x, *ws), before))
    torch.testing.assert_close(got, gpt2_attention(x, *ws, 3, causal=True))


# -- the notebook itself ---------------------------------------------------------------------------


def test_reference_uses_no_library_attention():
    """The oracles must stay independent: no graded cell may call torch's own attention."""
    cells = {c.grade_id: c.source for c in read_notebook(NOTEBOOK) if c.is_solution}
    assert set(cells) == set(GRADED)
    for gid, source in cells.items():
        body = source.split("### BEGIN SOLUTION", 1)[1]
        for banned in (
            "torch.nn.functional",
            "F.scaled_dot_product_attention",
            "MultiheadAttention",
            "multi_head_attention_forward",
            "import torch.nn",
        ):
            assert banned not in body, f"the reference {gid} uses {banned}"


@pytest.mark.parametrize("function", GRADED)
def test_visible_checks_pass_on_the_reference(ref, function):
    check = {c.grade_id: c.source for c in read_notebook(NOTEBOOK)}[f"check_{function}"]
    exec(compile(check, f"check_{function}", "exec"), dict(vars(ref)))
