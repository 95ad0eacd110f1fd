"""The bad-submission corpus: broken and hostile lesson-03 notebooks, each with its expected grade.

Every case is generated from the lesson-03 reference (the released stub filled with the solution
cells, then damaged), so the corpus follows the solution notebook when it changes. `build(dir)`
writes one notebook per case and returns the cases; `tests/test_bad_submissions.py` grades them
through `course grade` and through nbgrader autograde and checks each expectation, and
`benchmarks/grade_all.py` mixes them into its class of 100.

An expectation says which hidden tests must score 0 (all others must keep full points), and a
phrase the feedback of the first of them must contain, so that the student is told why.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.lessons import get_lesson
from course.submissions import solution_sources, write_submission

LESSON = get_lesson("03")
MASK, SDPA = "causal_mask", "scaled_dot_product_attention"
MHA, TILED = "multi_head_attention", "tiled_attention"
ALL = (MASK, SDPA, MHA, TILED)


def test_id(function: str) -> str:
    return f"test_{function}"


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # "broken" | "hostile"
    what: str  # the submission in one line
    zero: tuple[str, ...]  # graded functions whose hidden tests must score 0; the others keep full points
    says: str = ""  # a phrase the feedback of the first zeroed test must contain (case-insensitive)
    needs_bwrap: bool = False  # only meaningful with the bubblewrap sandbox
    nbgrader: dict[str, Any] = field(default_factory=dict)  # {"zero": ..., "why": ...} where nbgrader differs
    path: Path = Path()

    def expected_points(self, points: dict[str, float]) -> dict[str, float]:
        """Hidden test id -> the points this case must get, given each test's maximum."""
        zeroed = {test_id(f) for f in self.zero}
        return {tid: 0.0 if tid in zeroed else pts for tid, pts in points.items()}


# -- building blocks ---------------------------------------------------------------------------------


def _reference() -> dict[str, str]:
    return solution_sources(LESSON)


def _wrapped(function: str, before: str) -> str:
    """The reference `function`, renamed, behind a wrapper that runs `before` on every call."""
    ref = _reference()[function].replace(f"def {function}(", f"def _honest_{function}(", 1)
    body = textwrap.indent(textwrap.dedent(before).strip(), "    ")
    return (f"{ref}\n\n\ndef {function}(*args, **kwargs):\n{body}\n"
            f"    return _honest_{function}(*args, **kwargs)\n")


def _preceded(function: str, code: str) -> str:
    """The reference cell of `function` with `code` run first, when the cell loads."""
    return textwrap.dedent(code).strip() + "\n\n" + _reference()[function]


def _cells(**overrides: str) -> Callable[[Path], None]:
    return lambda dest: write_submission(LESSON, dest, overrides=overrides)


