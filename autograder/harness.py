"""The harness the hidden tests run in: properties, students, and verdicts.

A lesson's hidden tests (`autograder/NN/checks.py`) build a `Suite` and
register properties on it, each tied to one hidden test cell of the solution
notebook (its `grade_id`) and run with Hypothesis when it draws cases:

    suite = Suite("03")

    @suite.check("test_causal_mask", "matches the reference", cases=st.integers(1, 40))
    def _(student, ref, n):
        expect_close(student.call("causal_mask", n), ref.causal_mask(n), "causal_mask(n)")

`student` is a `Student`: the sandboxed notebook (`RemoteStudent`) when
grading, or a plain namespace (`LocalStudent`) when an instructor runs the
solution notebook. `ref` is the reference module, loaded from the solution
notebook in this (trusted) process. A hidden cell scores its points when
every one of its properties holds, and 0 otherwise, with feedback that names
each failed property, the smallest input Hypothesis found and the error size.
"""

from __future__ import annotations

import os
import tempfile
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import errors as hyp_errors
from hypothesis.strategies import SearchStrategy

from autograder.compare import Failure
from course.sandbox import Sandbox, SandboxFailure, StudentError, memory_usage

os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY", tempfile.mkdtemp(prefix="course-hypothesis-"))

GRADING = settings(
    derandomize=True, database=None, deadline=None, print_blob=False,
    report_multiple_bugs=False, verbosity=Verbosity.quiet, max_examples=40,
    suppress_health_check=list(HealthCheck),
    phases=(Phase.explicit, Phase.generate, Phase.shrink),  # no "explain": it prints our source
)


class Student(Protocol):
    def allow(self, seconds: float) -> None:
        """Give the calls that follow, together, this many seconds."""
        ...

    def call(self, function: str, *args: Any, **kwargs: Any) -> Any: ...

    def call_within(self, seconds: float, function: str, *args: Any, **kwargs: Any) -> Any:
        """`call` with its own, tighter time limit."""
        ...

    def call_with_inputs(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, list, dict]:
        """`(result, args, kwargs)` as the function left its arguments after the call."""
        ...

    def drive(self, driver: str, function: str, *args: Any, **kwargs: Any) -> Any:
        """Run the suite's `driver(namespace, *args, **kwargs)` next to the student's code.

        For what a plain call cannot express (build the student's class, train
        with their optimizer, ...); the driver returns plain data, and `function`
        names the graded object it exercises (for stand-ins and messages).
        """
        ...

    def peak_memory(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, int]:
        """`(result, bytes)`: how far resident memory rose during the call."""
        ...


class RemoteStudent:
    """The student's notebook in a sandbox, with a time allowance per hidden cell."""

    def __init__(self, sandbox: Sandbox, call_timeout: float = 10.0):
        self.sandbox = sandbox
        self.call_timeout = call_timeout
        self.deadline = float("inf")
        self.budget = 0.0

    def allow(self, seconds: float) -> None:
        self.budget = seconds
        self.deadline = time.monotonic() + seconds

    def _timeout(self, function: str) -> float:
        # (Re)loading the notebook, after a crash say, is the sandbox's time, not this cell's.
        start = time.monotonic()
        self.sandbox.load()
        self.deadline += time.monotonic() - start
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise SandboxFailure("timeout", f"the hidden tests of {function} took longer than "
                                 f"{self.budget:g} s in all; your implementation is too slow")
        return min(self.call_timeout, remaining)

    def call(self, function: str, *args: Any, **kwargs: Any) -> Any:
        return self.sandbox.call(function, *args, timeout=self._timeout(function), **kwargs)

    def call_within(self, seconds: float, function: str, *args: Any, **kwargs: Any) -> Any:
        """A call with its own, tighter time limit (for "fast enough" properties)."""
        return self.sandbox.call(function, *args, timeout=min(seconds, self._timeout(function)),
                                 **kwargs)

    def call_with_inputs(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, list, dict]:
        return self.sandbox.call(function, *args, timeout=self._timeout(function),
                                 return_args=True, **kwargs)

    def peak_memory(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, int]:
        return self.sandbox.peak_memory(function, *args, timeout=self._timeout(function), **kwargs)

    def drive(self, driver: str, function: str, *args: Any, **kwargs: Any) -> Any:
        return self.sandbox.call(function, *args, timeout=self._timeout(function), driver=driver,
                                 **kwargs)


