"""Library calls a lesson does not allow in graded code, and the two ways they are caught.

Each lesson names the calls that would do its exercise for the student
(lesson 03: `torch.nn.functional.scaled_dot_product_attention`, ...), with the
reason. Names are written `module:attribute`, as Python entry points are, or
as a bare module name to forbid the whole library:

    "torch.nn.functional:scaled_dot_product_attention"   a function
    "torch:Tensor.softmax"                                a method
    "torch.nn:MultiheadAttention"                         a class: building or subclassing it
    "tiktoken"                                            a library: importing it

`install(lesson)` is the enforcement, in the sandbox child before the notebook
loads: each forbidden function is replaced by a wrapper, and each forbidden
class guards its construction and subclassing, raising `ForbiddenCall` when
the caller is student code. The caller is found by walking up the stack past
installed code (any real file: torch, transformers, the standard library,
this package): a notebook cell there means the student called it, directly or
through a thin library layer (nn.Softmax calling F.softmax); anything else
(the lesson's stand-ins and drivers, or a module being imported) may use it.

`scan(cells, notebook, lesson)` is the early warning of the visible tests: it
reads the student's cells (imports, aliases, attribute chains) without running
them and reports each forbidden name with the same message.

Adding a lesson is one entry in `RULES`.
"""

from __future__ import annotations

import ast
import builtins
import functools
import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from course.loader import CELL_PREFIX, code_cells, strip_magics
from course.notebook import Cell


@dataclass(frozen=True)
class Rules:
    task: str  # completes "lesson NN asks you to ..."
    hint: str  # what to use instead
    calls: dict[str, str]  # "module:attribute" or "module" -> why it is not allowed


_SOFTMAX = "it is the softmax you are asked to write"
_LOG_SOFTMAX = "it is the log_softmax you are asked to write"
_CROSS_ENTROPY = "it computes the cross-entropy in one call"
_ADAM = "it is a ready-made Adam optimizer"
_CLIP = "it is the gradient clipping you are asked to write"
_COSINE = "it is a ready-made cosine schedule"
_GPT2 = "it is GPT-2, ready-made"
_WARPER = "it is a ready-made logits filter"

RULES: dict[str, Rules] = {
    "01": Rules("write the byte-level BPE tokenizer yourself",
                "Plain Python (lists, dicts, Counter) and the `regex` module are all you need.", {
                    "tiktoken": "it is OpenAI's ready-made GPT-2 tokenizer",
                    "tokenizers": "it is Hugging Face's ready-made BPE trainer and tokenizer",
                    "transformers:GPT2Tokenizer": "it is a ready-made GPT-2 tokenizer",
                    "transformers:GPT2TokenizerFast": "it is a ready-made GPT-2 tokenizer",
                }),
    "02": Rules("compute softmax, log_softmax and the cross-entropy yourself",
                "Use exp, log, sum, amax and indexing (gather).", {
                    "torch:softmax": _SOFTMAX,
                    "torch:Tensor.softmax": _SOFTMAX,
                    "torch.nn.functional:softmax": _SOFTMAX,
                    "torch.special:softmax": _SOFTMAX,
                    "torch.nn:Softmax": _SOFTMAX,
                    "torch:log_softmax": _LOG_SOFTMAX,
                    "torch:Tensor.log_softmax": _LOG_SOFTMAX,
                    "torch.nn.functional:log_softmax": _LOG_SOFTMAX,
                    "torch.special:log_softmax": _LOG_SOFTMAX,
                    "torch.nn:LogSoftmax": _LOG_SOFTMAX,
                    "torch.nn.functional:cross_entropy": _CROSS_ENTROPY,
                    "torch.nn.functional:nll_loss": _CROSS_ENTROPY,
                    "torch.nn:CrossEntropyLoss": _CROSS_ENTROPY,
                    "torch.nn:NLLLoss": _CROSS_ENTROPY,
                }),
    "03": Rules("write attention yourself", "Use matrix products (@), masked_fill and softmax.", {
        "torch.nn.functional:scaled_dot_product_attention": "it computes the whole exercise",
        "torch.nn.functional:multi_head_attention_forward": "it is multi-head attention, ready-made",
        "torch.nn:MultiheadAttention": "it is multi-head attention, ready-made",
    }),
    "04": Rules("build GPT-2's layers yourself",
                "Write them with tensor arithmetic (mean, sqrt, tanh, @); your lesson 03 attention "
                "is yours to reuse.", {
                    "torch.nn.functional:layer_norm": "it is the layer norm you are asked to write",
                    "torch.nn:LayerNorm": "it is the layer norm you are asked to write",
                    "torch.nn.functional:gelu": "it is the GELU you are asked to write",
                    "torch.nn:GELU": "it is the GELU you are asked to write",
                    "transformers:GPT2Model": _GPT2,
                    "transformers:GPT2LMHeadModel": _GPT2,
                    "transformers.models.gpt2.modeling_gpt2:GPT2Block": _GPT2,
                    "transformers.models.gpt2.modeling_gpt2:GPT2Attention": _GPT2,
                    "transformers.models.gpt2.modeling_gpt2:GPT2MLP": _GPT2,
                }),
    "05": Rules("write the training machinery yourself",
                "Write the loss from log_softmax, the update, the schedule and the clipping with tensor "
                "arithmetic and math.", {
                    "torch.nn.functional:cross_entropy": "it computes lm_loss in one call",
                    "torch.nn:CrossEntropyLoss": "it computes lm_loss in one call",
                    "torch.optim:AdamW": _ADAM,
                    "torch.optim:Adam": _ADAM,
                    "torch.optim._functional:adamw": _ADAM,
                    "torch.optim._functional:adam": _ADAM,
                    "torch.optim.adamw:adamw": _ADAM,
                    "torch.optim.adam:adam": _ADAM,
                    "torch.nn.utils:clip_grad_norm_": _CLIP,
                    "torch.nn.utils:clip_grad_norm": _CLIP,
                    "torch.nn.utils:clip_grads_with_norm_": _CLIP,
                    "torch.nn.utils:get_total_norm": _CLIP,
                    "torch.optim.lr_scheduler:CosineAnnealingLR": _COSINE,
                    "torch.optim.lr_scheduler:CosineAnnealingWarmRestarts": _COSINE,
                    "transformers:get_cosine_schedule_with_warmup": _COSINE,
                    "transformers:get_scheduler": _COSINE,
                }),
    "06": Rules("write the decoding steps yourself",
                "Use topk, sort, cumsum, masked_fill, softmax and torch.multinomial.", {
                    "transformers:TemperatureLogitsWarper": _WARPER,
                    "transformers:TopKLogitsWarper": _WARPER,
                    "transformers:TopPLogitsWarper": _WARPER,
                    "transformers:MinPLogitsWarper": _WARPER,
                    "transformers:RepetitionPenaltyLogitsProcessor": _WARPER,
                    "transformers:GenerationMixin.generate": "it is the whole decoding loop, ready-made",
                }),
}


