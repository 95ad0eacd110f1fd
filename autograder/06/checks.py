"""Hidden tests of lesson 06, decoding.

Filters are compared exactly with the reference on the logits they return (which tokens become
-inf, and that the kept logits keep their values), never only through samples: torch.multinomial
normalises its input, so many wrong distributions would still sample plausibly. Random logits are
drawn away from the top-p boundaries (where float rounding decides), and the exact boundary cases use
dyadic probabilities (0.5, 0.25, 0.125, ...), for which every softmax and cumulative sum is exact.

A torch.Generator or a model cannot cross the sandbox boundary, so `sample_next`, `generate` and
`beam_search` run through drivers (the `drive_*` functions of SANDBOX_CODE) that build a seeded
generator and a small deterministic model, `LookupLM`, next to the student's code. The reference runs
the same model, built from the same code, in this process.
"""

from __future__ import annotations

import itertools
import math
import types
from dataclasses import dataclass

import torch
from hypothesis import strategies as st

from autograder.compare import (
    Failure,
    expect,
    expect_close,
    expect_equal,
    expect_shape,
    expect_tensor,
    expect_unchanged,
)
from autograder.harness import Student, Suite
from autograder.strategies import describe, float_dtypes, randn, seeds

SANDBOX_CODE = '''
import torch


# -- stand-ins: correct versions of the graded functions, used while another one is graded ------

def greedy_next(logits):
    return torch.argmax(logits, dim=-1)


def apply_temperature(logits, temperature):
    return logits / temperature


def top_k_filter(logits, k):
    kth = torch.topk(logits, min(k, logits.shape[-1]), dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits, p):
    if p >= 1:
        return logits.clone()
    probs = torch.softmax(logits, dim=-1)
    # the mass of the tokens strictly more likely than each token (tied tokens share it)
    above = torch.where(logits[..., None, :] > logits[..., :, None], probs[..., None, :], 0.0).sum(dim=-1)
    return logits.masked_fill(above >= p, float("-inf"))


def repetition_penalty(logits, prev_ids, penalty):
    out = logits.clone()
    for b in range(out.shape[0]):
        for v in set(prev_ids[b].tolist()):
            z = out[b, v]
            out[b, v] = z / penalty if z > 0 else z * penalty
    return out


def sample_next(logits, generator):
    return torch.multinomial(torch.softmax(logits, dim=-1), 1, generator=generator)[:, 0]


def generate(model, ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, generator=None):
    with torch.no_grad():
        for _ in range(max_new_tokens):
            z = model(ids)[:, -1, :]
            if temperature == 0:
                nxt = greedy_next(z)
            else:
                z = apply_temperature(z, temperature)
                z = z if top_k is None else top_k_filter(z, top_k)
                z = z if top_p is None else top_p_filter(z, top_p)
                nxt = sample_next(z, generator)
            ids = torch.cat([ids, nxt[:, None]], dim=1)
    return ids


# -- the test model and the drivers ------------------------------------------------------------

class LookupLM(torch.nn.Module):
    """Logits at position t from a table: they depend on tokens t - 1 and t, and on t itself."""

    def __init__(self, table, pos):
        super().__init__()
        self.register_buffer("table", table)  # (vocab + 1, vocab, vocab); row vocab: no token before
        self.register_buffer("pos", pos)  # (max_len, vocab)

    def forward(self, ids):
        vocab = self.table.shape[-1]
        prev = torch.cat([torch.full_like(ids[:, :1], vocab), ids[:, :-1]], dim=1)
        return self.table[prev, ids] + self.pos[: ids.shape[1]]


def drive_sample_next(ns, logits, seed, n_calls):
    generator = torch.Generator().manual_seed(seed)
    draws = [ns["sample_next"](logits, generator) for _ in range(n_calls)]
    return draws, logits


def drive_generate(ns, table, pos, ids, max_new_tokens, temperature, top_k, top_p, seed, global_seed):
    generator = None if seed is None else torch.Generator().manual_seed(seed)
    if global_seed is not None:
        torch.manual_seed(global_seed)
    out = ns["generate"](LookupLM(table, pos), ids, max_new_tokens, temperature=temperature,
                         top_k=top_k, top_p=top_p, generator=generator)
    return out, ids


def drive_beam_search(ns, table, pos, ids, num_beams, max_new_tokens):
    return ns["beam_search"](LookupLM(table, pos), ids, num_beams, max_new_tokens), ids
'''

