"""Student notebooks made from the released stub: complete, untouched, or with a catalogued mistake.

Used by `course validate` (solutions full marks, stubs zero, every mistake
loses points), by `course demo` (its three sample students) and by tests. A
submission is the released notebook with some solution cells filled in, so
it carries the same nbgrader metadata and checksums a real student's would.
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from course.lessons import Lesson
from course.notebook import read_notebook

_MARKER = re.compile(r"^\s*### (BEGIN|END) SOLUTION\s*$")


def solution_sources(lesson: Lesson) -> dict[str, str]:
    """Each solution cell of the reference, without its `### BEGIN/END SOLUTION` lines."""
    return {
        cell.grade_id: "\n".join(
            line for line in cell.source.splitlines() if not _MARKER.match(line))
        for cell in read_notebook(lesson.solution) if cell.is_solution and cell.grade_id
    }


@dataclass(frozen=True)
class Mutant:
    name: str
    cell: str  # grade_id of the solution cell it changes
    mistake: str  # what the student got wrong, in one line
    replace: tuple[tuple[str, str], ...]

    def source(self, reference: dict[str, str]) -> str:
        text = reference[self.cell]
        for old, new in self.replace:
            if old not in text:
                raise ValueError(f"mutant {self.name}: {old!r} is not in the reference cell {self.cell}")
            text = text.replace(old, new)
        return text


def load_mutants(lesson: Lesson) -> list[Mutant]:
    """The catalogued mistakes of a lesson (`tests/mutants/NN/mutants.toml`)."""
    if not lesson.mutants.exists():
        return []
    data = tomllib.loads(lesson.mutants.read_text())
    return [Mutant(m["name"], m["cell"], m["mistake"],
                   tuple((old, new) for old, new in m["replace"])) for m in data.get("mutant", [])]


def write_submission(lesson: Lesson, dest: Path, *, complete: bool = True,
                     overrides: dict[str, str] | None = None, base: Path | None = None) -> Path:
    """Write a student notebook to `dest`.

    base: the notebook to start from (default: the released stub).
    complete: fill every solution cell with the reference answer.
    overrides: grade_id -> cell source, applied last (a mistake, or another correct answer).
    """
    data = json.loads((base or lesson.assignment).read_text())
    fills = dict(solution_sources(lesson)) if complete else {}
    fills.update(overrides or {})
    for cell in data["cells"]:
        gid = cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")
        if cell.get("metadata", {}).get("nbgrader", {}).get("solution") and gid in fills:
            cell["source"] = fills[gid]
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n")
    return dest
