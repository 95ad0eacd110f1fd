"""The reference solutions of lesson 04 (GPT-2 from its parts) against independent oracles.

Oracles: `torch.nn.functional.layer_norm` and `gelu(approximate="tanh")`, transformers'
`NewGELUActivation` ("gelu_new") and `GPT2MLP`, and transformers' `GPT2LMHeadModel` with tiny
random configs (built offline, dropout 0, eval mode) for the model and the parameter count.
The hidden tests build their state dicts with torch alone; their layout is checked here against
transformers'.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.strategies import batch_shapes, randn, seeds
from course.loader import load_notebook
from course.notebook import read_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions/04/gpt2.ipynb"
GRADED = ("layer_norm", "gelu", "feed_forward", "GPT2", "count_parameters")

ORACLE = settings(derandomize=True, database=None, deadline=None, max_examples=50)
F64 = {"rtol": 1e-10, "atol": 1e-12}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def ref():
    return load_notebook(NOTEBOOK, module_name="reference_04_oracles").module


@pytest.fixture(scope="module")
def checks():
    """The hidden tests' module (for its state-dict builder)."""
    path = ROOT / "autograder/04/checks.py"
    spec = importlib.util.spec_from_file_location("autograder_checks_04_oracles", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def hf_config(vocab_size: int, n_positions: int, n_embd: int, n_layer: int, n_head: int,
              layer_norm_epsilon: float = 1e-5, attn: str = "eager"):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer,
                      n_head=n_head, layer_norm_epsilon=layer_norm_epsilon, attn_pdrop=0.0,
                      resid_pdrop=0.0, embd_pdrop=0.0, bos_token_id=0, eos_token_id=0,
                      attn_implementation=attn)


# -- layer_norm ----------------------------------------------------------------------------------


@st.composite
def norm_case(draw):
    batch, d, seed = draw(batch_shapes()), draw(st.integers(1, 40), label="d"), draw(seeds)
    scale = draw(st.sampled_from([1e-3, 1.0, 30.0]))
    x = randn((*batch, d), seed, torch.float64, scale=scale) + draw(st.sampled_from([0.0, 2.0])) * scale
    w, b = randn((d,), seed + 1, torch.float64, scale=1.5), randn((d,), seed + 2, torch.float64)
    return x, w, b, draw(st.sampled_from([1e-5, 1e-3, 0.1]))


@ORACLE
@given(norm_case())
def test_layer_norm_matches_torch(ref, case):
    x, w, b, eps = case
    want = F.layer_norm(x, (x.shape[-1],), w, b, eps)
    torch.testing.assert_close(ref.layer_norm(x, w, b, eps), want, **F64)
    x32, w32, b32 = x.float(), w.float(), b.float()
    got = ref.layer_norm(x32, w32, b32, eps)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, F.layer_norm(x32, (x.shape[-1],), w32, b32, eps))


def test_layer_norm_default_eps_and_inputs_unchanged(ref):
    x, w, b = (randn(s, i, torch.float64) for i, s in enumerate([(3, 7), (7,), (7,)]))
    before = [t.clone() for t in (x, w, b)]
    torch.testing.assert_close(ref.layer_norm(x, w, b), F.layer_norm(x, (7,), w, b), **F64)
    assert all(torch.equal(a, c) for a, c in zip((x, w, b), before))


# -- gelu ------------------------------------------------------------------------------------------


@ORACLE
@given(batch_shapes(max_dims=3, max_side=5), seeds, st.sampled_from([0.5, 3.0, 30.0, 1e4]))
def test_gelu_matches_torch_tanh_gelu(ref, shape, seed, scale):
    x = randn(shape, seed, torch.float64, scale=scale)
    torch.testing.assert_close(ref.gelu(x), F.gelu(x, approximate="tanh"), **F64)
    torch.testing.assert_close(ref.gelu(x.float()), F.gelu(x.float(), approximate="tanh"))


def test_gelu_matches_transformers_gelu_new_and_not_the_exact_form(ref):
    from transformers.activations import ACT2FN

    x = torch.linspace(-8, 8, 1601, dtype=torch.float64)
    torch.testing.assert_close(ref.gelu(x), ACT2FN["gelu_new"](x), **F64)
    assert (ref.gelu(x) - F.gelu(x)).abs().max() > 4e-4  # the grid separates tanh from erf


# -- feed_forward --------------------------------------------------------------------------------


@st.composite
def mlp_case(draw):
    batch, seq, d = draw(st.integers(1, 3)), draw(st.integers(1, 5)), draw(st.integers(1, 8))
    seed = draw(seeds)
    x = randn((batch, seq, d), seed, torch.float64)
    return x, (randn((4 * d, d), seed + 1, torch.float64), randn((4 * d,), seed + 2, torch.float64),
               randn((d, 4 * d), seed + 3, torch.float64), randn((d,), seed + 4, torch.float64))


