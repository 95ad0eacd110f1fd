"""Turn a lesson notebook into a Python module.

This is the one loader of the course: the visible tests, the hidden tests and
the grader all call it, so a student's code means the same thing everywhere.
It executes the locked `imports` cell and the solution cells (the graded
functions), in notebook order, and nothing else: demos, figures and training
loops never run. IPython magics and shell lines (`%time`, `!pip ...`) are
dropped. Each cell is compiled under a file name that names the notebook and
the cell, so a traceback reads "attention.ipynb, cell 12 [causal_mask], line 4".
"""

from __future__ import annotations

import linecache
import re
import sys
import traceback
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from course.notebook import Cell, read_notebook

IMPORTS_ID = "imports"
CELL_PREFIX = "<notebook "
_MAGIC = re.compile(r"^(\s*)(%|!)")


class NotebookLoadError(Exception):
    """A cell of the notebook failed to execute; the message names the cell."""


@dataclass
class LoadedNotebook:
    module: types.ModuleType
    errors: dict[str, str] = field(default_factory=dict)  # grade_id -> student-facing traceback


def code_cells(cells: list[Cell]) -> list[Cell]:
    """The cells the loader executes: `imports` and the solution cells, in order."""
    return [c for c in cells if c.cell_type == "code" and (c.grade_id == IMPORTS_ID or c.is_solution)]


def strip_magics(source: str) -> str:
    """Replace IPython magic and shell lines by `pass`, keeping line numbers."""
    return "\n".join(
        _MAGIC.sub(r"\1pass  # ", line) if _MAGIC.match(line) else line
        for line in source.splitlines()
    )


def cell_filename(notebook: str, cell: Cell) -> str:
    return f"{CELL_PREFIX}{cell.label(notebook)}>"


def student_traceback(exc: BaseException) -> str:
    """The traceback of `exc` restricted to frames in notebook cells, then the error line.

    Frames from the loader, the grader or libraries are left out: the student
    sees where in *their* cells things went wrong, and nothing of ours.
    """
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(CELL_PREFIX)
    ]
    lines = []
    for f in frames:
        where = f.filename[len(CELL_PREFIX) : -1]
        lines.append(f"  {where}, line {f.lineno}, in {f.name}")
        if f.line:
            lines.append(f"    {f.line.strip()}")
    lines.append("".join(traceback.format_exception_only(type(exc), exc)).strip())
    return "\n".join(lines)


def load_notebook(
    path: str | Path,
    *,
    strict: bool = True,
    skip: Iterable[str] = (),
    before_cell: Callable[[Cell], None] | None = None,
    module_name: str | None = None,
) -> LoadedNotebook:
    """Execute the `imports` cell and the solution cells of the notebook at `path`.

    strict: raise `NotebookLoadError` at the first failing cell; otherwise
        record the failure under the cell's grade id and go on, so one broken
        function costs only its own points.
    skip: grade ids of cells not to execute (the grader skips a cell that
        hung or killed the process on an earlier attempt).
    before_cell: called with each cell just before it runs.
    """
    path = Path(path)
    cells = read_notebook(path)
    name = module_name or "notebook_" + re.sub(r"\W", "_", path.stem)
    module = types.ModuleType(name, f"Graded cells of {path.name}")
    module.__file__ = str(path)
    sys.modules[name] = module
    loaded = LoadedNotebook(module)
    skipped = set(skip)
    for cell in code_cells(cells):
        gid = cell.grade_id or f"cell {cell.index + 1}"
        if gid in skipped:
            continue
        if before_cell is not None:
            before_cell(cell)
        filename = cell_filename(path.name, cell)
        source = strip_magics(cell.source)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        try:
            exec(compile(source, filename, "exec"), module.__dict__)
        except (Exception, SystemExit) as exc:
            if strict:
                raise NotebookLoadError(
                    f"{cell.label(path.name)} failed:\n{student_traceback(exc)}"
                ) from exc
            loaded.errors[gid] = student_traceback(exc)
    return loaded
