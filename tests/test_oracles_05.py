"""The reference solutions of lesson 05 (pretraining) against independent oracles.

Oracles: `F.cross_entropy` for lm_loss, `math.exp` for perplexity, `torch.optim.AdamW` for AdamW
(parameter trajectories of hundreds of steps), `torch.nn.utils.clip_grad_norm_` for clipping,
transformers' `get_cosine_schedule_with_warmup` for the schedule (where the two definitions
agree), and for train_step a hand-written step with `F.cross_entropy` and `torch.optim.SGD`, plus
the identity "k micro-batches = one big batch" on a tiny transformers GPT-2.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from autograder.strategies import randn, seeds
from course.loader import load_notebook

NOTEBOOK = Path(__file__).resolve().parents[1] / "solutions/05/pretraining.ipynb"

ORACLE = settings(derandomize=True, database=None, deadline=None, max_examples=50)
F64 = {"rtol": 1e-10, "atol": 1e-12}
SHAPES = [(3,), (2, 3), (1,), (2, 2, 2), (5, 1)]


@pytest.fixture(scope="module")
def ref():
    return load_notebook(NOTEBOOK, module_name="reference_05_oracles").module


# -- lm_loss and perplexity ----------------------------------------------------------------------


@st.composite
def loss_case(draw):
    b, t, v = draw(st.integers(1, 4)), draw(st.integers(1, 9)), draw(st.integers(2, 17))
    seed = draw(seeds)
    logits = randn((b, t, v), seed, torch.float64, scale=draw(st.sampled_from([0.1, 2.0, 50.0])))
    g = torch.Generator().manual_seed(seed + 1)
    targets = torch.randint(0, v, (b, t), generator=g)
    if draw(st.booleans()):
        ignore = torch.rand(b, t, generator=g) < 0.5
        ignore.view(-1)[0] = False
        targets = targets.masked_fill(ignore, -100)
    return logits, targets


@ORACLE
@given(loss_case())
def test_lm_loss_matches_cross_entropy(ref, case):
    logits, targets = case
    want = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
    got = ref.lm_loss(logits, targets)
    assert got.shape == () and got.dtype == torch.float64
    torch.testing.assert_close(got, want, **F64)
    got32 = ref.lm_loss(logits.float(), targets)
    assert got32.dtype == torch.float32
    torch.testing.assert_close(got32, want.float())


@ORACLE
@given(loss_case())
def test_lm_loss_gradient_matches_cross_entropy(ref, case):
    logits, targets = case
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ref.lm_loss(a, targets).backward()
    F.cross_entropy(b.reshape(-1, b.shape[-1]), targets.reshape(-1), ignore_index=-100).backward()
    torch.testing.assert_close(a.grad, b.grad, **F64)


def test_lm_loss_is_stable_for_huge_logits(ref):
    logits, targets = randn((2, 5, 7), 3, torch.float32, scale=1e4), torch.randint(0, 7, (2, 5))
    got = ref.lm_loss(logits, targets)
    assert torch.isfinite(got)
    torch.testing.assert_close(got, F.cross_entropy(logits.reshape(-1, 7), targets.reshape(-1)))


@ORACLE
@given(st.floats(0.0, 50.0))
def test_perplexity_is_exp(ref, loss):
    assert ref.perplexity(loss) == math.exp(loss)
    got = ref.perplexity(torch.tensor(loss, dtype=torch.float64, requires_grad=True))
    assert isinstance(got, float) and got == math.exp(loss)


# -- AdamW ---------------------------------------------------------------------------------------


@st.composite
def adam_run(draw):
    """Initial parameters in two groups, optimizer options, and a gradient per step and parameter."""
    seed = draw(seeds)
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=2, max_size=4))
    options = {"lr": draw(st.sampled_from([1e-3, 1e-2, 0.1])),
               "betas": draw(st.sampled_from([(0.9, 0.999), (0.9, 0.95), (0.5, 0.8)])),
               "eps": draw(st.sampled_from([1e-8, 1e-4, 0.1])),
               "weight_decay": draw(st.sampled_from([0.01, 0.1, 0.5]))}
    second = {"weight_decay": 0.0} if draw(st.booleans()) else {"lr": options["lr"] / 3}
    init = [randn(s, seed + i, torch.float64) for i, s in enumerate(shapes)]
    steps = draw(st.integers(150, 300))
    g = torch.Generator().manual_seed(seed + 99)
    grads = []
    for _ in range(steps):
        row = []
        for i, s in enumerate(shapes):
            u = torch.rand((), generator=g).item()
            if u < 0.1:
                row.append(None)  # no gradient this step
            elif u < 0.2:
                row.append(torch.zeros(s, dtype=torch.float64))
            else:
                row.append(torch.randn(s, generator=g, dtype=torch.float64) * 10 ** (i % 3 - 1))
        grads.append(row)
    schedule = draw(st.booleans())
    return init, options, second, grads, schedule


def run_optimizer(make, init, options, second, grads, schedule, dtype):
    params = [torch.nn.Parameter(t.clone().to(dtype)) for t in init]
    half = len(params) // 2
    opt = make([{"params": params[:half]}, {"params": params[half:], **second}], **options)
    trajectory = []
    for step, row in enumerate(grads):
        if schedule:
            for group in opt.param_groups:
                group["lr"] = options["lr"] * (1 - step / len(grads))
        for p, grad in zip(params, row):
            p.grad = None if grad is None else grad.to(dtype)
        opt.step()
        trajectory.append([p.detach().clone() for p in params])
    return trajectory


@settings(ORACLE, max_examples=12)
@given(adam_run())
def test_adamw_trajectory_matches_torch_float64(ref, run):
    ours = run_optimizer(ref.AdamW, *run, torch.float64)
    theirs = run_optimizer(torch.optim.AdamW, *run, torch.float64)
    for step, (a, b) in enumerate(zip(ours, theirs)):
        for i, (x, y) in enumerate(zip(a, b)):
            torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-11, msg=f"step {step + 1}, parameter {i}")


@settings(ORACLE, max_examples=6)
@given(adam_run())
def test_adamw_trajectory_matches_torch_float32(ref, run):
    ours = run_optimizer(ref.AdamW, *run, torch.float32)
    theirs = run_optimizer(torch.optim.AdamW, *run, torch.float32)
    for x, y in zip(ours[-1], theirs[-1]):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-5)


def test_adamw_first_step_and_decoupled_decay(ref):
    """Closed forms: the first step moves by lr * sign(g); zero gradients only shrink by (1 - lr * wd)."""
    p = torch.nn.Parameter(torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64))
    opt = ref.AdamW([p], lr=0.01, weight_decay=0.2, eps=0.0)
    p.grad = torch.tensor([1e-3, -5.0, 7e2], dtype=torch.float64)
    opt.step()
    want = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64) * (1 - 0.01 * 0.2) - 0.01 * p.grad.sign()
    torch.testing.assert_close(p.detach(), want, **F64)
    q = torch.nn.Parameter(torch.tensor([1.0, -3.0], dtype=torch.float64))
    opt = ref.AdamW([q], lr=0.1, weight_decay=0.3)
    for _ in range(5):
        q.grad = torch.zeros(2, dtype=torch.float64)
        opt.step()
    torch.testing.assert_close(q.detach(), torch.tensor([1.0, -3.0], dtype=torch.float64) * 0.97**5, **F64)


def test_adamw_is_an_optimizer_with_torch_state(ref):
    p = torch.nn.Parameter(torch.ones(2))
    opt = ref.AdamW([p], lr=0.1)
    assert isinstance(opt, torch.optim.Optimizer)
    assert opt.defaults == {"lr": 0.1, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
    opt.step()  # no gradient: no state
    assert len(opt.state) == 0
    p.grad = torch.ones(2)
    assert opt.step(lambda: torch.tensor(3.0)).item() == 3.0  # the closure's loss comes back
    assert set(opt.state[p]) == {"step", "exp_avg", "exp_avg_sq"} and opt.state[p]["step"] == 1
    with pytest.raises(ValueError):
        ref.AdamW([p], lr=-1.0)


# -- cosine_lr -----------------------------------------------------------------------------------


@st.composite
def schedule_case(draw):
    total = draw(st.integers(1, 500))
    # warmup < total: with warmup == total transformers restarts at max_lr on the last step (degenerate)
    return draw(st.sampled_from([1.0, 3e-3, 0.1])), draw(st.integers(0, total - 1)), total


def hf_factors(warmup: int, total: int, n: int) -> list[float]:
    """The multipliers of transformers' cosine schedule at steps 0..n-1."""
    from transformers import get_cosine_schedule_with_warmup

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = get_cosine_schedule_with_warmup(opt, warmup, total)
    return [sched.lr_lambdas[0](s) for s in range(n)]