@settings(ORACLE, max_examples=30)
@given(mlp_case())
def test_feed_forward_matches_gpt2_mlp(ref, case):
    from transformers.models.gpt2.modeling_gpt2 import GPT2MLP

    x, (w_fc, b_fc, w_proj, b_proj) = case
    d = x.shape[-1]
    mlp = GPT2MLP(4 * d, hf_config(10, 8, d, 1, 1)).double().eval()
    with torch.no_grad():  # Conv1D: x @ W + b with W (in, out)
        mlp.c_fc.weight.copy_(w_fc.T)
        mlp.c_fc.bias.copy_(b_fc)
        mlp.c_proj.weight.copy_(w_proj.T)
        mlp.c_proj.bias.copy_(b_proj)
        want = mlp(x)
    torch.testing.assert_close(ref.feed_forward(x, w_fc, b_fc, w_proj, b_proj), want, **F64)


# -- GPT2 ------------------------------------------------------------------------------------------


@st.composite
def gpt_case(draw):
    n_layer, n_head, head_dim = draw(st.integers(1, 3)), draw(st.integers(1, 4)), draw(st.integers(1, 5))
    batch, seq = draw(st.integers(1, 3)), draw(st.integers(1, 10))
    config = {"vocab_size": draw(st.integers(2, 60)), "n_positions": seq + draw(st.integers(0, 5)),
              "n_embd": n_head * head_dim, "n_layer": n_layer, "n_head": n_head,
              "layer_norm_epsilon": draw(st.sampled_from([1e-5, 1e-3, 0.05]))}
    seed = draw(seeds)
    ids = torch.randint(0, config["vocab_size"], (batch, seq), generator=torch.Generator().manual_seed(seed))
    return config, seed, ids


def hf_model(config: dict, state_dict: dict[str, torch.Tensor], dtype: torch.dtype, attn: str = "eager"):
    from transformers import GPT2LMHeadModel

    model = GPT2LMHeadModel(hf_config(**config, attn=attn)).to(dtype).eval()
    model.load_state_dict(state_dict)  # strict: the hidden tests' layout is transformers' layout
    return model


def ours(ref, config: dict, state_dict: dict[str, torch.Tensor], dtype: torch.dtype):
    model = ref.GPT2(types.SimpleNamespace(**config)).to(dtype).eval()
    model.load_hf_state_dict(state_dict)
    return model


@settings(ORACLE, max_examples=30)
@given(gpt_case(), st.sampled_from(["eager", "sdpa"]))
def test_gpt2_matches_transformers_float64(ref, checks, case, attn):
    config, seed, ids = case
    sd = checks.hf_state_dict(config, seed, torch.float64)
    with torch.no_grad():
        want = hf_model(config, sd, torch.float64, attn)(ids).logits
        no_head = {k: v for k, v in sd.items() if k != "lm_head.weight"}
        variants = [sd, no_head, {**sd, **checks.old_buffers(config)}]
        for variant in variants:
            got = ours(ref, config, variant, torch.float64)(ids)
            assert got.dtype == torch.float64 and got.shape == want.shape
            torch.testing.assert_close(got, want, **F64)


@settings(ORACLE, max_examples=40)
@given(gpt_case())
def test_gpt2_matches_transformers_float32(ref, checks, case):
    config, seed, ids = case
    sd = checks.hf_state_dict(config, seed, torch.float32)
    with torch.no_grad():
        want = hf_model(config, sd, torch.float32)(ids).logits
        got = ours(ref, config, sd, torch.float32)(ids)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, want)


@settings(ORACLE, max_examples=15)
@given(gpt_case())
def test_gpt2_weight_tying_follows_transformers(ref, checks, case):
    """Changing wte in a (tied) transformers model changes its output layer too; ours follows."""
    config, seed, ids = case
    model = hf_model(config, checks.hf_state_dict(config, seed, torch.float64), torch.float64)
    with torch.no_grad():
        model.transformer.wte.weight.add_(randn(tuple(model.transformer.wte.weight.shape), seed + 5,
                                                torch.float64, scale=0.5))
        sd = model.state_dict()
        assert torch.equal(sd["lm_head.weight"], sd["transformer.wte.weight"])
        torch.testing.assert_close(ours(ref, config, sd, torch.float64)(ids), model(ids).logits, **F64)
        # ... and with lm_head.weight left stale, ours still uses wte (what the hidden test asks)
        stale = {**sd, "lm_head.weight": torch.zeros_like(sd["lm_head.weight"])}
        torch.testing.assert_close(ours(ref, config, stale, torch.float64)(ids), model(ids).logits, **F64)


