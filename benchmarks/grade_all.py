"""Benchmark: `course grade-all` on a class of 100 lesson-03 submissions on 2 cores, and determinism.

Method (printed with the results): the class is built in nbgrader's layout
(`submitted/<student>/03/attention.ipynb`) from the released stub: every hostile case of
tests/bad_submissions/corpus.py (when that file exists; without bubblewrap, only those safe
without it), the catalogued mistakes of tests/mutants/03 (cycled) for 30 % of the class, and
complete notebooks for the rest. `course grade-all --workers 2` grades it in a fresh process
pinned to 2 cores (CPU affinity, inherited by the sandboxes). Reported: its wall time against the
target of 180 s, the per-submission `seconds` of its CSV (median; median, sum and worst per
kind) and, for where the time goes, the fixed costs measured alone: loading the hidden tests and
the reference (once per batch) and starting a sandbox (grading the untouched stub, whose hidden
tests stop at once). Then a complete and a buggy notebook are each copied 20 times into a flat
folder and graded the same way; every copy of one must get the same score and per-test points.
"""

from __future__ import annotations

import argparse
import csv
import importlib
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from course import REPO
from course.demo import DEMO_MISTAKE
from course.grading import grade, point_cells, reference, suite
from course.lessons import get_lesson
from course.sandbox import bubblewrap
from course.submissions import load_mutants, solution_sources, write_submission

TARGET_S = 180.0
LESSON = get_lesson("03")


def hostile_cases(workdir: Path) -> list:
    """The hostile cases of the bad-submission corpus (none while it does not exist). Without
    bubblewrap, those that only bubblewrap contains are left out: they write into the checkout."""
    if not (REPO / "tests" / "bad_submissions" / "corpus.py").exists():
        return []
    sys.path.insert(0, str(REPO))
    corpus = importlib.import_module("tests.bad_submissions.corpus")
    return [c for c in corpus.build(workdir) if c.kind == "hostile" and (bubblewrap() or not c.needs_bwrap)]


def build_class(root: Path, n: int, workdir: Path) -> dict[str, str]:
    """Write `n` submissions under `root/submitted`; returns student -> kind."""
    reference = solution_sources(LESSON)
    mistakes = itertools.cycle(load_mutants(LESSON))
    kinds: dict[str, str] = {}

    def place(student: str, kind: str) -> Path:
        kinds[student] = kind
        return root / "submitted" / student / LESSON.number / LESSON.notebook

    for case in hostile_cases(workdir)[:n]:
        dest = place(f"hostile_{case.name}", "hostile")
        dest.parent.mkdir(parents=True)
        shutil.copy(case.path, dest)
    for i in range(min(round(0.3 * n), n - len(kinds))):
        m = next(mistakes)
        write_submission(LESSON, place(f"buggy_{i:02d}_{m.name}", "buggy"),
                         overrides={m.cell: m.source(reference)})
    for i in range(n - len(kinds)):
        write_submission(LESSON, place(f"correct_{i:02d}", "correct"))
    return kinds


def fixed_costs() -> tuple[float, float]:
    """Seconds to load the hidden tests and reference, and median seconds to grade the stub."""
    start = time.perf_counter()
    suite(LESSON)
    reference(LESSON)
    load = time.perf_counter() - start
    stub = []
    for _ in range(3):
        start = time.perf_counter()
        grade(LESSON.assignment, LESSON)
        stub.append(time.perf_counter() - start)
    return load, statistics.median(stub)


def grade_all(folder: Path, workers: int, *extra: str) -> tuple[float, list[dict[str, str]]]:
    """Run `course grade-all` in a fresh process; its wall time and the rows of its CSV."""
    cmd = [sys.executable, "-m", "course", "grade-all", str(folder), "--workers", str(workers), *extra]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    wall = time.perf_counter() - start
    with open(folder / "grades.csv", newline="") as f:
        return wall, list(csv.DictReader(f))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100, help="submissions in the class")
    p.add_argument("--workers", type=int, default=2, help="workers, and cores the batch is pinned to")
    p.add_argument("--repeats", type=int, default=20, help="gradings of each determinism notebook")
    args = p.parse_args()
    cores = sorted(os.sched_getaffinity(0))[: args.workers]
    os.sched_setaffinity(0, cores)
    tmp = Path(tempfile.mkdtemp(prefix="course-bench-all-"))
    try:
        kinds = build_class(tmp / "course", args.n, tmp / "corpus")
        print(__doc__.split("\n\n")[1].replace("\n", " "))
        count = {k: sum(v == k for v in kinds.values()) for k in ("correct", "buggy", "hostile")}
        print(f"\nmachine: {os.cpu_count()} cores, batch pinned to cores {cores}; workers: {args.workers}; "
              f"torch threads: 1 per worker and 1 per sandbox; sandbox: "
              f"{'bubblewrap' if bubblewrap() else 'plain child process (no bubblewrap)'}")
        print(f"class: {len(kinds)} submissions: " + ", ".join(f"{v} {k}" for k, v in count.items())
              + ("" if count["hostile"] else " (tests/bad_submissions/corpus.py not found: no hostile ones)"))

        load, stub = fixed_costs()
        wall, rows = grade_all(tmp / "course", args.workers)
        secs = [float(r["seconds"]) for r in rows]
        target = TARGET_S * len(rows) / 100
        print(f"\ncourse grade-all, {len(rows)} submissions: {wall:.0f} s wall "
              f"({'meets' if wall <= target else 'MISSES'} the target of at most {target:.0f} s, "
              f"{TARGET_S:.0f} s per 100); "
              f"per submission: median {statistics.median(secs):.1f} s, total {sum(secs):.0f} s")
        for kind in count:
            mine = sorted((float(r["seconds"]), r["student"]) for r in rows if kinds[r["student"]] == kind)
            if mine:
                print(f"  {kind:<8} n={len(mine):<3} median {statistics.median(s for s, _ in mine):5.1f} s  "
                      f"sum {sum(s for s, _ in mine):5.0f} s  slowest {mine[-1][0]:.1f} s ({mine[-1][1]})")
        print(f"  fixed costs: hidden tests and reference loaded in {load:.1f} s (once, before the "
              f"workers fork); sandbox start (python, torch, the notebook's cells) {stub:.1f} s per "
              f"submission and per restart after a crash or timeout")

        flat = tmp / "same"
        mistake = next(m for m in load_mutants(LESSON) if m.name == DEMO_MISTAKE)
        wrong = {mistake.cell: mistake.source(solution_sources(LESSON))}
        for i in range(args.repeats):
            write_submission(LESSON, flat / f"correct_{i:02d}.ipynb")
            write_submission(LESSON, flat / f"buggy_{i:02d}.ipynb", overrides=wrong)
        wall, rows = grade_all(flat, args.workers, "--lesson", LESSON.number)
        ids = [gid for gid, _ in point_cells(LESSON)]
        print(f"\ndeterminism: each notebook graded {args.repeats} times, {wall:.0f} s wall")
        for kind in ("correct", f"buggy ({DEMO_MISTAKE})"):
            outcomes = {tuple(r[c] for c in ["score", *ids]) for r in rows
                        if r["student"].startswith(kind.split()[0])}
            print(f"  {kind:<25} distinct outcomes: {len(outcomes)} "
                  f"({'ok' if len(outcomes) == 1 else 'NOT DETERMINISTIC'}): "
                  + " | ".join(f"score {o[0]}, points {'/'.join(o[1:])}" for o in sorted(outcomes)))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
