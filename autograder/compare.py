"""Comparisons whose failures explain themselves to a student.

Every check raises `Failure` with a message that says what was compared, on
which input, and by how much it differs — never the reference's code.
Tolerances (tests/test_compare.py): float64 answers must agree to ~1e-9
relative; float32 answers are compared with the float64 reference computed
from the same float32 inputs. Besides each element, the whole tensor's
relative error is bounded, unless its absolute size is within rounding
(a float32 loss near 0 is the difference of two numbers near 8).
"""

from __future__ import annotations

from typing import Any

import torch

TOLERANCES = {  # dtype -> (rtol, atol)
    torch.float64: (1e-9, 1e-11),
    torch.float32: (1e-4, 2e-5),
}


class Failure(AssertionError):
    """A hidden check failed; the message is written for the student."""


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def expect(condition: bool, message: str) -> None:
    if not condition:
        raise Failure(message)


def expect_tensor(got: Any, what: str) -> torch.Tensor:
    if not isinstance(got, torch.Tensor):
        raise Failure(f"{what} should be a torch.Tensor, but it is a {type(got).__name__}")
    return got


def expect_equal(got: Any, want: Any, what: str) -> None:
    """Exact equality for discrete answers (ids, merges, vocabularies, strings).

    Lists and tuples count as the same container (`[(1, 2)]` equals `[[1, 2]]`);
    the message points at the first difference.
    """
    got, want = _plain(got), _plain(want)
    if type(got) is not type(want):
        raise Failure(f"{what} should be a {type(want).__name__}, but it is a {type(got).__name__}")
    if got == want:
        return
    if isinstance(want, (list, tuple, str, bytes)) and isinstance(got, (list, tuple, str, bytes)):
        i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        raise Failure(f"{what} differs first at position {i}: got {_short(got[i:i + 5])}, expected "
                      f"{_short(want[i:i + 5])} (lengths: got {len(got)}, expected {len(want)})")
    if isinstance(want, dict) and isinstance(got, dict):
        missing = [k for k in want if k not in got]
        extra = [k for k in got if k not in want]
        wrong = [k for k in want if k in got and got[k] != want[k]]
        parts = [f"missing keys {_short(missing)}" if missing else "",
                 f"unexpected keys {_short(extra)}" if extra else "",
                 f"wrong values at {_short(wrong)} (e.g. {wrong[0]!r}: got {_short(got[wrong[0]])}, "
                 f"expected {_short(want[wrong[0]])})" if wrong else ""]
        raise Failure(f"{what} is wrong: " + "; ".join(p for p in parts if p))
    raise Failure(f"{what} is {_short(got)}, expected {_short(want)}")


def _plain(x: Any) -> Any:
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {_plain_key(k): _plain(v) for k, v in x.items()}
    return x


def _plain_key(k: Any) -> Any:
    return tuple(_plain_key(v) for v in k) if isinstance(k, (list, tuple)) else k


def _short(x: Any, limit: int = 120) -> str:
    text = repr(x)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def expect_shape(got: Any, shape: tuple[int, ...], what: str) -> torch.Tensor:
    got = expect_tensor(got, what)
    if tuple(got.shape) != tuple(shape):
        raise Failure(f"{what} has shape {tuple(got.shape)}, expected {tuple(shape)}")
    return got


def expect_close(got: Any, want: torch.Tensor, what: str, *, dtype: torch.dtype | None = None,
                 rtol: float | None = None, atol: float | None = None) -> None:
    """`got` must be a tensor of `want`'s shape, of `dtype`, and close to `want`.

    `want` may be of a wider dtype than `got` (a float64 reference for a
    float32 answer); the tolerance is that of the answer's dtype.
    """
    got = expect_tensor(got, what)
    dtype = dtype or want.dtype
    if got.shape != want.shape:
        raise Failure(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    if got.dtype != dtype:
        raise Failure(f"{what} has dtype {got.dtype}, expected {dtype} (return the input's dtype)")
    if got.dtype == torch.bool or not got.is_floating_point():
        if not torch.equal(got, want.to(got.dtype)):
            bad = (got != want.to(got.dtype)).nonzero()[0].tolist()
            raise Failure(f"{what} differs at index {tuple(bad)}: got {got[tuple(bad)].item()}, "
                          f"expected {want[tuple(bad)].item()}")
        return
    d_rtol, d_atol = TOLERANCES.get(got.dtype, (1.3e-6, 1e-5))
    rtol = d_rtol if rtol is None else rtol
    atol = d_atol if atol is None else atol
    g, w = got.double(), want.double()
    if not torch.isfinite(g).all() and torch.isfinite(w).all():
        bad = (~torch.isfinite(g)).nonzero()[0].tolist()
        raise Failure(f"{what} contains {g[tuple(bad)].item()} at index {tuple(bad)} where a finite "
                      f"value ({_fmt(w[tuple(bad)].item())}) was expected")
    if g.numel() == 0:
        return
    err = (g - w).abs()
    allowed = atol + rtol * w.abs()
    frob = (torch.linalg.vector_norm(g - w) / torch.linalg.vector_norm(w).clamp_min(1e-30)).item()
    whole = (frob > 10 * rtol) and torch.linalg.vector_norm(g - w).item() > atol
    if (err > allowed).any() or whole:
        idx = tuple(torch.unravel_index(torch.argmax(err - allowed), err.shape))
        idx = tuple(int(i) for i in idx)
        raise Failure(
            f"{what} is wrong: largest error {_fmt(err[idx].item())} at index {idx} "
            f"(got {_fmt(g[idx].item())}, expected {_fmt(w[idx].item())}); "
            f"relative error of the whole tensor {_fmt(frob)} (allowed: {_fmt(rtol)})"
        )


def expect_unchanged(before: list[Any], after: list[Any], names: list[str]) -> None:
    """Inputs handed to the student's function must come back unchanged."""
    for name, a, b in zip(names, before, after):
        if isinstance(a, torch.Tensor) and not (
            isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
        ):
            raise Failure(f"your function changed its input `{name}` in place; graded functions "
                          "must not mutate their inputs (avoid in-place ops like `mul_`, `+=` on inputs)")