class ForbiddenCall(Exception):
    """Graded code used a library call its lesson does not allow; the message says which and why."""


def dotted(name: str) -> str:
    """`torch.nn.functional:softmax` -> `torch.nn.functional.softmax`."""
    return name.replace(":", ".")


def _package(name: str) -> str:
    """The top-level package a forbidden name lives in: `torch.nn:LayerNorm` -> `torch`."""
    return name.partition(":")[0].partition(".")[0]


def message(lesson: str, name: str) -> str:
    rules = RULES[lesson]
    return (f"lesson {lesson} asks you to {rules.task}: {dotted(name)} is not allowed in graded code "
            f"({rules.calls[name]}). {rules.hint}")


# -- enforcement, in the sandbox ------------------------------------------------------------------

_IMPORT_MACHINERY = "<frozen importlib."


def _student_is_calling() -> bool:
    """Whether the nearest caller outside installed code is a notebook cell."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.startswith(CELL_PREFIX):
            return True
        if filename.startswith(_IMPORT_MACHINERY):
            return False  # library code running while its module is imported
        if filename.startswith("<") and not filename.startswith("<frozen "):
            return False  # the stand-ins and drivers, or code generated at run time
        frame = frame.f_back
    return False


def _refuse(text: str) -> None:
    if _student_is_calling():
        raise ForbiddenCall(text)


def _guard_function(func: Callable[..., Any], text: str) -> Callable[..., Any]:
    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _refuse(text)
        return func(*args, **kwargs)

    return guarded


def _guard_class(cls: type, text: str) -> None:
    """Refuse building `cls` (or a subclass) from student code, and subclassing it there."""
    init = cls.__init__
    own_hook = cls.__dict__.get("__init_subclass__")

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        _refuse(text)
        init(self, *args, **kwargs)

    def __init_subclass__(sub: type, **kwargs: Any) -> None:
        _refuse(text)  # `class AdamW(torch.optim.AdamW)` would otherwise be built by the grader
        if own_hook is not None:
            own_hook.__get__(None, sub)(**kwargs)
        else:
            super(cls, sub).__init_subclass__(**kwargs)

    cls.__init__ = __init__  # type: ignore[misc]
    cls.__init_subclass__ = classmethod(__init_subclass__)  # type: ignore[assignment]


class _Guard:
    """The installed guard of one lesson: patches what is imported, waits for the rest."""

    def __init__(self, lesson: str):
        self.lesson = lesson
        calls = RULES[lesson].calls
        self.modules = {name: message(lesson, name) for name in calls if ":" not in name}
        self.pending = [name for name in calls if ":" in name]
        self.patching = False
        self.depth = 0  # imports in progress: a package is complete when the outermost one returns
        self.import_ = builtins.__import__

    def patch_imported(self) -> None:
        """Guard every pending name whose top-level package is imported by now."""
        if self.patching:
            return  # resolving a name imports modules, which calls back here
        self.patching = True
        try:
            ready = [n for n in self.pending if _package(n) in sys.modules]
            for name in ready:
                self.pending.remove(name)
                self.patch(name)
        finally:
            self.patching = False

    def patch(self, name: str) -> None:
        module, _, attribute = name.partition(":")
        *path, last = attribute.split(".")
        try:
            owner = importlib.import_module(module)
            for part in path:
                owner = getattr(owner, part)
            obj = getattr(owner, last)
        except (ImportError, AttributeError):
            return  # not in this version of the library, so it cannot be used either
        if inspect.isclass(obj):
            _guard_class(obj, message(self.lesson, name))
            return
        guarded = _guard_function(obj, message(self.lesson, name))
        # also where it is defined: transformers' lazy top-level module looks names up there
        for home in (owner, sys.modules.get(getattr(obj, "__module__", None) or "")):
            if getattr(home, last, None) is obj:
                setattr(home, last, guarded)

    def guarded_import(self, name: str, globals_: Any = None, locals_: Any = None,
                       fromlist: Any = (), level: int = 0) -> Any:
        """`builtins.__import__`, refusing the forbidden libraries to student code."""
        text = self.modules.get(name.partition(".")[0]) if level == 0 else None
        if text is not None:
            _refuse(text)
        self.depth += 1
        try:
            module = self.import_(name, globals_, locals_, fromlist, level)
        finally:
            self.depth -= 1
        if self.pending and not self.depth:
            self.patch_imported()
        return module


def install(lesson: str) -> None:
    """Guard this process against the lesson's forbidden calls (the sandbox child, before loading)."""
    if lesson not in RULES:
        return
    guard = _Guard(lesson)
    guard.patch_imported()
    if guard.modules or guard.pending:
        builtins.__import__ = guard.guarded_import