suite = Suite("06", standins=SANDBOX_CODE)

_SANDBOX: dict = {}
exec(compile(SANDBOX_CODE, "<lesson 06 sandbox code>", "exec"), _SANDBOX)
LookupLM = _SANDBOX["LookupLM"]

NEG_INF = float("-inf")


# -- inputs ------------------------------------------------------------------------------------

def _show(t: torch.Tensor) -> str:
    """The values of a small tensor, as feedback prints them; nothing for a large one."""
    if t.numel() > 36:
        return ""
    rows = [[float(f"{v:.4g}") for v in row] for row in t.reshape(-1, t.shape[-1]).tolist()]
    return f" = {rows}"


@dataclass
class Logits:
    """A batch of logits and the argument of the function under test; the repr is the feedback."""

    logits: torch.Tensor
    kind: str
    arg: float | int | None = None
    name: str = ""

    def __repr__(self) -> str:
        arg = "" if self.arg is None else f", {self.name}={self.arg}"
        return f"logits {describe(self.logits)} ({self.kind}){_show(self.logits)}{arg}"


def _with_neg_inf(z: torch.Tensor, seed: int) -> torch.Tensor:
    """Some entries set to -inf (removed by an earlier filter); every row keeps a finite maximum."""
    drop = torch.rand(z.shape, generator=torch.Generator().manual_seed(seed)) < 0.3
    drop[torch.arange(z.shape[0]), z.argmax(dim=-1)] = False
    return z.masked_fill(drop, NEG_INF)


@st.composite
def logits_cases(draw: st.DrawFn, kinds: tuple[str, ...] = ("random", "ties", "-inf", "large"),
                 max_vocab: int = 12) -> Logits:
    batch, vocab = draw(st.integers(1, 4)), draw(st.integers(1, max_vocab))
    dtype, seed, kind = draw(float_dtypes), draw(seeds), draw(st.sampled_from(kinds))
    g = torch.Generator().manual_seed(seed)
    if kind == "ties":  # small integers: many equal logits
        z = torch.randint(-2, 3, (batch, vocab), generator=g).to(dtype)
    elif kind == "large":  # a dominant token, values far from 0
        z = randn((batch, vocab), seed, dtype, scale=30.0)
    else:
        z = randn((batch, vocab), seed, dtype, scale=draw(st.sampled_from([0.5, 1.5, 4.0])))
    if kind == "-inf":
        z = _with_neg_inf(z, seed + 1)
    return Logits(z, kind)


def _group_masses(z: torch.Tensor) -> list[float]:
    """For every row, the float64 mass of the tokens strictly more likely than each token."""
    probs = torch.softmax(z.double(), dim=-1)
    above = torch.where(z[..., None, :] > z[..., :, None], probs[..., None, :], 0.0).sum(dim=-1)
    return above.flatten().tolist()


def _away_from_boundaries(z: torch.Tensor, p: float, margin: float = 1e-4) -> float:
    """Move p off every group boundary of z, where float rounding would decide the answer."""
    masses = _group_masses(z)
    p, step = round(p, 4), (3e-4 if p < 0.5 else -3e-4)
    while any(abs(m - p) < margin for m in masses):
        p = round(p + step, 4)
    return p


@st.composite
def top_p_cases(draw: st.DrawFn, kinds: tuple[str, ...] = ("random", "ties", "-inf", "large")) -> Logits:
    case = draw(logits_cases(kinds))
    p = _away_from_boundaries(case.logits, draw(st.floats(0.02, 0.99)))
    return Logits(case.logits, case.kind, p, "p")


# Dyadic rows: exp of the logits are powers of 2 summing to a power of 2, so probabilities and every
# mass before a group of equal tokens are exact in float32 and float64, whichever way they are summed.
DYADIC = ([0, 1, 2, 3, 3], [0, 1, 2, 2], [0, 1, 1], [0, 2, 2, 2, 2], [0, 0, 1, 1, 1, 1])


