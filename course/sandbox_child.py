"""The sandboxed side of grading: load a student notebook, then answer calls.

Run by `course.sandbox` as `python -m course.sandbox_child NOTEBOOK [options]`
inside bubblewrap (or a plain child process where bubblewrap is missing). It
first caps its own memory, CPU time and file output, then loads the notebook
with the course loader and serves calls over stdin/stdout frames (see
`course.wire`). Student prints go to the output file the parent provides, not
to the protocol channel. It never decides whether an answer is right: it only
sends results back.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import traceback
from typing import Any

from course import forbidden, limits, wire
from course.loader import load_notebook, student_traceback


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="course.sandbox_child")
    p.add_argument("notebook")
    p.add_argument("--skip", default="")
    p.add_argument("--lesson", default="")  # whose forbidden library calls to refuse
    limits.add_arguments(p)
    return p.parse_args(argv)


def _error_kind(exc: BaseException) -> str:
    if isinstance(exc, NotImplementedError):
        return "not_implemented"
    if isinstance(exc, forbidden.ForbiddenCall):
        return "forbidden"
    if isinstance(exc, MemoryError) or "can't allocate memory" in str(exc):
        return "memory"
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return "output"
    return "exception"


_MISSING = object()


def _swap_in(namespace: dict[str, Any], standins: dict[str, Any], names: list[str],
             graded: str) -> dict[str, Any]:
    """Put the lesson's stand-ins in place of the *other* graded functions (`names`) for one call.

    So each function is graded on its own: a student's multi_head_attention
    that calls their own scaled_dot_product_attention is judged with a
    correct one, and a bug (or an endless loop) costs only the function that has it.
    """
    saved = {}
    for other in names:
        if other != graded and callable(standins.get(other)):
            saved[other] = namespace.get(other, _MISSING)
            namespace[other] = standins[other]
    return saved


def _swap_out(namespace: dict[str, Any], saved: dict[str, Any]) -> None:
    for other, func in saved.items():
        if func is _MISSING:
            namespace.pop(other, None)
        else:
            namespace[other] = func


def serve(argv: list[str]) -> None:
    opts = _parse(argv)
    limits.apply(opts.memory_mb, opts.cpu_seconds, opts.output_bytes)
    # The protocol keeps private copies of stdin/stdout; fd 1 then points at
    # the output file (fd 2) and fd 0 at /dev/null, so prints and input()
    # from student code can never corrupt the channel.
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)

    import torch

    torch.set_num_threads(1)
    forbidden.install(opts.lesson)  # before loading, so aliases and subclasses made at load are caught

    def send(header: dict[str, Any], payload: Any = None) -> None:
        wire.write_message(proto_out, header, payload)

    loaded = load_notebook(
        opts.notebook,
        strict=False,
        skip=[s for s in opts.skip.split(",") if s],
        before_cell=lambda cell: send({"event": "cell", "grade_id": cell.grade_id}),
        module_name="submission",
    )
    namespace = loaded.module.__dict__
    send({"event": "loaded", "errors": loaded.errors})
    helpers: dict[str, Any] = {}  # the suite's sandbox code: stand-ins and drive_* functions
    graded_names: list[str] = []

    while True:
        try:
            header, payload = wire.read_message(proto_in)
        except wire.WireError:
            return  # the grader is done (or gone)
        if header.get("op") == "standins":
            exec(compile(str(payload), "<stand-ins>", "exec"), helpers)
            graded_names = [n for n in header.get("graded", []) if isinstance(n, str)]
            continue
        name = header.get("function")
        func = namespace.get(name) if isinstance(name, str) else None
        if not callable(func):
            send({"ok": False, "kind": "missing", "message": f"no function named {name!r}"})
            continue
        args, kwargs = payload
        driver = header.get("driver")
        if driver is not None:  # a suite-provided routine that exercises `name` (a class, say)
            args = [namespace, *args]
            func = helpers[driver]
        swapped = _swap_in(namespace, helpers, graded_names, name)
        try:
            result = func(*args, **kwargs)
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - reported to the grader
            send({"ok": False, "kind": _error_kind(exc), "message": student_traceback(exc)})
            continue
        finally:
            _swap_out(namespace, swapped)
        try:
            if driver is not None:
                args = args[1:]
            reply = (result, list(args), kwargs) if header.get("return_args") else (result,)
            send({"ok": True}, reply)
        except wire.Unsendable as exc:
            send({"ok": False, "kind": "unsendable", "message": f"{name} returned {exc.args[0]}"})
        except Exception:  # noqa: BLE001 - e.g. a tensor subclass that breaks on conversion
            message = traceback.format_exc(limit=0).strip().splitlines()[-1]
            send({"ok": False, "kind": "unsendable",
                  "message": f"{name} returned a value that could not be read: {message}"})


if __name__ == "__main__":
    serve(sys.argv[1:])
