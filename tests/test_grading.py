"""`course grade` on lesson 03: full marks, zero, partial, and failures that cost only their own points."""

import json
import subprocess
import sys
import time

from course.grading import GradeOptions, grade
from course.sandbox import Limits

from .conftest import notebook_with

# Correct implementations written differently from the reference: they must keep full marks.
EINSUM_SDPA = '''
def scaled_dot_product_attention(q, k, v, mask=None):
    scores = torch.einsum("...qd,...kd->...qk", q, k) * q.shape[-1] ** -0.5
    if mask is not None:
        scores = scores.masked_fill(mask.logical_not(), float("-inf"))
    weights = torch.exp(scores - scores.amax(-1, keepdim=True))
    if mask is not None:  # mask after softmax, renormalised: equivalent
        weights = weights * mask
    weights = weights / weights.sum(-1, keepdim=True)
    return torch.einsum("...qk,...kd->...qd", weights, v)
'''

QUERY_AND_KEY_TILED = '''
def tiled_attention(q, k, v, block_size, causal=True):
    tq, tk = q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(q.shape[-1])
    rows = []
    for i0 in range(0, tq, block_size):
        qi = q[..., i0:i0 + block_size, :]
        m = torch.full(qi.shape[:-1], float("-inf"), dtype=q.dtype)
        l = torch.zeros(qi.shape[:-1], dtype=q.dtype)
        acc = torch.zeros(*qi.shape[:-1], v.shape[-1], dtype=q.dtype)
        for j0 in range(0, tk, block_size):
            s = qi @ k[..., j0:j0 + block_size, :].transpose(-1, -2) * scale
            if causal:
                qpos = torch.arange(i0, i0 + qi.shape[-2]).unsqueeze(-1)
                kpos = torch.arange(j0, j0 + s.shape[-1]).unsqueeze(0)
                s = s.masked_fill(kpos > qpos, float("-inf"))
            m_new = torch.maximum(m, s.amax(-1))
            safe = torch.where(torch.isinf(m_new), torch.zeros_like(m_new), m_new)
            p = torch.exp(s - safe.unsqueeze(-1))
            corr = torch.exp(m - safe)
            l = l * corr + p.sum(-1)
            acc = acc * corr.unsqueeze(-1) + p @ v[..., j0:j0 + block_size, :]
            m = m_new
        rows.append(acc / l.unsqueeze(-1))
    return torch.cat(rows, dim=-2)
'''

FOREVER = "def causal_mask(seq_len, device=None):\n    while True:\n        pass\n"


def points(result):
    return {t["id"]: t["points"] for t in result["tests"]}


def test_solution_full_and_stub_zero(lesson03):
    full = grade(lesson03.solution)
    assert full["score"] == full["max_score"] == 10, full
    stub = grade(lesson03.assignment)
    assert stub["score"] == 0 and stub["max_score"] == 10
    assert all(t["status"] == "error" and "not implemented yet" in t["feedback"] for t in stub["tests"])


def test_other_correct_implementations_keep_full_marks(lesson03, tmp_path):
    path = notebook_with(lesson03, tmp_path, scaled_dot_product_attention=EINSUM_SDPA,
                         tiled_attention=QUERY_AND_KEY_TILED)
    result = grade(path)
    assert result["score"] == result["max_score"], json.dumps(result, indent=1)


def test_a_mistake_loses_only_its_points_with_feedback(lesson03, tmp_path):
    wrong = EINSUM_SDPA.replace('q.shape[-1] ** -0.5', '1.0')
    result = grade(notebook_with(lesson03, tmp_path, scaled_dot_product_attention=wrong))
    pts = points(result)
    assert pts["test_scaled_dot_product_attention"] == 0
    # multi_head_attention calls the broken function, but is graded with a correct stand-in for it
    assert pts["test_causal_mask"] == 1 and pts["test_tiled_attention"] == 3
    assert pts["test_multi_head_attention"] == 3
    sdpa = next(t for t in result["tests"] if t["id"] == "test_scaled_dot_product_attention")
    assert sdpa["status"] == "failed"
    assert "largest error" in sdpa["feedback"] and "q (" in sdpa["feedback"]  # the error and the input
    assert "def " not in sdpa["feedback"] and "BEGIN" not in sdpa["feedback"]  # no source leaks


def test_verdict_only_gives_the_same_points_with_one_failure_named(lesson03, tmp_path):
    """`course validate` grades for points only: first failed property, no shrinking."""
    wrong = EINSUM_SDPA.replace('q.shape[-1] ** -0.5', '1.0')
    path = notebook_with(lesson03, tmp_path, scaled_dot_product_attention=wrong)
    only = ("test_scaled_dot_product_attention",)
    full = grade(path, options=GradeOptions(only=only))
    quick = grade(path, options=GradeOptions(only=only, verdict_only=True))
    assert points(quick) == points(full) == {only[0]: 0}
    listed = [[line[:4] for line in t["feedback"].splitlines() if line[:4] in ("ok  ", "FAIL")]
              for t in (full["tests"][0], quick["tests"][0])]
    assert listed[1][-1] == "FAIL" and listed[1].count("FAIL") == 1  # stops at the first failure
    assert len(listed[1]) <= len(listed[0]) and "FAIL" in listed[0]


def test_an_infinite_loop_costs_only_that_function_within_the_timeout(lesson03, tmp_path):
    options = GradeOptions(call_timeout=3, cell_budget=10)
    start = time.monotonic()
    result = grade(notebook_with(lesson03, tmp_path, causal_mask=FOREVER), options=options)
    assert time.monotonic() - start < 60
    by_id = {t["id"]: t for t in result["tests"]}
    assert by_id["test_causal_mask"]["status"] == "timeout" and by_id["test_causal_mask"]["points"] == 0
    assert result["score"] == result["max_score"] - 1


def test_unbounded_memory_costs_only_that_function(lesson03, tmp_path):
    hog = "def causal_mask(seq_len, device=None):\n    x = [bytearray(10**8) for _ in range(10**4)]\n"
    result = grade(notebook_with(lesson03, tmp_path, causal_mask=hog),
                   options=GradeOptions(limits=Limits(memory_mb=1500)))
    assert points(result)["test_causal_mask"] == 0
    assert result["score"] == result["max_score"] - 1


def test_unreadable_notebook_yields_the_object_with_reason(tmp_path):
    bad = tmp_path / "attention.ipynb"
    bad.write_text('{"cells": [')
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(bad), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["lesson"] == "03" and result["score"] == 0 and result["max_score"] == 10
    assert all("not valid JSON" in t["feedback"] for t in result["tests"])


def test_bad_usage_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "course", "grade", "x.ipynb", "--lesson", "99"],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "no lesson" in proc.stderr


def test_cli_grade_json(lesson03, complete03):
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(complete03), "--json"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert set(result) == {"lesson", "notebook", "score", "max_score", "tests"}
    assert result["score"] == 10
    assert set(result["tests"][0]) == {"id", "points", "max_points", "status", "feedback"}


def test_cli_table_without_bubblewrap_falls_back_and_says_so(complete03):
    """The human-readable table, from a run without the sandbox (one CLI run checks both)."""
    import os

    env = dict(os.environ, COURSE_NO_BWRAP="1")
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(complete03)],
                          capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "total" in proc.stdout and "10 / 10" in proc.stdout and "Isolation:" in proc.stdout
    assert "WARNING: bubblewrap is not available" in proc.stdout
