"""The course's nbgrader configuration, and the preprocessor that puts the isolated grader in it.

An nbgrader course directory for this course holds one line of config:

    from course.nbgrader_setup import configure; configure(c, __file__)

(`course init DIR` writes it). `configure` sets what NOTES-style experience
says nbgrader needs: hidden tests cleared from feedback, minimal tracebacks,
warnings and progress bars silenced (a test cell that writes to stderr scores
0), Hypothesis' storage outside the submission, a per-cell timeout, and —
the part that matters — the `IsolatedGrades` preprocessor.

Autograding executes the student's notebook in a kernel, so that feedback
shows its outputs. `SafeExecute` (see `course.autograde_kernel`) runs that
kernel sandboxed and limited, caps its output and survives its death; but
code in the kernel can still rewrite later cells, patch comparisons or print
fake results, so nothing it produces is trusted.
`IsolatedGrades` runs after execution and before nbgrader records scores: it
grades the submitted source with `course.grading.grade` (student code in the
sandbox, comparisons here) and overwrites the outputs of every hidden test
cell with that verdict. nbgrader then reads the points from those outputs,
which is why nbgrader and `course grade` agree.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from nbconvert.preprocessors import Preprocessor
from nbformat import NotebookNode, write
from nbformat.v4 import new_output
from traitlets import Bool, Float, List, Unicode

COURSE_ID = "llm-course"
QUIET_ENV = {
    "PYTHONWARNINGS": "ignore",
    "TRANSFORMERS_VERBOSITY": "error",
    "TQDM_DISABLE": "1",
    "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MPLBACKEND": "Agg",
}


class IsolatedGrades(Preprocessor):
    """Replace the outputs of hidden test cells with the isolated grader's verdict."""

    enabled = Bool(True)  # nbconvert preprocessors are off unless enabled
    hide = List(Unicode(), help="Folders the sandbox must not see (the course directory).").tag(config=True)
    call_timeout = Float(10.0, help="Seconds one call of a student function may take.").tag(config=True)
    cell_budget = Float(60.0, help="Seconds all hidden tests of one cell may take.").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict]:
        from course.grading import GradeOptions, grade

        name = resources.get("nbgrader", {}).get("notebook") or "submission"
        options = GradeOptions(call_timeout=self.call_timeout, cell_budget=self.cell_budget,
                               hide=tuple(Path(p) for p in self.hide))
        with tempfile.TemporaryDirectory(prefix="course-autograde-") as tmp:
            path = Path(tmp) / f"{name}.ipynb"
            write(nb, path)
            result = grade(path, options=options)
        verdicts = {t["id"]: t for t in result["tests"]}
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
                cell.outputs = _outputs(verdicts.get(meta.get("grade_id")), meta.get("grade_id"))
        return nb, resources


def _outputs(verdict: dict[str, Any] | None, grade_id: str | None) -> list[NotebookNode]:
    """What the hidden cell shows: its verdict, as nbgrader's scoring reads it."""
    if verdict is None:
        return [new_output("error", ename="GraderFault", evalue=f"no verdict for {grade_id}",
                           traceback=[f"The grader produced no result for {grade_id}; ask for a regrade."])]
    head = f"{grade_id}: {verdict['points']:g} / {verdict['max_points']:g} ({verdict['status']})"
    if verdict["status"] == "passed":
        return [new_output("stream", name="stdout", text=f"{head}\n{verdict['feedback']}\n")]
    lines = [head, *verdict["feedback"].splitlines()]
    return [new_output("error", ename="HiddenTestFailed", evalue=verdict["status"], traceback=lines)]


def configure(c: Any, config_file: str | os.PathLike[str], course_id: str = COURSE_ID) -> None:
    """Fill the nbgrader config `c` of the course directory holding `config_file`."""
    from nbconvert.preprocessors import ClearMetadataPreprocessor
    from nbgrader.preprocessors import (
        AssignLatePenalties,
        CheckCellMetadata,
        ClearHiddenTests,
        IgnorePattern,
        LimitOutput,
        SaveAutoGrades,
    )

    from course.autograde_kernel import SafeExecute

    root = Path(config_file).resolve().parent
    os.environ.update(QUIET_ENV)
    os.environ.setdefault("HYPOTHESIS_STORAGE_DIRECTORY",
                          tempfile.mkdtemp(prefix="course-hypothesis-"))
    c.CourseDirectory.root = str(root)
    c.CourseDirectory.course_id = course_id
    c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
    c.Execute.timeout = 120
    c.Execute.extra_arguments = ["--InteractiveShell.xmode=Minimal"]
    c.Autograde.exclude_overwriting = {}
    c.Autograde.autograde_preprocessors = [
        SafeExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput, IsolatedGrades,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
    ]
    c.IsolatedGrades.hide = [str(root)]
    c.SandboxedKernelManager.hide = [str(root)]
    c.GenerateFeedback.preprocessors = [
        ClearHiddenTests, "nbgrader.preprocessors.GetGrades",
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    ]
