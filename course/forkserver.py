"""The fork server: one sandboxed process per grading process that imports torch once and forks a
child for each notebook (`course.sandbox_child.fork_server` is its other side).

Kept apart from `course.sandbox`, and free of torch, so that a command can start the server first
and import torch itself while the server does the same (`course grade` starts it before anything
else: the two imports overlap instead of following each other).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course import REPO
from course.bwrap import bubblewrap, bwrap_argv


class SandboxFailure(BaseException):
    """The child hung, died or broke a limit; `kind` is timeout, crash, memory or output."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it, parents before children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo += [int(c) for c in task.read_text().split()]
            except OSError:  # gone meanwhile
                continue
    return out


def kill_tree(pid: int) -> None:
    """SIGKILL `pid` and everything below it, children first."""
    for p in reversed(descendants(pid)):
        try:
            os.kill(p, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _child_env(home: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": home,
            "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TQDM_DISABLE": "1",
            # big buffers straight from mmap and back on free, so resident memory tracks live data
            "MALLOC_MMAP_THRESHOLD_": "65536", "PYTHONPATH": "" if home == "/tmp" else str(REPO)}


@dataclass
class Child:
    """One forked child holding a notebook: its pids and the two ends of its protocol pipes."""

    pid: int  # as this process sees it
    inner_pid: int  # as the fork server sees it (its own pid namespace under bubblewrap)
    stdin: Any  # binary file: frames to the child
    stdout: int  # file descriptor: frames from the child
    server: int  # which start of its server forked it (`ForkServer.starts`)
    closed: bool = field(default=False)
    reaped: bool = field(default=False)  # ended and waited for: its pid may belong to another process

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.stdin.close()
            os.close(self.stdout)


class ForkServer:
    """The sandboxed process that forks children (see `course.sandbox_child.fork_server`).

    Started lazily, one per grading process and set of hidden folders, and
    replaced whenever it stops answering or a child leaves processes behind.
    """

    start_seconds = 60.0  # importing torch on a loaded machine
    answer_seconds = 20.0

    def __init__(self, hide: tuple[Path, ...]):
        self.hide = hide
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._pid = 0  # the server's pid here, once it said it is ready
        self.starts = 0  # how many times it was started: a child of an earlier start is gone

    def launch(self) -> None:
        """Start the server without waiting for it (it imports torch meanwhile)."""
        if self._proc is not None and self._proc.poll() is None:
            return
        self.shutdown()
        self._tmp = tempfile.TemporaryDirectory(prefix="course-forkserver-")
        exe = bubblewrap()
        work = "/tmp" if exe else str(Path(self._tmp.name) / "work")
        Path(self._tmp.name, "work").mkdir()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        # what children can write to, emptied after each one: in bubblewrap /tmp and /dev/shm
        # (`scratch_only`), else the server's own folder
        scratch = ["/tmp", "/dev/shm"] if exe else [work]
        command = [sys.executable, "-m", "course.sandbox_child", "--server", work, *scratch]
        argv = bwrap_argv(exe, hide=list(self.hide), scratch_only=True) + command if exe else command
        with open(Path(self._tmp.name) / "server.log", "ab") as log:
            self._proc = subprocess.Popen(argv, stdin=theirs.fileno(), stdout=log, stderr=log,
                                          cwd=self._tmp.name, env=_child_env(work),
                                          start_new_session=True)
        theirs.close()
        self._sock = ours
        self._pid = 0
        self.starts += 1

    def _fail(self, why: str) -> SandboxFailure:
        log = Path(self._tmp.name) / "server.log" if self._tmp else None
        tail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
        self.shutdown()
        return SandboxFailure("crash", f"the grading process failed to start: {why}\n{tail}".rstrip())

    def _receive(self, timeout: float) -> dict[str, Any]:
        assert self._sock is not None
        self._sock.settimeout(timeout)
        try:
            data = self._sock.recv(1 << 16)
            reply = json.loads(data) if data else None
        except (OSError, ValueError):
            reply = None
        if not isinstance(reply, dict):
            raise self._fail("the fork server stopped answering")
        return reply

    def _ask(self, request: dict[str, Any], fds: list[int], timeout: float) -> dict[str, Any]:
        self.launch()
        assert self._sock is not None
        if not self._pid:
            ready = self._receive(self.start_seconds)
            self._pid = self._host_pid(self._proc.pid if self._proc else 0, int(ready.get("ready", 0)))
        try:
            socket.send_fds(self._sock, [json.dumps(request).encode()], fds)
        except OSError:
            raise self._fail("the fork server is gone") from None
        return self._receive(timeout)

    @staticmethod
    def _host_pid(root: int, inner: int) -> int:
        """The pid, as seen here, of the process under `root` whose innermost pid is `inner`."""
        for pid in descendants(root):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            nspid = [line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")]
            if nspid and nspid[0] and int(nspid[0][-1]) == inner:
                return pid
        raise SandboxFailure("crash", "the process running your code is gone")

    def spawn(self, notebook: Path, args: list[str], output_fd: int, lesson: str = "") -> Child:
        """Fork a child that loads `notebook` and serves calls, printing into `output_fd`; a server
        that a previous notebook broke is replaced (once) before this one is refused. `lesson`
        lets the server import, once, what that lesson's children would each import."""
        try:
            return self._spawn(notebook, args, output_fd, lesson)
        except SandboxFailure:
            return self._spawn(notebook, args, output_fd, lesson)

    def _spawn(self, notebook: Path, args: list[str], output_fd: int, lesson: str) -> Child:
        to_child, to_child_w = os.pipe()
        from_child, from_child_w = os.pipe()
        with open(notebook, "rb") as nb:
            fds = [nb.fileno(), to_child, from_child_w, output_fd]
            try:
                reply = self._ask({"op": "spawn", "name": notebook.name, "args": args, "lesson": lesson}, fds,
                                  self.answer_seconds)
            finally:
                os.close(to_child)
                os.close(from_child_w)
        inner = int(reply.get("pid", 0))
        try:
            pid = self._host_pid(self._pid, inner)
        except SandboxFailure:
            os.close(to_child_w)
            os.close(from_child)
            raise
        return Child(pid, inner, os.fdopen(to_child_w, "wb"), from_child, self.starts)

    def reap(self, child: Child, timeout: float) -> int | None:
        """The child's exit status once it ends (None if it does not within `timeout`); a child that
        left processes behind, or a server that does not answer, gets the server replaced."""
        child.reaped = True
        if child.server != self.starts or self._proc is None or self._proc.poll() is not None:
            return None  # it went down with its server
        try:
            reply = self._ask({"op": "reap", "pid": child.inner_pid, "timeout": timeout}, [],
                             timeout + self.answer_seconds)
        except SandboxFailure:
            return None
        status = reply.get("status")
        if not reply.get("clean"):
            self.shutdown()
        return status if isinstance(status, int) else None

    def shutdown(self) -> None:
        if self._proc is not None:
            kill_tree(self._proc.pid)
            self._proc.wait()
            self._proc = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        self._pid = 0


_servers: dict[tuple[int, tuple[Path, ...]], ForkServer] = {}


def fork_server(hide: tuple[Path, ...] = ()) -> ForkServer:
    """This process's fork server for sandboxes that hide `hide` (a forked process gets its own)."""
    key = (os.getpid(), hide)
    if key not in _servers:
        _servers[key] = ForkServer(hide)
    return _servers[key]


@atexit.register
def _stop_servers() -> None:
    for (pid, _), server in _servers.items():
        if pid == os.getpid():
            server.shutdown()