def _edit_json(edit: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """A complete submission whose notebook JSON is changed by `edit`."""
    def make(dest: Path) -> None:
        write_submission(LESSON, dest)
        data = json.loads(dest.read_text())
        edit(data)
        dest.write_text(json.dumps(data, indent=1))
    return make


def _text(content: str | Callable[[str], str]) -> Callable[[Path], None]:
    """A file with this content (or: the complete submission's text passed through a function)."""
    def make(dest: Path) -> None:
        write_submission(LESSON, dest)
        dest.write_text(content(dest.read_text()) if callable(content) else content)
    return make


def _cell(data: dict[str, Any], grade_id: str) -> dict[str, Any]:
    return next(c for c in data["cells"]
                if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id)


def _drop(grade_id: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data["cells"].remove(_cell(data, grade_id))


def _set_meta(cell_id: str, **values: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: _cell(data, cell_id)["metadata"]["nbgrader"].update(values)


def _set_source(grade_id: str, source: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: _cell(data, grade_id).update(source=source)


def _v3(data: dict[str, Any]) -> None:
    cells = data.pop("cells")
    data.update(nbformat=3, nbformat_minor=0, worksheets=[{"cells": cells, "metadata": {}}])


# -- the cases ---------------------------------------------------------------------------------------

_SPECS: list[tuple[str, str, str, Callable[[Path], None], tuple[str, ...], str, dict[str, Any]]] = [
    # name, kind, what, make, zero, says, extra
    ("truncated_json", "broken", "the file is cut off halfway (a failed upload)",
     _text(lambda t: t[: len(t) // 2]), ALL, "not valid JSON", {}),
    ("not_a_notebook", "broken", "a Python script saved with the .ipynb extension",
     _text("import torch\n\ndef causal_mask(n):\n    return None\n"), ALL, "not valid JSON", {}),
    ("json_list", "broken", "valid JSON that is not a notebook",
     _text("[1, 2, 3]\n"), ALL, "not a Jupyter notebook", {}),
    ("nbformat_v3", "broken", "an old nbformat-3 notebook (worksheets)",
     _edit_json(_v3), ALL, "nbformat 3", {}),
    ("empty_file", "broken", "an empty file",
     _text(""), ALL, "not valid JSON", {}),
    ("graded_cell_deleted", "broken", "the tiled_attention cell is deleted",
     _edit_json(_drop(TILED)), (TILED,), "tiled_attention", {}),
    ("grade_id_duplicated", "broken", "the causal_mask cell carries the grade id of the next solution cell",
     _edit_json(_set_meta(MASK, grade_id=SDPA)), (), "", {}),
    ("grade_id_edited", "broken", "the grade id of the multi_head_attention cell is renamed",
     _edit_json(_set_meta(MHA, grade_id="my_attention")), (), "", {}),
    ("solution_flag_removed", "broken", "the causal_mask cell's nbgrader metadata says it is not a solution",
     _edit_json(_set_meta(MASK, solution=False)), (MASK,), "causal_mask", {}),
    ("schema_version_edited", "broken", "the nbgrader schema version of a solution cell is edited to 1",
     _edit_json(_set_meta(TILED, schema_version=1)), (), "", {}),
    ("points_inflated", "broken", "the points of a hidden test cell are edited to 100",
     _edit_json(_set_meta(test_id(MASK), points=100)), (), "", {}),
    ("test_cell_emptied", "broken", "a hidden test cell's source is replaced by print('passed')",
     _edit_json(_set_source(test_id(SDPA), "print('test_scaled_dot_product_attention: passed')")),
     (), "", {}),
    ("test_cell_deleted", "broken", "the hidden test cell of tiled_attention is deleted",
     _edit_json(_drop(test_id(TILED))), (), "",
     {"zero": (TILED,), "why": "nbgrader scores a deleted test cell 0; `course grade` reads the solution's"}),
    ("function_renamed", "broken", "causal_mask is defined under another name",
     _cells(causal_mask=_reference()[MASK].replace("def causal_mask(", "def causal_mask_v2(")),
     (MASK,), "causal_mask", {}),
    ("wrong_signature", "broken", "scaled_dot_product_attention has no mask parameter",
     _cells(scaled_dot_product_attention="def scaled_dot_product_attention(q, k, v):\n"
            "    w = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)\n"
            "    return w @ v\n"),
     (SDPA,), "mask", {}),
    ("syntax_error", "broken", "a syntax error in the multi_head_attention cell",
     _cells(multi_head_attention="def multi_head_attention(x, w_q, w_k, w_v, w_o, n_heads, causal=True)\n"
            "    return x\n"),
     (MHA,), "SyntaxError", {}),
    ("raises_at_load", "broken", "the tiled_attention cell raises before defining the function",
     _cells(tiled_attention=_preceded(TILED, "raise RuntimeError('not finished yet')")),
     (TILED,), "not finished yet", {}),
    ("returns_nan", "broken", "scaled_dot_product_attention returns NaN everywhere",
     _cells(scaled_dot_product_attention=_reference()[SDPA].replace(
         "return weights @ v", "return torch.full_like(weights @ v, float('nan'))")),
     (SDPA,), "nan", {}),
    ("returns_inf", "broken", "multi_head_attention returns +inf everywhere",
     _cells(multi_head_attention=_reference()[MHA].replace(
         "return merged @ w_o.T", "return torch.full_like(merged @ w_o.T, float('inf'))")),
     (MHA,), "inf", {}),
    ("wrong_shape", "broken", "multi_head_attention returns (batch, d_model, seq)",
     _cells(multi_head_attention=_reference()[MHA].replace(
         "return merged @ w_o.T", "return (merged @ w_o.T).transpose(1, 2)")),
     (MHA,), "shape", {}),
    ("wrong_dtype", "broken", "scaled_dot_product_attention always returns float16",
     _cells(scaled_dot_product_attention=_reference()[SDPA].replace(
         "return weights @ v", "return (weights @ v).half()")),
     (SDPA,), "dtype", {}),
    ("wrong_device", "broken", "causal_mask returns a tensor on the meta device",
     _cells(causal_mask=_reference()[MASK].replace(
         "return j[None, :] <= i[:, None]", "return (j[None, :] <= i[:, None]).to('meta')")),
     (MASK,), "meta", {}),
    ("mutates_inputs", "broken", "scaled_dot_product_attention scales q in place",
     _cells(scaled_dot_product_attention=_reference()[SDPA].replace(
         "scores = q @ k.transpose(-2, -1) / math.sqrt(d)",
         "q /= math.sqrt(d)\n    scores = q @ k.transpose(-2, -1)")),
     (SDPA,), "modif", {}),
    ("slow_but_correct", "broken", "causal_mask built with Python loops, one entry at a time",
     _cells(causal_mask="def causal_mask(seq_len, device=None):\n"
            "    rows = [[j <= i for j in range(seq_len)] for i in range(seq_len)]\n"
            "    return torch.tensor(rows, dtype=torch.bool, device=device).reshape(seq_len, seq_len)\n"),
     (), "", {}),
    # -- hostile -----------------------------------------------------------------------------------
    ("loop_at_load", "hostile", "the tiled_attention cell never finishes loading",
     _cells(tiled_attention=_preceded(TILED, "while True:\n    pass")),
     (TILED,), "longer than", {}),
    ("loop_in_call", "hostile", "scaled_dot_product_attention never returns",
     _cells(scaled_dot_product_attention=_wrapped(SDPA, "while True:\n    pass")),
     (SDPA,), "", {}),
    ("memory_at_load", "hostile", "the multi_head_attention cell allocates without bound when it loads",
     _cells(multi_head_attention=_preceded(
         MHA, "hoard = []\nwhile True:\n    hoard.append(bytearray(1 << 26))")),
     (MHA,), "memory", {}),
    ("memory_in_call", "hostile", "tiled_attention allocates without bound on every call",
     _cells(tiled_attention=_wrapped(
         TILED, "hoard = []\nwhile True:\n    hoard.append(torch.ones(1 << 24))")),
     (TILED,), "memory", {}),
    ("prints_gigabytes", "hostile", "causal_mask prints gigabytes to stdout and stderr",
     _cells(causal_mask=_wrapped(MASK, "import sys\nline = 'x' * (1 << 20)\nfor _ in range(4096):\n"
                                 "    print(line)\n    print(line, file=sys.stderr)")),
     (MASK,), "printed more than", {}),
    ("sys_exit_at_load", "hostile", "the causal_mask cell calls sys.exit() when it loads",
     _cells(causal_mask=_preceded(MASK, "import sys\nsys.exit(0)")),
     (MASK,), "causal_mask", {}),
    ("os_exit_at_load", "hostile", "the tiled_attention cell calls os._exit(0) when it loads",
     _cells(tiled_attention=_preceded(TILED, "import os\nos._exit(0)")),
     (TILED,), "tiled_attention", {}),
    ("sys_exit_in_call", "hostile", "scaled_dot_product_attention calls sys.exit(0)",
     _cells(scaled_dot_product_attention=_wrapped(SDPA, "import sys\nsys.exit(0)")),
     (SDPA,), "SystemExit", {}),
    ("os_exit_in_call", "hostile", "multi_head_attention calls os._exit(0)",
     _cells(multi_head_attention=_wrapped(MHA, "import os\nos._exit(0)")),
     (MHA,), "", {}),
    ("kills_parent", "hostile", "causal_mask kills its parent process and its process group",
     _cells(causal_mask=_wrapped(MASK, "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\n"
                                 "os.killpg(os.getpgid(0), signal.SIGKILL)")),
     (MASK,), "", {"needs_bwrap": True}),
    ("fork_bomb", "hostile", "tiled_attention forks 200 processes that outlive the call, then spins",
     _cells(tiled_attention=_wrapped(TILED, "import os, time\nfor _ in range(200):\n    try:\n"
                                     "        if os.fork() == 0:\n            time.sleep(600)\n"
                                     "    except OSError:\n        pass\nwhile True:\n    pass")),
     (TILED,), "", {"needs_bwrap": True}),
    ("patches_comparisons", "hostile",
     "wrong causal_mask, with torch.allclose, torch.equal, assert_close and numpy's comparisons patched",
     _cells(causal_mask="import numpy\n\ntorch.allclose = lambda *a, **k: True\n"
            "torch.equal = lambda *a, **k: True\n"
            "torch.testing.assert_close = lambda *a, **k: None\n"
            "numpy.testing.assert_allclose = lambda *a, **k: None\n"
            "numpy.allclose = lambda *a, **k: True\n\n\n"
            "def causal_mask(seq_len, device=None):\n"
            "    return torch.ones(seq_len, seq_len, dtype=torch.bool, device=device)\n"),
     (MASK,), "", {}),
    ("lying_tensor", "hostile", "a wrong result as a tensor subclass that claims to equal everything",
     _cells(scaled_dot_product_attention="class Agreeable(torch.Tensor):\n"
            "    def __eq__(self, other):\n        return True\n\n"
            "    def __torch_function__(self, func, types, args=(), kwargs=None):\n        return True\n\n\n"
            "def scaled_dot_product_attention(q, k, v, mask=None):\n"
            "    return torch.zeros(*q.shape[:-1], v.shape[-1], dtype=q.dtype).as_subclass(Agreeable)\n"),
     (SDPA,), "", {}),
    ("imports_the_grader", "hostile", "multi_head_attention takes its answer from the grader's reference",
     _cells(multi_head_attention="from course.grading import reference\n"
            "from course.lessons import get_lesson\n\n"
            "multi_head_attention = reference(get_lesson('03')).multi_head_attention\n"),
     (MHA,), "", {"needs_bwrap": True}),
    ("reads_the_solution", "hostile", "tiled_attention is read out of the solution notebook and hidden tests",
     _cells(tiled_attention="import json, pathlib\n\nfound = {}\n"
            "from course import REPO\n\n"
            "roots = [REPO, pathlib.Path.cwd(), *pathlib.Path.cwd().parents,\n"
            "         *pathlib.Path(torch.__file__).parents]\n"
            "for root in roots:\n"
            "    for path in [*root.glob('solutions/03/*.ipynb'), *root.glob('autograder/03/*.py')]:\n"
            "        found[path.name] = path.read_text()\n"
            "for cell in json.loads(found.get('attention.ipynb', '{\"cells\": []}'))['cells']:\n"
            "    if cell.get('metadata', {}).get('nbgrader', {}).get('grade_id') == 'tiled_attention':\n"
            "        exec(''.join(cell['source']))\n"),
     (TILED,), "tiled_attention", {"needs_bwrap": True}),
    ("writes_outside", "hostile",
     "causal_mask writes into the course checkout, the gradebook and the home folder, then answers correctly",
     _cells(causal_mask=_preceded(MASK, """
            import pathlib
            from course import REPO
            for target in [pathlib.Path.home() / 'pwned.txt', REPO / 'pwned.txt',
                           REPO / 'course' / 'pwned.txt',
                           *[p / 'pwned.txt' for p in pathlib.Path(torch.__file__).parents],
                           *[p / 'gradebook.db' for p in pathlib.Path.cwd().parents]]:
                try:
                    target.write_text('pwned')
                except OSError:
                    pass
            """)),
     (), "", {"needs_bwrap": True}),
    ("opens_network", "hostile",
     "causal_mask phones home before answering, and answers wrongly if it got through",
     _cells(causal_mask=_wrapped(MASK, """
            import socket
            try:
                socket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'leak')
                return torch.zeros(1)
            except OSError:
                pass
            """)),
     (), "", {"needs_bwrap": True}),
]


def names() -> list[str]:
    return [spec[0] for spec in _SPECS]


def build(out_dir: Path, port: int = 9) -> list[Case]:
    """Write every case's notebook into `out_dir` in nbgrader's submitted layout
    (`<case name>/03/attention.ipynb`, the case name standing for the student) and return the cases.

    port: the local TCP port the network case tries to reach (a test listens there)."""
    cases = []
    for name, kind, what, make, zero, says, extra in _SPECS:
        path = out_dir / name / LESSON.number / LESSON.notebook
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
        if name == "opens_network":
            path.write_text(path.read_text().replace("{port}", str(port)))
        extra = dict(extra)
        needs_bwrap = bool(extra.pop("needs_bwrap", False))
        cases.append(Case(name, kind, what, zero, says, needs_bwrap, extra, path))
    return cases
