"""What an exercise cell is: a code cell tagged ``solution`` whose answer sits between ``BEGIN`` and ``END``; and
which lessons hold exercises. Shared by the learner copies (:mod:`interp_utils.course.exercises`) and the grader
(:mod:`interp_utils.course.grading`)."""

from __future__ import annotations

from pathlib import Path

import nbformat

BEGIN, END = "# BEGIN SOLUTION", "# END SOLUTION"


def is_solution(cell: nbformat.NotebookNode) -> bool:
    """Whether a cell is a code cell tagged ``solution``."""
    return cell.cell_type == "code" and "solution" in cell.get("metadata", {}).get("tags", [])


def lessons_with_exercises(directory: Path | None = None) -> list[Path]:
    """Every shipped notebook with at least one solution cell."""
    from interp_utils.course.reproduce import NOTEBOOK_DIR, shipped_notebooks

    notebooks = shipped_notebooks(directory or NOTEBOOK_DIR)
    return [p for p in notebooks if any(is_solution(c) for c in nbformat.read(p, as_version=4).cells)]