@st.composite
def dyadic_cases(draw: st.DrawFn) -> Logits:
    dtype, seed = draw(float_dtypes), draw(seeds)
    rows = [draw(st.sampled_from(DYADIC)) for _ in range(draw(st.integers(1, 3)))]
    vocab = max(len(r) for r in rows)
    g = torch.Generator().manual_seed(seed)
    z = torch.full((len(rows), vocab), NEG_INF, dtype=torch.float64)
    for b, levels in enumerate(rows):
        perm = torch.randperm(vocab, generator=g)[: len(levels)]
        z[b, perm] = -torch.tensor(levels, dtype=torch.float64) * math.log(2)
    # a boundary (the mass before a group) or a point inside a group's interval
    p = draw(st.sampled_from([0.25, 0.5, 0.75, 0.875, 0.3, 0.6, 0.8, 0.9]))
    return Logits(z.to(dtype), "exact probabilities 1/2, 1/4, ...; -inf pads short rows", p, "p")


def _describe_row(t: torch.Tensor, b: int) -> str:
    return str([float(f"{v:.4g}") for v in t[b].tolist()])


def expect_filtered(got: object, want: torch.Tensor, logits: torch.Tensor, what: str) -> None:
    """`got` keeps exactly the tokens `want` keeps, with their input logits, and -inf elsewhere."""
    got = expect_shape(got, tuple(want.shape), what)
    expect(got.dtype == want.dtype,
           f"{what} has dtype {got.dtype}, expected {want.dtype} (the input's dtype)")
    expect(not got.isnan().any(), f"{what} contains NaN")
    kept_got, kept_want = got > NEG_INF, want > NEG_INF
    if not torch.equal(kept_got, kept_want):
        b, v = (kept_got != kept_want).nonzero()[0].tolist()
        should = "be kept" if kept_want[b, v] else "become -inf"
        raise Failure(
            f"{what}: in row {b}, token {v} (logit {logits[b, v].item():.6g}) should {should}. "
            f"Tokens kept in row {b}: expected {kept_want[b].nonzero().flatten().tolist()}, "
            f"got {kept_got[b].nonzero().flatten().tolist()}")
    if not torch.equal(got[kept_want], logits[kept_want]):
        b, v = ((got != logits) & kept_want).nonzero()[0].tolist()
        raise Failure(f"{what}: the kept logits must keep their input values exactly (no renormalising, "
                      f"no rescaling): row {b}, token {v} is {got[b, v].item():.6g}, "
                      f"expected {logits[b, v].item():.6g}")


def expect_logits(got: object, want: torch.Tensor, what: str, dtype: torch.dtype) -> None:
    """Close to `want` (float64) in `dtype`'s tolerance, with -inf exactly where `want` has it."""
    got = expect_tensor(got, what)
    expect(tuple(got.shape) == tuple(want.shape), f"{what} has shape {tuple(got.shape)}, "
           f"expected {tuple(want.shape)}")
    expect(got.dtype == dtype, f"{what} has dtype {got.dtype}, expected {dtype} (return the input's dtype)")
    bad = got.isnan() | (got.isinf() & (got.double() != want))
    bad |= want.isinf() & (got.double() != want)
    if bad.any():
        idx = tuple(bad.nonzero()[0].tolist())
        raise Failure(f"{what} at index {idx} is {got[idx].item()}, expected {want[idx].item()}")
    finite = want.isfinite()
    expect_close(got.masked_fill(~finite, 0), want.masked_fill(~finite, 0), what, dtype=dtype)


def expect_same_ids(got: torch.Tensor, want: torch.Tensor, n_prompt: int, expected: str = "expected") -> None:
    """Equal token ids; the message names the first row and new token that differ."""
    if torch.equal(got, want):
        return
    b, col = (got != want).nonzero()[0].tolist()
    where = (f"column {col} is part of the prompt, which must come back unchanged" if col < n_prompt
             else f"the first difference is new token {col - n_prompt + 1}")
    raise Failure(f"row {b}: got {got[b].tolist()}, {expected} {want[b].tolist()}; {where}")


def _unchanged(student, function: str, args: list, names: list[str], **kwargs) -> None:
    before = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    _, after, _ = student.call_with_inputs(function, *args, **kwargs)
    expect_unchanged(before, after, names)


# -- greedy_next (1 point) ---------------------------------------------------------------------

