"""`course grade-all`: discovery, the CSV, resuming, --force, bad and crashing submissions, determinism."""

import contextlib
import csv
import io
import multiprocessing
import os
import signal
import threading
import time

import pytest

from course.batch import FIRST, LAST, find_submissions, grade_all
from course.cli import main
from course.demo import DEMO_MISTAKE
from course.grading import point_cells
from course.submissions import load_mutants, solution_sources, write_submission

REPEATS = 3  # `make bench` grades 20 times


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["grade-all", *argv])
    return code, out.getvalue()


def read_csv(path):
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return reader.fieldnames, list(reader)


@pytest.fixture(scope="module")
def graded_class(lesson03, tmp_path_factory):
    """A flat folder graded once by 2 workers: REPEATS copies each of a complete notebook and of
    a catalogued mistake, and a file that is not JSON."""
    folder = tmp_path_factory.mktemp("class")
    mistake = next(m for m in load_mutants(lesson03) if m.name == DEMO_MISTAKE)
    wrong = {mistake.cell: mistake.source(solution_sources(lesson03))}
    for i in range(REPEATS):
        write_submission(lesson03, folder / f"complete_{i}.ipynb")
        write_submission(lesson03, folder / f"mistake_{i}.ipynb", overrides=wrong)
    (folder / "broken.ipynb").write_text('{"cells": [')
    code, out = run(str(folder), "--workers", "2")
    return folder, code, out


def test_same_submission_same_score(graded_class, lesson03):
    folder, _, _ = graded_class
    _, rows = read_csv(folder / "grades.csv")
    ids = [gid for gid, _ in point_cells(lesson03)]
    for kind in ("complete", "mistake"):
        outcomes = {tuple(r[c] for c in ["score", *ids]) for r in rows if r["student"].startswith(kind)}
        assert len(outcomes) == 1, (kind, outcomes)
    by_student = {r["student"]: r for r in rows}
    assert by_student["complete_0"]["score"] == "10"
    assert by_student["mistake_0"]["test_scaled_dot_product_attention"] == "0"


def test_csv_columns_summary_and_a_broken_notebook(graded_class, lesson03):
    folder, code, out = graded_class
    assert code == 0
    header, rows = read_csv(folder / "grades.csv")
    assert header == FIRST + [gid for gid, _ in point_cells(lesson03)] + LAST
    by_student = {r["student"]: r for r in rows}
    assert len(rows) == 2 * REPEATS + 1
    assert all(float(r["seconds"]) > 0 for r in rows if r["student"] != "broken")
    assert by_student["mistake_0"]["summary"] == "test_scaled_dot_product_attention failed"
    broken = by_student["broken"]
    assert (broken["score"], broken["status"]) == ("0", "error")
    assert "not valid JSON" in broken["summary"]
    assert f"Found {2 * REPEATS + 1} submissions by {2 * REPEATS + 1} students" in out
    assert f"Graded {2 * REPEATS + 1}, skipped 0" in out
    assert "Could not be graded (1)" in out and "broken.ipynb" in out
    assert f"   90-100% | {'#' * 40} {REPEATS}" in out  # the complete notebooks: the tallest bar


def test_resume_skips_what_the_csv_holds(graded_class):
    folder, _, _ = graded_class
    before = (folder / "grades.csv").read_text()
    code, out = run(str(folder))
    assert code == 0 and f"Graded 0, skipped {2 * REPEATS + 1}" in out
    assert (folder / "grades.csv").read_text() == before


def test_force_regrades(tmp_path):
    (tmp_path / "zed.ipynb").write_text("not a notebook")
    grades = tmp_path / "out" / "grades.csv"
    grades.parent.mkdir()
    assert run(str(tmp_path), "--csv", str(grades))[0] == 0
    grades.write_text(grades.read_text().replace("zed,,zed.ipynb,0,", "zed,,zed.ipynb,7,"))
    assert "Graded 0, skipped 1" in run(str(tmp_path), "--csv", str(grades))[1]
    assert [r["score"] for r in read_csv(grades)[1]] == ["7"]
    assert "Graded 1, skipped 0" in run(str(tmp_path), "--csv", str(grades), "--force")[1]
    assert [r["score"] for r in read_csv(grades)[1]] == ["0"]


def test_finds_nbgrader_and_flat_layouts(lesson03, tmp_path):
    course = tmp_path / "course"
    for rel in ["submitted/ada/03/attention.ipynb", "submitted/ben/03/attention.ipynb",
                "submitted/ben/03/scratch.ipynb", "submitted/.git/03/x.ipynb",
                "autograded/ada/03/attention.ipynb", "submitted/ada/03/.ipynb_checkpoints/a.ipynb"]:
        (course / rel).parent.mkdir(parents=True, exist_ok=True)
        (course / rel).write_text("{}")
    where, subs = find_submissions(course)
    assert where == course / "submitted" and find_submissions(where) == (where, subs)
    assert [(s.student, s.notebook, s.lesson) for s in subs] == [
        ("ada", "ada/03/attention.ipynb", lesson03), ("ben", "ben/03/attention.ipynb", lesson03),
        ("ben", "ben/03/scratch.ipynb", None)]
    flat = tmp_path / "flat"
    for name in ["cho.ipynb", "dev.ipynb", "notes.txt"]:
        (flat / name).parent.mkdir(exist_ok=True)
        (flat / name).write_text("{}")
    where, subs = find_submissions(flat, lesson03)
    assert where == flat and [(s.student, s.lesson) for s in subs] == [("cho", lesson03), ("dev", lesson03)]


def test_bad_usage_exits_2(tmp_path, capsys):
    assert main(["grade-all", str(tmp_path / "missing")]) == 2
    assert main(["grade-all", str(tmp_path)]) == 2  # no notebooks
    (tmp_path / "a.ipynb").write_text("{}")
    assert main(["grade-all", str(tmp_path), "--workers", "0"]) == 2
    other = tmp_path / "other.csv"
    other.write_text("name,mark\nada,3\n")
    assert main(["grade-all", str(tmp_path), "--csv", str(other)]) == 2
    assert other.read_text() == "name,mark\nada,3\n"
    assert "not a CSV of grades" in capsys.readouterr().err


def test_a_dead_worker_costs_one_row_and_is_regraded(lesson03, tmp_path):
    write_submission(lesson03, tmp_path / "amy.ipynb", complete=False)
    batch = threading.Thread(target=grade_all, args=(tmp_path,), kwargs={"workers": 1})
    with contextlib.redirect_stdout(io.StringIO()):
        batch.start()
        deadline = time.monotonic() + 30
        while not multiprocessing.active_children() and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(multiprocessing.active_children()[0].pid, signal.SIGKILL)
        batch.join()
    [row] = read_csv(tmp_path / "grades.csv")[1]
    assert row["status"] == "regrade" and "worker died" in row["summary"], row
    code, out = run(str(tmp_path))  # the next run grades it again
    [row] = read_csv(tmp_path / "grades.csv")[1]
    assert code == 0 and "Graded 1, skipped 0" in out
    assert (row["status"], row["score"], row["max_score"]) == ("graded", "0", "10")
