"""The grader's side of the trust boundary: a sandboxed child that runs student code.

`Sandbox(notebook)` starts `course.sandbox_child` in a child process —
under bubblewrap where it works (read-only file system, the course's
solutions, hidden tests and home folder out of sight, no network, its own
process namespace), otherwise as a plain child process with the same resource
limits — and lets the grader call the notebook's functions:

    with Sandbox(path) as box:
        out = box.call("causal_mask", 4, timeout=5)

Only plain data crosses (see `course.wire`). A call that raises in student
code raises `StudentError` here; a call that hangs, crashes the child or runs
out of memory raises `SandboxFailure` (a `BaseException`, so that Hypothesis
does not try to shrink it) and the next call starts a fresh child, which
skips any cell that killed an earlier one while loading.

Children come from a `ForkServer`: one sandboxed process per grading process
that has imported torch once (4 s on a small machine) and forks a fresh child
for each notebook, so a class of notebooks pays for the import once per worker.
"""

from __future__ import annotations

import os
import select
import signal
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from course import wire
from course.bwrap import bubblewrap  # noqa: F401 - re-exported: where the sandbox says whether it works
from course.forkserver import Child, ForkServer, SandboxFailure, fork_server, kill_tree


@dataclass(frozen=True)
class Limits:
    memory_mb: int = 2048  # address space of the child
    cpu_seconds: int = 600  # CPU time over the child's whole life
    output_bytes: int = 8 << 20  # what the student's code may print
    load_seconds: float = 30.0  # importing torch + running the graded cells


class StudentError(Exception):
    """The student's function raised; `kind` is exception, not_implemented, forbidden, missing, memory
    or unsendable."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def memory_usage(pid: int) -> dict[str, int]:
    """`VmRSS` (resident now) and `VmHWM` (peak since the last reset) of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0]) * 1024
    return values


