"""Hidden tests of lesson 04, GPT-2 from its parts.

Each property calls the student's code in the sandbox and the reference here,
on inputs drawn by Hypothesis. The reference works in float64 on exactly the
values the student received; float32 answers are held to float32 tolerances
(see `autograder.compare`). `GPT2` is a class, so its properties run through
drivers (`drive_*` in the sandbox code): they build the student's model next
to their code and send back plain data. State dicts are laid out as
transformers' `GPT2LMHeadModel` state dicts (tests/test_oracles_04.py checks
the layout against transformers), built here with torch alone so that grading
never imports transformers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import torch
from hypothesis import strategies as st

from autograder.compare import expect, expect_close, expect_equal, expect_shape, expect_unchanged
from autograder.harness import Suite
from autograder.strategies import batch_shapes, describe, float_dtypes, randn, seeds

SANDBOX_CODE = '''
import types

import torch
import torch.nn.functional as F


def layer_norm(x, weight, bias, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], weight, bias, eps)


def gelu(x):
    return F.gelu(x, approximate="tanh")


def feed_forward(x, w_fc, b_fc, w_proj, b_proj):
    return F.linear(F.gelu(F.linear(x, w_fc, b_fc), approximate="tanh"), w_proj, b_proj)


def drive_gpt2_logits(ns, config, state_dict, ids, dtype):
    """The student's GPT2 in `dtype` with `state_dict` loaded: (logits, state_dict, ids) after the call."""
    model = ns["GPT2"](types.SimpleNamespace(**config)).to(getattr(torch, dtype)).eval()
    model.load_hf_state_dict(state_dict)
    with torch.no_grad():
        logits = model(ids)
    return logits, state_dict, ids


def drive_gpt2_fresh(ns, config, ids):
    """A freshly built GPT2 (nothing loaded): (number of parameter values, logits)."""
    model = ns["GPT2"](types.SimpleNamespace(**config)).eval()
    n_parameters = sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        return n_parameters, model(ids)