def test_gpt2_accepts_a_gpt2_config_and_names_its_parameters_as_transformers(ref):
    from transformers import GPT2LMHeadModel

    config = hf_config(30, 12, 8, 2, 2)
    model = ref.GPT2(config)  # a real GPT2Config, not a namespace
    hf_sd = GPT2LMHeadModel(config).state_dict()
    hf_keys = {k.removeprefix("transformer."): v.shape for k, v in hf_sd.items()}
    ours_shapes = {k: v.shape for k, v in model.named_parameters()}
    conv1d = ("c_attn.weight", "c_proj.weight", "c_fc.weight")
    assert set(ours_shapes) == set(hf_keys) - {"lm_head.weight"}
    for name, shape in ours_shapes.items():
        assert tuple(shape) == (tuple(hf_keys[name])[::-1] if name.endswith(conv1d) else tuple(hf_keys[name]))
    assert all(p.requires_grad for p in model.parameters())


def test_gpt2_is_causal_and_leaves_inputs_alone(ref, checks):
    config = {"vocab_size": 20, "n_positions": 9, "n_embd": 12, "n_layer": 2, "n_head": 3,
              "layer_norm_epsilon": 1e-5}
    sd = checks.hf_state_dict(config, 3, torch.float64)
    before = {k: v.clone() for k, v in sd.items()}
    model = ours(ref, config, sd, torch.float64)
    ids = torch.randint(0, 20, (2, 9), generator=torch.Generator().manual_seed(0))
    changed = ids.clone()
    changed[:, 5:] = (changed[:, 5:] + 1) % 20
    with torch.no_grad():
        a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], **F64)
    assert not torch.allclose(a[:, 5:], b[:, 5:])
    assert all(torch.equal(sd[k], before[k]) for k in sd)


def test_hidden_state_dicts_have_transformers_layout(checks):
    from transformers import GPT2LMHeadModel

    config = {"vocab_size": 17, "n_positions": 6, "n_embd": 6, "n_layer": 3, "n_head": 2,
              "layer_norm_epsilon": 1e-5}
    theirs = GPT2LMHeadModel(hf_config(**config)).state_dict()
    mine = checks.hf_state_dict(config, 0)
    assert list(mine) == list(theirs)
    assert all(mine[k].shape == theirs[k].shape and mine[k].dtype == theirs[k].dtype for k in mine)
    buffers = checks.old_buffers(config)
    assert set(buffers) == {f"transformer.h.{i}.attn.{b}" for i in range(3) for b in ("bias", "masked_bias")}


# -- count_parameters ----------------------------------------------------------------------------


def meta_count(vocab_size: int, n_positions: int, n_embd: int, n_layer: int, n_head: int = 1) -> int:
    from transformers import GPT2LMHeadModel

    with torch.device("meta"):
        model = GPT2LMHeadModel(hf_config(vocab_size, n_positions, n_embd, n_layer, n_head))
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("d,n_layer,n_head", [(768, 12, 12), (1024, 24, 16), (1280, 36, 20), (1600, 48, 25)])
def test_count_parameters_of_the_gpt2_family(ref, d, n_layer, n_head):
    got = ref.count_parameters(50257, 1024, d, n_layer)
    assert isinstance(got, int)
    assert got == meta_count(50257, 1024, d, n_layer, n_head)


@settings(ORACLE, max_examples=25)
@given(st.integers(1, 5000), st.integers(1, 2048), st.integers(1, 6), st.integers(1, 64), st.integers(0, 6))
def test_count_parameters_matches_transformers(ref, vocab_size, n_positions, n_head, head_dim, n_layer):
    d = n_head * head_dim
    want = meta_count(vocab_size, n_positions, d, n_layer, n_head)
    assert ref.count_parameters(vocab_size, n_positions, d, n_layer) == want
    with torch.device("meta"):
        model = ref.GPT2(types.SimpleNamespace(vocab_size=vocab_size, n_positions=n_positions, n_embd=d,
                                               n_layer=n_layer, n_head=n_head, layer_norm_epsilon=1e-5))
    assert sum(p.numel() for p in model.parameters()) == want


# -- the notebook itself ---------------------------------------------------------------------------


def test_reference_uses_no_library_versions():
    """The oracles must stay independent: no graded cell may call torch's own norm, GELU or attention."""
    cells = {c.grade_id: c.source for c in read_notebook(NOTEBOOK) if c.is_solution}
    assert set(cells) == set(GRADED)
    for gid, source in cells.items():
        body = "".join(part.split("### END SOLUTION")[0] for part in source.split("### BEGIN SOLUTION")[1:])
        for banned in ("torch.nn.functional", "F.", "layer_norm(x, (", "nn.LayerNorm", "nn.GELU",
                       "scaled_dot_product_attention", "nn.Linear(", "transformers"):
            assert banned not in body, f"the reference {gid} uses {banned}"


@pytest.mark.parametrize("function", GRADED)
def test_visible_checks_pass_on_the_reference(ref, function):
    check = {c.grade_id: c.source for c in read_notebook(NOTEBOOK)}[f"check_{function}"]
    exec(compile(check, f"check_{function}", "exec"), dict(vars(ref)))
