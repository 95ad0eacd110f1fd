"""nbgrader's autograde execution, made safe: the kernel in a sandbox, outputs capped, deaths survived.

`nbgrader autograde` runs the whole submitted notebook in a Jupyter kernel
before it records scores, so that feedback shows the student's outputs. Stock
nbgrader runs that kernel as the instructor, next to the gradebook and the
other students' submissions, with no limits; and a kernel that dies or hangs
makes nbgrader drop the whole submission. Here:

- `SandboxedKernelManager` starts the kernel under the same bubblewrap
  sandbox as the grader's child (`course.sandbox.bwrap_argv`: read-only file
  system, the course directory hidden except the student's own submission
  folder, read-only, no network, its own process namespace) and the same kind of resource limits
  (`course.limits`). The kernel talks to nbgrader over unix sockets (ZeroMQ
  `ipc` transport) in a private folder, which is why it can do without a
  network. Where bubblewrap is missing, only the limits apply.
- `SafeExecute` is nbgrader's `Execute` with that kernel, a cap on the output a
  cell may produce while it runs (nbgrader's `LimitOutput` trims only after the
  fact, when gigabytes may already be in memory), and a kernel that dies or
  cannot be interrupted ends execution with a note instead of failing the
  submission. The scores never depend on this kernel anyway: `IsolatedGrades`
  grades the submitted source in the grader's own sandbox afterwards.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from jupyter_client.manager import AsyncKernelManager
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbformat.v4 import new_output
from nbgrader.preprocessors import Execute
from traitlets import Integer, List, Unicode

from course.bwrap import bubblewrap, bwrap_argv


class SandboxedKernelManager(AsyncKernelManager):
    """A kernel manager whose kernels run sandboxed and limited; see the module docstring."""

    memory_mb = Integer(8192, help="Address space of the kernel, MiB.").tag(config=True)
    cpu_seconds = Integer(1800, help="CPU time of the kernel over its life.").tag(config=True)
    file_bytes = Integer(64 << 20, help="Largest file the kernel may write.").tag(config=True)
    hide = List(Unicode(), help="Folders the kernel must not see (the course directory).").tag(config=True)

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._sockets = tempfile.mkdtemp(prefix="course-kernel-")
        self.transport = "ipc"
        self.ip = os.path.join(self._sockets, "kernel")

    async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
        limited = [sys.executable, "-m", "course.limits", "--memory-mb", str(self.memory_mb),
                   "--cpu-seconds", str(self.cpu_seconds), "--output-bytes", str(self.file_bytes), "--"]
        exe = bubblewrap()
        if exe is not None:
            cwd = Path(kw.get("cwd") or os.getcwd()).resolve()
            connection = Path(self.connection_file).resolve()
            # the working folder (the student's submission) is read-only: nothing the kernel does
            # changes what is graded; /tmp and the home folder are private scratch space
            prefix = bwrap_argv(exe, hide=[Path(p) for p in self.hide],
                                ro=[(connection, str(connection)), (cwd, str(cwd))],
                                rw=[Path(self._sockets)], chdir=str(cwd))
            # A signal to bubblewrap would end the sandbox: interrupt with a control message, which
            # the kernel turns into a SIGINT to itself.
            assert self.kernel_spec is not None
            self.kernel_spec.interrupt_mode = "message"
            # ipykernel exits when its parent is not JPY_PARENT_PID; inside the sandbox's process
            # namespace its parent is bubblewrap, which takes the kernel down with nbgrader anyway
            limited = prefix[:-1] + ["--unsetenv", "JPY_PARENT_PID", "--"] + limited
        kw.setdefault("env", dict(os.environ))["MALLOC_ARENA_MAX"] = "2"
        await super()._async_launch_kernel(limited + kernel_cmd, **kw)

    async def _async_cleanup_resources(self, restart: bool = False) -> None:
        await super()._async_cleanup_resources(restart=restart)
        if not restart:
            shutil.rmtree(self._sockets, ignore_errors=True)


def _note(text: str) -> NotebookNode:
    return new_output("stream", name="stderr", text=text)


class SafeExecute(Execute):
    """nbgrader's Execute with a sandboxed kernel, capped outputs, and no lost submissions."""

    cell_output_bytes = Integer(1 << 20, help="Output one cell may produce while it runs.").tag(config=True)

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("kernel_manager_class", SandboxedKernelManager)
        super().__init__(*args, **kwargs)
        self._printed: dict[int, int] = {}  # cell index -> output bytes so far
        self._stopped = ""  # why execution ended early, once it has

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None) -> Any:
        self._printed, self._stopped = {}, ""
        return super().preprocess(nb, resources, km)

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> tuple[NotebookNode, Any]:
        if self._stopped:
            if cell.cell_type == "code":
                cell.outputs = []
            return cell, resources
        try:
            return super().preprocess_cell(cell, resources, index)
        except (DeadKernelError, CellTimeoutError) as err:
            self._stopped = ("the kernel died while running this cell (exit, crash or memory limit)"
                             if isinstance(err, DeadKernelError)
                             else "this cell did not stop when interrupted after its time limit")
            cell.outputs.append(_note(f"Autograding stopped here: {self._stopped}. Later cells were not "
                                      "run. Your score does not depend on these outputs: the graded "
                                      "functions are tested separately.\n"))
            return cell, resources

    def output(self, outs: list[NotebookNode], msg: dict[str, Any], display_id: str | None,
               cell_index: int) -> NotebookNode | None:
        content = msg.get("content", {})
        size = len(str(content.get("text", ""))) + len(str(content.get("data", "")))
        used = self._printed.get(cell_index, 0)
        self._printed[cell_index] = used + size
        if used + size <= self.cell_output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        if used <= self.cell_output_bytes:
            outs.append(_note(f"\n[output of this cell cut at {self.cell_output_bytes >> 10} KiB]\n"))
        return None