class Sandbox:
    """A child process holding one student notebook; see the module docstring."""

    def __init__(self, notebook: str | Path, limits: Limits = Limits(),
                 hide: list[Path] | tuple[Path, ...] = (), standins: str = "",
                 graded: tuple[str, ...] = (), lesson: str = ""):
        """standins: Python source run in the child: correct versions of the `graded`
        functions, used in place of the student's *other* graded functions during each
        call, and `drive_*` routines for `call(..., driver=...)`. lesson: whose forbidden
        library calls the child refuses to student code (`course.forbidden`)."""
        self.notebook = Path(notebook).resolve()
        self.standins = standins
        self.graded = list(graded)
        self.lesson = lesson
        self.limits = limits
        self.hide = [Path(p).resolve() for p in hide]
        self.load_errors: dict[str, str] = {}  # grade_id -> why that cell did not load
        self.broken: dict[str, str] = {}  # cells skipped because they hung or killed the child
        self._server: ForkServer | None = None
        self._child: Child | None = None
        self._out: Any = None
        self._buf = b""
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self.loaded = False
        self.last_output = ""

    # -- process life ---------------------------------------------------------
    def start(self) -> None:
        """Get ready to fork the child (the fork server imports torch while the caller works)."""
        self._workdir = tempfile.TemporaryDirectory(prefix="course-sandbox-")
        # O_APPEND, so that truncating the file (see `_trim_output`) really frees room.
        self._out = open(Path(self._workdir.name) / "output.txt", "ab")  # noqa: SIM115 - closed in kill()
        self._server = fork_server(tuple(self.hide))
        self._server.launch()
        self._child = None
        self._buf = b""
        self.loaded = False

    def _spawn(self) -> None:
        if self._out is None:
            self.start()
        assert self._server is not None and self._out is not None
        args = ["--skip", ",".join(self.broken), "--lesson", self.lesson,
                "--memory-mb", str(self.limits.memory_mb),
                "--cpu-seconds", str(self.limits.cpu_seconds),
                "--output-bytes", str(self.limits.output_bytes)]
        self._child = self._server.spawn(self.notebook, args, self._out.fileno(), self.lesson)
        self._buf = b""

    def kill(self) -> None:
        self.loaded = False
        if self._child is not None and self._server is not None and not self._child.reaped:
            kill_tree(self._child.pid)
            self._child.close()
            self._server.reap(self._child, timeout=5)
        self._child = None
        if self._out is not None:
            self._out.close()
            self._out = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    close = kill

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.kill()

    def _output_tail(self, limit: int = 2000) -> str:
        """The end of what the child printed (for messages about a failed start)."""
        if self._workdir is None:
            return ""
        path = Path(self._workdir.name) / "output.txt"
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - limit))
            return f.read().decode("utf-8", "replace")

    def _trim_output(self) -> None:
        """Empty the output file once it is half full, so prints cost only the call that overflows."""
        if self._out is not None and os.fstat(self._out.fileno()).st_size > self.limits.output_bytes // 2:
            os.ftruncate(self._out.fileno(), 0)

    # -- reading frames with a deadline ---------------------------------------
    def _death(self) -> SandboxFailure:
        assert self._child is not None and self._server is not None
        self._child.close()
        code = self._server.reap(self._child, timeout=5)
        output_size = os.fstat(self._out.fileno()).st_size if self._out is not None else 0
        self.last_output = self._output_tail()
        self.kill()
        if code in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or output_size >= self.limits.output_bytes:
            return SandboxFailure("output", f"printed more than {self.limits.output_bytes >> 20} MB "
                                  "of output; remove the print calls from graded code")
        if code in (-signal.SIGXCPU, 128 + signal.SIGXCPU):
            return SandboxFailure("timeout", "used up its CPU-time allowance")
        if code in (-signal.SIGKILL, 128 + signal.SIGKILL, -signal.SIGSEGV, 128 + signal.SIGSEGV):
            return SandboxFailure("crash", f"the process running your code was killed (exit {code}); "
                                  "a common cause is running out of memory")
        if code is None:
            return SandboxFailure("crash", "the process running your code stopped answering and was "
                                  "ended; graded code must not close its output or signal other processes")
        return SandboxFailure("crash", f"the process running your code exited (status {code}); "
                              "graded code must not call exit() or os._exit()")

    def _read(self, deadline: float) -> tuple[dict[str, Any], Any]:
        assert self._child is not None
        fd = self._child.stdout
        need = 8
        size: int | None = None
        while True:
            if size is None and len(self._buf) >= 8:
                size = wire.frame_size(self._buf[:8])
                need = 8 + size
            if size is not None and len(self._buf) >= need:
                body, self._buf = self._buf[8:need], self._buf[need:]
                return wire.decode_message(body)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.kill()
                raise SandboxFailure("timeout", "")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, max(need - len(self._buf), 1 << 16))
            if not chunk:
                raise self._death()
            self._buf += chunk

    def load(self) -> None:
        """Start the child if needed and wait until the notebook's cells have run.

        A cell that hangs or kills the child while loading is recorded in `broken`
        and skipped by the next child; `load` returns once a child has loaded."""
        while not self.loaded:
            if self._child is None:
                self._spawn()
            deadline = time.monotonic() + self.limits.load_seconds
            current: str | None = None
            try:
                while True:
                    header, _ = self._read(deadline)
                    if header.get("event") == "cell":
                        current = header.get("grade_id") or "?"
                    elif header.get("event") == "loaded":
                        errors = header.get("errors")
                        self.load_errors = dict(errors) if isinstance(errors, dict) else {}
                        self._send({"op": "standins", "graded": self.graded}, self.standins)
                        self.loaded = True
                        break
            except (SandboxFailure, wire.WireError) as failure:
                if current is None or current in self.broken:
                    # Dying before any cell ran is the sandbox's fault, not the student's.
                    raise SandboxFailure("crash", f"the grading process failed to start: {failure}\n"
                                         f"{self.last_output}") from None
                why = (f"running this cell took longer than {self.limits.load_seconds:.0f} s"
                       if isinstance(failure, SandboxFailure) and failure.kind == "timeout"
                       else f"running this cell ended the process: {failure}")
                self.broken[current] = why
                self.kill()

    def peak_memory(self, function: str, *args: Any, timeout: float = 10.0, **kwargs: Any) -> tuple[Any, int]:
        """`(result, bytes)`: the call's result and how far its resident memory rose above the start.

        Measured from outside the sandbox (Linux /proc: the peak-RSS counter is
        reset just before the call and read just after), so student code cannot
        influence the number except by really using less memory.
        """
        self.load()
        assert self._child is not None
        pid = self._child.pid
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        before = memory_usage(pid)["VmRSS"]
        result = self.call(function, *args, timeout=timeout, **kwargs)
        return result, max(0, memory_usage(pid)["VmHWM"] - before)

    # -- calls ------------------------------------------------------------------
    def _send(self, header: dict[str, Any], payload: Any) -> None:
        assert self._child is not None
        try:
            self._child.stdin.write(wire.encode_message(header, payload))
            self._child.stdin.flush()
        except BrokenPipeError:
            raise self._death() from None

    def call(self, function: str, *args: Any, timeout: float = 10.0,
             return_args: bool = False, driver: str | None = None, **kwargs: Any) -> Any:
        """Call `function(*args, **kwargs)` in the child; see the module docstring.

        With `return_args`, returns `(result, args_after, kwargs_after)` so the
        caller can check that the inputs were not mutated. With `driver`, calls
        the suite's routine `driver(namespace, *args, **kwargs)` instead, which
        exercises `function` (e.g. builds the student's class and runs it) and
        returns plain data.
        """
        self.load()
        if function in self.broken:
            raise StudentError("exception", f"the cell defining {function} could not run: "
                               f"{self.broken[function]}")
        self._send({"function": function, "return_args": return_args, "driver": driver},
                   (list(args), kwargs))
        try:
            header, payload = self._read(time.monotonic() + timeout)
        except SandboxFailure as failure:
            if failure.kind == "timeout" and not failure.args[0]:
                raise SandboxFailure("timeout", f"{function} did not return within {timeout:g} s") from None
            raise
        except wire.WireError as err:
            self.kill()
            raise StudentError("unsendable", f"{function} sent back something unreadable: {err}") from None
        self._trim_output()
        if header.get("ok") is True:
            if not isinstance(payload, tuple) or len(payload) not in (1, 3):
                raise StudentError("unsendable", f"{function} sent back a malformed reply")
            return payload if return_args else payload[0]
        kind = header.get("kind") if isinstance(header.get("kind"), str) else "exception"
        if kind == "output":
            raise StudentError(kind, f"{function} printed more than "
                               f"{self.limits.output_bytes >> 20} MB; remove print calls from graded code")
        if kind == "missing" and function in self.load_errors:
            raise StudentError("exception", self.load_errors[function])
        raise StudentError(kind, str(header.get("message", "")))