@suite.check("test_greedy_next", "returns the index of the largest logit of every row, as int64 of shape "
             "(batch,); ties go to the smallest index; -inf entries never win",
             cases=logits_cases(), max_examples=60)
def _(student, ref, c):
    got = expect_tensor(student.call("greedy_next", c.logits), "the result")
    expect(got.dtype == torch.int64, f"the result has dtype {got.dtype}: token ids are int64 (torch.long), "
           "the indices of the largest logits, not the logits themselves")
    expect_shape(got, (c.logits.shape[0],), "the result (one id per row, no keepdim)")
    expect_equal(got.tolist(), ref.greedy_next(c.logits).tolist(), "the chosen ids")


@suite.check("test_greedy_next", "does not modify logits", cases=logits_cases(), max_examples=10)
def _(student, ref, c):
    _unchanged(student, "greedy_next", [c.logits.clone()], ["logits"])


# -- apply_temperature (1 point) ---------------------------------------------------------------

TEMPERATURES = st.one_of(st.sampled_from([0.01, 0.1, 0.5, 0.7, 1.0, 1.5, 2.0, 10.0]), st.floats(0.05, 20.0))


@st.composite
def temperature_cases(draw: st.DrawFn) -> Logits:
    case = draw(logits_cases(("random", "-inf", "large")))
    return Logits(case.logits, case.kind, draw(TEMPERATURES), "temperature")


@suite.check("test_apply_temperature", "returns logits / temperature (float32 and float64, -inf stays -inf)",
             cases=temperature_cases(), max_examples=60)
def _(student, ref, c):
    got = student.call("apply_temperature", c.logits, c.arg)
    expect_logits(got, ref.apply_temperature(c.logits.double(), c.arg), "the result", c.logits.dtype)


@suite.check("test_apply_temperature", "as temperature -> 0 the softmax concentrates on the argmax; "
             "at a high temperature it flattens toward uniform", cases=seeds, max_examples=10)
def _(student, ref, seed):
    z = randn((3, 6), seed, torch.float64, scale=2.0)
    z = z + torch.zeros_like(z).scatter(-1, z.argmax(dim=-1, keepdim=True), 1.0)  # no near-ties at the top
    cold = torch.softmax(expect_tensor(student.call("apply_temperature", z, 1e-3), "the result"), dim=-1)
    top = cold.gather(-1, z.argmax(dim=-1, keepdim=True))
    expect(bool((top > 0.999).all()), "softmax(apply_temperature(logits, 0.001)) puts "
           f"{top.min().item():.3g} on the largest logit; it should be almost 1 "
           "(divide the logits by T, don't multiply)")
    hot = torch.softmax(expect_tensor(student.call("apply_temperature", z, 1e3), "the result"), dim=-1)
    expect(bool(((hot - 1 / 6).abs() < 0.01).all()),
           "softmax(apply_temperature(logits, 1000)) should be almost "
           f"uniform (1/6 each), got rows like {_describe_row(hot, 0)}")


@suite.check("test_apply_temperature", "does not modify logits", cases=temperature_cases(), max_examples=10)
def _(student, ref, c):
    _unchanged(student, "apply_temperature", [c.logits.clone(), c.arg], ["logits"])


# -- top_k_filter (2 points) -------------------------------------------------------------------

@st.composite
def top_k_cases(draw: st.DrawFn) -> Logits:
    case = draw(logits_cases())
    return Logits(case.logits, case.kind, draw(st.integers(1, case.logits.shape[-1] + 2)), "k")


@st.composite
def top_k_tie_cases(draw: st.DrawFn) -> Logits:
    """Integer logits with a tie at the k-th largest value."""
    while True:
        case = draw(logits_cases(("ties",)))
        z = case.logits
        values = z.sort(dim=-1, descending=True).values
        ties = [k for k in range(1, z.shape[-1]) if bool((values[:, k - 1] == values[:, k]).any())]
        if ties:
            return Logits(z, "ties", draw(st.sampled_from(ties)), "k")


def _same_filter(student: Student, ref: types.ModuleType, function: str, arg: str, c: Logits) -> None:
    """The student's filter keeps exactly the tokens the reference keeps (top_k_filter, top_p_filter)."""
    got = student.call(function, c.logits, c.arg)
    want = getattr(ref, function)(c.logits, c.arg)
    expect_filtered(got, want, c.logits, f"{function}(logits, {arg}={c.arg})")


