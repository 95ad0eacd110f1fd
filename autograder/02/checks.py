"""Hidden tests of lesson 02, embeddings and language-model data.

Each property calls the student's function in the sandbox and the reference
here, on inputs drawn by Hypothesis (or, for `make_lm_windows`, on every small
combination of lengths). The reference works in float64 on exactly the values
the student received; float32 answers are held to float32 tolerances (see
`autograder.compare`), widened only where the inputs are of magnitude 1e4,
where a correct float32 computation can be off by a few units in the last
place of the inputs (e.g. `x - logsumexp(x)` rounds the log-sum-exp to 1e-3).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
from hypothesis import strategies as st

from autograder.compare import TOLERANCES, Failure, expect, expect_close, expect_shape, expect_unchanged
from autograder.harness import Suite
from autograder.strategies import batch_shapes, describe, float_dtypes, randn, seeds
from course.sandbox import StudentError

STANDINS = """
import math

import torch
import torch.nn.functional as F

def make_lm_windows(ids, context_length, stride):
    if len(ids) <= context_length:
        empty = ids.new_empty((0, context_length))
        return empty, empty.clone()
    inputs = ids[:-1].unfold(0, context_length, stride)
    targets = ids[1:].unfold(0, context_length, stride)
    return inputs.clone(), targets.clone()

def softmax(x, dim=-1):
    return torch.softmax(x, dim=dim)

def log_softmax(x, dim=-1):
    return torch.log_softmax(x, dim=dim)

def cross_entropy(logits, targets, ignore_index=-100):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=ignore_index)

def sinusoidal_positions(seq_len, d_model):
    table = [[math.sin(p / 10000 ** ((c - c % 2) / d_model)) if c % 2 == 0
              else math.cos(p / 10000 ** ((c - c % 2) / d_model)) for c in range(d_model)]
             for p in range(seq_len)]
    return torch.tensor(table, dtype=torch.float64).reshape(seq_len, d_model).to(torch.get_default_dtype())

def embed(ids, token_table, pos_table):
    return F.embedding(ids, token_table) + pos_table[: ids.shape[-1]]
"""

suite = Suite("02", standins=STANDINS)

INT_DTYPES = (torch.int64, torch.int32, torch.int16, torch.uint8)
EPS = {torch.float32: torch.finfo(torch.float32).eps, torch.float64: torch.finfo(torch.float64).eps}


class Named:
    """A case described by text (its repr is the text, without quotes)."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


@contextlib.contextmanager
def on(case: str) -> Iterator[None]:
    """Name the input of a failure or a student error raised inside the block (for properties
    that loop over their own cases instead of drawing them with Hypothesis)."""
    try:
        yield
    except (Failure, StudentError) as err:
        err.case = Named(case)  # type: ignore[attr-defined]
        raise


def magnitude_slack(x: torch.Tensor) -> float:
    """A few units in the last place of the largest finite input: the rounding a correct
    computation may add when it works with numbers as large as its inputs (in float32 a
    log-sum-exp of 1e4 is only known to about 1e-3). Negligible for inputs of size ~1."""
    finite = x[torch.isfinite(x)]
    top = finite.abs().max().item() if finite.numel() else 0.0
    return 4 * EPS[x.dtype] * top


def widened(x: torch.Tensor) -> dict[str, float]:
    """Tolerances of `x`'s dtype, plus `magnitude_slack(x)` both absolute (an exponent or a loss
    off by the slack) and relative (a probability off by a factor 1 + slack)."""
    rtol, atol = TOLERANCES[x.dtype]
    slack = magnitude_slack(x)
    return {"rtol": rtol + slack, "atol": atol + slack}


def expect_close_inf(got: object, want: torch.Tensor, what: str, *, dtype: torch.dtype) -> None:
    """Like expect_close, but -inf in `want` must be exactly -inf in `got` (expect_close alone
    would let nan through where the expected value is infinite)."""
    got = expect_shape(got, tuple(want.shape), what)
    inf = torch.isinf(want)
    if inf.any():
        bad = (got.double() != want) & inf
        if bad.any():
            idx = tuple(int(i) for i in bad.nonzero()[0])
            raise Failure(f"{what} is {got[idx].item()} at index {idx}, expected {want[idx].item()} "
                          "(an input of -inf)")
        got = torch.where(inf.to(got.device), torch.zeros_like(got), got)
        want = torch.where(inf, torch.zeros_like(want), want)
    expect_close(got, want, what, dtype=dtype)


