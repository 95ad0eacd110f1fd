"""The docstring of every graded function is its spec: it documents exactly the real parameters."""

import ast
import re

import pytest

from course.lessons import all_lessons
from course.notebook import read_notebook

CELLS = [(lesson, cell) for lesson in all_lessons() for cell in read_notebook(lesson.solution)
         if cell.is_solution]


@pytest.mark.parametrize("lesson,cell", CELLS, ids=[f"{lesson.number}-{c.grade_id}" for lesson, c in CELLS])
def test_docstring_names_the_parameters_of_the_signature(lesson, cell):
    tree = ast.parse(cell.source)
    graded = [n for n in tree.body if isinstance(n, (ast.FunctionDef, ast.ClassDef))
              and n.name == cell.grade_id]
    assert graded, f"cell {cell.grade_id} does not define {cell.grade_id}"
    node = graded[0]
    doc = ast.get_docstring(node) or ""
    assert doc, f"{cell.grade_id} has no docstring"
    if isinstance(node, ast.FunctionDef):
        params = [a.arg for a in node.args.args + node.args.kwonlyargs]
        args_section = re.search(r"Args:\n(.*?)(\n\s*\n|\Z)", doc, re.S)
        assert args_section, f"{cell.grade_id}: the docstring has no Args: section"
        groups = re.findall(r"^\s{4}(\w+(?:, \w+)*)(?: \(.*?\))?:", args_section.group(1), re.M)
        documented = [name for group in groups for name in group.split(", ")]  # "w_q, w_k: ..."
        assert documented == params, f"{cell.grade_id}: Args {documented} != signature {params}"