@suite.check("test_top_k_filter", "keeps the logits >= the k-th largest of each row and sets the others to "
             "-inf (random logits, ties, -inf entries, k >= vocab, float32 and float64)",
             cases=top_k_cases(), max_examples=80)
def _(student, ref, c):
    _same_filter(student, ref, "top_k_filter", "k", c)


@suite.check("test_top_k_filter", "keeps every token tied with the k-th largest logit (more than k tokens "
             "can survive)", cases=top_k_tie_cases(), max_examples=30)
def _(student, ref, c):
    _same_filter(student, ref, "top_k_filter", "k", c)


@suite.check("test_top_k_filter", "does not modify logits", cases=top_k_cases(), max_examples=10)
def _(student, ref, c):
    _unchanged(student, "top_k_filter", [c.logits.clone(), c.arg], ["logits"])


# -- top_p_filter (2 points) -------------------------------------------------------------------

@suite.check("test_top_p_filter", "keeps the tokens whose probability mass before them (sorted by "
             "probability) is below p, the token that crosses p included (random logits, float32 and "
             "float64)", cases=top_p_cases(("random", "large")), max_examples=80)
def _(student, ref, c):
    _same_filter(student, ref, "top_p_filter", "p", c)


@suite.check("test_top_p_filter", "at the boundary: a token whose mass before it equals p exactly is "
             "removed, the one that reaches p is kept (exact probabilities 1/2, 1/4, 1/8, ...)",
             cases=dyadic_cases(), max_examples=40)
def _(student, ref, c):
    _same_filter(student, ref, "top_p_filter", "p", c)


@suite.check("test_top_p_filter", "tokens tied with a kept token are kept, as in top_k_filter; -inf "
             "entries stay -inf", cases=top_p_cases(("ties", "-inf")), max_examples=60)
def _(student, ref, c):
    _same_filter(student, ref, "top_p_filter", "p", c)


@suite.check("test_top_p_filter", "p = 1 keeps every token; a tiny p keeps only the most likely one(s)",
             cases=logits_cases(), max_examples=30)
def _(student, ref, c):
    for p in (1.0, 1e-9):
        got = student.call("top_p_filter", c.logits, p)
        expect_filtered(got, ref.top_p_filter(c.logits, p), c.logits, f"top_p_filter(logits, p={p})")


@suite.check("test_top_p_filter", "does not modify logits", cases=top_p_cases(), max_examples=10)
def _(student, ref, c):
    _unchanged(student, "top_p_filter", [c.logits.clone(), c.arg], ["logits"])


# -- repetition_penalty (1 point) --------------------------------------------------------------

@dataclass
class Penalty:
    logits: torch.Tensor
    prev_ids: torch.Tensor
    penalty: float
    kind: str

    def __repr__(self) -> str:
        return (f"logits {describe(self.logits)} ({self.kind}){_show(self.logits)}, "
                f"prev_ids = {self.prev_ids.tolist()}, penalty={self.penalty}")


@st.composite
def penalty_cases(draw: st.DrawFn, kinds: tuple[str, ...] = ("random", "ties", "-inf", "large", "negative"),
                  repeats: bool = False) -> Penalty:
    kind = draw(st.sampled_from(kinds))
    case = draw(logits_cases(("random",) if kind == "negative" else (kind,), max_vocab=10))
    z = -case.logits.abs() - 0.1 if kind == "negative" else case.logits
    batch, vocab = z.shape
    seq, seed = draw(st.integers(2 if repeats else 0, 8)), draw(seeds)
    prev = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed))
    if repeats:
        prev[:, -1] = prev[:, 0]  # the first id again
    penalty = draw(st.sampled_from([0.5, 0.8, 1.2, 1.5, 2.0, 3.0]))
    return Penalty(z, prev, penalty, kind)


def _check_penalty(student, ref, c: Penalty) -> None:
    got = student.call("repetition_penalty", c.logits, c.prev_ids, c.penalty)
    want = ref.repetition_penalty(c.logits.double(), c.prev_ids, c.penalty)
    expect_logits(got, want, "the result", c.logits.dtype)


