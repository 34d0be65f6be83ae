"""Exercises from one source: solution cells carry the answer, the learner's notebook is derived.

In a notebook, a code cell tagged ``solution`` holds an exercise with its answer between the lines
``# BEGIN SOLUTION`` and ``# END SOLUTION``. Run as is, the notebook executes the solutions (their
source is collapsed in JupyterLab). ``python -m interp_utils.course.exercises`` writes the learner's version
beside each lesson (``*_exercises.ipynb``, committed), each answer replaced by a stub, or by the scaffold
of an exercise block just above it: lines between ``# BEGIN EXERCISE`` and ``# END EXERCISE``, written as
comments (``# `` before each) so that the solution copy ignores them, which the learner copy uncomments.
``--check`` changes nothing and fails when a committed learner copy is out of date; ``--stats`` counts each lesson's
exercises, core exercises and learner lines; ``--grade PATH ...`` grades learners' notebooks for a course
(:mod:`interp_utils.course.grading`).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

import nbformat

from interp_utils.course.cells import BEGIN, END, is_solution, lessons_with_exercises

SCAFFOLD, SCAFFOLD_END = "# BEGIN EXERCISE", "# END EXERCISE"
STUB = 'raise NotImplementedError("Exercise: replace this line with your answer; the check in this cell tests it.")'


def strip_solution(source: str) -> str:
    """Replace every BEGIN/END SOLUTION block with an indented stub, or with the uncommented exercise block
    (BEGIN/END EXERCISE) that comes just before it."""
    out: list[str] = []
    block: str | None = None  # the kind of block we are inside
    indent, scaffold, raises = "", False, False
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped in (BEGIN, SCAFFOLD):
            if block is not None:
                raise ValueError(f"Line {number}: {stripped} inside another block.")
            block, indent = stripped, line[: len(line) - len(line.lstrip())]
            if stripped == SCAFFOLD:
                scaffold, raises = True, False
            elif not scaffold:
                out += [f"{indent}# YOUR CODE HERE", f"{indent}{STUB}"]
        elif stripped in (END, SCAFFOLD_END):
            opening = BEGIN if stripped == END else SCAFFOLD
            if block != opening:
                raise ValueError(f"Line {number}: {stripped} without {opening}.")
            if stripped == END:
                scaffold = False
            elif not raises:
                raise ValueError(
                    f"Line {number}: an exercise block must raise NotImplementedError where the learner's answer goes "
                    "(before anything it returns), so that an untouched exercise reads 'not answered yet'."
                )
            block = None
        elif block == SCAFFOLD:
            if stripped and not stripped.startswith("#"):
                raise ValueError(f"Line {number}: an exercise block holds comments only (its lines start with '# ').")
            text = line.strip()[2:] if line.strip().startswith("# ") else ""
            raises = raises or "raise NotImplementedError" in text
            out.append(f"{indent}{text}" if text else "")
        elif block is None:
            if scaffold and stripped:
                raise ValueError(f"Line {number}: an exercise block must be followed by its {BEGIN} block.")
            out.append(line)
    if block is not None:
        raise ValueError(f"{block} without its end.")
    if scaffold:
        raise ValueError(f"An exercise block must be followed by its {BEGIN} block.")
    return "\n".join(out)


CORE_LINES = 15  # an exercise whose answer has at least this many code lines is a core exercise (EXERCISES.md)
LONGEST_SPAN = 25  # the longest code span a hint may hold: a short name, not an expression
# what makes a span code rather than a name, a shape or maths: a call, a slice, an assignment, a matrix product, a
# method (a leading dot) or a return
_CODE = re.compile(r"[(@=]|^\.|\breturn\b|\[[^\]]*:[^\]]*\]")
_DETAILS = re.compile(r"<details>(.*?)</details>", re.S)
_SPAN = re.compile(r"`([^`\n]+)`")


def answer_lines(source: str) -> list[str]:
    """The code lines of a cell's answers (between BEGIN and END SOLUTION): stripped, without blanks and comments."""
    inside, lines = False, []
    for line in source.splitlines():
        stripped = line.strip()
        if stripped in (BEGIN, END):
            inside = stripped == BEGIN
        elif inside and stripped and not stripped.startswith("#"):
            lines.append(stripped)
    return lines


