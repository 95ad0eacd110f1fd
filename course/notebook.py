"""Reading notebooks and their nbgrader markup, without executing anything.

A notebook is read with `json` (nbformat's validation costs over a second per
process and adds nothing we rely on). Every reader here tolerates damage: a
missing key or a malformed cell becomes a `NotebookError` with a plain message,
never a traceback from deep inside a dict lookup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class NotebookError(Exception):
    """The file is not a notebook this course can read; the message says why."""


@dataclass(frozen=True)
class Cell:
    index: int  # position in the notebook, 0-based
    cell_type: str  # "code" | "markdown" | "raw"
    source: str
    nbgrader: dict[str, Any]

    @property
    def grade_id(self) -> str | None:
        gid = self.nbgrader.get("grade_id")
        return gid if isinstance(gid, str) else None

    @property
    def is_solution(self) -> bool:
        return bool(self.nbgrader.get("solution")) and self.cell_type == "code"

    @property
    def is_graded_test(self) -> bool:
        return bool(self.nbgrader.get("grade")) and not self.nbgrader.get("solution")

    @property
    def points(self) -> float:
        try:
            return float(self.nbgrader.get("points", 0))
        except (TypeError, ValueError):
            return 0.0

    def label(self, notebook_name: str) -> str:
        """How tracebacks and messages name this cell: file, cell number, grade id."""
        name = f"{notebook_name}, cell {self.index + 1}"
        return f"{name} [{self.grade_id}]" if self.grade_id else name


def _source(raw: Any) -> str:
    if isinstance(raw, list):
        return "".join(x for x in raw if isinstance(x, str))
    return raw if isinstance(raw, str) else ""


def parse_notebook(data: Any) -> list[Cell]:
    """Cells of an nbformat-4 notebook given as decoded JSON."""
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        if isinstance(data, dict) and "worksheets" in data:
            raise NotebookError("this is an nbformat 3 notebook; open and save it in JupyterLab")
        raise NotebookError("the file is JSON but not a Jupyter notebook (no 'cells' list)")
    if data.get("nbformat", 4) != 4:
        raise NotebookError(f"unsupported nbformat {data.get('nbformat')!r}; expected 4")
    cells = []
    for i, raw in enumerate(data["cells"]):
        if not isinstance(raw, dict):
            raise NotebookError(f"cell {i + 1} is not a JSON object")
        meta = raw.get("metadata") if isinstance(raw.get("metadata"), dict) else {}
        nbg = meta.get("nbgrader") if isinstance(meta.get("nbgrader"), dict) else {}
        cells.append(Cell(i, str(raw.get("cell_type", "")), _source(raw.get("source")), nbg))
    return cells


def read_notebook(path: str | Path) -> list[Cell]:
    """Cells of the notebook at `path`; `NotebookError` when it cannot be read."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise NotebookError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise NotebookError(f"cannot read {path}: {err}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise NotebookError(
            f"{path.name} is not valid JSON (line {err.lineno}, column {err.colno}): "
            "the file is damaged or truncated; download a fresh copy or restore a checkpoint"
        ) from None
    return parse_notebook(data)


def cells_by_id(cells: list[Cell]) -> dict[str, Cell]:
    """Cells that carry a grade id, by id (the first one wins on duplicates)."""
    out: dict[str, Cell] = {}
    for cell in cells:
        if cell.grade_id is not None:
            out.setdefault(cell.grade_id, cell)
    return out


def graded_tests(cells: list[Cell]) -> list[Cell]:
    """The test cells that carry points (nbgrader `grade` cells that are not solutions)."""
    return [c for c in cells if c.is_graded_test and c.grade_id]
