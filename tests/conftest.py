"""Shared fixtures of the project's own tests."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).parent))  # tests/bad_submissions, shared with the benchmarks

from course.lessons import get_lesson
from course.submissions import write_submission


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models and many small operations: one thread beats waking a thread pool for each."""
    import torch

    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n_threads)


@pytest.fixture(scope="session")
def lesson03():
    return get_lesson("03")


@pytest.fixture(scope="session")
def complete03(lesson03, tmp_path_factory) -> Path:
    """The released stub with every solution cell filled in with the reference."""
    return write_submission(lesson03, tmp_path_factory.mktemp("complete") / lesson03.notebook)


def notebook_with(lesson, tmp_path: Path, **cells: str) -> Path:
    """A complete submission whose named cells are replaced by the given sources."""
    return write_submission(lesson, tmp_path / lesson.notebook, overrides=cells)


def write_notebook(tmp_path: Path, *cells: tuple[str, str | None, bool], name: str = "nb.ipynb") -> Path:
    """A notebook of code cells `(source, grade_id or None, is_solution)`."""
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": []}
    for source, gid, solution in cells:
        meta = {} if gid is None else {"nbgrader": {"grade_id": gid, "solution": solution,
                                                    "grade": False, "locked": not solution}}
        nb["cells"].append({"cell_type": "code", "source": source, "metadata": meta,
                            "outputs": [], "execution_count": None})
    path = tmp_path / name
    path.write_text(json.dumps(nb))
    return path
