"""The lessons of the course, found on disk: `solutions/NN/<name>.ipynb`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from course import ASSIGNMENTS, AUTOGRADER, MUTANTS, SOLUTIONS
from course.notebook import Cell, read_notebook


@dataclass(frozen=True)
class Lesson:
    number: str  # "03"
    notebook: str  # "attention.ipynb"

    @property
    def solution(self) -> Path:
        return SOLUTIONS / self.number / self.notebook

    @property
    def assignment(self) -> Path:
        return ASSIGNMENTS / self.number / self.notebook

    @property
    def checks(self) -> Path:
        return AUTOGRADER / self.number / "checks.py"

    @property
    def mutants(self) -> Path:
        return MUTANTS / self.number / "mutants.toml"


class UnknownLesson(Exception):
    pass


@functools.cache
def all_lessons() -> tuple[Lesson, ...]:
    found = []
    for folder in sorted(SOLUTIONS.glob("[0-9][0-9]")):
        notebooks = sorted(folder.glob("*.ipynb"))
        if len(notebooks) == 1:
            found.append(Lesson(folder.name, notebooks[0].name))
    return tuple(found)


def get_lesson(number: str | int) -> Lesson:
    key = f"{int(number):02d}" if str(number).isdigit() else str(number)
    for lesson in all_lessons():
        if lesson.number == key:
            return lesson
    known = ", ".join(lesson.number for lesson in all_lessons()) or "none"
    raise UnknownLesson(f"no lesson {number!r} (lessons available: {known})")


def lesson_for(path: Path, cells: list[Cell] | None = None) -> Lesson | None:
    """The lesson a student notebook belongs to: by file name, else by its graded cells."""
    for lesson in all_lessons():
        if path.name == lesson.notebook:
            return lesson
    if cells:
        ids = {c.grade_id for c in cells if c.is_solution}
        for lesson in all_lessons():
            if ids & {c.grade_id for c in read_notebook(lesson.solution) if c.is_solution}:
                return lesson
    return None
