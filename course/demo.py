"""`course demo`: the whole nbgrader pipeline of one lesson, end to end, in a temporary folder.

An instructor course directory and an exchange folder are created; the lesson
is generated and released; sample students fetch it, put their work in and
submit; the instructor collects, autogrades (hidden cells scored by the
isolated grader), generates feedback and exports grades. The gradebook is
read back from nbgrader's sqlite database and printed next to `course
grade`'s score for the same submitted notebook: they must agree.
"""

from __future__ import annotations

import csv
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from course.grading import grade, point_cells
from course.lessons import Lesson
from course.release import autograde, init_course_dir, nbgrader
from course.submissions import load_mutants, solution_sources, write_submission

DEMO_MISTAKE = "no_sqrt_scaling"  # the mistake the third sample student makes (lesson 03)
FLAGS = ["--course=llm-course"]


@dataclass
class Student:
    name: str
    hands_in: str  # what their notebook is, in words
    fill: Callable[[Path], None]  # turns the fetched notebook into their submission


def sample_students(lesson: Lesson) -> list[Student]:
    """A complete notebook, the untouched stub, and one catalogued mistake."""
    reference = solution_sources(lesson)
    students = [
        Student("ada", "every function implemented",
                lambda nb: write_submission(lesson, nb, base=nb)),
        Student("ben", "the untouched stub", lambda nb: None),
    ]
    mutants = load_mutants(lesson)
    mistake = next((m for m in mutants if m.name == DEMO_MISTAKE), mutants[0] if mutants else None)
    if mistake is not None:
        students.append(Student(
            "chen", f"one mistake: {mistake.mistake}",
            lambda nb: write_submission(lesson, nb, base=nb,
                                        overrides={mistake.cell: mistake.source(reference)})))
    return students


def _step(message: str, quiet: bool) -> None:
    if not quiet:
        print(f"· {message}", flush=True)


def run_pipeline(lesson: Lesson, students: list[Student], tmp: Path, quiet: bool = False) -> dict:
    """Release → fetch → submit → collect → autograde → feedback → export, with real nbgrader.

    Returns per student `{"cells": {grade_id: points}, "score", "max", "csv", "course_grade"}`.
    """
    root, exchange = tmp / "instructor", tmp / "exchange"
    exchange.mkdir(parents=True)
    flags = [f"--Exchange.root={exchange}", *FLAGS]
    _step(f"course directory {root}", quiet)
    init_course_dir(root, [lesson])
    _step(f"nbgrader generate_assignment {lesson.number}", quiet)
    nbgrader(root, "generate_assignment", lesson.number, "--force")
    _step(f"nbgrader release_assignment {lesson.number}", quiet)
    nbgrader(root, "release_assignment", lesson.number, "--force", *flags)
    _step("students fetch the assignment, put their work in and submit, at the same time:", quiet)
    for s in students:
        _step(f"  {s.name} hands in {s.hands_in}", quiet)

    def hand_in(s: Student) -> None:
        home = tmp / "students" / s.name
        home.mkdir(parents=True)
        nbgrader(home, "fetch_assignment", lesson.number, *flags)
        s.fill(home / lesson.number / lesson.notebook)
        nbgrader(home, "submit", lesson.number, f"--student={s.name}", *flags)

    cores = os.cpu_count() or 1
    with ThreadPoolExecutor(max_workers=cores) as pool:
        list(pool.map(hand_in, students))
    _step("nbgrader collect", quiet)
    nbgrader(root, "collect", lesson.number, *flags)
    _step(f"nbgrader autograde, {min(cores, len(students))} processes side by side, each grading "
          "its share of the class (hidden cells scored by the isolated grader)", quiet)
    for proc in autograde(root, lesson, [s.name for s in students]):
        if proc.returncode != 0:
            raise RuntimeError(f"`nbgrader autograde` failed:\n{proc.stdout}\n{proc.stderr}")
    _step("nbgrader generate_feedback and export, while `course grade` grades each submission "
          "again for comparison", quiet)
    with ThreadPoolExecutor(max_workers=1) as pool:
        feedback = pool.submit(lambda: (nbgrader(root, "generate_feedback", lesson.number, "--force"),
                                        nbgrader(root, "export", "--to", str(tmp / "grades.csv"))))
        scores = {s.name: grade(root / "submitted" / s.name / lesson.number / lesson.notebook,
                                lesson)["score"] for s in students}
        feedback.result()

    book = _gradebook(root, lesson)
    with open(tmp / "grades.csv", newline="") as f:
        for row in csv.DictReader(f):
            book[row["student_id"]]["csv"] = float(row["raw_score"])
    for s in students:
        book[s.name]["course_grade"] = scores[s.name]
        book[s.name]["feedback"] = root / "feedback" / s.name / lesson.number / (
            Path(lesson.notebook).stem + ".html")
    return book


def _gradebook(root: Path, lesson: Lesson) -> dict[str, dict]:
    """Per student: points of each graded cell, total and maximum, from nbgrader's database."""
    from nbgrader.api import Gradebook

    out: dict[str, dict] = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "llm-course") as gb:
        for student in gb.students:
            sub = gb.find_submission_notebook(Path(lesson.notebook).stem, lesson.number, student.id)
            out[student.id] = {"cells": {g.name: g.score for g in sub.grades},
                               "score": sub.score, "max": sub.max_score}
    return out


def demo(lesson: Lesson, keep: bool = False) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="course-demo-"))
    try:
        students = sample_students(lesson)
        start = time.monotonic()
        book = run_pipeline(lesson, students, tmp)
        print(f"\nGradebook of lesson {lesson.number}, read from nbgrader's sqlite database "
              f"(the pipeline took {time.monotonic() - start:.0f} s):\n")
        ids = [gid for gid, _ in point_cells(lesson)]
        width = max(len(i) for i in ids) - len("test_")
        print(f"  {'student':<8} " + " ".join(f"{i.removeprefix('test_'):>{width}}" for i in ids)
              + f" {'nbgrader':>9} {'csv':>5} {'course grade':>13}")
        agree = True
        for s in students:
            row = book[s.name]
            agree &= row["course_grade"] == row["score"] == row["csv"]
            cells = " ".join(f"{row['cells'][i]:>{width}g}" for i in ids)
            print(f"  {s.name:<8} {cells} {row['score']:>5g}/{row['max']:<3g} {row['csv']:>5g}"
                  f" {row['course_grade']:>13g}")
        print("\n" + "\n".join(f"  {s.name}: {s.hands_in}" for s in students))
        if keep:
            print(f"\nFeedback for students: {book[students[-1].name]['feedback']}")
        else:
            print("\n(`course demo --keep` keeps the course directory, feedback pages included.)")
        print("nbgrader and `course grade` agree." if agree
              else "MISMATCH between nbgrader and `course grade`!")
        return 0 if agree else 1
    finally:
        if keep:
            print(f"Kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