def expect_loss(got: object, want: torch.Tensor, what: str, *, dtype: torch.dtype,
                rtol: float | None = None, atol: float | None = None) -> None:
    """expect_close for a 0-dim loss, without its whole-tensor relative check: that check has no
    absolute floor, and a correct float32 loss of 1e-6 (every kept target already near-certain)
    computed as logsumexp - logit is off by ~1e-7, 10% of itself, yet well within atol."""
    got = expect_shape(got, (), what)
    expect(got.dtype == dtype, f"{what} has dtype {got.dtype}, expected {dtype} (return the logits' dtype)")
    d_rtol, d_atol = TOLERANCES[dtype]
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    g, w = got.double().item(), want.double().item()
    expect(math.isfinite(g), f"{what} is {g}, expected the finite value {w:.6g}")
    allowed = atol + rtol * abs(w)
    expect(abs(g - w) <= allowed, f"{what} is wrong: got {g:.8g}, expected {w:.8g} "
           f"(error {abs(g - w):.3g}, allowed {allowed:.3g})")


@contextlib.contextmanager
def float64_default() -> Iterator[None]:
    """Run the reference's sinusoidal table in float64 (it returns torch's default dtype)."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        torch.set_default_dtype(old)


# -- make_lm_windows (2 points) -----------------------------------------------------------------

def distinct_ids(n: int, seed: int, dtype: torch.dtype) -> torch.Tensor:
    """n distinct ids below 127 (so every integer dtype holds them): a misplaced index always shows."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(120, generator=g)[:n].add(3).to(dtype)


def expect_windows(got: object, ids: torch.Tensor, context_length: int, stride: int, ref) -> None:
    want_in, want_tg = ref.make_lm_windows(ids, context_length, stride)
    expect(isinstance(got, (tuple, list)) and len(got) == 2,
           f"make_lm_windows must return a tuple (inputs, targets), got {type(got).__name__}"
           + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else ""))
    for name, g, w in (("inputs", got[0], want_in), ("targets", got[1], want_tg)):
        expect_shape(g, tuple(w.shape), f"{name} ({len(w)} windows of {context_length})")
        expect_close(g, w, name, dtype=ids.dtype)


@suite.check("test_make_lm_windows",
             "every combination of len(ids) 0-11, context_length 1-6 and stride 1-7 gives the right "
             "windows (exactly, ids' dtype kept, empty (0, context_length) tensors when none fits)")
def _(student, ref):
    k = 0
    for n in range(12):
        for context_length in range(1, 7):
            for stride in range(1, 8):
                dtype = INT_DTYPES[k % len(INT_DTYPES)]
                ids = distinct_ids(n, k, dtype)
                k += 1
                with on(f"ids = {ids.tolist()} ({str(dtype).removeprefix('torch.')}), "
                        f"context_length={context_length}, stride={stride}"):
                    got = student.call("make_lm_windows", ids, context_length, stride)
                    expect_windows(got, ids, context_length, stride, ref)


@dataclass
class Stream:
    ids: torch.Tensor
    context_length: int
    stride: int

    def __repr__(self) -> str:
        return (f"ids of length {len(self.ids)} ({str(self.ids.dtype).removeprefix('torch.')}), "
                f"context_length={self.context_length}, stride={self.stride}")


@st.composite
def streams(draw: st.DrawFn) -> Stream:
    n, context_length, stride = draw(st.integers(0, 300)), draw(st.integers(1, 40)), draw(st.integers(1, 50))
    g = torch.Generator().manual_seed(draw(seeds))
    return Stream(torch.randint(0, 50_000, (n,), generator=g), context_length, stride)


@suite.check("test_make_lm_windows", "long streams (up to 300 int64 ids) give the right windows",
             cases=streams(), max_examples=30)
def _(student, ref, s):
    expect_windows(student.call("make_lm_windows", s.ids, s.context_length, s.stride),
                   s.ids, s.context_length, s.stride, ref)