def hint_problems(nb: nbformat.NotebookNode) -> list[str]:
    """Where an exercise gives its code away (EXERCISES.md: hints give the approach in words or maths, never the code):
    in a hint, a code block or a code span that is longer than a short name or is code (a call, a slice, an
    assignment, a product, a method); anywhere in the exercise's text, a line of its answer (12 characters or more)."""
    problems = []
    for i, cell in enumerate(nb.cells):
        if not is_solution(cell) or i == 0 or nb.cells[i - 1].cell_type != "markdown":
            continue
        text = nb.cells[i - 1].source
        hints = "\n".join(_DETAILS.findall(text))
        where = f"cell {i - 1} (the text of the exercise in cell {i})"
        if any(tag in hints for tag in ("```", "<code>", "<pre>", "\n    ")):
            problems.append(f"{where}: a code block in a hint; say the approach in words or maths instead")
        problems += [f"{where}: the code span `{s}` in a hint; name at most a short identifier, or write the maths"
                     for s in _SPAN.findall(hints) if len(s) > LONGEST_SPAN or _CODE.search(s)]  # fmt: skip
        flat = text.replace("`", "")
        problems += [f"{where}: a line of the answer, {line!r}" for line in answer_lines(cell.source)
                     if len(line) >= 12 and line in flat]  # fmt: skip
    return problems


def exercise_stats(path: Path) -> dict[str, float]:
    """A lesson's exercises, core exercises (answers of CORE_LINES code lines or more), learner lines and median."""
    sizes = [len(answer_lines(c.source)) for c in nbformat.read(path, as_version=4).cells if is_solution(c)]
    return {
        "exercises": len(sizes),
        "core": sum(n >= CORE_LINES for n in sizes),
        "lines": sum(sizes),
        "median": statistics.median(sizes) if sizes else 0,
    }


def learner_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """A copy of ``nb`` with solutions stubbed out, outputs cleared and the exercise cells shown."""
    learner = nbformat.from_dict(nb)
    for cell in learner.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs, cell.execution_count = [], None
        if is_solution(cell):
            if BEGIN not in cell.source:
                raise ValueError(f"A cell tagged 'solution' has no {BEGIN} block:\n{cell.source[:200]}")
            cell.source = strip_solution(cell.source)
            cell.metadata.get("jupyter", {}).pop("source_hidden", None)
    return learner


def learner_path(path: Path) -> Path:
    """Where a lesson's learner copy lives: beside it, ``NN_name_exercises.ipynb``."""
    return path.with_name(f"{path.stem}_exercises.ipynb")


def stale(path: Path) -> bool:
    """Whether the committed learner copy of ``path`` is missing or differs from what it derives to."""
    target = learner_path(path)
    derived = nbformat.writes(learner_notebook(nbformat.read(path, as_version=4)))
    return not target.exists() or json.loads(target.read_text()) != json.loads(derived)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="*", type=Path, help="default: every lesson with exercises")
    parser.add_argument("--out", type=Path, help="folder for the learner notebooks (default: beside each)")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a learner copy is stale")
    parser.add_argument("--stats", action="store_true", help="print each lesson's exercises, core exercises, lines")
    group = parser.add_argument_group("grading learners' notebooks (interp_utils.course.grading)")
    group.add_argument("--grade", nargs="+", type=Path, metavar="PATH", help="learner notebooks to grade")
    group.add_argument("--lesson", type=Path, help="the lesson they copy (default: found from their text)")
    group.add_argument("--grades", type=Path, default=Path("grades"), help="folder for grades.json, grades.md")
    group.add_argument("--timeout", type=int, default=600, help="seconds a cell may run (default 600)")
    group.add_argument("--jobs", type=int, default=1, help="notebooks graded at once (default 1)")
    group.add_argument("--full", action="store_true", help="full budgets (default: INTERP_FAST=1)")
    group.add_argument("--verbose", action="store_true", help="print each cell's seconds as it runs")
    args = parser.parse_args(argv)
    if args.grade:
        from interp_utils.course import grading

        missing = [str(p) for p in args.grade if not p.exists()]
        if missing:
            raise SystemExit(f"No such notebook: {', '.join(missing)}")
        reports = grading.grade_all(args.grade, args.lesson, args.timeout, not args.full, args.jobs, args.verbose)
        written = grading.write(reports, args.grades)
        print(grading.markdown(reports))
        print(f"wrote {written[0]} and {written[1]}")
        return
    paths = args.notebooks or lessons_with_exercises()
    if args.stats:
        for path in paths:
            s = exercise_stats(path)
            print(f"{path.stem:28} {s['exercises']:3.0f} exercises, {s['core']:2.0f} core, {s['lines']:4.0f} learner "
                  f"lines, median {s['median']:g}")  # fmt: skip
        return
    if args.check:
        behind = [learner_path(p).name for p in paths if stale(p)]
        if behind:
            print(f"Out of date: {', '.join(behind)}. Run `python -m interp_utils.course.exercises`.", file=sys.stderr)
            sys.exit(1)
        print("Every learner copy is up to date.")
        return
    for path in paths:
        if not path.exists():
            raise SystemExit(f"No such notebook: {path}")
        target = (args.out / learner_path(path).name) if args.out else learner_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(learner_notebook(nbformat.read(path, as_version=4)), target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
