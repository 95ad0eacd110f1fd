"""Hidden tests of lesson 05, pretraining.

Functions (lm_loss, perplexity, cosine_lr) are called in the sandbox and compared with the
reference here. What needs live objects (the student's AdamW class, clip_grad_norm on parameters,
train_step with a model and an optimizer) is exercised by drivers: the `drive_*` routines of
SANDBOX_CODE, which build the objects next to the student's code and return plain data. The same
drivers run here, in the grader, around the reference (always in float64), so both sides do
exactly the same thing. The reference works in float64 on exactly the values the student received;
float32 answers are held to float32 tolerances (see `autograder.compare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from hypothesis import strategies as st

from autograder.compare import expect, expect_close, expect_unchanged
from autograder.harness import Suite
from autograder.strategies import describe, float_dtypes, randn, seeds

SANDBOX_CODE = '''
import math

import torch
import torch.nn.functional as F


# -- stand-ins: correct versions of the graded functions that other graded functions may call ------

def lm_loss(logits, targets):
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)


def perplexity(loss):
    return math.exp(float(loss))


def cosine_lr(step, max_lr, min_lr, warmup_steps, total_steps):
    if step < warmup_steps:
        return max_lr * step / warmup_steps
    done = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_lr + (max_lr - min_lr) * (1 + math.cos(math.pi * done)) / 2


def clip_grad_norm(params, max_norm):
    return torch.nn.utils.clip_grad_norm_(list(params), max_norm)


# -- drivers: build live objects next to the student's code, return plain data -------------------

def _options(options):
    return {k: tuple(v) if k == "betas" else v for k, v in options.items()}


def drive_adamw(ns, groups, options, grads, lrs):
    """Parameters after every step of the student's AdamW (a list of lists of tensors)."""
    params = [[torch.nn.Parameter(t.clone()) for t in group["params"]] for group in groups]
    spec = [{**_options({k: v for k, v in group.items() if k != "params"}), "params": ps}
            for group, ps in zip(groups, params)]
    opt = ns["AdamW"](spec, **_options(options))
    if not isinstance(opt, torch.optim.Optimizer):
        raise TypeError(f"AdamW(...) must be a torch.optim.Optimizer, got {type(opt).__name__}")
    flat = [p for ps in params for p in ps]
    out = []
    for step, step_grads in enumerate(grads):
        if lrs is not None:
            for group, lr in zip(opt.param_groups, lrs[step]):
                group["lr"] = lr
        for p, g in zip(flat, step_grads):
            p.grad = None if g is None else g.clone()
        opt.step()
        out.append([p.detach().clone() for p in flat])
    return out


def drive_schedule(ns, steps, max_lr, min_lr, warmup_steps, total_steps):
    """cosine_lr at each of `steps`."""
    return [ns["cosine_lr"](s, max_lr, min_lr, warmup_steps, total_steps) for s in steps]


def drive_clip(ns, values, grads, max_norm, as_generator):
    """(returned norm, gradients after, parameter values after) of clip_grad_norm on fresh parameters."""
    params = [torch.nn.Parameter(v.clone()) for v in values]
    for p, g in zip(params, grads):
        p.grad = None if g is None else g.clone()
    norm = ns["clip_grad_norm"]((p for p in params) if as_generator else params, max_norm)
    return norm, [p.grad for p in params], [p.detach().clone() for p in params]


def drive_train_step(ns, state, batches, k, lr, momentum, leftover_grads):
    """(returned losses, optimizer.step() calls per train_step, parameters after) for an
    Embedding -> Tanh -> Linear model trained with torch.optim.SGD by the student's train_step."""
    vocab, width = state["0.weight"].shape
    model = torch.nn.Sequential(torch.nn.Embedding(vocab, width), torch.nn.Tanh(),
                                torch.nn.Linear(width, vocab)).to(state["0.weight"].dtype)
    model.load_state_dict(state)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    calls = [0]
    opt.register_step_post_hook(lambda *args: calls.__setitem__(0, calls[0] + 1))
    losses, counts = [], []
    for inputs, targets in batches:
        if leftover_grads:
            for p in model.parameters():
                p.grad = torch.full_like(p, 0.25)
        calls[0] = 0
        losses.append(ns["train_step"](model, (inputs, targets), opt, accumulation_steps=k))
        counts.append(calls[0])
    return losses, counts, {name: t.detach().clone() for name, t in model.state_dict().items()}