@suite.check("test_make_lm_windows", "does not modify ids", cases=streams(), max_examples=5)
def _(student, ref, s):
    _, after, _ = student.call_with_inputs("make_lm_windows", s.ids.clone(), s.context_length, s.stride)
    expect_unchanged([s.ids], after[:1], ["ids"])


# -- softmax (1 point) and log_softmax (2 points) -----------------------------------------------

@dataclass
class Scores:
    x: torch.Tensor
    dim: int
    note: str = ""

    def __repr__(self) -> str:
        return f"x {describe(self.x)}{self.note}, dim={self.dim}"


@st.composite
def scores(draw: st.DrawFn) -> Scores:
    """Ordinary scores: 1-4 dims of size 1-6, spread 0.1 to 30, any dim."""
    shape = draw(st.lists(st.integers(1, 6), min_size=1, max_size=4))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0, 30.0]))
    return Scores(randn(shape, draw(seeds), draw(float_dtypes), scale=scale), dim, f" (std {scale:g})")


@st.composite
def huge_scores(draw: st.DrawFn) -> Scores:
    """Every slice along `dim` moved by its own offset in [-1e4, 1e4], with spreads inside a slice
    of 1, 100 or 1e4: exp overflows without the max subtraction, a max over the whole tensor
    sends slices far below it to 0/0, and log(softmax) underflows to -inf."""
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3))
    dim = draw(st.integers(-len(shape), len(shape) - 1))
    shape[dim] = max(shape[dim], 2)  # a spread needs two entries in a slice
    spread, seed, dtype = draw(st.sampled_from([1.0, 100.0, 1e4])), draw(seeds), draw(float_dtypes)
    offset_shape = list(shape)
    offset_shape[dim] = 1
    g = torch.Generator().manual_seed(seed + 1)
    offsets = (torch.rand(offset_shape, generator=g, dtype=torch.float64) * 2 - 1) * 1e4
    offsets.view(-1)[0] = 1e4 if draw(st.booleans()) else -1e4  # one slice at the very edge
    x = (randn(shape, seed, torch.float64, scale=spread) + offsets).clamp(-2e4, 2e4)
    return Scores(x.to(dtype), dim, f" (offsets up to 1e4, spread {spread:g})")


@st.composite
def masked_scores(draw: st.DrawFn) -> Scores:
    """Scores with some -inf entries, at least one finite entry in every slice."""
    s = draw(scores())
    g = torch.Generator().manual_seed(draw(seeds))
    hide = torch.rand(s.x.shape, generator=g) < 0.4
    keep = torch.zeros_like(hide)
    first = [slice(None)] * s.x.dim()
    first[s.dim] = slice(0, 1)
    keep[tuple(first)] = True  # entry 0 of every slice stays finite
    x = s.x.masked_fill(hide & ~keep, float("-inf"))
    return Scores(x, s.dim, f" with {int((hide & ~keep).sum())} entries of -inf")


@dataclass
class Shifted(Scores):
    shift: torch.Tensor = field(default_factory=lambda: torch.zeros(()))

    def __repr__(self) -> str:
        return f"x {describe(self.x)}{self.note} plus a constant c per slice along dim={self.dim}"


@st.composite
def shifted_scores(draw: st.DrawFn) -> Shifted:
    s = draw(scores())
    x = s.x.double()
    c_shape = list(x.shape)
    c_shape[s.dim] = 1
    g = torch.Generator().manual_seed(draw(seeds))
    # whole numbers up to 1e4: x + c then differs from the exact sum by ~1e-12 at most
    c = ((torch.rand(c_shape, generator=g, dtype=torch.float64) * 2 - 1) * 1e4).round()
    return Shifted(x, s.dim, s.note, c)


