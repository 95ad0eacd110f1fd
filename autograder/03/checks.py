"""Hidden tests of lesson 03, causal attention.

Each property calls the student's function in the sandbox and the reference
here, on inputs drawn by Hypothesis. The reference always works in float64
on exactly the values the student received; float32 answers are held to
float32 tolerances (see `autograder.compare`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from autograder.compare import expect, expect_close, expect_shape, expect_unchanged
from autograder.harness import Suite
from autograder.strategies import batch_shapes, describe, float_dtypes, rand_bool, randn, seeds

STANDINS = """
import torch
import torch.nn.functional as F

def causal_mask(seq_len, device=None):
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device).tril()

def scaled_dot_product_attention(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
"""

suite = Suite("03", standins=STANDINS)


@dataclass
class Attn:
    """Inputs of one attention call; the repr is what feedback shows."""

    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    mask: torch.Tensor | None = None

    def __repr__(self) -> str:
        mask = "None" if self.mask is None else f"bool {tuple(self.mask.shape)}"
        return (f"q {describe(self.q)}, k {tuple(self.k.shape)}, v {tuple(self.v.shape)}, "
                f"mask {mask}")

    def args(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
        return tuple(t if dtype is None else t.to(dtype) for t in (self.q, self.k, self.v))


def _mask(draw: st.DrawFn, batch: tuple[int, ...], tq: int, tk: int, seed: int) -> torch.Tensor:
    """A boolean mask broadcastable to (*batch, tq, tk) with at least one key per query."""
    shape = list(draw(st.sampled_from([(tq, tk), (1, tk), (tq, 1), (*batch, tq, tk),
                                       (*batch[-1:], 1, tk)])))
    if shape[-1] == 1:  # a key-independent mask would hide every key or none
        shape[-1] = tk
    mask = rand_bool(shape, seed)
    keep = torch.randint(0, tk, shape[:-1], generator=torch.Generator().manual_seed(seed + 1))
    return mask | torch.nn.functional.one_hot(keep, tk).bool()


@st.composite
def attention_inputs(draw: st.DrawFn, masks: bool = True) -> Attn:
    batch = draw(batch_shapes())
    tq, tk, d, dv = (draw(st.integers(1, 7)) for _ in range(4))
    dtype, seed = draw(float_dtypes), draw(seeds)
    q = randn((*batch, tq, d), seed, dtype, scale=1.5)
    k = randn((*batch, tk, d), seed + 1, dtype, scale=1.5)
    v = randn((*batch, tk, dv), seed + 2, dtype)
    mask = _mask(draw, batch, tq, tk, seed + 3) if masks and draw(st.booleans()) else None
    return Attn(q, k, v, mask)


@dataclass
class MHA:
    x: torch.Tensor
    weights: tuple[torch.Tensor, ...]  # w_q, w_k, w_v, w_o
    n_heads: int
    causal: bool

    def __repr__(self) -> str:
        return f"x {describe(self.x)}, n_heads={self.n_heads}, causal={self.causal}"


@st.composite
def mha_inputs(draw: st.DrawFn) -> MHA:
    b, t = draw(st.integers(1, 3)), draw(st.integers(1, 6))
    n_heads, head_dim = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    d_model, dtype, seed = n_heads * head_dim, draw(float_dtypes), draw(seeds)
    x = randn((b, t, d_model), seed, dtype)
    ws = tuple(randn((d_model, d_model), seed + 1 + i, dtype, scale=d_model**-0.5 * 1.5)
               for i in range(4))
    return MHA(x, ws, n_heads, draw(st.booleans()))


@dataclass
class Tiled:
    attn: Attn
    block_size: int
    causal: bool

    def __repr__(self) -> str:
        return f"{self.attn!r}, block_size={self.block_size}, causal={self.causal}"


@st.composite
def tiled_inputs(draw: st.DrawFn) -> Tiled:
    attn = draw(attention_inputs(masks=False))
    tk = attn.k.shape[-2]
    return Tiled(attn, draw(st.integers(1, tk + 2)), draw(st.booleans()))


# -- causal_mask (1 point) ---------------------------------------------------------------

@suite.check("test_causal_mask", "causal_mask(n) is the (n, n) bool mask with True where key j <= query i",
             cases=st.integers(1, 48), max_examples=20)
def _(student, ref, n):
    expect_close(student.call("causal_mask", n), ref.causal_mask(n), f"causal_mask({n})")


@suite.check("test_causal_mask", "causal_mask accepts a device argument")
def _(student, ref):
    expect_close(student.call("causal_mask", 5, device="cpu"), ref.causal_mask(5),
                 'causal_mask(5, device="cpu")')


# -- scaled_dot_product_attention (3 points) -------------------------------------------

@suite.check("test_scaled_dot_product_attention",
             "matches the reference (float32 and float64, batch dims, Tq != Tk, dv != d, "
             "broadcast masks)", cases=attention_inputs(), max_examples=60)
def _(student, ref, a):
    got = student.call("scaled_dot_product_attention", *a.args(), mask=a.mask)
    want = ref.scaled_dot_product_attention(*a.args(torch.float64), mask=a.mask)
    expect_close(got, want, "the output", dtype=a.q.dtype)


@suite.check("test_scaled_dot_product_attention", "does not modify q, k, v or the mask",
             cases=attention_inputs(), max_examples=15)
def _(student, ref, a):
    before = [*a.args(), a.mask]
    _, after, kwargs = student.call_with_inputs(
        "scaled_dot_product_attention", *[t.clone() for t in a.args()], mask=a.mask)
    expect_unchanged(before, [*after, kwargs.get("mask")], ["q", "k", "v", "mask"])


@suite.check("test_scaled_dot_product_attention",
             "with a causal mask, changing later keys and values never changes earlier outputs",
             cases=st.tuples(st.integers(2, 7), st.integers(1, 6), seeds), max_examples=20)
def _(student, ref, case):
    t, d, seed = case
    q, k, v = (randn((t, d), seed + i, torch.float64) for i in range(3))
    mask = ref.causal_mask(t)
    cut = t // 2
    k2, v2 = k.clone(), v.clone()
    k2[cut:] += 1.0
    v2[cut:] -= 2.0
    out1 = student.call("scaled_dot_product_attention", q, k, v, mask=mask)
    out2 = student.call("scaled_dot_product_attention", q, k2, v2, mask=mask)
    expect_close(out2[:cut], out1[:cut], f"rows 0..{cut - 1} after changing keys/values "
                 f"{cut}..{t - 1} (t={t}, d={d})")


# -- multi_head_attention (3 points) ---------------------------------------------------

@suite.check("test_multi_head_attention",
             "matches the reference (float32 and float64, 1-4 heads, causal and not)",
             cases=mha_inputs(), max_examples=45)
def _(student, ref, m):
    got = student.call("multi_head_attention", m.x, *m.weights, m.n_heads, causal=m.causal)
    want = ref.multi_head_attention(m.x.double(), *(w.double() for w in m.weights), m.n_heads,
                                    causal=m.causal)
    expect_close(got, want, "the output", dtype=m.x.dtype)


@suite.check("test_multi_head_attention",
             "causal: changing tokens after position t never changes outputs up to t",
             cases=mha_inputs(), max_examples=20)
def _(student, ref, m):
    t = m.x.shape[1]
    if t < 2:
        return
    cut = t // 2
    x2 = m.x.clone()
    x2[:, cut:] = -x2[:, cut:] + 0.5
    out1 = student.call("multi_head_attention", m.x, *m.weights, m.n_heads, causal=True)
    out2 = student.call("multi_head_attention", x2, *m.weights, m.n_heads, causal=True)
    out2 = expect_shape(out2, tuple(out1.shape), "the output for the changed x")
    expect_close(out2[:, :cut], out1[:, :cut],
                 f"outputs before position {cut} after changing the tokens from {cut} on")


@suite.check("test_multi_head_attention", "does not modify x or the weights",
             cases=mha_inputs(), max_examples=10)
def _(student, ref, m):
    before = [m.x, *m.weights]
    _, after, _ = student.call_with_inputs("multi_head_attention", *[t.clone() for t in before],
                                           m.n_heads, causal=m.causal)
    expect_unchanged(before, after[:5], ["x", "w_q", "w_k", "w_v", "w_o"])


# -- tiled_attention (3 points) --------------------------------------------------------

@suite.check("test_tiled_attention",
             "matches exact attention for every block size (float32 and float64, causal and not)",
             cases=tiled_inputs(), max_examples=60)
def _(student, ref, c):
    got = student.call("tiled_attention", *c.attn.args(), c.block_size, causal=c.causal)
    q, k, v = c.attn.args(torch.float64)
    mask = ref.causal_mask(max(q.shape[-2], k.shape[-2]))[: q.shape[-2], : k.shape[-2]]
    want = ref.scaled_dot_product_attention(q, k, v, mask=mask if c.causal else None)
    expect_close(got, want, "the output", dtype=c.attn.q.dtype)


@suite.check("test_tiled_attention", "does not modify q, k or v", cases=tiled_inputs(),
             max_examples=10)
def _(student, ref, c):
    before = list(c.attn.args())
    _, after, _ = student.call_with_inputs("tiled_attention", *[t.clone() for t in before],
                                           c.block_size, causal=c.causal)
    expect_unchanged(before, after[:3], ["q", "k", "v"])


LONG, BLOCK = 2048, 64
FULL_SCORES = LONG * LONG * 4  # bytes of one (LONG, LONG) float32 score matrix: 16 MiB


@suite.check("test_tiled_attention",
             f"never builds the full score matrix: with Tq = Tk = {LONG} and block_size {BLOCK}, "
             "memory use stays well below one full (Tq, Tk) matrix")
def _(student, ref):
    q, k, v = (randn((LONG, 2), 7 + i, torch.float32) for i in range(3))
    # The earlier properties of this cell have already run the function: torch's one-time
    # allocations are behind us, so this first long call measures the algorithm's own memory.
    got, peak = student.peak_memory("tiled_attention", q, k, v, BLOCK, causal=True)
    got = expect_shape(got, (LONG, 2), "the output")
    rows = torch.arange(0, LONG, 257)
    want = torch.stack([ref.scaled_dot_product_attention(q[i : i + 1].double(), k[: i + 1].double(),
                                                         v[: i + 1].double())[0] for i in rows.tolist()])
    expect_close(got[rows], want, f"rows {rows[:3].tolist()}... of the output", dtype=torch.float32)
    expect(peak < FULL_SCORES // 2,
           f"memory rose by {peak / 2**20:.0f} MiB during the call; one full ({LONG}, {LONG}) score "
           f"matrix is {FULL_SCORES / 2**20:.0f} MiB, and a tiled implementation needs only a few "
           f"({LONG}, {BLOCK}) blocks of {LONG * BLOCK * 4 / 2**20:.0f} MiB. "
           "Work one block of keys at a time.")
