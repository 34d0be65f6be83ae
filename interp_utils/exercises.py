"""Exercises from one source: solution cells carry the answer, the learner's notebook is derived.

In a notebook, a code cell tagged ``solution`` holds an exercise with its answer between the lines
``# BEGIN SOLUTION`` and ``# END SOLUTION``. Run as is, the notebook executes the solutions (their
source is collapsed in JupyterLab). ``python -m interp_utils.exercises NOTEBOOK...`` writes the
learner's version beside each notebook (``*_exercises.ipynb``), each answer replaced by a stub.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import nbformat

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"
STUB = 'raise NotImplementedError("Exercise: replace this line with your answer; the check in this cell tests it.")'


def strip_solution(source: str) -> str:
    """Replace every BEGIN/END SOLUTION block with an indented stub."""
    out, inside, indent = [], False, ""
    for number, line in enumerate(source.splitlines(), 1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside:
                raise ValueError(f"Line {number}: {BEGIN} inside another solution block.")
            inside, indent = True, line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}# YOUR CODE HERE")
            out.append(f"{indent}{STUB}")
        elif stripped == END:
            if not inside:
                raise ValueError(f"Line {number}: {END} without {BEGIN}.")
            inside = False
        elif not inside:
            out.append(line)
    if inside:
        raise ValueError(f"{BEGIN} without {END}.")
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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("notebooks", nargs="+", type=Path)
    parser.add_argument("--out", type=Path, help="folder for the learner notebooks (default: beside each)")
    args = parser.parse_args(argv)
    for path in args.notebooks:
        if not path.exists():
            raise SystemExit(f"No such notebook: {path}")
        target = (args.out or path.parent) / f"{path.stem}_exercises.ipynb"
        target.parent.mkdir(parents=True, exist_ok=True)
        nbformat.write(learner_notebook(nbformat.read(path, as_version=4)), target)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
