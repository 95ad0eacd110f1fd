"""`pytest assignments/03`: fails function by function on the stub, passes on a complete notebook."""

import subprocess
import sys

from course import REPO


def run_pytest(*args):
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
                          cwd=REPO, capture_output=True, text=True)


def test_stub_fails_test_by_test_naming_the_function():
    proc = run_pytest("assignments/03")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "error" not in proc.stdout.splitlines()[-1]  # no collection error
    for name in ("causal_mask", "scaled_dot_product_attention", "multi_head_attention"):
        assert f"{name} is not implemented yet" in proc.stdout
    assert "4 failed" in proc.stdout


def test_complete_notebook_passes_with_the_notebook_option(complete03):
    proc = run_pytest("assignments/03", "--notebook", str(complete03))
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "4 passed" in proc.stdout


def test_a_mistake_is_caught_by_a_visible_check(lesson03, tmp_path):
    from course.submissions import load_mutants, solution_sources, write_submission

    mutant = next(m for m in load_mutants(lesson03) if m.name == "causal_mask_excludes_diagonal")
    nb = write_submission(lesson03, tmp_path / lesson03.notebook,
                          overrides={mutant.cell: mutant.source(solution_sources(lesson03))})
    proc = run_pytest("assignments/03", "--notebook", str(nb), "-k", "causal_mask")
    assert proc.returncode == 1 and "causal_mask" in proc.stdout


def test_all_lessons_run_together():
    proc = run_pytest("assignments", "--co")
    assert proc.returncode == 0, proc.stdout[-2000:]
