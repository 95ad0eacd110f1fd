"""Every solution notebook runs top to bottom, hidden cells included (the instructor's view).

Minutes per lesson, so not part of `make test`: `make notebooks` runs them. `make test` still
grades every solution notebook in full (`course validate`) and runs the oracle tests.
"""

import time

import nbformat
import pytest
from nbclient import NotebookClient

from course.lessons import all_lessons

LESSONS = all_lessons()
BUDGET_S = {"01": 180, "02": 180, "03": 120}  # each lesson's promise; 5 minutes for the others


@pytest.mark.notebooks
@pytest.mark.parametrize("lesson", LESSONS, ids=[lesson.number for lesson in LESSONS])
def test_solution_notebook_runs_top_to_bottom(lesson, tmp_path, monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)  # hidden cells really test here
    nb = nbformat.read(lesson.solution, as_version=4)
    start = time.monotonic()
    NotebookClient(nb, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    elapsed = time.monotonic() - start
    assert elapsed < BUDGET_S.get(lesson.number, 300), f"took {elapsed:.0f} s"
    hidden = [c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade")]
    for cell in hidden:
        text = "".join(o.get("text", "") for o in cell.outputs)
        assert "(passed)" in text, (cell.metadata["nbgrader"]["grade_id"], cell.outputs)
