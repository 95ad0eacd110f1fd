"""Hidden tests and the harness they run in (never released to students).

`hidden_cell(grade_id)` is what a hidden test cell of a solution notebook
calls. During `nbgrader autograde` (NBGRADER_EXECUTION=autograde) it does
nothing: the kernel holds untrusted student code, so the verdict is written
into the cell afterwards by `course.nbgrader_setup.IsolatedGrades`. When an
instructor runs the solution notebook, it checks the functions defined in the
notebook's own kernel against the reference, so broken solutions show up at
once.
"""

from __future__ import annotations

import os


def hidden_cell(grade_id: str) -> None:
    if os.environ.get("NBGRADER_EXECUTION") == "autograde":
        return
    import __main__
    from autograder.harness import LocalStudent, run_cell
    from course.grading import point_cells, reference, suite
    from course.lessons import all_lessons

    for lesson in all_lessons():
        points = dict(point_cells(lesson))
        if grade_id in points:
            tests = suite(lesson)
            result = run_cell(tests, grade_id, points[grade_id],
                              LocalStudent(vars(__main__), tests.standins), reference(lesson))
            print(f"{grade_id}: {result.points:g} / {result.max_points:g} ({result.status})")
            print(result.feedback)
            if result.status != "passed":
                raise AssertionError(f"{grade_id} failed: see above")
            return
    raise LookupError(f"no lesson has a hidden test cell {grade_id!r}")
