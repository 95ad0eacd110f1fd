"""The student notebooks are generated, current, and carry no solution or hidden-test text."""

import json

import pytest

from course import ASSIGNMENTS
from course.lessons import all_lessons
from course.notebook import read_notebook
from course.release import build, release

LESSONS = all_lessons()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Every lesson's student notebook, generated afresh by one nbgrader run."""
    return build(list(LESSONS), tmp_path_factory.mktemp("release"))


@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.number for lesson in LESSONS])
def test_assignments_are_current(lesson, built):
    assert built[lesson.number].read_text() == lesson.assignment.read_text(), (
        f"assignments/{lesson.number} is out of date: run `course release {lesson.number}`")


def test_release_writes_the_assignment(tmp_path, monkeypatch):
    lesson = LESSONS[0]
    monkeypatch.setattr("course.lessons.ASSIGNMENTS", tmp_path)
    assert release([lesson]) == [tmp_path / lesson.number / lesson.notebook]
    assert lesson.assignment.read_text() == (ASSIGNMENTS / lesson.number / lesson.notebook).read_text()


def stubbed(source: str) -> str:
    """The solution cell as a student must receive it: the solution region replaced by the stub."""
    out, inside = [], False
    for line in source.splitlines():
        if line.strip() == "### BEGIN SOLUTION":
            indent = line[: len(line) - len(line.lstrip())]
            out += [indent + "# YOUR CODE HERE", indent + "raise NotImplementedError()"]
            inside = True
        elif line.strip() == "### END SOLUTION":
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.number for lesson in LESSONS])
def test_released_notebook_has_no_solutions_or_hidden_tests(lesson):
    text = lesson.assignment.read_text()
    assert "BEGIN SOLUTION" not in text and "BEGIN HIDDEN TESTS" not in text
    assert "autograder" not in text
    source = {c.grade_id: c.source for c in read_notebook(lesson.solution) if c.is_solution}
    released = {c.grade_id: c.source for c in read_notebook(lesson.assignment) if c.is_solution}
    assert set(released) == set(source)
    for gid, src in source.items():
        assert released[gid].rstrip() == stubbed(src).rstrip(), f"cell {gid} leaks solution text"


@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.number for lesson in LESSONS])
def test_released_notebook_is_valid_nbformat(lesson):
    import nbformat

    nbformat.validate(nbformat.read(lesson.assignment, as_version=4))
    json.loads(lesson.assignment.read_text())