'''

suite = Suite("04", standins=SANDBOX_CODE)

EPSILONS = (1e-5, 1e-3, 0.05)


# -- inputs ------------------------------------------------------------------------------------

@dataclass
class Norm:
    x: torch.Tensor
    weight: torch.Tensor
    bias: torch.Tensor
    eps: float

    def __repr__(self) -> str:
        return (f"x {describe(self.x)} with values of size ~{self.x.abs().mean().item():.2g}, "
                f"random weight and bias, eps={self.eps:g}")

    def args(self, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, ...]:
        return tuple(t if dtype is None else t.to(dtype) for t in (self.x, self.weight, self.bias))


@st.composite
def norm_inputs(draw: st.DrawFn) -> Norm:
    batch = draw(batch_shapes(max_dims=2, max_side=4))
    d, dtype, seed = draw(st.integers(1, 48)), draw(float_dtypes), draw(seeds)
    scale = draw(st.sampled_from([1e-3, 1.0, 20.0]))
    offset = draw(st.sampled_from([0.0, 1.0, -5.0]))
    x = (randn((*batch, d), seed, torch.float64) * scale + offset * scale).to(dtype)
    weight = randn((d,), seed + 1, dtype, scale=1.5)
    bias = randn((d,), seed + 2, dtype)
    return Norm(x, weight, bias, draw(st.sampled_from(EPSILONS)))


@dataclass
class FFN:
    x: torch.Tensor
    weights: tuple[torch.Tensor, ...]  # w_fc, b_fc, w_proj, b_proj

    def __repr__(self) -> str:
        return f"x {describe(self.x)}, d_ff={self.weights[0].shape[0]}"


@st.composite
def ffn_inputs(draw: st.DrawFn) -> FFN:
    batch = draw(batch_shapes(max_dims=2, max_side=3))
    d, dtype, seed = draw(st.integers(1, 8)), draw(float_dtypes), draw(seeds)
    d_ff = draw(st.sampled_from([d, 4 * d, draw(st.integers(1, 12))]))
    x = randn((*batch, d), seed, dtype)
    weights = (randn((d_ff, d), seed + 1, dtype, scale=1.5 * d**-0.5), randn((d_ff,), seed + 2, dtype),
               randn((d, d_ff), seed + 3, dtype, scale=d_ff**-0.5), randn((d,), seed + 4, dtype))
    return FFN(x, weights)


def hf_state_dict(config: dict, seed: int, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Random weights in the layout of transformers' GPT2LMHeadModel state dict.

    Conv1D weights are (in, out) and c_attn packs [q | k | v]; every gain, bias and matrix is
    random (a zero bias or a unit gain would hide a mistake in using it); lm_head.weight is a
    copy of wte, as a tied model saves it.
    """
    g = torch.Generator().manual_seed(seed)
    d, n_layer = config["n_embd"], config["n_layer"]

    def rand(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return (scale * torch.randn(*shape, generator=g, dtype=torch.float64)).to(dtype)

    sd = {"transformer.wte.weight": rand(config["vocab_size"], d),
          "transformer.wpe.weight": rand(config["n_positions"], d, scale=0.5)}
    for i in range(n_layer):
        for name, n_in, n_out in (("ln_1", 0, d), ("attn.c_attn", d, 3 * d), ("attn.c_proj", d, d),
                                  ("ln_2", 0, d), ("mlp.c_fc", d, 4 * d), ("mlp.c_proj", 4 * d, d)):
            key = f"transformer.h.{i}.{name}"
            if n_in == 0:  # a layer norm: gain and bias
                sd[key + ".weight"] = 1 + rand(d, scale=0.3)
            else:  # a Conv1D: weight (in, out)
                sd[key + ".weight"] = rand(n_in, n_out, scale=1.5 * n_in**-0.5)
            sd[key + ".bias"] = rand(n_out, scale=0.2)
    sd["transformer.ln_f.weight"] = 1 + rand(d, scale=0.3)
    sd["transformer.ln_f.bias"] = rand(d, scale=0.2)
    sd["lm_head.weight"] = sd["transformer.wte.weight"].clone()
    return sd


def old_buffers(config: dict) -> dict[str, torch.Tensor]:
    """The non-weight buffers older transformers versions put in a GPT-2 state dict."""
    n = config["n_positions"]
    mask = torch.ones(n, n, dtype=torch.bool).tril().view(1, 1, n, n)
    out = {}
    for i in range(config["n_layer"]):
        out[f"transformer.h.{i}.attn.bias"] = mask
        out[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    return out


VARIANTS = ("with lm_head.weight", "without lm_head.weight",
            "with lm_head.weight and the attn.bias/attn.masked_bias buffers of older transformers")


@dataclass
class GPTCase:
    config: dict
    state_dict: dict[str, torch.Tensor]
    ids: torch.Tensor
    variant: str

    @property
    def dtype(self) -> torch.dtype:
        return self.state_dict["transformer.wte.weight"].dtype

    def __repr__(self) -> str:
        c = self.config
        return (f"config(vocab_size={c['vocab_size']}, n_positions={c['n_positions']}, "
                f"n_embd={c['n_embd']}, n_layer={c['n_layer']}, n_head={c['n_head']}, "
                f"layer_norm_epsilon={c['layer_norm_epsilon']:g}), ids {tuple(self.ids.shape)}, "
                f"{str(self.dtype).removeprefix('torch.')} state dict {self.variant}")


@st.composite
def gpt_cases(draw: st.DrawFn, variants: tuple[str, ...] = VARIANTS) -> GPTCase:
    n_layer, n_head, head_dim = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(2, 4))
    batch, seq = draw(st.integers(1, 3)), draw(st.integers(1, 8))
    config = {"vocab_size": draw(st.integers(2, 40)), "n_positions": seq + draw(st.integers(0, 4)),
              "n_embd": n_head * head_dim, "n_layer": n_layer, "n_head": n_head,
              "layer_norm_epsilon": draw(st.sampled_from(EPSILONS))}
    seed, dtype, variant = draw(seeds), draw(float_dtypes), draw(st.sampled_from(variants))
    sd = hf_state_dict(config, seed, dtype)
    if variant == VARIANTS[1]:
        del sd["lm_head.weight"]
    elif variant == VARIANTS[2]:
        sd.update(old_buffers(config))
    g = torch.Generator().manual_seed(seed + 1)
    ids = torch.randint(0, config["vocab_size"], (batch, seq), generator=g)
    return GPTCase(config, sd, ids, variant)


@contextmanager
def one_thread() -> Iterator[None]:
    """Tiny tensors: one thread is faster than waking a pool (and steadier on a busy machine)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


def reference_logits(ref, config: dict, state_dict: dict[str, torch.Tensor],
                     ids: torch.Tensor) -> torch.Tensor:
    """The reference GPT2 in float64 with the same state dict."""
    sd64 = {k: v.double() if v.is_floating_point() else v for k, v in state_dict.items()}
    with one_thread(), torch.no_grad():
        model = ref.GPT2(SimpleNamespace(**config)).double()
        model.load_hf_state_dict(sd64)
        return model(ids)


def student_logits(student, case: GPTCase, state_dict: dict[str, torch.Tensor] | None = None,
                   ids: torch.Tensor | None = None) -> torch.Tensor:
    sd = case.state_dict if state_dict is None else state_dict
    ids = case.ids if ids is None else ids
    with one_thread():  # a no-op for the sandbox; speeds up a local (instructor) run
        got = student.drive("drive_gpt2_logits", "GPT2", case.config, sd, ids,
                            str(case.dtype).removeprefix("torch."))
    expect(isinstance(got, tuple) and len(got) == 3, "the model could not be run")
    return got[0]


def expect_logits(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, what: str) -> None:
    # A whole model in float32: errors of a few 1e-6 relative to the largest logit (measured over
    # correct implementations), against mistakes that change logits by a sizeable fraction of it.
    atol = None if dtype == torch.float64 else 1e-4 * max(1.0, want.abs().max().item())
    expect_close(got, want, what, dtype=dtype, atol=atol)


# -- layer_norm (2 points) -----------------------------------------------------------------------

@suite.check("test_layer_norm",
             "matches torch's layer norm (float32 and float64, batch dims, random gains and biases, "
             "eps 1e-5 to 0.05, inputs of size 1e-3 to 20)", cases=norm_inputs(), max_examples=80)
def _(student, ref, n):
    got = student.call("layer_norm", *n.args(), eps=n.eps)
    want = ref.layer_norm(*n.args(torch.float64), eps=n.eps)
    expect_close(got, want, "the output", dtype=n.x.dtype)


@suite.check("test_layer_norm",
             "normalises with the biased variance: with weight 1, bias 0 and eps 0 every output row has "
             "mean 0 and variance (dividing by d) 1",
             cases=st.tuples(st.integers(2, 16), st.integers(1, 4), seeds), max_examples=20)
def _(student, ref, case):
    d, rows, seed = case
    x = randn((rows, d), seed, torch.float64, scale=2.0) + 1.0
    got = expect_shape(student.call("layer_norm", x, torch.ones(d, dtype=torch.float64),
                                    torch.zeros(d, dtype=torch.float64), eps=0.0), (rows, d), "the output")
    mean = got.mean(dim=-1).abs().max().item()
    expect(mean < 1e-9, f"the output rows should have mean 0, but one has mean {mean:.3g} (d={d})")
    expect_close(got.var(dim=-1, correction=0), torch.ones(rows, dtype=torch.float64),
                 f"the variance of each row, dividing by d={d} (a ratio of (d-1)/d = {(d - 1) / d:.3f} "
                 "means the unbiased variance was used)")


@suite.check("test_layer_norm", "is invariant to adding a constant to each row (x + c gives the same result)",
             cases=norm_inputs(), max_examples=20)
def _(student, ref, n):
    x = n.x.double()
    c = randn((*x.shape[:-1], 1), 99, torch.float64, scale=5.0)
    args = (x + c, n.weight.double(), n.bias.double())
    got = student.call("layer_norm", *args, eps=n.eps)
    expect_close(got, ref.layer_norm(x, *args[1:], eps=n.eps),
                 "layer_norm(x + c) compared with layer_norm(x)")


@suite.check("test_layer_norm", "does not modify x, weight or bias", cases=norm_inputs(), max_examples=10)
def _(student, ref, n):
    before = list(n.args())
    _, after, _ = student.call_with_inputs("layer_norm", *[t.clone() for t in before], eps=n.eps)
    expect_unchanged(before, after[:3], ["x", "weight", "bias"])


# -- gelu (1 point) -------------------------------------------------------------------------------

GRID = torch.linspace(-8.0, 8.0, 1601, dtype=torch.float64)


@suite.check("test_gelu", "matches the tanh GELU on a grid of [-8, 8] (float64 and float32), where it "
             "differs from the exact erf form by up to 5e-4", cases=float_dtypes, max_examples=2)
def _(student, ref, dtype):
    x = GRID.to(dtype)
    expect_close(student.call("gelu", x), ref.gelu(x.double()), f"gelu on a {describe(x)} grid of [-8, 8]",
                 dtype=dtype)


@suite.check("test_gelu", "matches the reference on random tensors of any shape, up to |x| = 1e4",
             cases=st.tuples(batch_shapes(max_dims=3, max_side=5), float_dtypes, seeds,
                             st.sampled_from([0.5, 3.0, 30.0, 1e4])), max_examples=40)
def _(student, ref, case):
    shape, dtype, seed, scale = case
    x = randn(shape, seed, dtype, scale=scale)
    expect_close(student.call("gelu", x), ref.gelu(x.double()),
                 f"gelu of x {describe(x)} with values of size ~{scale:g}", dtype=dtype)


@suite.check("test_gelu", "does not modify x", cases=st.tuples(float_dtypes, seeds), max_examples=5)
def _(student, ref, case):
    dtype, seed = case
    x = randn((3, 4), seed, dtype, scale=2.0)
    _, after, _ = student.call_with_inputs("gelu", x.clone())
    expect_unchanged([x], after[:1], ["x"])


# -- feed_forward (1 point) -----------------------------------------------------------------------

@suite.check("test_feed_forward",
             "matches the reference (float32 and float64, batch dims, d_ff equal to d, 4d or other)",
             cases=ffn_inputs(), max_examples=60)
def _(student, ref, f):
    got = student.call("feed_forward", f.x, *f.weights)
    want = ref.feed_forward(f.x.double(), *(w.double() for w in f.weights))
    expect_close(got, want, "the output", dtype=f.x.dtype)


@suite.check("test_feed_forward", "does not modify x or the weights", cases=ffn_inputs(), max_examples=10)
def _(student, ref, f):
    before = [f.x, *f.weights]
    _, after, _ = student.call_with_inputs("feed_forward", *[t.clone() for t in before])
    expect_unchanged(before, after[:5], ["x", "w_fc", "b_fc", "w_proj", "b_proj"])


# -- GPT2 (4 points) -----------------------------------------------------------------------------

@suite.check("test_GPT2",
             "gives GPT-2's logits for a transformers GPT2LMHeadModel state dict (float32 and float64, "
             "1-3 layers, 1-4 heads, with or without lm_head.weight and old buffers)",
             cases=gpt_cases(), max_examples=40)
def _(student, ref, c):
    got = expect_shape(student_logits(student, c),
                       (*c.ids.shape, c.config["vocab_size"]), "the logits (batch, seq, vocab_size)")
    expect_logits(got, reference_logits(ref, c.config, c.state_dict, c.ids), c.dtype, "the logits tensor")


@suite.check("test_GPT2",
             "ties the output layer to wte: changing transformer.wte.weight alone (lm_head.weight left "
             "as it was, and ignored) changes the logits as GPT-2's",
             cases=gpt_cases(variants=VARIANTS[:1]), max_examples=15)
def _(student, ref, c):
    sd = dict(c.state_dict)
    wte = sd["transformer.wte.weight"]
    sd["transformer.wte.weight"] = wte + randn(tuple(wte.shape), 7, c.dtype, scale=0.5)
    got = student_logits(student, c, state_dict=sd)
    expect_logits(got, reference_logits(ref, c.config, sd, c.ids), c.dtype,
                  "the logits tensor after changing wte (the output layer must use the same matrix)")


@suite.check("test_GPT2", "is causal: changing the tokens after position t never changes the logits up to t",
             cases=gpt_cases(), max_examples=15)
def _(student, ref, c):
    seq = c.ids.shape[1]
    if seq < 2:
        return
    cut = seq // 2
    later = c.ids.clone()
    later[:, cut:] = (later[:, cut:] + 1) % c.config["vocab_size"]
    before = student_logits(student, c)
    after = expect_shape(student_logits(student, c, ids=later), tuple(before.shape), "the logits")
    expect_close(after[:, :cut], before[:, :cut],
                 f"the logits of positions 0..{cut - 1} after changing the tokens from position {cut} on")


@suite.check("test_GPT2",
             "a fresh GPT2(config) holds GPT-2's weights as parameters (as many as count_parameters, the "
             "tied matrix once) and runs before any weights are loaded",
             cases=gpt_cases(variants=VARIANTS[:1]), max_examples=10)
def _(student, ref, c):
    cfg = c.config
    got = student.drive("drive_gpt2_fresh", "GPT2", cfg, c.ids)
    expect(isinstance(got, tuple) and len(got) == 2, "the model could not be built")
    n_params, logits = got
    want = ref.count_parameters(cfg["vocab_size"], cfg["n_positions"], cfg["n_embd"], cfg["n_layer"])
    expect_equal(n_params, want, "sum(p.numel() for p in GPT2(config).parameters())")
    logits = expect_shape(logits, (*c.ids.shape, cfg["vocab_size"]), "the logits of a fresh model")
    expect(bool(torch.isfinite(logits).all()), "a fresh model (random weights) gave non-finite logits")


@suite.check("test_GPT2", "does not modify the state dict or the ids", cases=gpt_cases(), max_examples=8)
def _(student, ref, c):
    sd = {k: v.clone() for k, v in c.state_dict.items()}
    got = student.drive("drive_gpt2_logits", "GPT2", c.config, sd, c.ids.clone(),
                        str(c.dtype).removeprefix("torch."))
    _, sd_after, ids_after = got
    keys = list(c.state_dict)
    expect(isinstance(sd_after, dict) and list(sd_after) == keys,
           "load_hf_state_dict added or removed entries of the state dict it was given")
    expect_unchanged([c.state_dict[k] for k in keys] + [c.ids], [sd_after[k] for k in keys] + [ids_after],
                     [f"state_dict[{k!r}]" for k in keys] + ["ids"])


# -- count_parameters (2 points) ----------------------------------------------------------------

GPT2_SIZES = [(50257, 1024, 768, 12), (50257, 1024, 1024, 24), (50257, 1024, 1280, 36),
              (50257, 1024, 1600, 48)]


@suite.check("test_count_parameters", "is exact for GPT-2 small, medium, large and XL")
def _(student, ref):
    for sizes in GPT2_SIZES:
        expect_equal(student.call("count_parameters", *sizes), ref.count_parameters(*sizes),
                     f"count_parameters{sizes}")


@suite.check("test_count_parameters", "is exact for any sizes (as a Python int)",
             cases=st.tuples(st.integers(1, 100_000), st.integers(1, 8192), st.integers(1, 4096),
                             st.integers(0, 96)), max_examples=60)
def _(student, ref, sizes):
    expect_equal(student.call("count_parameters", *sizes), ref.count_parameters(*sizes),
                 f"count_parameters{sizes}")


@suite.check("test_count_parameters", "counts the parameters of each part once: one more token, position, "
             "channel or block adds what GPT-2's layout adds",
             cases=st.tuples(st.integers(1, 500), st.integers(1, 500), st.integers(1, 64), st.integers(0, 6)),
             max_examples=20)
def _(student, ref, sizes):
    v, t, d, n = sizes
    base = student.call("count_parameters", v, t, d, n)
    for name, bigger in (("vocab_size", (v + 1, t, d, n)), ("context_length", (v, t + 1, d, n)),
                         ("d_model", (v, t, d + 1, n)), ("n_layers", (v, t, d, n + 1))):
        got = student.call("count_parameters", *bigger)
        expect(isinstance(got, int) and isinstance(base, int),
               f"count_parameters must return a Python int, not {type(got).__name__}")
        want = ref.count_parameters(*bigger) - ref.count_parameters(v, t, d, n)
        expect(got - base == want, f"increasing {name} by one from {sizes} should add {want:,} parameters; "
               f"your count changes by {got - base:,}")

