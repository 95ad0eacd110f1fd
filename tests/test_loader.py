"""The one notebook loader."""

import pytest

from course.loader import NotebookLoadError, load_notebook, strip_magics
from course.notebook import NotebookError, read_notebook

from .conftest import write_notebook as make


def test_runs_imports_and_solution_cells_only(tmp_path):
    path = make(tmp_path, ("import math", "imports", False),
                ("def f(x):\n    return math.sqrt(x)", "f", True),
                ("raise RuntimeError('demo cell must not run')", None, False),
                ("g = lambda: 1", "check_f", False))
    mod = load_notebook(path).module
    assert mod.f(4) == 2 and not hasattr(mod, "g")


def test_magics_are_tolerated(tmp_path):
    path = make(tmp_path, ("%matplotlib inline\n!pip install x\nimport math", "imports", False),
                ("%%time\ndef f():\n    %time 1\n    return 3", "f", True))
    assert load_notebook(path).module.f() == 3
    assert strip_magics("  %time x\ny") == "  pass  # time x\ny"


def test_traceback_names_notebook_and_cell(tmp_path):
    path = make(tmp_path, ("import math", "imports", False), ("def f():\n    return 1 / 0\nf()", "f", True))
    with pytest.raises(NotebookLoadError) as err:
        load_notebook(path)
    msg = str(err.value)
    assert "nb.ipynb, cell 2 [f]" in msg and "line 2" in msg and "ZeroDivisionError" in msg
    assert "loader.py" not in msg


def test_lenient_mode_records_failures_and_goes_on(tmp_path):
    path = make(tmp_path, ("x = 1", "imports", False), ("syntax error here", "f", True),
                ("import sys\nsys.exit(3)", "g", True), ("def h():\n    return x", "h", True))
    loaded = load_notebook(path, strict=False)
    assert set(loaded.errors) == {"f", "g"} and "SyntaxError" in loaded.errors["f"]
    assert loaded.module.h() == 1


def test_skip(tmp_path):
    path = make(tmp_path, ("while True:\n    pass", "f", True), ("y = 2", "g", True))
    assert load_notebook(path, skip=["f"]).module.y == 2


@pytest.mark.parametrize("text,fragment", [
    ('{"cells": [', "not valid JSON"), ("[]", "not a Jupyter notebook"),
    ('{"worksheets": []}', "nbformat 3"), ('{"nbformat": 5, "cells": []}', "unsupported nbformat"),
])
def test_damaged_notebooks_give_plain_errors(tmp_path, text, fragment):
    path = tmp_path / "bad.ipynb"
    path.write_text(text)
    with pytest.raises(NotebookError, match=fragment):
        read_notebook(path)