for _name in ("softmax", "log_softmax"):

    @suite.check(f"test_{_name}", "matches the reference (float32 and float64, 1-4 dims, any dim)",
                 cases=scores(), max_examples=50)
    def _(student, ref, s, name=_name):
        got = student.call(name, s.x, dim=s.dim)
        expect_close(got, getattr(ref, name)(s.x.double(), dim=s.dim), "the output", dtype=s.x.dtype)

    @suite.check(f"test_{_name}",
                 "is stable: slices at offsets up to ±1e4 and with spreads up to 1e4 give finite, "
                 "correct values (no inf, no nan, no log(0))", cases=huge_scores(), max_examples=40)
    def _(student, ref, s, name=_name):
        got = student.call(name, s.x, dim=s.dim)
        want = getattr(ref, name)(s.x.double(), dim=s.dim)
        expect_close(got, want, "the output", dtype=s.x.dtype, **widened(s.x))

    @suite.check(f"test_{_name}",
                 "is invariant to adding a constant c to each slice: f(x + c) = f(x) for c up to ±1e4 "
                 "(float64)", cases=shifted_scores(), max_examples=25)
    def _(student, ref, s, name=_name):
        got = student.call(name, s.x + s.shift, dim=s.dim)
        expect_close(got, getattr(ref, name)(s.x, dim=s.dim), f"{name}(x + c), compared with {name}(x),",
                     **widened(s.x + s.shift))

    @suite.check(f"test_{_name}",
                 "entries of -inf get " + ("probability 0" if _name == "softmax" else "log-probability -inf")
                 + " and the others are right", cases=masked_scores(), max_examples=25)
    def _(student, ref, s, name=_name):
        got = student.call(name, s.x, dim=s.dim)
        expect_close_inf(got, getattr(ref, name)(s.x.double(), dim=s.dim), "the output", dtype=s.x.dtype)

    @suite.check(f"test_{_name}", "does not modify x", cases=scores(), max_examples=5)
    def _(student, ref, s, name=_name):
        _, after, _ = student.call_with_inputs(name, s.x.clone(), dim=s.dim)
        expect_unchanged([s.x], after[:1], ["x"])


# -- cross_entropy (2 points) -------------------------------------------------------------------

