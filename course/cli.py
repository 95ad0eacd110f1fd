"""The `course` command: parse, dispatch, print. The work lives in the modules it calls."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from course.lessons import UnknownLesson, all_lessons, get_lesson


def _lessons(numbers: list[str]):
    return [get_lesson(n) for n in numbers] if numbers else list(all_lessons())


def cmd_release(args: argparse.Namespace) -> int:
    from course.release import release

    for path in release(_lessons(args.lessons)):
        print(f"released {path}")
    return 0


def _notebooks(path: Path) -> list[Path]:
    if path.is_dir():
        names = {lesson.notebook for lesson in all_lessons()}
        found = sorted(p for p in path.glob("*.ipynb") if p.name in names)
        return found or sorted(path.glob("*.ipynb"))
    return [path]


def cmd_grade(args: argparse.Namespace) -> int:
    from course.bwrap import isolation_note
    from course.forkserver import fork_server

    fork_server().launch()  # the sandbox imports torch while this process does (course.grading)
    from course.grading import format_table, grade

    lesson = get_lesson(args.lesson) if args.lesson else None
    path = Path(args.path)
    results = [grade(p, lesson) for p in _notebooks(path)]
    if args.json:  # one object for a notebook, a list for a folder
        print(json.dumps(results if path.is_dir() else results[0], indent=1))
    else:
        print(f"Isolation: {isolation_note()}\n")
        for r in results:
            print(format_table(r))
    return 0


def cmd_grade_all(args: argparse.Namespace) -> int:
    from course.batch import grade_all

    return grade_all(Path(args.dir), lesson=get_lesson(args.lesson) if args.lesson else None,
                     csv_path=Path(args.csv) if args.csv else None, workers=args.workers,
                     force=args.force)


def cmd_validate(args: argparse.Namespace) -> int:
    from course.validate import validate

    ok = True
    for lesson in _lessons(args.lessons):
        good, report = validate(lesson, args.workers)
        print(report)
        ok &= good
    return 0 if ok else 1


def cmd_demo(args: argparse.Namespace) -> int:
    from course.demo import demo

    return demo(get_lesson(args.lesson), keep=args.keep)


def cmd_init(args: argparse.Namespace) -> int:
    from course.release import init_course_dir

    root = Path(args.directory)
    init_course_dir(root, _lessons(args.lessons))
    print(f"nbgrader course directory ready at {root} (source/ holds the solution notebooks)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course", description="Release, grade and validate the LLM course.")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("release", help="regenerate assignments/NN from solutions/NN with nbgrader")
    r.add_argument("lessons", nargs="*", metavar="NN")
    r.set_defaults(func=cmd_release)

    g = sub.add_parser("grade", help="run the hidden tests on a notebook, student code sandboxed")
    g.add_argument("path", help="a notebook, or a folder of lesson notebooks")
    g.add_argument("--lesson", metavar="NN", help="the lesson (default: from the file name)")
    g.add_argument("--json", action="store_true", help="print the result as JSON")
    g.set_defaults(func=cmd_grade)

    a = sub.add_parser("grade-all", help="grade every submission in a folder into a CSV, in parallel")
    a.add_argument("dir", help="an nbgrader course, its submitted/ folder, or a folder of notebooks")
    a.add_argument("--lesson", metavar="NN", help="the lesson (default: from each notebook)")
    a.add_argument("--csv", metavar="PATH", help="where the grades go (default: DIR/grades.csv)")
    a.add_argument("--workers", type=int, default=None, help="parallel graders (default: cores)")
    a.add_argument("--force", action="store_true", help="regrade submissions already in the CSV")
    a.set_defaults(func=cmd_grade_all)

    v = sub.add_parser("validate", help="solutions full marks, stubs zero, every mistake loses points")
    v.add_argument("lessons", nargs="*", metavar="NN")
    v.add_argument("--workers", type=int, default=None, help="parallel graders (default: cores)")
    v.set_defaults(func=cmd_validate)

    d = sub.add_parser("demo", help="the nbgrader pipeline end to end on three sample students")
    d.add_argument("--lesson", default="03", metavar="NN")
    d.add_argument("--keep", action="store_true", help="keep the temporary course directory")
    d.set_defaults(func=cmd_demo)

    i = sub.add_parser("init", help="set up an nbgrader course directory for this course")
    i.add_argument("directory")
    i.add_argument("lessons", nargs="*", metavar="NN")
    i.set_defaults(func=cmd_init)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except UnknownLesson as err:
        parser.error(str(err))  # exits with status 2
    return 2