# -- the early warning: a static scan of the student's cells --------------------------------------

@dataclass(frozen=True)
class Finding:
    cell: str  # grade_id of the cell (or its label when it has none)
    line: int
    name: str  # the forbidden name, as written in RULES
    where: str  # "attention.ipynb, cell 9 [multi_head_attention], line 20"


def _same(path: str, name: str) -> bool:
    """Whether the dotted `path` a student wrote is the forbidden `name` (or inside it)."""
    full = dotted(name)
    return path == full or path.startswith(full + ".")


def _alias(path: str, name: str) -> bool:
    """Whether `path` likely names the same object elsewhere in its package:
    torch.nn.modules.normalization.LayerNorm for torch.nn.LayerNorm."""
    return ":" in name and path.partition(".")[0] == _package(name) and \
        path.rpartition(".")[2] == dotted(name).rpartition(".")[2]


def _method(attribute: str, name: str) -> bool:
    """Whether `.attribute` of an object we cannot see statically is the forbidden method `name`:
    x.softmax(...), model.generate(...)."""
    method = name.partition(":")[2]
    return "." in method and attribute == method.rpartition(".")[2]


class _Scanner(ast.NodeVisitor):
    """Dotted paths of the names a cell uses, resolved through its imports and simple aliases."""

    def __init__(self, aliases: dict[str, str]):
        self.aliases = aliases
        self.uses: list[tuple[int, str | None, str]] = []  # (line, resolved path or None, attribute)

    def resolve(self, node: ast.expr) -> str | None:
        parts = []
        while isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self.aliases:
            return ".".join([self.aliases[node.id], *reversed(parts)])
        return None

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            package = alias.name.partition(".")[0]  # `import torch.nn.functional` binds `torch`
            self.aliases[alias.asname or package] = alias.name if alias.asname else package
            self.uses.append((node.lineno, alias.name, ""))

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level or not node.module:
            return
        for alias in node.names:
            path = f"{node.module}.{alias.name}"
            self.aliases[alias.asname or alias.name] = path
            self.uses.append((node.lineno, path, ""))

    def visit_Assign(self, node: ast.Assign) -> None:
        self.generic_visit(node)
        path = self.resolve(node.value)
        if path is not None and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            self.aliases[node.targets[0].id] = path  # G = torch.nn.functional

    def visit_Attribute(self, node: ast.Attribute) -> None:
        self.uses.append((node.lineno, self.resolve(node), node.attr))
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.aliases:
            self.uses.append((node.lineno, self.aliases[node.id], ""))


def _forbidden_use(path: str | None, attribute: str, names: list[str]) -> str | None:
    if path is None:
        return next((n for n in names if _method(attribute, n)), None)
    return next((n for n in names if _same(path, n)), None) or \
        next((n for n in names if _alias(path, n)), None)


def scan(cells: list[Cell], notebook: str, lesson: str) -> list[Finding]:
    """The lesson's forbidden names in the cells the loader runs (imports and solution cells)."""
    if lesson not in RULES:
        return []
    names = list(RULES[lesson].calls)
    aliases: dict[str, str] = {}
    found: dict[tuple[str, str], Finding] = {}
    for cell in code_cells(cells):
        try:
            tree = ast.parse(strip_magics(cell.source))
        except SyntaxError:
            continue  # the loader reports it
        scanner = _Scanner(aliases)
        scanner.visit(tree)
        gid = cell.grade_id or cell.label(notebook)
        for line, path, attribute in scanner.uses:
            name = _forbidden_use(path, attribute, names)
            if name is not None and (gid, name) not in found:
                found[gid, name] = Finding(gid, line, name, f"{cell.label(notebook)}, line {line}")
    return list(found.values())  # in notebook order
