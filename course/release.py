"""`course release`: generate the student notebooks in `assignments/` from `solutions/` with nbgrader.

nbgrader's `generate_assignment` runs in a throwaway course directory whose
`source/NN` is a copy of `solutions/NN`; the released notebook is copied to
`assignments/NN/`. The output is deterministic, so a test can regenerate it
and demand no change.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from course.lessons import Lesson

CONFIG = "from course.nbgrader_setup import configure\nconfigure(c, __file__)\n"


def init_course_dir(root: Path, lessons: list[Lesson]) -> None:
    """An nbgrader course directory at `root` with the lessons' sources and our config."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "nbgrader_config.py").write_text(CONFIG)
    for lesson in lessons:
        dest = root / "source" / lesson.number
        if dest.exists():
            shutil.rmtree(dest)
        dest.mkdir(parents=True)
        shutil.copy2(lesson.solution, dest / lesson.notebook)


def nbgrader(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run one `nbgrader` command in the course directory `root`."""
    cmd = [sys.executable, "-m", "nbgrader", *args]
    # nbgrader runs `alembic` by name: put this environment's scripts first on PATH.
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`nbgrader {' '.join(args)}` failed:\n{proc.stdout}\n{proc.stderr}")
    return proc


def autograde(root: Path, lesson: Lesson, students: list[str],
              *args: str) -> list[subprocess.CompletedProcess[str]]:
    """`nbgrader autograde` of these students, in one nbgrader process per core side by side,
    each grading its share of the class; returns their outcomes."""
    if not students:
        return []
    parts = min(os.cpu_count() or 1, len(students))
    groups = [students[i::parts] for i in range(parts)]
    everyone = set(students)

    def run(group: list[str]) -> subprocess.CompletedProcess[str]:
        others = ",".join(sorted(everyone - set(group)))
        return nbgrader(root, "autograde", lesson.number, "--force",
                        f"--CourseDirectory.student_id_exclude={others}", *args, check=False)

    with ThreadPoolExecutor(max_workers=parts) as pool:
        return list(pool.map(run, groups))


def build(lessons: list[Lesson], dest: Path) -> dict[str, Path]:
    """Generate the lessons' student notebooks with one `nbgrader generate_assignment` run in a
    course directory at `dest`; returns lesson number -> generated notebook."""
    init_course_dir(dest, lessons)
    # nbgrader globs assignment ids; the course directory holds just these lessons
    proc = nbgrader(dest, "generate_assignment", "--force", "--CourseDirectory.assignment_id=*")
    built = {lesson.number: dest / "release" / lesson.number / lesson.notebook for lesson in lessons}
    missing = [n for n, path in built.items() if not path.is_file()]
    if missing:
        raise RuntimeError(f"`nbgrader generate_assignment` made no notebook for "
                           f"{', '.join(missing)}:\n{proc.stdout}\n{proc.stderr}")
    return built


def release(lessons: list[Lesson]) -> list[Path]:
    """Regenerate `assignments/NN/<notebook>` of the lessons from their solution notebooks."""
    with tempfile.TemporaryDirectory(prefix="course-release-") as tmp:
        built = build(lessons, Path(tmp))
        for lesson in lessons:
            lesson.assignment.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(built[lesson.number], lesson.assignment)
    return [lesson.assignment for lesson in lessons]