@ORACLE
@given(schedule_case())
def test_cosine_lr_matches_transformers_with_min_lr_zero(ref, case):
    max_lr, warmup, total = case
    for step, factor in enumerate(hf_factors(warmup, total, total + 1)):
        assert math.isclose(ref.cosine_lr(step, max_lr, 0.0, warmup, total), max_lr * factor,
                            rel_tol=1e-12, abs_tol=1e-15), step


@ORACLE
@given(schedule_case(), st.sampled_from([0.1, 0.5]))
def test_cosine_lr_with_min_lr_is_transformers_rescaled(ref, case, ratio):
    """In the cosine part, ours = min_lr + (max_lr - min_lr) * theirs; after total_steps, min_lr."""
    max_lr, warmup, total = case
    min_lr = ratio * max_lr
    factors = hf_factors(warmup, total, total + 1)
    for step in range(warmup, total + 1):
        assert math.isclose(ref.cosine_lr(step, max_lr, min_lr, warmup, total),
                            min_lr + (max_lr - min_lr) * factors[step], rel_tol=1e-12, abs_tol=1e-15), step
    for step in range(warmup):
        assert math.isclose(ref.cosine_lr(step, max_lr, min_lr, warmup, total), max_lr * factors[step],
                            rel_tol=1e-12, abs_tol=1e-15), step
    for step in (total, total + 1, 2 * total + 5, 10 * total):
        assert ref.cosine_lr(step, max_lr, min_lr, warmup, total) == min_lr


