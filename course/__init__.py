"""The `course` package: notebook loader, release, isolated grading and the `course` command."""

from __future__ import annotations

from pathlib import Path

__version__ = "0.1.0"

REPO = Path(__file__).resolve().parent.parent
SOLUTIONS = REPO / "solutions"
ASSIGNMENTS = REPO / "assignments"
AUTOGRADER = REPO / "autograder"
MUTANTS = REPO / "tests" / "mutants"
