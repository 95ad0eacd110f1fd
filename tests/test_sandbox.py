"""The sandbox: student code runs in a child, limited, and only data comes back."""

import time

import pytest
import torch

from course.sandbox import Limits, Sandbox, SandboxFailure, StudentError, bubblewrap

from .conftest import write_notebook

CELLS = [
    ("import os, sys, socket, torch", "imports", False),
    ("def double(x):\n    return x * 2", "double", True),
    ("def spin(x):\n    while True:\n        pass", "spin", True),
    ("def quit_hard(x):\n    os._exit(0)", "quit_hard", True),
    ("def hog(x):\n    return torch.empty(10**11)", "hog", True),
    ("def chatty(x):\n    while True:\n        print('x' * 100_000)", "chatty", True),
    ("def peek(path):\n    return open(path).read()[:100]", "peek", True),
    ("def mutate(x):\n    x.add_(1)\n    return x", "mutate", True),
    ("def stub(x):\n    raise NotImplementedError()", "stub", True),
    ("def returns_object(x):\n    return object()", "returns_object", True),
    ("def connect(x):\n    socket.create_connection(('127.0.0.1', 9), timeout=1)", "connect", True),
    ("while True:\n    pass", "hangs_at_load", True),
    ("import sys\nsys.exit(1)", "exits_at_load", True),
]


@pytest.fixture(scope="module")
def box(tmp_path_factory):
    path = write_notebook(tmp_path_factory.mktemp("sb"), *CELLS)
    with Sandbox(path, Limits(load_seconds=6)) as sandbox:
        yield sandbox


def test_calls_return_plain_data(box):
    assert torch.equal(box.call("double", torch.ones(2)), torch.full((2,), 2.0))


def test_a_cell_that_hangs_at_load_is_skipped_and_named(box):
    box.call("double", 1)
    assert "hangs_at_load" in box.broken and "longer than" in box.broken["hangs_at_load"]
    assert "exits_at_load" in box.load_errors or "exits_at_load" in box.broken


def test_infinite_loop_times_out_and_the_next_call_works(box):
    t = time.monotonic()
    with pytest.raises(SandboxFailure) as err:
        box.call("spin", 1, timeout=1.5)
    assert err.value.kind == "timeout" and time.monotonic() - t < 4
    assert box.call("double", 3) == 6


def test_os_exit_is_a_crash_not_a_result(box):
    with pytest.raises(SandboxFailure) as err:
        box.call("quit_hard", 1)
    assert err.value.kind == "crash" and "exit" in str(err.value)
    assert box.call("double", 1) == 2


def test_memory_is_limited(box):
    with pytest.raises(StudentError) as err:
        box.call("hog", 1)
    assert err.value.kind == "memory"


def test_output_is_limited(box):
    with pytest.raises(StudentError) as err:
        box.call("chatty", 1, timeout=20)
    assert err.value.kind == "output"
    assert box.call("double", 2) == 4


def test_inputs_come_back_for_mutation_checks(box):
    x = torch.zeros(2)
    _result, args, _ = box.call("mutate", x, return_args=True)
    assert torch.equal(args[0], torch.ones(2)) and torch.equal(x, torch.zeros(2))


def test_errors_are_reported_with_kind(box):
    with pytest.raises(StudentError) as err:
        box.call("stub", 1)
    assert err.value.kind == "not_implemented"
    with pytest.raises(StudentError) as err:
        box.call("returns_object", 1)
    assert err.value.kind == "unsendable" and "object" in str(err.value)
    with pytest.raises(StudentError) as err:
        box.call("no_such_function", 1)
    assert err.value.kind == "missing"


@pytest.mark.skipif(bubblewrap() is None, reason="bubblewrap is not available here")
def test_solutions_and_hidden_tests_are_out_of_sight(box):
    from course import AUTOGRADER, SOLUTIONS

    for secret in (SOLUTIONS / "03" / "attention.ipynb", AUTOGRADER / "03" / "checks.py"):
        assert secret.exists()
        with pytest.raises(StudentError, match="No such file"):
            box.call("peek", str(secret))


