"""The visible tests: the notebook's own check cells, run by pytest.

Each lesson's check cells (`grade_id` `check_<function>`, locked) are the one
source of the visible tests: students run them in JupyterLab, and
`assignments/NN/test_<name>.py` turns each into a pytest test with
`visible_checks`. The check's code comes from the released notebook next to
the test file; the functions it checks come from the notebook under test —
that same notebook by default, or the one given with `--notebook PATH`.
A check also fails, before running anything, when its function's cell uses a
library call the lesson does not allow (`course.forbidden`): the grader would
refuse it.
"""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from course import forbidden
from course.loader import CELL_PREFIX, LoadedNotebook, load_notebook, strip_magics
from course.notebook import read_notebook

CHECK_PREFIX = "check_"


@functools.cache
def _load(path: Path) -> LoadedNotebook:
    return load_notebook(path, strict=False, module_name=f"visible_{path.stem}")


@functools.cache
def _forbidden_uses(path: Path, lesson: str) -> dict[str, str]:
    """grade_id -> what the grader will refuse in that cell, one line per forbidden name."""
    out: dict[str, str] = {}
    for f in forbidden.scan(read_notebook(path), path.name, lesson):
        line = f"{f.where}: {forbidden.message(lesson, f.name)}"
        out[f.cell] = f"{out[f.cell]}\n{line}" if f.cell in out else line
    return out


def _not_implemented(exc: NotImplementedError, notebook: str) -> str:
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(CELL_PREFIX)]
    where = frames[-1].name if frames else "a function"
    return (f"{where} is not implemented yet: fill in its cell in {notebook} "
            "(it still raises NotImplementedError).")


def run_check(source: str, cell_name: str, notebook: Path, lesson: str = "") -> None:
    """Execute one check cell against the graded functions of `notebook` (of `lesson`, "03")."""
    function = cell_name.removeprefix(CHECK_PREFIX)
    refused = _forbidden_uses(notebook.resolve(), lesson).get(function)
    if refused:
        pytest.fail(refused, pytrace=False)
    loaded = _load(notebook.resolve())
    if function in loaded.errors:
        pytest.fail(f"the cell {function} of {notebook.name} failed to run:\n{loaded.errors[function]}",
                    pytrace=False)
    namespace = dict(vars(loaded.module))
    filename = f"{CELL_PREFIX}{notebook.name}, check cell [{cell_name}]>"
    try:
        exec(compile(strip_magics(source), filename, "exec"), namespace)
        return
    except NotImplementedError as exc:
        message = _not_implemented(exc, notebook.name)
    pytest.fail(message, pytrace=False)  # outside the except: no chained traceback


def visible_checks(test_file: str, notebook: str) -> Callable[..., Any]:
    """A pytest test, parametrized over the check cells of the lesson notebook beside `test_file`."""
    released = Path(test_file).resolve().with_name(notebook)
    lesson = released.parent.name  # assignments/03/test_attention.py -> "03"
    checks = {c.grade_id: c.source for c in read_notebook(released)
              if c.grade_id and c.grade_id.startswith(CHECK_PREFIX)}

    @pytest.mark.parametrize("check", list(checks), ids=[c.removeprefix(CHECK_PREFIX) for c in checks])
    def test_check(check: str, request: pytest.FixtureRequest) -> None:
        chosen = request.config.getoption("notebook", default=None)
        target = Path(chosen) if chosen and Path(chosen).name == notebook else released
        run_check(checks[check], check, target, lesson)

    return test_check
