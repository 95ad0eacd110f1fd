"""The real nbgrader pipeline agrees with `course grade`, even when the kernel is tampered with."""

import pytest

from course.demo import Student, run_pipeline, sample_students
from course.submissions import write_submission

# Wrong answer, plus an IPython input transformer that turns every later hidden test cell into
# `pass` in the autograde kernel: stock nbgrader would then award those cells full points.
TAMPER = '''def causal_mask(seq_len, device=None):
    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device)

try:
    get_ipython().input_transformers_cleanup.append(
        lambda lines: ["pass\\n"] if any("hidden_cell" in line for line in lines) else lines)
except NameError:
    pass
'''


@pytest.fixture(scope="module")
def book(lesson03, tmp_path_factory):
    students = sample_students(lesson03) + [
        Student("eve", "a wrong causal_mask that rewrites the hidden cells in the kernel",
                lambda nb: write_submission(lesson03, nb, base=nb, overrides={"causal_mask": TAMPER})),
    ]
    return run_pipeline(lesson03, students, tmp_path_factory.mktemp("pipeline"), quiet=True)


def test_gradebook_matches_course_grade_for_every_student(book):
    for name, row in book.items():
        assert row["score"] == row["csv"] == row["course_grade"], (name, row)


def test_expected_scores(book):
    assert book["ada"]["score"] == book["ada"]["max"] == 10
    assert book["ben"]["score"] == 0
    assert 0 < book["chen"]["score"] < 10


def test_kernel_side_tampering_gains_nothing(book):
    assert book["eve"]["cells"]["test_causal_mask"] == 0
    assert book["eve"]["score"] < 10


def test_feedback_explains_without_showing_hidden_tests(book):
    html = book["chen"]["feedback"].read_text()
    assert "hidden_cell" not in html and "BEGIN HIDDEN TESTS" not in html
    assert "largest error" in html and "scaled_dot_product_attention" in html