@pytest.mark.skipif(bubblewrap() is None, reason="bubblewrap is not available here")
def test_no_network(box):
    with pytest.raises(StudentError, match="OSError|unreachable|refused"):
        box.call("connect", 1)


def test_drivers_and_stand_ins(tmp_path):
    """A suite's driver exercises a student class; the other graded names are stand-ins meanwhile."""
    path = write_notebook(
        tmp_path, ("import torch", "imports", False),
        ("class Acc:\n    def __init__(self, k):\n        self.k = k\n"
         "    def add(self, x):\n        return helper(x) * self.k\n", "Acc", True),
        ("def helper(x):\n    return x + 100\n", "helper", True))
    code = ("def helper(x):\n    return x + 1\n\n"
            "def drive_acc(ns, k, xs):\n    acc = ns['Acc'](k)\n    return [acc.add(x) for x in xs]\n")
    with Sandbox(path, standins=code, graded=("Acc", "helper")) as box:
        assert box.call("Acc", 3, [1, 2], driver="drive_acc") == [6, 9]  # helper is the stand-in
        assert box.call("helper", 1) == 101  # the function under test is always the student's


LEAVER = [
    ("import os, subprocess, pathlib", "imports", False),
    ("def leave(x):\n"
     "    for folder in ('/tmp', '/dev/shm', os.getcwd()):\n"
     "        pathlib.Path(folder, 'left.txt').write_text('answers')\n"
     "    return 0", "leave", True),
    ("def stay(x):\n"
     "    return subprocess.Popen(['sleep', '300'], start_new_session=True).pid", "stay", True),
]
LOOKER = [
    ("import os, pathlib", "imports", False),
    ("def look(pid):\n"
     "    found = [str(p) for f in ('/tmp', '/dev/shm', os.getcwd()) if os.path.isdir(f)\n"
     "             for p in pathlib.Path(f).rglob('left.txt')]\n"
     "    try:\n"
     "        alive = b'sleep' in pathlib.Path(f'/proc/{pid}/cmdline').read_bytes()\n"
     "    except OSError:\n"
     "        alive = False\n"
     "    return found, alive", "look", True),
]


@pytest.mark.skipif(bubblewrap() is None, reason="without bubblewrap, /tmp is the machine's own")
def test_notebooks_graded_one_after_another_cannot_see_each_other(tmp_path):
    """Children of one fork server: files and processes one leaves are gone before the next starts."""
    from course.sandbox import fork_server

    leaver = write_notebook(tmp_path, *LEAVER, name="a.ipynb")
    looker = write_notebook(tmp_path, *LOOKER, name="b.ipynb")
    server = fork_server()
    with Sandbox(leaver) as box:
        box.call("leave", 0)
        pid = server._pid
    with Sandbox(looker) as box:
        assert box.call("look", 0) == ([], False)
    assert server._pid == pid  # files are wiped: the same server goes on
    with Sandbox(leaver) as box:
        sleeper = box.call("stay", 0)
    with Sandbox(looker) as box:
        assert box.call("look", sleeper) == ([], False)
    assert server._pid != pid  # a process left behind: the server is replaced


def test_a_notebook_that_kills_the_fork_server_costs_only_its_own_call(tmp_path):
    kill = "def kill(x):\n    os.kill(os.getppid(), signal.SIGKILL)\n    time.sleep(30)\n    return 1"
    killer = write_notebook(tmp_path, ("import os, signal, time", "imports", False), (kill, "kill", True),
                            name="killer.ipynb")
    honest = write_notebook(tmp_path, ("import torch", "imports", False),
                            ("def double(x):\n    return x * 2", "double", True), name="honest.ipynb")
    with Sandbox(killer) as box:
        with pytest.raises(SandboxFailure) as err:
            box.call("kill", 0)
        assert err.value.kind == "crash"
    with Sandbox(honest) as box:
        assert box.call("double", 21) == 42
