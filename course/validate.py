"""`course validate`: the instructor's self-check of a lesson's grading.

For each lesson: the solution notebook gets full marks, the released stub
gets zero, the stub filled with the reference gets full marks, and every
catalogued mistake (`tests/mutants/NN/mutants.toml`) loses points. It also
checks that the hidden test suite and the notebook's hidden cells name the
same tests. Notebooks are graded in parallel worker processes.
"""

from __future__ import annotations

import os
import tempfile
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from course.grading import GradeOptions, grade, point_cells, suite
from course.lessons import Lesson
from course.submissions import load_mutants, solution_sources, write_submission


@dataclass
class Expectation:
    label: str
    path: Path
    want: str  # "full" | "zero" | "loses"
    mutated_cell: str | None = None


def _grade(task: tuple[Path, str | None]) -> dict:
    """Grade a notebook for its points only; for a mistake, only the hidden cell of the function it
    changes (with each function graded on its own, the others cannot lose points)."""
    path, cell = task
    return grade(path, options=GradeOptions(only=(f"test_{cell}",) if cell else (), verdict_only=True))


def expectations(lesson: Lesson, workdir: Path) -> list[Expectation]:
    """Every notebook `validate` grades, with what it should score."""
    reference = solution_sources(lesson)
    filled = workdir / "complete" / lesson.notebook
    out = [
        Expectation("solution notebook", lesson.solution, "full"),
        Expectation("released stub", lesson.assignment, "zero"),
        Expectation("stub filled with the reference", write_submission(lesson, filled), "full"),
    ]
    for m in load_mutants(lesson):
        path = write_submission(lesson, workdir / m.name / lesson.notebook,
                                overrides={m.cell: m.source(reference)})
        out.append(Expectation(f"mistake {m.name}: {m.mistake}", path, "loses", m.cell))
    return out


def validate(lesson: Lesson, workers: int | None = None) -> tuple[bool, str]:
    """Run the self-check; returns `(ok, report)`."""
    lines = [f"Lesson {lesson.number} · {lesson.notebook}"]
    ok = True
    hidden = [gid for gid, _ in point_cells(lesson)]
    if sorted(suite(lesson).cells()) != sorted(hidden):
        ok = False
        lines.append(f"  FAIL hidden cells {hidden} != hidden test suite {suite(lesson).cells()}")
    with tempfile.TemporaryDirectory(prefix=f"course-validate-{lesson.number}-") as tmp:
        exp = expectations(lesson, Path(tmp))
        with ProcessPoolExecutor(max_workers=workers or os.cpu_count() or 1) as pool:
            tasks = [(e.path, e.mutated_cell if f"test_{e.mutated_cell}" in hidden else None) for e in exp]
            results = list(pool.map(_grade, tasks))
    for e, r in zip(exp, results):
        score, top = r["score"], r["max_score"]
        lost = [t["id"] for t in r["tests"] if t["points"] < t["max_points"]]
        good = {"full": top > 0 and score == top, "zero": score == 0,
                "loses": score < top}[e.want]
        ok &= good
        detail = f"loses {', '.join(lost)}" if e.want == "loses" and lost else ""
        if not good:
            detail = "; ".join(f"{t['id']}: {t['status']}" for t in r["tests"]) or "no tests"
        lines.append(f"  {'ok  ' if good else 'FAIL'} {score:g}/{top:g}  {e.label}  {detail}".rstrip())
    n_mut = sum(e.want == "loses" for e in exp)
    lines.append(f"  {n_mut} catalogued mistakes, "
                 f"{'all lose points' if ok else 'SEE FAILURES ABOVE'}")
    return ok, "\n".join(lines)
