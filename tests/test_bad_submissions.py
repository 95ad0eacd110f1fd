"""The bad-submission corpus (`tests/bad_submissions/corpus.py`) through both grading paths.

`course grade` (here through `course grade-all`'s worker pool) grades every case; nbgrader
autograde grades the cases whose nbgrader path differs from `course grade`'s: the kernel runs the
whole notebook there, so the hostile code runs a second time, in the autograde kernel's sandbox.
Most of the nbgrader cases are marked `slow` (`make hostile`): each takes nbgrader half a minute.
Each case must get exactly its expected points, say why, leave nothing behind, and regrade the same.
"""

from __future__ import annotations

import shutil
import socket
import threading
from pathlib import Path

import pytest
from bad_submissions.corpus import LESSON, Case, build, names

from course import REPO
from course.batch import Submission, grade_many
from course.grading import point_cells
from course.release import autograde as class_autograde
from course.release import init_course_dir, nbgrader
from course.sandbox import bubblewrap

POINTS = dict(point_cells(LESSON))
# Through nbgrader, the cases whose nbgrader path differs from `course grade`'s: damaged files,
# edited nbgrader metadata and test cells, and hostile code (it also runs in the autograde kernel).
# Each costs nbgrader half a minute or more (the kernel runs the whole lesson), so `make test` runs
# four that exercise each defence and `make hostile` the rest.
NBGRADER_QUICK = ["grade_id_duplicated", "test_cell_emptied", "kills_parent", "writes_outside"]
NBGRADER_SLOW = [
    "truncated_json", "nbformat_v3", "schema_version_edited", "points_inflated", "test_cell_deleted",
    "patches_comparisons", "opens_network", "loop_at_load", "memory_at_load", "prints_gigabytes",
    "os_exit_at_load", "fork_bomb",
]
LEFTOVERS = ["pwned.txt", "course/pwned.txt"]  # what `writes_outside` tries to create in the checkout


