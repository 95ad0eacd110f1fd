"""Forbidden library calls: refused to student code in the sandbox, reported early by the visible checks."""

import importlib
import inspect

import pytest
import torch

from course import forbidden
from course.grading import graded_functions, point_cells, reference, suite
from course.lessons import all_lessons
from course.notebook import Cell, read_notebook
from course.sandbox import Sandbox, StudentError
from course.submissions import load_mutants, solution_sources, write_submission
from course.visible import run_check

from .conftest import write_notebook

SDPA = "torch.nn.functional.scaled_dot_product_attention is not allowed in graded code"


@pytest.fixture(scope="module")
def sdpa_in_mha(lesson03, tmp_path_factory):
    """Lesson 03 complete, except that multi_head_attention calls F.scaled_dot_product_attention."""
    mutant = next(m for m in load_mutants(lesson03) if m.name == "mha_with_torch_sdpa")
    return write_submission(lesson03, tmp_path_factory.mktemp("sdpa") / lesson03.notebook,
                            overrides={mutant.cell: mutant.source(solution_sources(lesson03))})


def test_a_forbidden_call_costs_that_function_its_points_with_the_reason(lesson03, sdpa_in_mha):
    from autograder.harness import RemoteStudent, run_cell

    points = dict(point_cells(lesson03))
    tests = suite(lesson03)
    with Sandbox(sdpa_in_mha, standins=tests.standins, graded=graded_functions(lesson03),
                 lesson="03") as box:
        student = RemoteStudent(box)
        mha = run_cell(tests, "test_multi_head_attention", points["test_multi_head_attention"], student,
                       reference(lesson03))
        mask = run_cell(tests, "test_causal_mask", points["test_causal_mask"], student, reference(lesson03))
    assert mha.points == 0 and SDPA in mha.feedback and "it computes the whole exercise" in mha.feedback
    assert "[multi_head_attention]" in mha.feedback  # the student's own line, not ours
    assert mask.points == mask.max_points > 0


STANDINS = """
import torch
import torch.nn.functional as F

def scaled_dot_product_attention(q, k, v, mask=None):
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

def drive_library(ns, q):
    mha = torch.nn.MultiheadAttention(q.shape[-1], 1)  # torch's internals call the forbidden F functions
    with torch.no_grad():
        return mha(q, q, q)[0] + F.scaled_dot_product_attention(q, q, q)
"""

CELLS = [
    ("import torch\nimport torch.nn.functional as F", "imports", False),
    ("def direct(q):\n    return F.scaled_dot_product_attention(q, q, q)", "direct", True),
    ("from torch.nn.functional import scaled_dot_product_attention as f\n\n"
     "def aliased(q):\n    return f(q, q, q)", "aliased", True),
    ("def builds_module(q):\n    return torch.nn.MultiheadAttention(q.shape[-1], 1)(q, q, q)[0]",
     "builds_module", True),
    ("class Mine(torch.nn.MultiheadAttention):\n    pass\n\ndef subclassed(q):\n    return Mine",
     "subclassed", True),
    ("def own(q):\n    return torch.softmax(q @ q.transpose(-2, -1), dim=-1) @ q", "own", True),
    ("def uses_standin(q):\n    return scaled_dot_product_attention(q, q, q)", "uses_standin", True),
]


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    path = write_notebook(tmp_path_factory.mktemp("fb"), *CELLS)
    graded = ("scaled_dot_product_attention", "uses_standin")
    with Sandbox(path, standins=STANDINS, graded=graded, lesson="03") as sandbox:
        yield sandbox


@pytest.mark.parametrize("function, names", [
    ("direct", SDPA), ("aliased", SDPA),  # the alias was made at load time, after the guard
    ("builds_module", "torch.nn.MultiheadAttention is not allowed"),
])
def test_student_code_is_refused_however_it_reaches_the_call(box, function, names):
    with pytest.raises(StudentError) as err:
        box.call(function, torch.ones(1, 2, 4))
    assert err.value.kind == "forbidden" and names in str(err.value) and "lesson 03" in str(err.value)


def test_subclassing_a_forbidden_class_fails_the_cell(box):
    with pytest.raises(StudentError, match="torch.nn.MultiheadAttention is not allowed"):
        box.call("subclassed", 1)


def test_own_code_stand_ins_drivers_and_library_internals_are_allowed(box):
    q = torch.randn(1, 3, 4, dtype=torch.float64)
    want = torch.nn.functional.scaled_dot_product_attention(q, q, q)
    assert torch.allclose(box.call("uses_standin", q), want)  # the stand-in calls F.sdpa itself
    assert box.call("own", q).shape == q.shape
    assert box.call("own", q.float(), driver="drive_library").shape == q.shape


def test_the_visible_check_reports_it_before_grading(sdpa_in_mha):
    checks = {c.grade_id: c.source for c in read_notebook(sdpa_in_mha)}
    with pytest.raises(pytest.fail.Exception) as err:
        run_check(checks["check_multi_head_attention"], "check_multi_head_attention", sdpa_in_mha, "03")
    assert "[multi_head_attention], line" in str(err.value) and SDPA in str(err.value)
    run_check(checks["check_causal_mask"], "check_causal_mask", sdpa_in_mha, "03")  # the others still run


@pytest.mark.parametrize("lesson", all_lessons(), ids=lambda lesson: lesson.number)
def test_reference_solutions_use_nothing_forbidden(lesson):
    assert forbidden.scan(read_notebook(lesson.solution), lesson.notebook, lesson.number) == []


def _cells(source: str) -> list[Cell]:
    imports = "import torch\nimport torch.nn.functional as F\nfrom torch import Tensor, nn\n"
    return [Cell(0, "code", imports, {"grade_id": "imports"}),
            Cell(1, "code", source, {"grade_id": "f", "solution": True})]


@pytest.mark.parametrize("lesson, source, name", [
    ("03", "from torch.nn.functional import scaled_dot_product_attention as f\n\n"
           "def g(q):\n    return f(q, q, q)", "torch.nn.functional:scaled_dot_product_attention"),
    ("03", "G = torch.nn.functional\n\ndef g(q):\n    return G.multi_head_attention_forward(q)",
     "torch.nn.functional:multi_head_attention_forward"),
    ("03", "class M(nn.MultiheadAttention):\n    pass", "torch.nn:MultiheadAttention"),
    ("02", "def g(x):\n    return x.softmax(-1)", "torch:Tensor.softmax"),
    ("02", "def g(x):\n    return torch.special.log_softmax(x, 0)", "torch.special:log_softmax"),
    ("01", "def g(text):\n    import tokenizers.models\n    return text", "tokenizers"),
    ("04", "from torch.nn.modules.normalization import LayerNorm", "torch.nn:LayerNorm"),
    ("06", "def g(model, ids):\n    return model.generate(ids)", "transformers:GenerationMixin.generate"),
    ("03", "def g(x):\n    return torch.softmax(x, -1)", None),  # allowed in lesson 03
])
def test_the_scan_resolves_imports_aliases_and_methods(lesson, source, name):
    found = forbidden.scan(_cells(source), "nb.ipynb", lesson)
    assert [f.name for f in found] == ([name] if name else [])


def test_every_forbidden_name_exists_in_the_installed_libraries():
    for rules in forbidden.RULES.values():
        for name in rules.calls:
            module, _, attribute = name.partition(":")
            obj = importlib.import_module(module)
            for part in filter(None, attribute.split(".")):
                obj = getattr(obj, part)
            assert callable(obj) or inspect.ismodule(obj), name
