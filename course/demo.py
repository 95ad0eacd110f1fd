"""`course demo`: the whole nbgrader pipeline of one lesson, end to end, in a temporary folder.

An instructor course directory and an exchange folder are created; the lesson
is generated and released; three sample students fetch it, put their work in
(a complete notebook, the untouched stub, a notebook with a catalogued
mistake) and submit; the instructor collects, autogrades (hidden cells scored
by the isolated grader), generates feedback and exports grades. The
gradebook is read back from nbgrader's sqlite database and printed next to
`course grade`'s score for the same submitted notebook: they must agree.
"""

from __future__ import annotations

import csv
import shutil
import tempfile
import time
from pathlib import Path

from course.grading import grade, point_cells
from course.lessons import Lesson
from course.release import init_course_dir, nbgrader
from course.submissions import load_mutants, solution_sources, write_submission

DEMO_MISTAKE = "no_sqrt_scaling"  # the mistake the third sample student makes (lesson 03)


def sample_students(lesson: Lesson) -> dict[str, tuple[str, dict[str, str] | None, bool]]:
    """name -> (what they hand in, cell overrides, complete)."""
    mutants = load_mutants(lesson)
    mistake = next((m for m in mutants if m.name == DEMO_MISTAKE), mutants[0] if mutants else None)
    students: dict[str, tuple[str, dict[str, str] | None, bool]] = {
        "ada": ("every function implemented", None, True),
        "ben": ("the untouched stub", None, False),
    }
    if mistake is not None:
        students["chen"] = (f"one mistake: {mistake.mistake}",
                            {mistake.cell: mistake.source(solution_sources(lesson))}, True)
    return students


def _step(message: str) -> float:
    print(f"· {message}", flush=True)
    return time.monotonic()


def demo(lesson: Lesson, keep: bool = False) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="course-demo-"))
    root, exchange = tmp / "instructor", tmp / "exchange"
    exchange.mkdir()
    flags = [f"--Exchange.root={exchange}", "--course=llm-course"]
    nb_id = Path(lesson.notebook).stem
    try:
        start = _step(f"course directory {root}")
        init_course_dir(root, [lesson])
        _step(f"nbgrader generate_assignment {lesson.number}")
        nbgrader(root, "generate_assignment", lesson.number, "--force")
        _step(f"nbgrader release_assignment {lesson.number}")
        nbgrader(root, "release_assignment", lesson.number, "--force", *flags)
        students = sample_students(lesson)
        for name, (what, overrides, complete) in students.items():
            home = tmp / "students" / name
            home.mkdir(parents=True)
            _step(f"{name}: fetch_assignment, hand in {what}, submit")
            nbgrader(home, "fetch_assignment", lesson.number, *flags)
            fetched = home / lesson.number / lesson.notebook
            write_submission(lesson, fetched, base=fetched, complete=complete, overrides=overrides)
            nbgrader(home, "submit", lesson.number, f"--student={name}", *flags)
        _step("nbgrader collect")
        nbgrader(root, "collect", lesson.number, *flags)
        _step("nbgrader autograde (hidden cells scored by the isolated grader)")
        nbgrader(root, "autograde", lesson.number, "--force")
        _step("nbgrader generate_feedback")
        nbgrader(root, "generate_feedback", lesson.number, "--force")
        _step("nbgrader export")
        nbgrader(root, "export", "--to", str(tmp / "grades.csv"))
        elapsed = time.monotonic() - start

        gradebook = _gradebook(root, lesson, nb_id)
        with open(tmp / "grades.csv", newline="") as f:
            exported = {row["student_id"]: float(row["raw_score"]) for row in csv.DictReader(f)}
        print(f"\nGradebook of lesson {lesson.number} (nbgrader's sqlite database), "
              f"pipeline took {elapsed:.0f} s\n")
        ids = [gid for gid, _ in point_cells(lesson)]
        header = f"  {'student':<8} {'hands in':<44} " + " ".join(f"{i.removeprefix('test_')[:12]:>12}" for i in ids)
        print(header + f" {'nbgrader':>9} {'csv':>5} {'course grade':>13}")
        agree = True
        for name, (what, _, _) in students.items():
            row = gradebook[name]
            submitted = root / "submitted" / name / lesson.number / lesson.notebook
            mine = grade(submitted, lesson)["score"]
            agree &= mine == row["score"] == exported.get(name)
            cells = " ".join(f"{row['cells'][i]:>12g}" for i in ids)
            print(f"  {name:<8} {what[:44]:<44} {cells} {row['score']:>5g}/{row['max']:<3g}"
                  f" {exported.get(name, float('nan')):>5g} {mine:>13g}")
        feedback = sorted((root / "feedback").rglob("*.html"))
        print(f"\nFeedback pages: {len(feedback)} (e.g. {feedback[0] if feedback else 'none'})")
        print("nbgrader and course grade agree." if agree else "MISMATCH between nbgrader and course grade!")
        return 0 if agree else 1
    finally:
        if keep:
            print(f"Kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def _gradebook(root: Path, lesson: Lesson, nb_id: str) -> dict[str, dict]:
    """Per student: points of each graded cell, total and maximum, from nbgrader's database."""
    from nbgrader.api import Gradebook

    out: dict[str, dict] = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "llm-course") as gb:
        for student in gb.students:
            sub = gb.find_submission_notebook(nb_id, lesson.number, student.id)
            cells = {g.name: g.score for g in sub.grades}
            out[student.id] = {"cells": cells, "score": sub.score, "max": sub.max_score}
    return out