class Listener:
    """A local TCP server that records whether anything connected (the network case)."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()


@pytest.fixture(scope="module")
def listener():
    server = Listener()
    yield server
    server.server.close()


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, listener) -> dict[str, Case]:
    cases = build(tmp_path_factory.mktemp("corpus"), port=listener.port)
    return {c.name: c for c in cases}


def _check(case: Case, points: dict[str, float], feedback: dict[str, str]) -> None:
    if case.needs_bwrap and not bubblewrap():
        pytest.skip("needs the bubblewrap sandbox")
    assert points == case.expected_points(POINTS), f"{case.name}: {case.what}"
    if case.zero:
        first = feedback[f"test_{case.zero[0]}"]
        assert first.strip(), f"{case.name}: a zeroed test must say why"
        assert case.says.lower() in first.lower(), (case.name, first)
    assert "BEGIN HIDDEN TESTS" not in "".join(feedback.values())


# -- course grade --------------------------------------------------------------------------------
# `make test` grades one case of each kind of defence; `make hostile` grades the whole corpus.
COURSE_QUICK = ["truncated_json", "graded_cell_deleted", "returns_nan", "mutates_inputs", "loop_in_call",
                "os_exit_in_call", "kills_parent", "patches_comparisons", "lying_tensor", "writes_outside",
                "opens_network"]
COURSE_SLOW = [n for n in names() if n not in COURSE_QUICK]


def _grade_cases(corpus: dict[str, Case], selected: list[str]) -> dict[str, dict]:
    subs = [Submission(n, n, corpus[n].path, LESSON) for n in selected]
    return {sub.student: result for sub, result, _ in grade_many(subs, workers=2)}


@pytest.fixture(scope="module")
def graded(corpus) -> dict[str, dict]:
    return _grade_cases(corpus, COURSE_QUICK)


@pytest.fixture(scope="module")
def graded_slow(corpus) -> dict[str, dict]:
    return _grade_cases(corpus, COURSE_SLOW)


def test_corpus_is_large_and_varied():
    assert len(names()) >= 30


def _check_result(case: Case, result: dict) -> None:
    _check(case, {t["id"]: t["points"] for t in result["tests"]},
           {t["id"]: t["feedback"] for t in result["tests"]})


@pytest.mark.parametrize("name", COURSE_QUICK)
def test_course_grade(name, corpus, graded):
    _check_result(corpus[name], graded[name])


@pytest.mark.slow
@pytest.mark.parametrize("name", COURSE_SLOW)
def test_course_grade_whole_corpus(name, corpus, graded_slow):
    _check_result(corpus[name], graded_slow[name])


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if text.encode() in cmdline.read_bytes():
                found.append(cmdline.parent.name)
        except OSError:
            continue
    return found


def test_nothing_escapes(corpus, graded, listener):
    assert not [p for p in LEFTOVERS if (REPO / p).exists()]
    assert not (Path.home() / "pwned.txt").exists()
    if bubblewrap():
        assert listener.connections == 0, "student code reached a local server"
    # the sandboxes bind the corpus notebooks: no process may still hold one
    root = str(next(iter(corpus.values())).path.parents[2])
    assert not _processes_mentioning(root), "sandboxed processes outlived grading"


def test_regrading_gives_the_same_points(corpus, graded):
    again = ["loop_in_call", "os_exit_in_call", "lying_tensor"]
    subs = [Submission(n, n, corpus[n].path, LESSON) for n in again]
    for sub, result, _ in grade_many(subs, workers=2):
        assert [t["points"] for t in result["tests"]] == [t["points"] for t in graded[sub.student]["tests"]]


# -- nbgrader autograde ----------------------------------------------------------------------------
def autograde(corpus: dict[str, Case], names: list[str], root: Path) -> tuple[dict, dict[str, str]]:
    """One course directory with these cases submitted as students, autograded; returns
    `(points per student, {"log": nbgrader's output, student: autograded notebook})`."""
    from nbgrader.api import Gradebook, MissingEntry

    init_course_dir(root, [LESSON])
    nbgrader(root, "generate_assignment", LESSON.number, "--force")
    for name in names:
        dest = root / "submitted" / name / LESSON.number
        dest.mkdir(parents=True)
        shutil.copy(corpus[name].path, dest / LESSON.notebook)
        (dest / "timestamp.txt").write_text("2026-12-01 12:00:00.000000 UTC")
    # nbgrader processes grading the class side by side, as `course demo` runs them; cells time out at 20 s
    log = "".join(p.stdout + p.stderr for p in class_autograde(root, LESSON, names, "--Execute.timeout=20"))
    scores: dict[str, dict[str, float]] = {}
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}", "llm-course") as gb:
        for name in names:
            try:
                sub = gb.find_submission_notebook(Path(LESSON.notebook).stem, LESSON.number, name)
            except MissingEntry:
                continue  # nbgrader could not autograde it at all
            scores[name] = {g.name: g.score for g in sub.grades}
    texts = {"log": log}
    for name in names:
        graded_nb = root / "autograded" / name / LESSON.number / LESSON.notebook
        texts[name] = graded_nb.read_text() if graded_nb.exists() else ""
    return scores, texts


@pytest.fixture(scope="module")
def autograded_quick(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("course")
    return root, *autograde(corpus, NBGRADER_QUICK, root)


@pytest.fixture(scope="module")
def autograded_slow(corpus, tmp_path_factory):
    root = tmp_path_factory.mktemp("course-slow")
    return root, *autograde(corpus, NBGRADER_SLOW, root)


def _check_nbgrader(case: Case, scores: dict, texts: dict[str, str]) -> None:
    if case.needs_bwrap and not bubblewrap():
        pytest.skip("needs the bubblewrap sandbox")
    assert case.name in scores, f"nbgrader did not grade {case.name}:\n{texts['log'][-3000:]}"
    zero = case.nbgrader.get("zero", case.zero)
    expected = {tid: 0.0 if tid.removeprefix("test_") in zero else pts for tid, pts in POINTS.items()}
    assert scores[case.name] == expected, f"{case.name}: {case.what}"
    if case.zero and texts[case.name]:  # the feedback notebook names the failed test
        assert f"test_{case.zero[0]}" in texts[case.name]


def _check_course_directory(root: Path, scores: dict, names: list[str], listener: Listener) -> None:
    assert not list(root.rglob("pwned.txt")), "student code wrote into the course directory"
    assert not [p for p in LEFTOVERS if (REPO / p).exists()]
    if bubblewrap():
        assert listener.connections == 0
    assert set(scores) == set(names), "the gradebook must hold every student's record"


@pytest.mark.parametrize("name", NBGRADER_QUICK)
def test_nbgrader_autograde(name, corpus, autograded_quick):
    _, scores, texts = autograded_quick
    _check_nbgrader(corpus[name], scores, texts)


def test_nbgrader_course_directory_untouched(autograded_quick, listener):
    root, scores, _ = autograded_quick
    _check_course_directory(root, scores, NBGRADER_QUICK, listener)


@pytest.mark.slow
@pytest.mark.parametrize("name", NBGRADER_SLOW)
def test_nbgrader_autograde_slow_cases(name, corpus, autograded_slow):
    _, scores, texts = autograded_slow
    _check_nbgrader(corpus[name], scores, texts)


@pytest.mark.slow
def test_nbgrader_course_directory_untouched_slow_cases(autograded_slow, listener):
    root, scores, _ = autograded_slow
    _check_course_directory(root, scores, NBGRADER_SLOW, listener)