@suite.check("test_repetition_penalty", "divides the positive logits of seen tokens by the penalty and "
             "multiplies the others; unseen tokens unchanged (float32 and float64, -inf, empty history)",
             cases=penalty_cases(), max_examples=60)
def _(student, ref, c):
    _check_penalty(student, ref, c)


@suite.check("test_repetition_penalty", "negative logits of seen tokens are multiplied by the penalty "
             "(dividing them would raise them)", cases=penalty_cases(("negative",)), max_examples=20)
def _(student, ref, c):
    _check_penalty(student, ref, c)


@suite.check("test_repetition_penalty", "a token that occurs several times in prev_ids is penalised once, "
             "and each row uses only its own prev_ids", cases=penalty_cases(("random",), repeats=True),
             max_examples=30)
def _(student, ref, c):
    _check_penalty(student, ref, c)


@suite.check("test_repetition_penalty", "does not modify logits or prev_ids", cases=penalty_cases(),
             max_examples=10)
def _(student, ref, c):
    _unchanged(student, "repetition_penalty", [c.logits.clone(), c.prev_ids.clone(), c.penalty],
               ["logits", "prev_ids"])


# -- sample_next (1 point) ---------------------------------------------------------------------

@dataclass
class Sampling:
    logits: torch.Tensor  # (batch, vocab)
    seed: int
    n_calls: int

    def __repr__(self) -> str:
        return (f"logits {describe(self.logits)}{_show(self.logits)}, generator seeded with {self.seed}, "
                f"{self.n_calls} successive calls with the same generator")


@st.composite
def sampling_cases(draw: st.DrawFn) -> Sampling:
    case = draw(logits_cases(("random", "-inf", "ties", "large"), max_vocab=8))
    return Sampling(case.logits, draw(seeds), draw(st.integers(1, 3)))


def _draws(student, logits: torch.Tensor, seed: int, n_calls: int) -> list[torch.Tensor]:
    draws, after = student.drive("drive_sample_next", "sample_next", logits, seed, n_calls)
    expect_unchanged([logits], [after], ["logits"])
    out = []
    for d in draws:
        d = expect_shape(d, (logits.shape[0],), "the result (one token per row)")
        expect(d.dtype == torch.int64, f"the result has dtype {d.dtype}; token ids are int64")
        out.append(d)
    return out


@suite.check("test_sample_next", "draws follow softmax(logits): 4,800 draws per distribution, each token's "
             "count within 6 standard deviations of its expectation; -inf tokens never drawn")
def _(student, ref):
    base = torch.tensor([[2.0, 1.0, 0.0, -1.0, 0.5, NEG_INF],
                         [0.0, 0.0, 0.0, 0.0, 3.0, 0.0],
                         [-2.0, 1.5, 1.5, NEG_INF, 0.0, -0.5]])
    rows = 1200
    draws = torch.stack(_draws(student, base.repeat_interleave(rows, dim=0), 2024, 4))  # (4, 3 * rows)
    for r in range(base.shape[0]):
        got = draws[:, r * rows:(r + 1) * rows].flatten()
        expect(bool(((got >= 0) & (got < base.shape[1])).all()), f"a token id outside 0..{base.shape[1] - 1}")
        counts = torch.bincount(got, minlength=base.shape[1]).double()
        n, p = float(len(got)), torch.softmax(base[r].double(), dim=-1)
        allowed = 6 * (n * p * (1 - p)).sqrt() + 2
        if ((counts - n * p).abs() > allowed).any():
            raise Failure(f"logits {_describe_row(base, r)}: the frequencies of {int(n)} draws are "
                          f"{[round(f, 3) for f in (counts / n).tolist()]}, but softmax(logits) is "
                          f"{[round(f, 3) for f in p.tolist()]}; sample from the softmax over the vocabulary "
                          "(dim=-1) of each row")


@suite.check("test_sample_next", "gives exactly the tokens of torch.multinomial(softmax(logits, dim=-1), 1, "
             "generator=generator) for the same seed, call after call", cases=sampling_cases(),
             max_examples=40)
