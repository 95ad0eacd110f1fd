"""Resource limits for the processes that run student code.

`apply` caps the calling process (the grader's sandbox child calls it on
itself); `python -m course.limits --memory-mb N --cpu-seconds N --output-bytes N -- CMD...`
applies the same caps and then becomes CMD (the nbgrader autograde kernel is
started this way). Limits are inherited by every process the student starts.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys

MORE_PROCESSES = 256  # processes student code may start (applies only when not running as root)


def _processes_of_this_user() -> int:
    uid = str(os.getuid())
    count = 0
    for status in os.scandir("/proc"):
        if status.name.isdigit():
            try:
                with open(f"/proc/{status.name}/status") as f:
                    count += any(line.split()[1:2] == [uid] for line in f if line.startswith("Uid:"))
            except OSError:
                continue
    return count


def apply(memory_mb: int, cpu_seconds: int, output_bytes: int) -> None:
    """Cap address space, CPU time, the size of any file written and (unless root, whom the
    kernel does not count) the number of processes; no core dumps."""
    for which, value in ((resource.RLIMIT_AS, memory_mb << 20), (resource.RLIMIT_CPU, cpu_seconds),
                         (resource.RLIMIT_FSIZE, output_bytes), (resource.RLIMIT_CORE, 0)):
        resource.setrlimit(which, (value, value))
    if os.getuid() != 0:
        processes = _processes_of_this_user() + MORE_PROCESSES
        resource.setrlimit(resource.RLIMIT_NPROC, (processes, processes))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--memory-mb", type=int, default=2048)
    parser.add_argument("--cpu-seconds", type=int, default=600)
    parser.add_argument("--output-bytes", type=int, default=8 << 20)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="course.limits")
    add_arguments(parser)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    opts = parser.parse_args(argv)
    command = opts.command[1:] if opts.command[:1] == ["--"] else opts.command
    if not command:
        parser.error("no command to run")
    apply(opts.memory_mb, opts.cpu_seconds, opts.output_bytes)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main(sys.argv[1:])