class LocalStudent:
    """Functions from a namespace in this process (trusted code only: instructors, tests)."""

    def __init__(self, namespace: dict[str, Any], sandbox_code: str = ""):
        self.namespace = namespace
        self.helpers: dict[str, Any] = {}
        exec(compile(sandbox_code, "<stand-ins>", "exec"), self.helpers)

    def allow(self, seconds: float) -> None:
        pass

    def call(self, function: str, *args: Any, **kwargs: Any) -> Any:
        func = self.namespace.get(function)
        if not callable(func):
            raise StudentError("missing", f"no function named {function!r}")
        try:
            return func(*args, **kwargs)
        except NotImplementedError as exc:
            raise StudentError("not_implemented", repr(exc)) from exc
        except Exception as exc:
            raise StudentError("exception", f"{type(exc).__name__}: {exc}") from exc

    def call_with_inputs(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, list, dict]:
        return self.call(function, *args, **kwargs), list(args), kwargs

    def drive(self, driver: str, function: str, *args: Any, **kwargs: Any) -> Any:
        if not callable(self.namespace.get(function)):
            raise StudentError("missing", f"no function named {function!r}")
        try:
            return self.helpers[driver](self.namespace, *args, **kwargs)
        except NotImplementedError as exc:
            raise StudentError("not_implemented", repr(exc)) from exc
        except Exception as exc:  # noqa: BLE001 - reported like a sandboxed failure
            raise StudentError("exception", f"{type(exc).__name__}: {exc}") from exc

    def call_within(self, seconds: float, function: str, *args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        result = self.call(function, *args, **kwargs)
        if time.monotonic() - start > seconds:
            raise SandboxFailure("timeout", f"{function} did not return within {seconds:g} s")
        return result

    def peak_memory(self, function: str, *args: Any, **kwargs: Any) -> tuple[Any, int]:
        pid = os.getpid()
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before = memory_usage(pid)["VmRSS"]
        result = self.call(function, *args, **kwargs)
        return result, max(0, memory_usage(pid)["VmHWM"] - before)


@dataclass
class Property:
    cell: str  # grade_id of the hidden test cell
    description: str  # what must hold, in the student's words
    fn: Callable[..., None]  # (student, ref) or (student, ref, case)
    cases: SearchStrategy[Any] | None
    max_examples: int


@dataclass
class Suite:
    """A lesson's hidden tests.

    standins: source of correct versions of graded functions, written with
    library calls (never the reference code, which must not enter the
    sandbox). While one graded function is tested, the others it calls are
    these stand-ins, so each function earns or loses only its own points.
    """

    lesson: str
    properties: list[Property] = field(default_factory=list)
    standins: str = ""

    def check(self, cell: str, description: str, *, cases: SearchStrategy[Any] | None = None,
              max_examples: int = 40) -> Callable[[Callable[..., None]], Callable[..., None]]:
        def register(fn: Callable[..., None]) -> Callable[..., None]:
            self.properties.append(Property(cell, description, fn, cases, max_examples))
            return fn
        return register

    def cells(self) -> list[str]:
        return list(dict.fromkeys(p.cell for p in self.properties))

    def for_cell(self, cell: str) -> list[Property]:
        return [p for p in self.properties if p.cell == cell]


@dataclass
class TestResult:
    id: str
    points: float
    max_points: float
    status: str  # passed | failed | error | timeout
    feedback: str

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "points": self.points, "max_points": self.max_points,
                "status": self.status, "feedback": self.feedback}


def _run_property(prop: Property, student: Student, ref: types.ModuleType, shrink: bool = True) -> None:
    """Run one property; re-raise its failure with the smallest failing input named (with `shrink`)
    or the first one found."""
    if prop.cases is None:
        prop.fn(student, ref)
        return
    last: list[Any] = []
    phases = GRADING.phases if shrink else tuple(p for p in GRADING.phases if p != Phase.shrink)

    @settings(GRADING, max_examples=prop.max_examples, phases=phases)
    @given(prop.cases)
    def run(case: Any) -> None:
        last[:] = [case]
        prop.fn(student, ref, case)

    try:
        run()
    except (Failure, StudentError) as err:
        err.case = last[0] if last else None  # type: ignore[attr-defined]
        raise


def _not_implemented(function: str) -> str:
    return (f"{function} is not implemented yet (it still raises NotImplementedError): "
            "replace the `raise NotImplementedError()` line with your code")


def run_cell(suite: Suite, cell: str, max_points: float, student: Student,
             ref: types.ModuleType, budget: float = 60.0, verdict_only: bool = False) -> TestResult:
    """Run every property of one hidden test cell; all must hold for its points.

    `verdict_only` (for `course validate`, which needs the points, not the advice) stops at the
    first property that fails and does not shrink its input: the same points, sooner."""
    props = suite.for_cell(cell)
    function = cell.removeprefix("test_")
    if not props:
        return TestResult(cell, 0.0, max_points, "error",
                          f"GRADER FAULT, not your code: no hidden tests for {cell}; "
                          "ask for a regrade")
    student.allow(budget)
    lines: list[str] = []
    status = "passed"
    for prop in props:
        if verdict_only and status != "passed":
            break
        try:
            _run_property(prop, student, ref, shrink=not verdict_only)
            lines.append(f"ok   {prop.description}")
            continue
        except Failure as err:
            status = "failed"
            lines.append(f"FAIL {prop.description}\n     {_where(err)}{err}")
            continue
        except StudentError as err:
            status = "error"
            if err.kind == "not_implemented":
                return TestResult(cell, 0.0, max_points, "error", _not_implemented(function))
            if err.kind == "forbidden":  # one clear message, not one per property
                return TestResult(cell, 0.0, max_points, "error", str(err))
            lines.append(f"FAIL {prop.description}\n     {_where(err)}your code raised an error:\n"
                         + _indent(str(err)))
        except (hyp_errors.Flaky, hyp_errors.FlakyFailure):
            status = "failed"
            lines.append(f"FAIL {prop.description}\n     your function gave different results for "
                         "the same input (does it use randomness or state kept between calls?)")
        except SandboxFailure as err:
            status = "timeout" if err.kind == "timeout" else "error"
            lines.append(f"FAIL {prop.description}\n     {err}")
            break  # the child is gone; the rest of this cell would only repeat the wait
        except Exception as err:  # noqa: BLE001 - a fault of the grader, never the student's zero
            return TestResult(cell, 0.0, max_points, "error",
                              f"GRADER FAULT, not your code ({type(err).__name__}: {err}); "
                              "ask for a regrade")
    points = max_points if status == "passed" else 0.0
    return TestResult(cell, points, max_points, status, "\n".join(lines))


def _where(err: BaseException) -> str:
    case = getattr(err, "case", None)
    return f"on {case!r}: " if case is not None else ""


def _indent(text: str) -> str:
    return "\n".join("       " + line for line in text.splitlines())