def _(student, ref, c):
    got = _draws(student, c.logits, c.seed, c.n_calls)
    generator = torch.Generator().manual_seed(c.seed)
    for i, d in enumerate(got):
        want = ref.sample_next(c.logits, generator)
        expect(torch.equal(d, want), f"call {i + 1}: the tokens are {d.tolist()}, but torch.multinomial "
               f"with the given generator draws {want.tolist()}. Pass generator=generator to "
               "torch.multinomial, draw once per call, and use no other randomness")


# -- generate (1 point) ------------------------------------------------------------------------

@dataclass
class Decoding:
    table: torch.Tensor  # (vocab + 1, vocab, vocab)
    pos: torch.Tensor  # (max_len, vocab)
    ids: torch.Tensor  # (batch, seq)
    max_new_tokens: int
    options: dict

    def __repr__(self) -> str:
        vocab = self.table.shape[-1]
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        return (f"a model over {vocab} tokens whose logits at position t depend on tokens t - 1 and t and on "
                f"t (a lookup table), ids = {self.ids.tolist()}, max_new_tokens={self.max_new_tokens}"
                + (f", {opts}" if opts else ""))

    def model(self):
        return LookupLM(self.table, self.pos)


@st.composite
def decoding_cases(draw: st.DrawFn, mode: str) -> Decoding:
    """mode: "greedy", "seeded" (a generator), "global" (generator=None, torch's global seed), "beam"."""
    vocab = draw(st.integers(2, 6) if mode == "beam" else st.integers(2, 9))
    batch, seq = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    new, seed = draw(st.integers(0, 5 if mode == "beam" else 7)), draw(seeds)
    scale = 1.5 if mode != "greedy" else 3.0
    table = randn((vocab + 1, vocab, vocab), seed, torch.float64, scale=scale)
    pos = randn((seq + new + 1, vocab), seed + 1, torch.float64, scale=0.5)
    ids = torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(seed + 2))
    if mode == "beam":
        return Decoding(table, pos, ids, new, {"num_beams": draw(st.integers(1, 5))})
    options: dict = {}
    if mode == "greedy":
        options["temperature"] = 0
        if draw(st.booleans()):
            options["top_k"] = draw(st.integers(1, vocab))
        if draw(st.booleans()):
            options["seed"] = draw(seeds)
    else:
        options["temperature"] = draw(st.sampled_from([0.5, 0.8, 1.0, 1.3, 2.0]))
        if draw(st.booleans()):
            options["top_k"] = draw(st.integers(1, vocab))
        if draw(st.booleans()):
            options["top_p"] = draw(st.sampled_from([0.3, 0.5, 0.7, 0.9, 0.95, 1.0]))
        options["global_seed" if mode == "global" else "seed"] = draw(seeds)
    return Decoding(table, pos, ids, new, options)


def _generate(student, ref, c: Decoding) -> None:
    opts = dict(temperature=1.0, top_k=None, top_p=None, seed=None, global_seed=None) | c.options
    got, after = student.drive("drive_generate", "generate", c.table, c.pos, c.ids, c.max_new_tokens,
                               opts["temperature"], opts["top_k"], opts["top_p"], opts["seed"],
                               opts["global_seed"])
    expect_unchanged([c.ids], [after], ["ids"])
    with torch.random.fork_rng(devices=[]):
        if opts["global_seed"] is not None:
            torch.manual_seed(opts["global_seed"])
        generator = None if opts["seed"] is None else torch.Generator().manual_seed(opts["seed"])
        want = ref.generate(c.model(), c.ids.clone(), c.max_new_tokens, temperature=opts["temperature"],
                            top_k=opts["top_k"], top_p=opts["top_p"], generator=generator)
    got = expect_shape(got, tuple(want.shape), "the result (prompt + max_new_tokens columns)")
    expect(got.dtype == torch.int64, f"the result has dtype {got.dtype}; ids are int64")
    expect_same_ids(got, want, c.ids.shape[1])


@suite.check("test_generate", "temperature=0 is greedy decoding over the whole context (filters and "
             "generator ignored); the prompt is returned followed by the new tokens",
             cases=decoding_cases("greedy"), max_examples=30)
def _(student, ref, c):
    _generate(student, ref, c)


@suite.check("test_generate", "sampling with a seeded generator: temperature, then top-k, then top-p, then "
             "one draw per step; same tokens as the reference", cases=decoding_cases("seeded"),
             max_examples=50)