# -- clip_grad_norm ------------------------------------------------------------------------------


@st.composite
def clip_case(draw):
    seed = draw(seeds)
    shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=5))
    grads = [None if (i and draw(st.integers(0, 3)) == 0) else
             randn(s, seed + i, torch.float64, scale=draw(st.sampled_from([1e-3, 1.0, 1e3])))
             for i, s in enumerate(shapes)]
    total = math.sqrt(sum(float(g.pow(2).sum()) for g in grads if g is not None))
    return shapes, grads, total * draw(st.sampled_from([0.01, 0.5, 0.99, 1.01, 4.0])), draw(st.booleans())


def with_grads(shapes, grads, dtype):
    params = [torch.nn.Parameter(torch.zeros(s, dtype=dtype)) for s in shapes]
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.to(dtype).clone()
    return params


@ORACLE
@given(clip_case())
def test_clip_grad_norm_matches_torch(ref, case):
    shapes, grads, max_norm, generator = case
    for dtype in (torch.float64, torch.float32):
        ours, theirs = with_grads(shapes, grads, dtype), with_grads(shapes, grads, dtype)
        got = ref.clip_grad_norm((p for p in ours) if generator else ours, max_norm)
        want = torch.nn.utils.clip_grad_norm_(theirs, max_norm)
        tol = F64 if dtype == torch.float64 else {}
        assert got.dtype == want.dtype and got.shape == ()
        torch.testing.assert_close(got, want, **tol)
        for a, b in zip(ours, theirs):
            assert (a.grad is None) == (b.grad is None)
            if a.grad is not None:
                torch.testing.assert_close(a.grad, b.grad, **tol)


def test_clip_grad_norm_without_gradients(ref):
    p = torch.nn.Parameter(torch.ones(3))
    assert ref.clip_grad_norm([p], 1.0).item() == 0.0
    assert torch.nn.utils.clip_grad_norm_([p], 1.0).item() == 0.0
    assert p.grad is None


# -- train_step ----------------------------------------------------------------------------------


def tiny_gpt2(seed: int = 0) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    class LogitsOnly(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(seed)
            self.lm = GPT2LMHeadModel(GPT2Config(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2,
                                                 resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0))

        def forward(self, ids):
            return self.lm(input_ids=ids).logits

    return LogitsOnly().double()


@pytest.fixture(scope="module")
def batch():
    tokens = torch.randint(0, 11, (8, 7), generator=torch.Generator().manual_seed(4))
    return tokens[:, :-1], tokens[:, 1:]


@pytest.mark.parametrize("k", [1, 2, 4, 8])
def test_train_step_accumulation_equals_one_big_batch(ref, batch, k):
    """k micro-batches, one step == the hand-written big-batch step with F.cross_entropy and SGD."""
    ours, theirs = tiny_gpt2(), tiny_gpt2()
    opt_ours = torch.optim.SGD(ours.parameters(), lr=0.3, momentum=0.9)
    opt_theirs = torch.optim.SGD(theirs.parameters(), lr=0.3, momentum=0.9)
    for _ in range(2):
        loss = ref.train_step(ours, batch, opt_ours, accumulation_steps=k)
        opt_theirs.zero_grad()
        logits = theirs(batch[0])
        want = F.cross_entropy(logits.reshape(-1, 11), batch[1].reshape(-1))
        want.backward()
        opt_theirs.step()
        assert isinstance(loss, float)
        assert math.isclose(loss, want.item(), rel_tol=1e-12)
    for (name, a), b in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


def test_train_step_with_adamw_matches_torch(ref, batch):
    """The lesson's AdamW inside train_step gives torch.optim.AdamW's parameters."""
    ours, theirs = tiny_gpt2(), tiny_gpt2()
    opt_ours = ref.AdamW(ours.parameters(), lr=1e-2, weight_decay=0.1)
    opt_theirs = torch.optim.AdamW(theirs.parameters(), lr=1e-2, weight_decay=0.1)
    for _ in range(3):
        ref.train_step(ours, batch, opt_ours, accumulation_steps=2)
        ref.train_step(theirs, batch, opt_theirs, accumulation_steps=2)
    for a, b in zip(ours.parameters(), theirs.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)
