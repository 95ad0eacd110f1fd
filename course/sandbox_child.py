"""The sandboxed side of grading: load a student notebook, then answer calls.

`course.sandbox` runs `python -m course.sandbox_child --server` inside
bubblewrap (or as a plain child process where bubblewrap is missing): a fork
server that imports torch once and then forks one child per notebook. Each
child caps its own memory, CPU time and file output, loads the notebook with
the course loader and serves calls over stdin/stdout frames (see
`course.wire`). Student prints go to the output file the grader provides, not
to the protocol channel. Nothing here decides whether an answer is right: it
only sends results back.

The server talks to the grader over a Unix socket (its stdin): a `spawn`
request brings the notebook and the child's three pipes as file descriptors,
and the reply is the child's pid; a `reap` request waits for the child and
empties /tmp, so the next notebook starts from the state the server had; a
child that leaves processes running gets the whole server replaced. The
server is not dumpable, so student code cannot read or write its memory;
whatever a child does to the server itself makes the grader replace it.
"""

from __future__ import annotations

import argparse
import ctypes
import errno
import importlib
import json
import os
import shutil
import socket
import sys
import time
import traceback
from pathlib import Path
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


# -- the fork server ------------------------------------------------------------------------------
PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER = 4, 36


def _prctl(option: int, value: int) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def _children() -> list[int]:
    pids = []
    for task in Path("/proc/self/task").iterdir():
        pids += [int(c) for c in (task / "children").read_text().split()]
    return pids


def _fork_child(request: dict[str, Any], fds: list[int], work: Path) -> int:
    """Fork the child for one notebook; returns its pid (in the child, never returns)."""
    nb_fd, stdin_fd, stdout_fd, output_fd = fds
    pid = os.fork()
    if pid:
        for fd in fds:
            os.close(fd)
        return pid
    code = 1
    try:
        os.setsid()
        _prctl(PR_SET_DUMPABLE, 1)  # the grader reads this process's memory use from outside
        for fd, target in ((stdin_fd, 0), (stdout_fd, 1), (output_fd, 2)):
            os.dup2(fd, target)
        with os.fdopen(nb_fd, "rb") as f:
            source = f.read()
        os.closerange(3, os.sysconf("SC_OPEN_MAX"))  # the server's socket above all
        folder = work / "submission"
        folder.mkdir(parents=True, exist_ok=True)
        notebook = folder / Path(str(request["name"])).name
        notebook.write_bytes(source)
        os.chdir(work)
        serve([str(notebook), *map(str, request["args"])])
        code = 0
    except BaseException:  # noqa: BLE001 - the child must never return into the server's loop
        traceback.print_exc()
    finally:
        os._exit(code)


def _empty(folder: Path) -> None:
    try:
        entries = list(folder.iterdir())
    except OSError:
        return
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def _reap(pid: int, timeout: float, scratch: list[Path]) -> dict[str, Any]:
    """Wait up to `timeout` for the child, then empty `scratch`; `clean` says nothing it started is left."""
    status = None
    deadline = time.monotonic() + timeout
    while True:
        try:
            done, raw = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:  # not ours, or already reaped
            return {"status": None, "clean": not _children()}
        if done:
            status = os.waitstatus_to_exitcode(raw)
            break
        if time.monotonic() >= deadline:
            break
        time.sleep(0.01)
    if status is None:
        return {"status": None, "clean": False}
    for folder in scratch:
        _empty(folder)
    # Orphans of the child are ours (subreaper): any left, and the grader replaces this server.
    return {"status": status, "clean": not _children()}


# What every child of a lesson would import on first use, imported once by the server instead
# (found by listing the modules a child adds to sys.modules while its notebook is graded):
# torch.broadcast_shapes imports sympy (0.8 s), an optimizer's first step torch._dynamo (2.1 s).
PRELOAD = {
    "01": ("regex",),
    "03": ("torch.fx.experimental.symbolic_shapes",),
    "05": ("torch.fx.experimental.symbolic_shapes", "torch._dynamo"),
}


def _preload(lesson: str) -> None:
    for module in PRELOAD.get(lesson, ()):
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 - only a speed-up: the child imports it if it must
            traceback.print_exc()


def fork_server(work: Path, scratch: list[Path]) -> None:
    """Import what every child needs, then serve `spawn` and `reap` requests until the socket closes.

    Children work in `work`; `scratch` are the folders they can write to, emptied after each."""
    _prctl(PR_SET_DUMPABLE, 0)
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    sock = socket.socket(fileno=os.dup(0))
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != work.resolve()]
    import torch  # noqa: F401 - the point of the server: imported once, shared by every child

    import course.loader  # noqa: F401

    sock.send(json.dumps({"ready": os.getpid()}).encode())
    while True:
        try:
            data, fds, _, _ = socket.recv_fds(sock, 1 << 16, 8)
        except OSError:
            return
        if not data:
            return
        request = json.loads(data)
        if request["op"] == "spawn":
            _preload(str(request.get("lesson", "")))
            reply: dict[str, Any] = {"pid": _fork_child(request, fds, work)}
        else:
            reply = _reap(int(request["pid"]), float(request["timeout"]), scratch)
        sock.send(json.dumps(reply).encode())


if __name__ == "__main__":
    if sys.argv[1:2] == ["--server"]:  # --server WORK SCRATCH...
        fork_server(Path(sys.argv[2]), [Path(p) for p in sys.argv[3:]])
    else:
        serve(sys.argv[1:])
