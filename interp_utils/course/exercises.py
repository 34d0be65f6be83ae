"""Exercises from one source: solution cells carry the answer, the learner's notebook is derived.

In a notebook, a code cell tagged ``solution`` holds an exercise with its answer between the lines
``# BEGIN SOLUTION`` and ``# END SOLUTION``. Run as is, the notebook executes the solutions (their
source is collapsed in JupyterLab). ``python -m interp_utils.course.exercises`` writes the learner's version
beside each lesson (``*_exercises.ipynb``, committed), each answer replaced by a stub, or by the scaffold
of an exercise block just above it: lines between ``# BEGIN EXERCISE`` and ``# END EXERCISE``, written as
comments (``# `` before each) so that the solution copy ignores them, which the learner copy uncomments.
``--check`` changes nothing and fails when a committed learner copy is out of date.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import nbformat

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
SCAFFOLD, SCAFFOLD_END = "# BEGIN EXERCISE", "# END EXERCISE"
STUB = 'raise NotImplementedError("Exercise: replace this line with your answer; the check in this cell tests it.")'


def strip_solution(source: str) -> str:
    """Replace every BEGIN/END SOLUTION block with an indented stub, or with the uncommented exercise block
    (BEGIN/END EXERCISE) that comes just before it."""
    out: list[str] = []
    block: str | None = None  # the kind of block we are inside
    indent, scaffold = "", False
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped in (BEGIN, SCAFFOLD):
            if block is not None:
                raise ValueError(f"Line {number}: {stripped} inside another block.")
            block, indent = stripped, line[: len(line) - len(line.lstrip())]
            if stripped == SCAFFOLD:
                scaffold = True
            elif not scaffold:
                out += [f"{indent}# YOUR CODE HERE", f"{indent}{STUB}"]
        elif stripped in (END, SCAFFOLD_END):
            opening = BEGIN if stripped == END else SCAFFOLD
            if block != opening:
                raise ValueError(f"Line {number}: {stripped} without {opening}.")
            if stripped == END:
                scaffold = False
            block = None
        elif block == SCAFFOLD:
            if stripped and not stripped.startswith("#"):
                raise ValueError(f"Line {number}: an exercise block holds comments only (its lines start with '# ').")
            text = line.strip()[2:] if line.strip().startswith("# ") else ""
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


def is_solution(cell: nbformat.NotebookNode) -> bool:
    """Whether a cell is a code cell tagged ``solution``."""
    return cell.cell_type == "code" and "solution" in cell.get("metadata", {}).get("tags", [])


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


def lessons_with_exercises(directory: Path | None = None) -> list[Path]:
    """Every shipped notebook with at least one solution cell."""
    from interp_utils.course.reproduce import NOTEBOOK_DIR, shipped_notebooks

    notebooks = shipped_notebooks(directory or NOTEBOOK_DIR)
    return [p for p in notebooks if any(is_solution(c) for c in nbformat.read(p, as_version=4).cells)]


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
    args = parser.parse_args(argv)
    paths = args.notebooks or lessons_with_exercises()
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