@dataclass
class CE:
    logits: torch.Tensor
    targets: torch.Tensor
    ignore_index: int
    note: str = ""

    def __repr__(self) -> str:
        kept = int((self.targets != self.ignore_index).sum())
        return (f"logits {describe(self.logits)}{self.note}, targets {tuple(self.targets.shape)} "
                f"({kept} of {self.targets.numel()} kept), ignore_index={self.ignore_index}")

    def args(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.logits, self.targets


@st.composite
def ce_inputs(draw: st.DrawFn, *, huge: bool = False, dtypes: st.SearchStrategy = float_dtypes,
              min_kept: int = 1) -> CE:
    """Logits (..., vocab) with 0-3 leading dims; some targets ignored, at least `min_kept` kept."""
    lead = draw(batch_shapes(max_dims=3, max_side=4))
    vocab, seed, dtype = draw(st.integers(2, 12)), draw(seeds), draw(dtypes)
    n = 1
    for side in lead:
        n *= side
    if n < min_kept:
        lead, n = (*lead, min_kept), n * min_kept
    g = torch.Generator().manual_seed(seed + 1)
    targets = torch.randint(0, vocab, lead, generator=g)
    ignore_index = draw(st.sampled_from([-100, -100, -1, 0]))
    mode = draw(st.sampled_from(["some", "some", "none", "all but one"]))
    ignored = {"some": torch.rand(lead, generator=g) < 0.4, "none": torch.zeros(lead, dtype=torch.bool),
               "all but one": torch.ones(lead, dtype=torch.bool)}[mode]
    if ignore_index == 0:  # 0 is a real id here (a pad id): only positions chosen to be ignored hold it
        targets = targets.clamp(min=1)
    flat = ignored.reshape(-1).clone()
    for j in range(n):  # un-ignore the first positions until at least min_kept are kept
        if int((~flat).sum()) >= min_kept:
            break
        flat[j] = False
    targets = targets.masked_fill(flat.reshape(lead), ignore_index)
    if huge:
        x = randn((*lead, vocab), seed, torch.float64, scale=1e4).clamp(-2e4, 2e4)
        note = " (entries up to ±2e4)"
    else:
        scale = draw(st.sampled_from([0.5, 2.0, 8.0]))
        x = randn((*lead, vocab), seed, torch.float64, scale=scale)
        note = f" (std {scale:g})"
    return CE(x.to(dtype), targets, ignore_index, note)


@suite.check("test_cross_entropy",
             "matches the reference (float32 and float64, 0-3 leading dims, ignored targets, "
             "ignore_index -100, -1 or 0)", cases=ce_inputs(), max_examples=60)
def _(student, ref, c):
    got = student.call("cross_entropy", *c.args(), ignore_index=c.ignore_index)
    want = ref.cross_entropy(c.logits.double(), c.targets, ignore_index=c.ignore_index)
    expect_loss(got, want, "the loss", dtype=c.logits.dtype)


@suite.check("test_cross_entropy", "uses the default ignore_index=-100 when none is given",
             cases=ce_inputs(), max_examples=10)
def _(student, ref, c):
    targets = c.targets.masked_fill(c.targets == c.ignore_index, -100)
    got = student.call("cross_entropy", c.logits, targets)
    want = ref.cross_entropy(c.logits.double(), targets)
    expect_loss(got, want, "the loss", dtype=c.logits.dtype)


@suite.check("test_cross_entropy",
             "is stable for logits up to ±2e4 (finite and correct: no log(softmax))",
             cases=ce_inputs(huge=True), max_examples=30)
def _(student, ref, c):
    got = student.call("cross_entropy", *c.args(), ignore_index=c.ignore_index)
    want = ref.cross_entropy(c.logits.double(), c.targets, ignore_index=c.ignore_index)
    expect_loss(got, want, "the loss", dtype=c.logits.dtype, **widened(c.logits))


# The gradient. Only values come back from the sandbox, so autograd cannot run on the student's
# loss here (the visible checks call backward() in the student's own kernel). What can be checked
# from values is the slope of the function the student computes: along a direction u (unit norm),
#     (L(z + h u) - L(z - h u)) / (2 h)  =  grad L(z) . u  +  O(h^2),
# and the right-hand side comes from the reference with autograd. In float64 with h = 1e-4 the
# O(h^2) term is h^2 / 6 times the third derivative along u, which for a log-sum-exp is the third
# central moment of u's entries under the softmax distribution: at most 2 for a unit vector, so
# the term is below 4e-9; rounding adds about 1e-16 * |L| / h < 1e-10 for losses below 100
# (measured over 500 cases: at most 2e-10 for five correct implementations). The tolerance 1e-7
# sits well above both. A wrong
# mean (sum, or a denominator counting ignored positions) changes the slope by a factor of n or
# more, and a loss that reacts to the logits of ignored positions has a non-zero slope along a
# direction that only moves those logits. Three directions per case: a random one over all
# logits, one over the row of a single kept position, one over the ignored positions only.
FD_STEP, FD_TOL = 1e-4, 1e-7


@dataclass
class Directions:
    ce: CE
    seed: int  # of the random directions

    def __repr__(self) -> str:
        return repr(self.ce)


@suite.check("test_cross_entropy",
             "has the right gradient: (softmax - one_hot) / n_kept at kept positions and 0 at ignored "
             "ones, measured by central differences of your loss along random directions (float64)",
             cases=st.builds(Directions, ce_inputs(dtypes=st.just(torch.float64), min_kept=2), seeds),
             max_examples=15)
def _(student, ref, case):
    c, seed = case.ce, case.seed
    z = c.logits.clone().requires_grad_(True)
    ref.cross_entropy(z, c.targets, ignore_index=c.ignore_index).backward()
    grad = z.grad
    keep = c.targets != c.ignore_index
    g = torch.Generator().manual_seed(seed)
    directions = {"a random direction over all logits":
                  torch.randn(z.shape, generator=g, dtype=torch.float64)}
    one_row = torch.zeros_like(c.logits)
    one_row[keep.nonzero()[0].unbind()] = torch.randn(z.shape[-1], generator=g, dtype=torch.float64)
    directions["a direction moving the logits of one kept position"] = one_row
    if (~keep).any():
        directions["a direction moving only the logits of ignored positions"] = (
            torch.randn(z.shape, generator=g, dtype=torch.float64) * (~keep)[..., None])
    for what, u in directions.items():
        u = u / torch.linalg.vector_norm(u)
        up = student.call("cross_entropy", c.logits + FD_STEP * u, c.targets, ignore_index=c.ignore_index)
        down = student.call("cross_entropy", c.logits - FD_STEP * u, c.targets, ignore_index=c.ignore_index)
        up = expect_shape(up, (), "the loss")
        down = expect_shape(down, (), "the loss")
        slope = (up.double() - down.double()).item() / (2 * FD_STEP)
        want = (grad * u).sum().item()
        expect(abs(slope - want) <= FD_TOL,
               f"along {what}, your loss changes at the rate {slope:.6g} per unit step, but the gradient "
               f"(softmax - one_hot(target)) / n_kept, 0 at ignored positions, predicts {want:.6g}")


@suite.check("test_cross_entropy", "does not modify logits or targets", cases=ce_inputs(), max_examples=5)
def _(student, ref, c):
    _, after, _ = student.call_with_inputs("cross_entropy", c.logits.clone(), c.targets.clone(),
                                           ignore_index=c.ignore_index)
    expect_unchanged(list(c.args()), after[:2], ["logits", "targets"])


# -- sinusoidal_positions (2 points) ------------------------------------------------------------

def pe_tolerance(seq_len: int) -> float:
    """float32 angles pos * w_i carry a relative error ~6e-8, so sin/cos of positions up to
    seq_len are off by up to ~6e-8 * seq_len (measured: 2.8e-5 at 512) when a correct solution
    computes in float32; the wrong-convention mistakes are off by ~1."""
    return 2e-5 + 1e-7 * seq_len


def expect_table(got: object, seq_len: int, d_model: int, ref) -> None:
    with float64_default():
        want = ref.sinusoidal_positions(seq_len, d_model)
    expect_close(got, want, f"sinusoidal_positions({seq_len}, {d_model})", dtype=torch.get_default_dtype(),
                 atol=pe_tolerance(seq_len))


@suite.check("test_sinusoidal_positions",
             "every seq_len 0-8 and d_model 1-9 (odd included) gives the table of the closed form, "
             "in the default dtype")
def _(student, ref):
    for seq_len in range(9):
        for d_model in range(1, 10):
            with on(f"seq_len={seq_len}, d_model={d_model}"):
                expect_table(student.call("sinusoidal_positions", seq_len, d_model), seq_len, d_model, ref)


@suite.check("test_sinusoidal_positions", "long tables (up to 600 positions, d_model up to 96) match "
             "the closed form", cases=st.tuples(st.integers(9, 600), st.integers(1, 96)), max_examples=15)
def _(student, ref, case):
    seq_len, d_model = case
    expect_table(student.call("sinusoidal_positions", seq_len, d_model), seq_len, d_model, ref)


# -- embed (1 point) ----------------------------------------------------------------------------

@dataclass
class Embed:
    ids: torch.Tensor
    token_table: torch.Tensor
    pos_table: torch.Tensor

    def __repr__(self) -> str:
        return (f"ids {tuple(self.ids.shape)}, token_table {describe(self.token_table)}, "
                f"pos_table {tuple(self.pos_table.shape)}")

    def args(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.ids, self.token_table, self.pos_table


@st.composite
def embed_inputs(draw: st.DrawFn) -> Embed:
    lead = draw(batch_shapes(max_dims=3, max_side=4))
    seq, vocab, d_model = draw(st.integers(1, 8)), draw(st.integers(1, 20)), draw(st.integers(1, 8))
    max_len, seed, dtype = seq + draw(st.integers(0, 4)), draw(seeds), draw(float_dtypes)
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (*lead, seq), generator=g)
    return Embed(ids, randn((vocab, d_model), seed + 1, dtype), randn((max_len, d_model), seed + 2, dtype))


@suite.check("test_embed", "matches the reference (0-3 leading dims, float32 and float64 tables, "
             "the tables' dtype kept)", cases=embed_inputs(), max_examples=40)
def _(student, ref, e):
    got = student.call("embed", *e.args())
    want = ref.embed(e.ids, e.token_table.double(), e.pos_table.double())
    expect_close(got, want, "the output", dtype=e.token_table.dtype)


@suite.check("test_embed", "does not modify ids or the tables", cases=embed_inputs(), max_examples=5)
def _(student, ref, e):
    _, after, _ = student.call_with_inputs("embed", *[t.clone() for t in e.args()])
    expect_unchanged(list(e.args()), after[:3], ["ids", "token_table", "pos_table"])
