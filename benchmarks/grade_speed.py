"""Benchmark: `course grade` vs `nbgrader autograde` on the same lesson-03 notebook.

Method (printed with the results): the released lesson-03 stub is filled with
the reference answers; it is graded REPEATS times by each command, each run a
fresh process started from the shell (so both pay interpreter start-up and
imports), run one after the other on an otherwise idle machine. nbgrader
autograde runs in a course directory prepared once (generate_assignment and
the submission copied in); `--force` re-grades each time. Reported: median
and min wall time per command, and the ratio of medians.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from course.lessons import get_lesson
from course.release import init_course_dir, nbgrader
from course.submissions import write_submission

REPEATS = int(os.environ.get("REPEATS", "5"))


def timed(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    lesson = get_lesson("03")
    tmp = Path(tempfile.mkdtemp(prefix="course-bench-"))
    try:
        notebook = write_submission(lesson, tmp / "work" / lesson.notebook)
        root = tmp / "course"
        init_course_dir(root, [lesson])
        nbgrader(root, "generate_assignment", lesson.number, "--force")
        submitted = root / "submitted" / "ada" / lesson.number
        submitted.mkdir(parents=True)
        shutil.copy(notebook, submitted / lesson.notebook)
        course_cmd = [str(Path(sys.executable).with_name("course")), "grade", str(notebook), "--json"]
        nbg_cmd = [sys.executable, "-m", "nbgrader", "autograde", lesson.number, "--force",
                   "--student=ada"]
        print(__doc__.split("\n\n")[1].replace("\n", " "))
        print(f"\nmachine: {os.cpu_count()} cores; repeats: {REPEATS}\n")
        times: dict[str, list[float]] = {"course grade": [], "nbgrader autograde": []}
        for _ in range(REPEATS):
            times["course grade"].append(timed(course_cmd, tmp))
            times["nbgrader autograde"].append(timed(nbg_cmd, root))
        for name, ts in times.items():
            print(f"{name:<20} median {statistics.median(ts):6.2f} s   min {min(ts):6.2f} s   "
                  f"runs {' '.join(f'{t:.2f}' for t in ts)}")
        ratio = statistics.median(times["course grade"]) / statistics.median(times["nbgrader autograde"])
        print(f"\nratio of medians (course grade / nbgrader autograde): {ratio:.2f} "
              f"({'meets' if ratio <= 0.5 else 'MISSES'} the target of at most 0.5)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
