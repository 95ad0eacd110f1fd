"""bubblewrap, the sandbox both grading paths run student code in: whether it works here, and
its arguments. Kept apart from `course.sandbox` so that importing it costs no torch import
(the nbgrader configuration imports it for every nbgrader command)."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from course import REPO


@functools.cache
def bubblewrap() -> str | None:
    """Path of a working `bwrap`, or None (missing, not permitted here, or COURSE_NO_BWRAP=1)."""
    exe = shutil.which("bwrap")
    if exe is None or os.environ.get("COURSE_NO_BWRAP") == "1":
        return None
    probe = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-all",
             "--die-with-parent", "true"]
    try:
        ok = subprocess.run(probe, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        ok = False
    return exe if ok else None


def isolation_note() -> str:
    if bubblewrap():
        return ("bubblewrap: read-only file system, solutions and hidden tests hidden, "
                "no network, resource limits")
    return ("WARNING: bubblewrap is not available, so student code runs in a plain child "
            "process with resource limits but can read the file system and use the network "
            "(install it with `apt-get install bubblewrap`)")


def bwrap_argv(exe: str, *, hide: list[Path] | tuple[Path, ...] = (),
               ro: list[tuple[Path, str]] | tuple[()] = (), rw: list[Path] | tuple[()] = (),
               chdir: str = "/tmp", new_session: bool = True, scratch_only: bool = False) -> list[str]:
    """bubblewrap's arguments for running student code.

    The whole file system read-only, with /tmp, the home folder, the course
    checkout and `hide` replaced by empty private folders (the interpreter and
    the `course` package are put back); then `ro` files bound in read-only at
    the given paths and the `rw` folders writable; no network, its own
    process namespace, killed with its parent. `new_session` detaches it from
    the terminal (and from signals sent to the parent's process group).
    `scratch_only` leaves /tmp and /dev/shm the only writable places (a
    sandbox that outlives one notebook wipes them between notebooks).
    """
    argv = [exe, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    visible = {Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), REPO / "course"}
    hidden = {Path("/tmp"), Path(tempfile.gettempdir()).resolve(), Path.home().resolve(), REPO, *hide}
    for path in sorted(hidden, key=lambda p: len(p.parts)):
        if path.is_dir():
            argv += ["--tmpfs", str(path)]
    # Re-expose what the child needs that lives under a hidden folder.
    for path in sorted(visible, key=lambda p: len(p.parts)):
        if path.exists() and any(path.is_relative_to(h) for h in hidden):
            argv += ["--ro-bind", str(path), str(path)]
    for src, dest in ro:
        argv += ["--ro-bind", str(src), dest]
    for path in rw:
        argv += ["--bind", str(path), str(path)]
    if scratch_only:
        scratch = {Path("/tmp"), Path(tempfile.gettempdir()).resolve()}
        argv += ["--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
        for path in sorted(hidden - scratch, key=lambda p: len(p.parts)):
            if path.is_dir():
                argv += ["--remount-ro", str(path)]
    argv += ["--chdir", chdir, "--unshare-all", "--die-with-parent"]
    return argv + (["--new-session", "--"] if new_session else ["--"])