'''

suite = Suite("05", standins=SANDBOX_CODE)

_HERE: dict[str, Any] = {}  # the same drivers, run in this process around the reference
exec(compile(SANDBOX_CODE, "<lesson 05 drivers>", "exec"), _HERE)


def _f64(x: Any) -> Any:
    """Tensors (nested in lists and dicts) converted to float64; everything else unchanged."""
    if isinstance(x, torch.Tensor):
        return x.double() if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return [_f64(v) for v in x]
    if isinstance(x, dict):
        return {k: _f64(v) for k, v in x.items()}
    return x


def _expect_float(got: Any, what: str) -> float:
    expect(isinstance(got, (int, float)) and not isinstance(got, bool),
           f"{what} should be a Python float, but it is a {type(got).__name__}"
           + (" (use .item() to turn a 0-dim tensor into a float)" if isinstance(got, torch.Tensor) else ""))
    return float(got)


def _expect_close_float(got: Any, want: float, what: str, rel: float = 1e-9, abs_: float = 1e-12) -> None:
    value = _expect_float(got, what)
    expect(math.isfinite(value) or not math.isfinite(want), f"{what} is {value}, expected {want:.6g}")
    expect(abs(value - want) <= abs_ + rel * abs(want),
           f"{what} is {value:.10g}, expected {want:.10g} (difference {abs(value - want):.3g})")


# -- lm_loss (1 point) ---------------------------------------------------------------------------

@dataclass
class LossCase:
    logits: torch.Tensor
    targets: torch.Tensor

    def __repr__(self) -> str:
        ignored = int((self.targets == -100).sum())
        return (f"logits {describe(self.logits)} (entries up to {self.logits.abs().max().item():.3g}), "
                f"targets {tuple(self.targets.shape)} with {ignored} ignored (-100)")


@st.composite
def loss_cases(draw: st.DrawFn, scales: tuple[float, ...] = (0.5, 3.0, 20.0)) -> LossCase:
    b, t, v = draw(st.integers(1, 3)), draw(st.integers(1, 6)), draw(st.integers(2, 11))
    dtype, seed = draw(float_dtypes), draw(seeds)
    logits = randn((b, t, v), seed, dtype, scale=draw(st.sampled_from(scales)))
    g = torch.Generator().manual_seed(seed + 1)
    targets = torch.randint(0, v, (b, t), generator=g)
    if draw(st.booleans()):
        ignore = torch.rand(b, t, generator=g) < 0.4
        ignore.view(-1)[draw(st.integers(0, b * t - 1))] = False  # at least one position counts
        targets = targets.masked_fill(ignore, -100)
    return LossCase(logits, targets)


@suite.check("test_lm_loss", "matches the mean next-token cross-entropy (float32 and float64, targets "
             "already aligned, -100 positions left out of the sum and of the count)",
             cases=loss_cases(), max_examples=80)
def _(student, ref, c):
    got = student.call("lm_loss", c.logits, c.targets)
    expect_close(got, ref.lm_loss(c.logits.double(), c.targets), "the loss", dtype=c.logits.dtype)


@suite.check("test_lm_loss", "stays finite and correct for large logits (entries of size 1000)",
             cases=loss_cases(scales=(1000.0,)), max_examples=15)
def _(student, ref, c):
    got = student.call("lm_loss", c.logits, c.targets)
    expect_close(got, ref.lm_loss(c.logits.double(), c.targets), "the loss", dtype=c.logits.dtype)


@suite.check("test_lm_loss", "does not modify logits or targets", cases=loss_cases(), max_examples=10)
def _(student, ref, c):
    _, after, _ = student.call_with_inputs("lm_loss", c.logits.clone(), c.targets.clone())
    expect_unchanged([c.logits, c.targets], after, ["logits", "targets"])


# -- perplexity (1 point) ------------------------------------------------------------------------

@suite.check("test_perplexity", "perplexity(loss) is exp(loss) as a Python float (losses in nats, 0 to 20)",
             cases=st.floats(0.0, 20.0), max_examples=30)
def _(student, ref, loss):
    _expect_close_float(student.call("perplexity", loss), ref.perplexity(loss), f"perplexity({loss!r})",
                        rel=1e-6)


@suite.check("test_perplexity", "accepts a 0-dim tensor (float32 or float64), as lm_loss returns",
             cases=st.tuples(st.floats(0.0, 20.0), float_dtypes), max_examples=20)
def _(student, ref, case):
    loss, dtype = case
    t = torch.tensor(loss, dtype=dtype)
    _expect_close_float(student.call("perplexity", t), ref.perplexity(t.double()),
                        f"perplexity(torch.tensor({t.item():.6g}, dtype={dtype}))", rel=1e-6)


# -- AdamW (3 points) ----------------------------------------------------------------------------

SHAPES = [(3,), (2, 3), (1,), (2, 2, 2), (4, 1)]


@dataclass
class AdamCase:
    groups: list[dict[str, Any]]  # {"params": [tensors], optional overrides}
    options: dict[str, Any]  # the constructor's keyword arguments
    grads: list[list[torch.Tensor | None]]  # per step, one entry per parameter (all groups, in order)
    lrs: list[list[float]] | None  # per step, the lr a schedule writes into each group

    @property
    def dtype(self) -> torch.dtype:
        return self.groups[0]["params"][0].dtype

    def __repr__(self) -> str:
        groups = "; ".join(
            "[" + ", ".join(str(tuple(p.shape)) for p in g["params"]) + "]"
            + "".join(f" {k}={v}" for k, v in g.items() if k != "params") for g in self.groups)
        opts = ", ".join(f"{k}={tuple(v) if isinstance(v, list) else v}" for k, v in self.options.items())
        none = sum(g is None for step in self.grads for g in step)
        zero = sum(g is not None and not g.any() for step in self.grads for g in step)
        scales = sorted({f"{g.abs().max().item():.0e}" for step in self.grads for g in step
                         if g is not None and g.any()})
        sched = ", lr changed every step by a schedule" if self.lrs else ""
        steps = f"{len(self.grads)} step{'s' * (len(self.grads) != 1)}"
        return (f"AdamW({opts}), {str(self.dtype).removeprefix('torch.')} param groups {groups}; "
                f"{steps}, gradient sizes up to {', '.join(scales) or '0'}, "
                f"{zero} zero and {none} None gradients{sched}")

    def student(self, student) -> Any:
        return student.drive("drive_adamw", "AdamW", self.groups, self.options, self.grads, self.lrs)

    def reference(self, ref) -> list[list[torch.Tensor]]:
        return _HERE["drive_adamw"]({"AdamW": ref.AdamW}, _f64(self.groups), self.options,
                                    _f64(self.grads), self.lrs)


@st.composite
def adam_cases(draw: st.DrawFn, steps: tuple[int, int] = (1, 25), holes: bool = True,
               schedule: bool = True) -> AdamCase:
    dtype, seed = draw(float_dtypes), draw(seeds)
    options = {"lr": draw(st.sampled_from([1e-3, 0.01, 0.1, 0.5])),
               "betas": draw(st.sampled_from([[0.9, 0.999], [0.8, 0.95], [0.5, 0.9]])),
               "eps": draw(st.sampled_from([1e-8, 1e-3, 0.1])),
               "weight_decay": draw(st.sampled_from([0.0, 0.01, 0.1, 0.5]))}
    groups = []
    k = 0
    for gi in range(draw(st.integers(1, 2))):
        shapes = draw(st.lists(st.sampled_from(SHAPES), min_size=1, max_size=2))
        group: dict[str, Any] = {"params": []}
        for shape in shapes:
            group["params"].append(randn(shape, seed + k, dtype))
            k += 1
        if gi > 0:
            override = draw(st.sampled_from(["none", "lr", "weight_decay", "betas"]))
            if override == "lr":
                group["lr"] = draw(st.sampled_from([0.02, 0.3]))
            elif override == "weight_decay":
                group["weight_decay"] = draw(st.sampled_from([0.0, 0.2]))
            elif override == "betas":
                group["betas"] = [0.7, 0.99]
        groups.append(group)
    shapes = [tuple(p.shape) for g in groups for p in g["params"]]
    scales = [draw(st.sampled_from([1e-4, 1.0, 100.0])) for _ in shapes]
    n_steps = draw(st.integers(*steps))
    g = torch.Generator().manual_seed(seed + 100)
    grads = []
    for step in range(n_steps):
        row: list[torch.Tensor | None] = []
        for i, (shape, scale) in enumerate(zip(shapes, scales)):
            u = torch.rand((), generator=g).item()
            if holes and step > 0 and u < 0.15:
                row.append(None)  # this parameter took no part in this step's loss
            elif holes and u < 0.3:
                row.append(torch.zeros(shape, dtype=dtype))
            else:
                row.append(randn(shape, seed + 1000 * (step + 1) + i, dtype, scale=scale))
        grads.append(row)
    lrs = None
    if schedule and draw(st.booleans()):
        lrs = [[round(options["lr"] * torch.rand((), generator=g).item(), 6) for _ in groups]
               for _ in range(n_steps)]
    return AdamCase(groups, options, grads, lrs)


def _compare_trajectories(got: Any, want: list[list[torch.Tensor]], dtype: torch.dtype) -> None:
    expect(isinstance(got, list) and len(got) == len(want), "the driver did not return one snapshot per step")
    for step, (row_got, row_want) in enumerate(zip(got, want)):
        for i, (p_got, p_want) in enumerate(zip(row_got, row_want)):
            expect_close(p_got, p_want, f"parameter {i} after step {step + 1}", dtype=dtype)


@suite.check("test_AdamW", "the first 3 steps match torch.optim.AdamW's update (bias-corrected moments, "
             "eps outside the square root, decoupled decay), several shapes, float32 and float64",
             cases=adam_cases(steps=(3, 3), holes=False, schedule=False), max_examples=40)
def _(student, ref, c):
    _compare_trajectories(c.student(student), c.reference(ref), c.dtype)


@suite.check("test_AdamW", "trajectories of up to 25 steps match: param groups with their own lr, weight "
             "decay or betas, zero gradients, parameters whose .grad is None at some steps, and the lr "
             "rewritten into each group between steps (as a schedule does)",
             cases=adam_cases(), max_examples=40)
def _(student, ref, c):
    _compare_trajectories(c.student(student), c.reference(ref), c.dtype)


@suite.check("test_AdamW", "decoupled weight decay: with zero gradients from the first step, every step "
             "multiplies the parameters by exactly (1 - lr * weight_decay)",
             cases=st.tuples(st.sampled_from([0.01, 0.1, 0.5]), st.sampled_from([0.05, 0.2, 0.9]),
                             st.integers(1, 6), seeds), max_examples=15)
def _(student, ref, case):
    lr, wd, n_steps, seed = case
    init = randn((2, 3), seed, torch.float64)
    got = student.drive("drive_adamw", "AdamW", [{"params": [init]}], {"lr": lr, "weight_decay": wd},
                        [[torch.zeros(2, 3, dtype=torch.float64)]] * n_steps, None)
    for step in range(n_steps):
        expect_close(got[step][0], init * (1 - lr * wd) ** (step + 1),
                     f"with lr={lr}, weight_decay={wd} and zero gradients, the parameter after step "
                     f"{step + 1} "
                     f"(expected the initial values times (1 - lr * weight_decay)^{step + 1}; decay the "
                     "parameter directly, don't add weight_decay * p to the gradient)")


@suite.check("test_AdamW", "a parameter whose .grad is None is left exactly as it was (no decay), while "
             "the others in its group are updated")
def _(student, ref):
    a, b = randn((3,), 1, torch.float64), randn((2, 2), 2, torch.float64)
    grads = [[None, randn((2, 2), 10 + s, torch.float64)] for s in range(4)]
    got = student.drive("drive_adamw", "AdamW", [{"params": [a, b]}], {"lr": 0.1, "weight_decay": 0.3},
                        grads, None)
    want = _HERE["drive_adamw"]({"AdamW": ref.AdamW}, [{"params": [a, b]}], {"lr": 0.1, "weight_decay": 0.3},
                                grads, None)
    for step in range(4):
        expect(torch.equal(got[step][0], a), f"parameter 0 has .grad None at every step, but it changed at "
               f"step {step + 1}: skip such parameters entirely (no weight decay either)")
        expect_close(got[step][1], want[step][1], f"parameter 1 after step {step + 1}")


# -- cosine_lr (2 points) ------------------------------------------------------------------------

@dataclass
class Schedule:
    max_lr: float
    min_lr: float
    warmup_steps: int
    total_steps: int

    def __repr__(self) -> str:
        return (f"max_lr={self.max_lr}, min_lr={self.min_lr}, warmup_steps={self.warmup_steps}, "
                f"total_steps={self.total_steps}")

    def args(self) -> tuple[float, float, int, int]:
        return self.max_lr, self.min_lr, self.warmup_steps, self.total_steps


@st.composite
def schedules(draw: st.DrawFn) -> Schedule:
    total = draw(st.integers(1, 400))
    warmup = draw(st.one_of(st.just(0), st.integers(0, total)))
    max_lr = draw(st.sampled_from([1.0, 0.1, 3e-3, 6e-4]))
    return Schedule(max_lr, max_lr * draw(st.sampled_from([0.0, 0.1, 0.5])), warmup, total)


def _check_schedule(student, ref, s: Schedule, steps: list[int]) -> None:
    got = student.drive("drive_schedule", "cosine_lr", steps, *s.args())
    for step, value in zip(steps, got):
        _expect_close_float(value, ref.cosine_lr(step, *s.args()), f"cosine_lr({step}, {s!r})")


@suite.check("test_cosine_lr", "exact at the boundaries: step 0, the last warmup step, warmup_steps, "
             "the step after, total_steps - 1, total_steps, and long after (stays at min_lr)",
             cases=schedules(), max_examples=50)
def _(student, ref, s):
    w, t = s.warmup_steps, s.total_steps
    steps = sorted({x for x in (0, 1, w - 1, w, w + 1, t - 1, t, t + 1, 2 * t + 7, 10 * t + 3) if x >= 0})
    _check_schedule(student, ref, s, steps)


@suite.check("test_cosine_lr", "matches the schedule at every step from 0 to past total_steps",
             cases=schedules(), max_examples=25)
def _(student, ref, s):
    _check_schedule(student, ref, s, list(range(0, int(1.3 * s.total_steps) + 2)))


# -- clip_grad_norm (1 point) --------------------------------------------------------------------

@dataclass
class ClipCase:
    values: list[torch.Tensor]
    grads: list[torch.Tensor | None]
    max_norm: float
    as_generator: bool

    def __repr__(self) -> str:
        grads = ", ".join("None" if g is None else f"{tuple(g.shape)} norm {g.norm().item():.3g}"
                          for g in self.grads)
        kind = "a generator" if self.as_generator else "a list"
        return (f"{kind} of {len(self.values)} {str(self.values[0].dtype).removeprefix('torch.')} parameters "
                f"with gradients [{grads}], max_norm={self.max_norm:.4g}")

    def run(self, student) -> Any:
        return student.drive("drive_clip", "clip_grad_norm", self.values, self.grads, self.max_norm,
                             self.as_generator)

    def reference(self, ref) -> Any:
        return _HERE["drive_clip"]({"clip_grad_norm": ref.clip_grad_norm}, _f64(self.values),
                                   _f64(self.grads), self.max_norm, self.as_generator)


@st.composite
def clip_cases(draw: st.DrawFn) -> ClipCase:
    dtype, seed = draw(float_dtypes), draw(seeds)
    n = draw(st.integers(1, 4))
    shapes = [draw(st.sampled_from(SHAPES)) for _ in range(n)]
    values = [randn(s, seed + i, dtype) for i, s in enumerate(shapes)]
    grads: list[torch.Tensor | None] = []
    for i, s in enumerate(shapes):
        none = draw(st.booleans()) and draw(st.booleans()) and i > 0  # about one in four, never the first
        grads.append(None if none else randn(s, seed + 50 + i, dtype,
                                             scale=draw(st.sampled_from([1e-3, 1.0, 100.0]))))
    total = math.sqrt(sum(float(g.double().pow(2).sum()) for g in grads if g is not None))
    max_norm = total * draw(st.sampled_from([0.01, 0.3, 0.9, 1.1, 3.0]))
    return ClipCase(values, grads, max_norm, draw(st.booleans()))


def _compare_clip(got: Any, want: Any, case: ClipCase) -> None:
    norm, grads, values = got
    dtype = case.values[0].dtype
    expect_close(norm, want[0], "the returned norm (the global norm before clipping)", dtype=dtype)
    for i, (g_got, g_want, v) in enumerate(zip(grads, want[1], values)):
        if g_want is None:
            expect(g_got is None, f"parameter {i} had no gradient (.grad None): leave it None")
            continue
        expect_close(g_got, g_want, f"the gradient of parameter {i} after clipping", dtype=dtype)
        expect(torch.equal(v, case.values[i]), f"the value of parameter {i} changed: clip only the gradients")


@suite.check("test_clip_grad_norm", "returns the global norm before clipping and scales every gradient by "
             "max_norm / (norm + 1e-6) when the norm exceeds max_norm (lists and generators of "
             "parameters, some without gradient, float32 and float64)", cases=clip_cases(), max_examples=60)
def _(student, ref, c):
    _compare_clip(c.run(student), c.reference(ref), c)


@suite.check("test_clip_grad_norm", "below max_norm the gradients are returned bit for bit unchanged",
             cases=clip_cases().filter(lambda c: c.max_norm > 1.5 * math.sqrt(
                 sum(float(g.double().pow(2).sum()) for g in c.grads if g is not None))), max_examples=15)
def _(student, ref, c):
    _, grads, _ = c.run(student)
    for i, (g_got, g_in) in enumerate(zip(grads, c.grads)):
        expect(g_in is None or (isinstance(g_got, torch.Tensor) and torch.equal(g_got, g_in)),
               f"the global norm is below max_norm, but the gradient of parameter {i} changed")


@suite.check("test_clip_grad_norm", "one norm for all parameters together: with gradients [3e-4, 0] and "
             "[4e-4] (global norm 5e-4) and max_norm 1e-4, both are scaled by 1e-4 / (5e-4 + 1e-6)")
def _(student, ref):
    f64 = torch.float64
    case = ClipCase([torch.zeros(2, dtype=f64), torch.zeros(1, dtype=f64)],
                    [torch.tensor([3e-4, 0.0], dtype=f64), torch.tensor([4e-4], dtype=f64)], 1e-4, False)
    _compare_clip(case.run(student), case.reference(ref), case)


@suite.check("test_clip_grad_norm", "returns a tensor equal to 0 when no parameter has a gradient")
def _(student, ref):
    norm, grads, _ = student.drive("drive_clip", "clip_grad_norm", [torch.ones(2)], [None], 1.0, True)
    expect(isinstance(norm, torch.Tensor) and norm.numel() == 1 and float(norm) == 0.0,
           f"with no gradients at all, return tensor(0.); got {norm!r}")
    expect(grads == [None], "a parameter without gradient must keep .grad None")


# -- train_step (2 points) -----------------------------------------------------------------------

@dataclass
class StepCase:
    state: dict[str, torch.Tensor]
    batches: list[tuple[torch.Tensor, torch.Tensor]]
    k: int
    lr: float
    momentum: float
    leftover_grads: bool

    def __repr__(self) -> str:
        vocab, width = self.state["0.weight"].shape
        inputs = self.batches[0][0]
        left = ", gradients left over from earlier work on entry" if self.leftover_grads else ""
        return (f"{len(self.batches)} train_step call(s) on batches of shape {tuple(inputs.shape)}, "
                f"accumulation_steps={self.k}, model Embedding({vocab}, {width}) -> Tanh -> Linear({width}, "
                f"{vocab}) in float64, torch.optim.SGD(lr={self.lr}, momentum={self.momentum}){left}")

    def run(self, student_or_ns: Any) -> Any:
        args = (self.state, self.batches, self.k, self.lr, self.momentum, self.leftover_grads)
        if isinstance(student_or_ns, dict):
            return _HERE["drive_train_step"](student_or_ns, *args)
        return student_or_ns.drive("drive_train_step", "train_step", *args)


@st.composite
def step_cases(draw: st.DrawFn) -> StepCase:
    seed = draw(seeds)
    vocab, width, seq = draw(st.integers(3, 7)), draw(st.integers(2, 4)), draw(st.integers(1, 5))
    k = draw(st.sampled_from([1, 2, 4]))
    batch = k * draw(st.integers(1, 2))
    state = {"0.weight": randn((vocab, width), seed, torch.float64),
             "2.weight": randn((vocab, width), seed + 1, torch.float64, scale=0.7),
             "2.bias": randn((vocab,), seed + 2, torch.float64, scale=0.3)}
    g = torch.Generator().manual_seed(seed + 3)
    batches = []
    for _ in range(draw(st.integers(1, 3))):
        tokens = torch.randint(0, vocab, (batch, seq + 1), generator=g)
        batches.append((tokens[:, :-1], tokens[:, 1:]))
    return StepCase(state, batches, k, draw(st.sampled_from([0.1, 0.5])), draw(st.sampled_from([0.0, 0.9])),
                    draw(st.booleans()))


@suite.check("test_train_step", "matches the reference: the returned losses (mean of the micro-batch "
             "losses) and the parameters after 1 to 3 steps, for 1, 2 and 4 micro-batches",
             cases=step_cases(), max_examples=40)
def _(student, ref, c):
    losses, counts, params = c.run(student)
    want_losses, _, want_params = c.run({"train_step": ref.train_step})
    for i, (count, loss, want) in enumerate(zip(counts, losses, want_losses)):
        expect(count == 1, f"call {i + 1}: optimizer.step() ran {count} times in one train_step; it must run "
               "exactly once, after all the micro-batches")
        _expect_close_float(loss, want, f"the loss returned by call {i + 1} (the mean of the "
                            f"{c.k} micro-batch losses, before the step)")
    for name, want in want_params.items():
        expect_close(params[name], want, f"parameter {name!r} after {len(c.batches)} train_step call(s)")


@suite.check("test_train_step", "gradients left over from before the call are cleared: the step uses only "
             "this batch's gradient", cases=step_cases().map(lambda c: StepCase(
                 c.state, c.batches[:1], c.k, c.lr, 0.0, True)), max_examples=10)
def _(student, ref, c):
    _, _, params = c.run(student)
    _, _, want_params = c.run({"train_step": ref.train_step})
    for name, want in want_params.items():
        expect_close(params[name], want, f"parameter {name!r} after one step that started with "
                     "gradients left over in .grad")
