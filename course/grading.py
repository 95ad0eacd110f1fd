"""`course grade`: score one notebook with the hidden tests, student code kept in a sandbox.

The grader's own process reads the points from the solution notebook, loads
the reference from it and runs the hidden properties; every call into the
student's code goes to a `Sandbox`. The result is the JSON object of
COURSE_SPEC (`lesson`, `notebook`, `score`, `max_score`, `tests`), produced
even for a notebook that cannot be read (score 0 and the reason).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course.lessons import Lesson, lesson_for
from course.loader import load_notebook
from course.notebook import NotebookError, graded_tests, read_notebook
from course.sandbox import Limits, Sandbox


@dataclass(frozen=True)
class GradeOptions:
    limits: Limits = Limits()
    call_timeout: float = 10.0  # one call of a student function
    cell_budget: float = 60.0  # all calls of one hidden test cell
    hide: tuple[Path, ...] = ()  # extra folders the sandbox must not see
    only: tuple[str, ...] = ()  # run just these hidden cells (empty: all); the rest are left out
    verdict_only: bool = False  # points without the full feedback (`harness.run_cell`)


@functools.cache
def reference(lesson: Lesson) -> types.ModuleType:
    """The lesson's reference solution, loaded (trusted) from the solution notebook."""
    return load_notebook(lesson.solution, module_name=f"reference_{lesson.number}").module


@functools.cache
def suite(lesson: Lesson) -> Any:
    """The lesson's hidden test suite (`autograder/NN/checks.py`)."""
    spec = importlib.util.spec_from_file_location(f"autograder.lesson{lesson.number}", lesson.checks)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.suite


def point_cells(lesson: Lesson) -> list[tuple[str, float]]:
    """`(grade_id, points)` of the lesson's hidden test cells, from the solution notebook."""
    return [(c.grade_id or "", c.points) for c in graded_tests(read_notebook(lesson.solution))]


def graded_functions(lesson: Lesson) -> tuple[str, ...]:
    """Names of the lesson's graded functions and classes (the solution cells' grade ids)."""
    return tuple(c.grade_id for c in read_notebook(lesson.solution) if c.is_solution and c.grade_id)


def _result(lesson: Lesson | None, path: Path, tests: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "lesson": lesson.number if lesson else None,
        "notebook": str(path),
        "score": float(sum(t["points"] for t in tests)),
        "max_score": float(sum(t["max_points"] for t in tests)),
        "tests": tests,
    }


def ungradable(lesson: Lesson | None, path: Path, why: str) -> dict[str, Any]:
    """The result for a notebook that cannot be graded: every test 0, with the reason."""
    if lesson is None:
        tests = [{"id": "notebook", "points": 0.0, "max_points": 0.0, "status": "error",
                  "feedback": why}]
    else:
        tests = [{"id": gid, "points": 0.0, "max_points": pts, "status": "error", "feedback": why}
                 for gid, pts in point_cells(lesson)]
    return _result(lesson, path, tests)


def grade(path: str | Path, lesson: Lesson | None = None,
          options: GradeOptions = GradeOptions()) -> dict[str, Any]:
    """Grade the notebook at `path`; never raises for anything the notebook does."""
    from autograder.harness import RemoteStudent, run_cell

    path = Path(path)
    try:
        cells = read_notebook(path)
    except NotebookError as err:
        return ungradable(lesson or lesson_for(path), path, f"the notebook cannot be read: {err}")
    lesson = lesson or lesson_for(path, cells)
    if lesson is None:
        return ungradable(None, path, "cannot tell which lesson this notebook belongs to; "
                          "pass --lesson NN")
    tests = suite(lesson)
    cells = [(gid, pts) for gid, pts in point_cells(lesson) if not options.only or gid in options.only]
    sandbox = Sandbox(path, options.limits, hide=options.hide, standins=tests.standins,
                      graded=graded_functions(lesson), lesson=lesson.number)
    sandbox.start()  # torch imports in the child while the reference loads here
    try:
        ref = reference(lesson)
        student = RemoteStudent(sandbox, options.call_timeout)
        results = [run_cell(tests, gid, pts, student, ref, options.cell_budget,
                            options.verdict_only).as_dict() for gid, pts in cells]
    finally:
        sandbox.kill()
    return _result(lesson, path, results)


def format_table(result: dict[str, Any]) -> str:
    """The human-readable report of `course grade`."""
    name = Path(result["notebook"]).name
    lines = [f"Lesson {result['lesson'] or '??'} · {name}", ""]
    width = max([len(t["id"]) for t in result["tests"]] + [5])
    for t in result["tests"]:
        pts = f"{t['points']:g} / {t['max_points']:g}"
        lines.append(f"  {t['id']:<{width}}  {pts:>9}  {t['status']}")
    total = f"{result['score']:g} / {result['max_score']:g}"
    lines += [f"  {'total':<{width}}  {total:>9}", ""]
    for t in result["tests"]:
        if t["status"] != "passed" and t["feedback"]:
            lines.append(f"{t['id']} ({t['status']}):")
            lines += ["  " + line for line in t["feedback"].splitlines()]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