def _(student, ref, c):
    _generate(student, ref, c)


@st.composite
def order_cases(draw: st.DrawFn) -> Decoding:
    """Flat distributions, where temperature, top-k and top-p all change the nucleus."""
    vocab, batch, new, seed = 6, 16, 6, draw(seeds)
    table = randn((vocab + 1, vocab, vocab), seed, torch.float64, scale=0.7)
    pos = randn((2 + new + 1, vocab), seed + 1, torch.float64, scale=0.3)
    ids = torch.randint(0, vocab, (batch, 2), generator=torch.Generator().manual_seed(seed + 2))
    return Decoding(table, pos, ids, new, {"temperature": 1.5, "top_k": 3, "top_p": 0.55, "seed": seed + 3})


@suite.check("test_generate", "the filters act in the order temperature, top-k, top-p (96 draws from flat "
             "distributions, where the order changes the nucleus)", cases=order_cases(), max_examples=6)
def _(student, ref, c):
    _generate(student, ref, c)


@suite.check("test_generate", "generator=None samples from torch's global generator",
             cases=decoding_cases("global"), max_examples=10)
def _(student, ref, c):
    _generate(student, ref, c)


# -- beam_search (1 point) ---------------------------------------------------------------------

def _beam(student, c: Decoding, num_beams: int) -> torch.Tensor:
    got, after = student.drive("drive_beam_search", "beam_search", c.table, c.pos, c.ids, num_beams,
                               c.max_new_tokens)
    expect_unchanged([c.ids], [after], ["ids"])
    got = expect_shape(got, (c.ids.shape[0], c.ids.shape[1] + c.max_new_tokens),
                       "the result (batch, seq + max_new_tokens)")
    expect(got.dtype == torch.int64, f"the result has dtype {got.dtype}; ids are int64")
    return got


@suite.check("test_beam_search", "returns the best beam of each row, as the reference (1-5 beams, "
             "vocabularies of 2-6 tokens, batches of prompts)", cases=decoding_cases("beam"), max_examples=50)
def _(student, ref, c):
    got = _beam(student, c, c.options["num_beams"])
    want = ref.beam_search(c.model(), c.ids.clone(), c.options["num_beams"], c.max_new_tokens)
    expect_same_ids(got, want, c.ids.shape[1])


@suite.check("test_beam_search", "num_beams=1 is greedy decoding", cases=decoding_cases("beam"),
             max_examples=15)
def _(student, ref, c):
    got = _beam(student, c, 1)
    want = ref.generate(c.model(), c.ids.clone(), c.max_new_tokens, temperature=0)
    expect_same_ids(got, want, c.ids.shape[1], "greedy decoding gives")


@st.composite
def exhaustive_cases(draw: st.DrawFn) -> Decoding:
    vocab, new, seed = 3, 3, draw(seeds)
    table = randn((vocab + 1, vocab, vocab), seed, torch.float64, scale=2.0)
    pos = randn((2 + new + 1, vocab), seed + 1, torch.float64, scale=0.5)
    ids = torch.randint(0, vocab, (2, 2), generator=torch.Generator().manual_seed(seed + 2))
    return Decoding(table, pos, ids, new, {"num_beams": vocab ** (new - 1)})


@suite.check("test_beam_search", "with vocab ** (max_new_tokens - 1) beams the search is exhaustive: it "
             "returns the continuation of highest total log-probability", cases=exhaustive_cases(),
             max_examples=15)
def _(student, ref, c):
    got = _beam(student, c, c.options["num_beams"])
    vocab, (batch, seq) = c.table.shape[-1], c.ids.shape
    tails = torch.tensor(list(itertools.product(range(vocab), repeat=c.max_new_tokens)))
    best = []
    for row in range(batch):  # brute force: the log-probability of every continuation
        seqs = torch.cat([c.ids[row].expand(len(tails), -1), tails], dim=1)
        log_probs = torch.log_softmax(c.model()(seqs)[:, seq - 1:-1], dim=-1)
        scores = log_probs.gather(-1, tails[:, :, None]).squeeze(-1).sum(dim=-1)
        best.append(seqs[scores.argmax()])
    expect_same_ids(got, torch.stack(best), seq, f"the most likely of all {len(tails)} continuations is")
