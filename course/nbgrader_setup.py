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
cell with that verdict. The grading itself starts before execution, in a
thread beside the kernel (`StartIsolatedGrades`): it reads only the submitted
file, so the kernel's run and the grading overlap. nbgrader then reads the
points from those outputs, which is why nbgrader and `course grade` agree.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
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

    def grade(self, nb: NotebookNode, ids: dict[str, Any]) -> dict[str, Any]:
        """`course grade`'s result for the submission nbgrader is autograding (`ids`: its student,
        assignment and notebook)."""
        from course.forkserver import fork_server

        hide = tuple(Path(p) for p in self.hide)
        fork_server(hide).launch()  # the sandbox imports torch while this process does
        from course.grading import GradeOptions, grade

        options = GradeOptions(call_timeout=self.call_timeout, cell_budget=self.cell_budget, hide=hide)
        # Grade the file the student submitted, as `course grade` would (nbgrader's sanitizing may
        # have stripped the metadata of edited cells); the kernel could not write there.
        submitted = _submitted_file(self.config, ids)
        with tempfile.TemporaryDirectory(prefix="course-autograde-") as tmp:
            path = Path(tmp) / f"{ids.get('notebook') or 'submission'}.ipynb"
            if submitted is not None and submitted.is_file():
                shutil.copyfile(submitted, path)
            else:
                write(nb, path)
            return grade(path, options=options)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict]:
        started = resources.pop(_STARTED, None)
        result = (started.result() if started is not None
                  else self.grade(nb, resources.get("nbgrader", {})))
        verdicts = {t["id"]: t for t in result["tests"]}
        for cell in nb.cells:
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
                cell.outputs = _outputs(verdicts.get(meta.get("grade_id")), meta.get("grade_id"))
        return nb, resources


_STARTED = "course_isolated_grade"  # resources key: the grade started by StartIsolatedGrades
_GRADER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="course-grade")


class StartIsolatedGrades(IsolatedGrades):
    """Start `IsolatedGrades`' grading before the kernel runs, in a thread beside it.

    The verdict depends only on the submitted file, never on the kernel, so the two can overlap:
    the kernel executes the notebook on one core while the sandbox grades on another, and a
    submission takes about the longer of the two instead of their sum. `IsolatedGrades`, later
    in the same conversion, waits for this result.
    """

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict]:
        resources[_STARTED] = _GRADER.submit(self.grade, copy.deepcopy(nb),
                                             dict(resources.get("nbgrader", {})))
        return nb, resources


def _submitted_file(config: Any, ids: dict[str, Any]) -> Path | None:
    """Where nbgrader keeps the notebook as the student submitted it (`submitted/<student>/...`)."""
    from nbgrader.coursedir import CourseDirectory

    if not all(isinstance(ids.get(k), str) for k in ("student", "assignment", "notebook")):
        return None
    course = CourseDirectory(config=config)
    folder = course.format_path(course.submitted_directory, ids["student"], ids["assignment"])
    return Path(folder) / f"{ids['notebook']}.ipynb"


class QuarantineMetadata(Preprocessor):
    """Strip nbgrader metadata that a student edited into something nbgrader cannot validate.

    Stock nbgrader stops autograding the whole class at the first notebook whose cell metadata
    has another schema version or fails validation ("nbgrader update ."). Such a cell becomes
    an ordinary cell here, with a warning in the log; grading reads the submitted file anyway.
    Runs first in the sanitizing step, so also after `SafeDeduplicateIds`' nbgrader fix below.
    """

    enabled = Bool(True)

    def preprocess(self, nb: NotebookNode, resources: dict[str, Any]) -> tuple[NotebookNode, dict]:
        from nbgrader.nbgraderformat import MetadataValidator, ValidationError

        validator = MetadataValidator()
        for index, cell in enumerate(nb.cells):
            if "nbgrader" not in cell.get("metadata", {}):
                continue
            try:
                validator.validate_cell(cell)
            except (ValidationError, Exception) as err:  # noqa: BLE001 - jsonschema errors too
                self.log.warning("cell %d: nbgrader metadata edited (%s); treated as an ordinary cell",
                                 index + 1, str(err).splitlines()[0])
                del cell.metadata["nbgrader"]
        return nb, resources


def _dedup_without_schema_error() -> type:
    """nbgrader's DeduplicateIds leaves `{}` as the metadata of a duplicated cell, which the
    metadata check then rejects as an old schema, stopping the whole class; delete it instead."""
    from nbgrader.preprocessors import DeduplicateIds

    class SafeDeduplicateIds(DeduplicateIds):
        def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> tuple[NotebookNode, Any]:
            cell, resources = super().preprocess_cell(cell, resources, index)
            if cell.get("metadata", {}).get("nbgrader") == {}:
                del cell.metadata["nbgrader"]
            return cell, resources

    return SafeDeduplicateIds


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
        ClearOutput,
        IgnorePattern,
        LimitOutput,
        OverwriteCells,
        OverwriteKernelspec,
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
    c.Autograde.sanitize_preprocessors = [
        ClearOutput, QuarantineMetadata, _dedup_without_schema_error(), OverwriteKernelspec,
        OverwriteCells, CheckCellMetadata,
    ]
    c.Autograde.autograde_preprocessors = [
        StartIsolatedGrades, SafeExecute, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
        IsolatedGrades,
        SaveAutoGrades, AssignLatePenalties, CheckCellMetadata,
    ]
    c.IsolatedGrades.hide = [str(root)]
    c.SandboxedKernelManager.hide = [str(root)]
    c.GenerateFeedback.preprocessors = [
        ClearHiddenTests, "nbgrader.preprocessors.GetGrades",
        "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
    ]
