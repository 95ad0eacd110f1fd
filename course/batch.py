"""`course grade-all DIR`: grade a whole class into a CSV, in parallel worker processes.

Submissions are found in an nbgrader course (`submitted/<student>/<assignment>/<notebook>.ipynb`)
or in a flat folder of notebooks (the student is the file name). Each one is graded by
`course.grading.grade` in a worker process; the student's code runs further down, in that
worker's sandbox child. Each result is appended to the CSV as it arrives, so an interrupted
batch keeps its work and the next run skips what is done. A summary of the class ends the run.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from course.grading import grade, point_cells, reference, suite, ungradable
from course.lessons import Lesson, get_lesson, lesson_for

FIRST = ["student", "lesson", "notebook", "score", "max_score"]
LAST = ["status", "seconds", "summary"]  # between them: one column of points per hidden test
# Rows with this status are graded again by the next run: the grader failed, not the student.
REGRADE = "regrade"
GRADER_FAULTS = ("GRADER FAULT", "the grading process failed to start")


@dataclass(frozen=True)
class Submission:
    student: str
    notebook: str  # path relative to the folder searched; with `student`, the CSV row's key
    path: Path
    lesson: Lesson | None  # None: `grade` tells it from the notebook's graded cells

    @property
    def key(self) -> tuple[str, str]:
        return self.student, self.notebook


def find_submissions(folder: Path, lesson: Lesson | None = None) -> tuple[Path, list[Submission]]:
    """`(where, submissions)`: nbgrader's `submitted/<student>/<assignment>/*.ipynb` under
    `folder` (a course root or its `submitted/`), else the `*.ipynb` files of `folder`."""
    base = folder / "submitted" if (folder / "submitted").is_dir() else folder
    nested = [p for p in sorted(base.glob("*/*/*.ipynb"))
              if not any(part.startswith(".") for part in p.relative_to(base).parts)]
    found = [(p.relative_to(base).parts[0], p) for p in nested] or [
        (p.stem, p) for p in sorted(base.glob("*.ipynb"))]
    # The lesson by file name only: the parent process never parses a student's file.
    return base, [Submission(student, str(p.relative_to(base)), p, lesson or lesson_for(p))
                  for student, p in found]


# -- the worker pool ------------------------------------------------------------------------------
def _work(conn: Connection) -> None:
    """A worker process: grade each `(path, lesson number)` it is sent until it is sent None."""
    torch.set_num_threads(1)  # one core per worker; the sandbox child, too, runs one thread
    while (task := conn.recv()) is not None:
        path, number = task
        lesson = get_lesson(number) if number else None
        start = time.perf_counter()
        try:
            result = grade(path, lesson)
        except Exception as err:  # noqa: BLE001 - a grader bug costs this notebook, not the batch
            result = ungradable(lesson, Path(path), f"GRADER FAULT, not the student's code "
                                f"({type(err).__name__}: {err})")
        conn.send((result, time.perf_counter() - start))


def grade_many(submissions: list[Submission], workers: int) -> Iterator[tuple[Submission, dict, float]]:
    """Grade in `workers` processes; yields `(submission, result, seconds)` as each one finishes.

    Each worker holds one submission at a time, so when a worker dies (something
    `ProcessPoolExecutor` cannot attribute) its submission gets a result that says
    so, a fresh worker takes its place, and the batch goes on.
    """
    # Forked workers start at once with what the parent loaded (torch, Hypothesis, each lesson's
    # hidden tests and reference); the parent runs no threads.
    ctx = multiprocessing.get_context("fork")
    if submissions:
        import autograder.harness  # noqa: F401 - for the workers

        for lesson in {s.lesson for s in submissions if s.lesson}:
            suite(lesson)
            reference(lesson)
    todo = list(reversed(submissions))
    busy: dict[Connection, tuple[multiprocessing.process.BaseProcess, Submission]] = {}

    def assign(conn: Connection, proc: multiprocessing.process.BaseProcess) -> None:
        if todo:
            sub = todo.pop()
            conn.send((str(sub.path), sub.lesson.number if sub.lesson else None))
            busy[conn] = proc, sub
        else:
            conn.send(None)
            proc.join()
            conn.close()

    def spawn() -> None:
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=_work, args=(child,), daemon=True)
        proc.start()
        child.close()  # so that the worker's death reads as end-of-file here
        assign(conn, proc)

    for _ in range(min(workers, len(todo))):
        spawn()
    try:
        while busy:
            for conn in wait(list(busy)):
                assert isinstance(conn, Connection)
                proc, sub = busy.pop(conn)
                try:
                    result, seconds = conn.recv()
                except (EOFError, OSError):
                    proc.join()
                    yield sub, ungradable(sub.lesson, sub.path,
                                          f"GRADER FAULT: the grading worker died (exit code "
                                          f"{proc.exitcode}) on this notebook"), 0.0
                    conn.close()
                    if todo:
                        spawn()
                    continue
                yield sub, result, seconds
                assign(conn, proc)
    finally:  # also on Ctrl-C: no worker outlives the batch
        for proc, _ in busy.values():
            proc.kill()
            proc.join()


# -- the CSV of grades ----------------------------------------------------------------------------
class BadCsv(Exception):
    pass


def to_row(sub: Submission, result: dict[str, Any], seconds: float) -> dict[str, str]:
    """The CSV row of one graded submission."""
    tests = result["tests"]
    reasons = {t["feedback"] for t in tests}
    faults = [t["feedback"] for t in tests if any(f in t["feedback"] for f in GRADER_FAULTS)]
    if faults:
        status, summary = REGRADE, faults[0]
    elif len(reasons) == 1 and all(t["status"] == "error" for t in tests):
        status, summary = "error", reasons.pop()  # the notebook as a whole could not be graded
    else:
        status = "graded"
        summary = "; ".join(f"{t['id']} {t['status']}" for t in tests if t["status"] != "passed")
    row = {"student": sub.student, "lesson": result["lesson"] or "", "notebook": sub.notebook,
           "score": f"{result['score']:g}", "max_score": f"{result['max_score']:g}",
           "status": status, "seconds": f"{seconds:.2f}",
           "summary": summary.strip().splitlines()[0][:300] if summary.strip() else "all passed"}
    if result["lesson"]:
        row.update({t["id"]: f"{t['points']:g}" for t in tests})
    return row


class GradeBook:
    """The CSV: one row per (student, notebook), appended as results arrive.

    The file is rewritten only through a temporary file and a rename (on opening,
    when a new test column appears, and at the end, sorted and without the
    duplicates a `--force` run appends), so a crash never loses what it held.
    """

    def __init__(self, path: Path, lessons: list[Lesson]):
        self.path = path
        self.rows: dict[tuple[str, str], dict[str, str]] = {}
        header: list[str] = []
        if path.exists():
            with open(path, newline="") as f:
                reader = csv.DictReader(f)
                header = list(reader.fieldnames or [])
                if not set(FIRST + LAST) <= set(header):
                    raise BadCsv(f"{path} exists and is not a CSV of grades; choose another --csv")
                for row in reader:
                    if None not in row and None not in row.values():  # else: a line cut short
                        self.rows[row["student"], row["notebook"]] = row
        self.tests = [c for c in header if c not in FIRST + LAST]
        self._add_tests([gid for lesson in lessons for gid, _ in point_cells(lesson)])
        self.rewrite()

    @property
    def header(self) -> list[str]:
        return FIRST + self.tests + LAST

    def _add_tests(self, ids: list[str]) -> bool:
        new = [i for i in dict.fromkeys(ids) if i not in self.tests]
        self.tests += new
        return bool(new)

    def done(self, sub: Submission) -> bool:
        row = self.rows.get(sub.key)
        return row is not None and row["status"] != REGRADE

    def add(self, row: dict[str, str]) -> None:
        self.rows[row["student"], row["notebook"]] = row
        if self._add_tests([c for c in row if c not in FIRST + LAST]):
            self.rewrite()
            return
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.header).writerow(row)

    def rewrite(self) -> None:
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, self.header)
            writer.writeheader()
            writer.writerows(self.rows[k] for k in sorted(self.rows))
        os.replace(tmp, self.path)


# -- the command ----------------------------------------------------------------------------------
class _Bar(tqdm):
    monitor_interval = 0  # no monitor thread in a process that forks workers


def histogram(fractions: list[float], bins: int = 10, width: int = 40) -> list[str]:
    """Text histogram of scores as fractions of the maximum, one line per tenth."""
    counts = [0] * bins
    for x in fractions:
        counts[min(int(x * bins), bins - 1)] += 1
    scale = width / max(max(counts), 1)
    step = 100 // bins
    return [f"  {i * step:>3}-{(i + 1) * step:>3}% | {'#' * round(c * scale):<{width}} {c}"
            for i, c in enumerate(counts)]


def summary(rows: list[dict[str, str]]) -> list[str]:
    """Mean, median, extremes and histogram of the scores; the submissions that could not be graded."""
    scored = [r for r in rows if r["status"] != REGRADE and float(r["max_score"]) > 0]
    fractions = [float(r["score"]) / float(r["max_score"]) for r in scored]
    lines = []
    if fractions:
        pct = [100 * x for x in fractions]
        lines += [f"Scores of {len(scored)} submissions, in percent of the maximum: "
                  f"mean {statistics.mean(pct):.1f}, median {statistics.median(pct):.1f}, "
                  f"min {min(pct):.1f}, max {max(pct):.1f}", *histogram(fractions)]
    failed = [r for r in rows if r["status"] in ("error", REGRADE)]
    if failed:
        again = " (status regrade: a fault of the grader; the next run tries again)" * any(
            r["status"] == REGRADE for r in failed)
        lines.append(f"\nCould not be graded ({len(failed)}){again}:")
        lines += [f"  {r['notebook']}  [{r['status']}]  {r['summary']}" for r in failed]
    return lines


def grade_all(folder: Path, *, lesson: Lesson | None = None, csv_path: Path | None = None,
              workers: int | None = None, force: bool = False) -> int:
    """Grade every submission under `folder` into `csv_path` (default `folder/grades.csv`)."""
    if not folder.is_dir() or (workers is not None and workers < 1):
        print(f"course grade-all: {folder} is not a folder" if not folder.is_dir()
              else "course grade-all: --workers must be at least 1", file=sys.stderr)
        return 2
    where, subs = find_submissions(folder, lesson)
    if not subs:
        print(f"course grade-all: no notebooks in {where} (expected an nbgrader course, its "
              "submitted/ folder, or a folder of .ipynb files)", file=sys.stderr)
        return 2
    csv_path = csv_path or folder / "grades.csv"
    try:
        book = GradeBook(csv_path, sorted({s.lesson for s in subs if s.lesson}, key=lambda x: x.number))
    except BadCsv as err:
        print(f"course grade-all: {err}", file=sys.stderr)
        return 2
    todo = [s for s in subs if force or not book.done(s)]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo)))
    layout = "nbgrader layout" if subs[0].path.parent != where else "flat folder"
    print(f"Found {len(subs)} submissions by {len({s.student for s in subs})} students in {where} "
          f"({layout}).")
    if len(todo) < len(subs):
        print(f"{len(subs) - len(todo)} already graded in {csv_path} are skipped (--force regrades them).")
    print(f"Grading {len(todo)} with {workers} worker{'s' * (workers > 1)}.", flush=True)
    start, seconds = time.monotonic(), []
    with _Bar(total=len(todo), unit="notebook", file=sys.stderr, disable=None) as bar:
        for sub, result, took in grade_many(todo, workers):
            book.add(to_row(sub, result, took))
            seconds.append(took)
            bar.update()
    book.rewrite()
    timing = f", median {statistics.median(seconds):.1f} s per submission" if seconds else ""
    print(f"\nGraded {len(todo)}, skipped {len(subs) - len(todo)}, in "
          f"{time.monotonic() - start:.0f} s{timing}.")
    print("\n".join(summary([book.rows[s.key] for s in subs])))
    print(f"\nGrades: {csv_path}")
    return 0
