"""Grading learners' notebooks for a course: ``python -m interp_utils.course.exercises --grade PATH.ipynb [PATH ...]``.

Each learner file is matched to its lesson (by its text, or ``--lesson``) and executed headless: the lesson's own
cells run around the learner's exercise cells (code a learner wrote outside the exercise cells is not run). Every
exercise is graded even after an earlier one fails: when the learner's cell fails, its check's message is recorded
and the lesson's answer runs in its place, so that the cells downstream see working functions. A learner cell that
runs past the time limit is interrupted and graded wrong. The result is one row per learner file and one column per
exercise, written as JSON and markdown.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import nbformat

from interp_utils.course.cells import is_solution, lessons_with_exercises

Status = Literal["correct", "wrong", "not answered"]
MARK: dict[str, str] = {"correct": "✅", "wrong": "❌", "not answered": "–"}


class GradingError(RuntimeError):
    """A learner file that cannot be graded (no matching lesson, or the lesson's own cells fail)."""


@dataclass
class Grade:
    """One exercise of one learner file."""

    exercise: str
    status: Status
    message: str = ""


@dataclass
class Report:
    """One learner file: its lesson, a grade per exercise, or the error that stopped its grading."""

    path: str
    lesson: str = ""
    grades: list[Grade] = field(default_factory=list)
    error: str = ""

    @property
    def score(self) -> float:
        return sum(g.status == "correct" for g in self.grades) / len(self.grades) if self.grades else 0.0


_CHECK = re.compile(r"\bcheck_(\w+)\s*\(")


def exercise_name(source: str, index: int) -> str:
    """An exercise's name: what its (first) check is called after ``check_``, else its position."""
    found = _CHECK.search(source)
    return found.group(1) if found else f"exercise {index + 1}"


def _words(nb: nbformat.NotebookNode) -> set[str]:
    return {c.source.strip() for c in nb.cells if c.cell_type == "markdown" and c.source.strip()}


def find_lesson(learner: nbformat.NotebookNode, lessons: Sequence[Path]) -> Path:
    """The lesson whose text the learner's notebook shares most (at least 30% of its markdown cells)."""
    mine = _words(learner)
    best, share = None, 0.0
    for path in lessons:
        theirs = _words(nbformat.read(path, as_version=4))
        overlap = len(mine & theirs) / max(1, len(theirs))
        if overlap > share:
            best, share = path, overlap
    if best is None or share < 0.3:
        raise GradingError("Cannot tell which lesson this notebook is a copy of: pass --lesson NN_name.")
    return best


def _solution_cells(nb: nbformat.NotebookNode) -> list[int]:
    return [i for i, c in enumerate(nb.cells) if is_solution(c)]


def grade(
    path: Path, lesson: Path | None = None, timeout: int = 600, fast: bool = True, verbose: bool = False
) -> Report:
    """Execute one learner notebook exercise by exercise and grade each (see the module's docstring).

    ``verbose`` prints a line per cell to standard error (its index, what it is, its seconds), to find a slow cell.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    report = Report(str(path))
    try:
        try:
            learner = nbformat.read(path, as_version=4)
        except Exception as error:  # not JSON, or not a notebook
            raise GradingError(f"{path.name} cannot be read as a notebook: {error}") from None
        lesson = lesson or find_lesson(learner, lessons_with_exercises())
        report.lesson = lesson.stem
        reference = nbformat.read(lesson, as_version=4)
        theirs, ours = _solution_cells(learner), _solution_cells(reference)
        if len(theirs) != len(ours):
            raise GradingError(
                f"{path.name} has {len(theirs)} exercise cells (tagged 'solution'), {lesson.name} has {len(ours)}: "
                "grade a copy made from the current lesson, with its exercise cells kept in place."
            )
        answers = {o: learner.cells[t].source for o, t in zip(ours, theirs, strict=True)}
        # the grade is the exercises', not the reproduction table's: no strict mode, no table written anywhere
        drop = ("INTERP_STRICT", "INTERP_REPORT_DIR", "INTERP_EXPECTED_COUNTS")
        env = {k: v for k, v in os.environ.items() if k not in drop} | {"INTERP_FAST": "1" if fast else "0"}
        run = nbformat.v4.new_notebook(metadata=reference.metadata)
        client = NotebookClient(
            run, timeout=timeout, kernel_name="python3", interrupt_on_timeout=True,
            resources={"metadata": {"path": str(lesson.parent)}},
        )  # fmt: skip
        with client.setup_kernel(env=env):
            for index, cell in enumerate(reference.cells):
                if cell.cell_type != "code":
                    continue
                start = time.perf_counter()
                if index in answers:
                    name, checks = exercise_name(cell.source, len(report.grades)), set(_CHECK.findall(cell.source))
                    report.grades.append(_grade_cell(client, run, answers[index], name, checks, timeout))
                    if verbose:
                        _progress(path, index, f"{name}: {report.grades[-1].status}", start)
                    if report.grades[-1].status == "correct":
                        continue
                    start = time.perf_counter()
                try:  # the lesson's own cell, or its answer in place of a failed one
                    _execute(client, run, cell.source)
                except (CellExecutionError, CellTimeoutError) as error:
                    raise GradingError(f"The lesson's own cell {index} failed: {_message(error)}") from None
                if verbose:
                    _progress(path, index, "answer" if index in answers else "lesson", start)
    except GradingError as error:
        report.error = str(error)
    except DeadKernelError:  # a learner's cell took the kernel down (memory, os._exit): the rest cannot run
        graded = ", ".join(g.exercise for g in report.grades) or "none"
        report.error = f"The kernel died during grading (graded before it: {graded}); run that file on its own."
    return report


def _progress(path: Path, index: int, what: str, start: float) -> None:
    print(f"{path.name} cell {index} ({what}): {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)


LESSON_TIMEOUT = 900  # seconds a lesson's own cell may run, whatever the learners' limit


def _execute(client, run: nbformat.NotebookNode, source: str, timeout: int = LESSON_TIMEOUT) -> None:
    run.cells.append(nbformat.v4.new_code_cell(source))
    client.timeout = timeout
    client.execute_cell(run.cells[-1], len(run.cells) - 1)


def _message(error: Exception) -> str:
    name, value = getattr(error, "ename", type(error).__name__), getattr(error, "evalue", str(error))
    return f"{name}: {value}".strip()[:500]


def _grade_cell(client, run: nbformat.NotebookNode, source: str, name: str, checks: set[str], limit: int) -> Grade:
    from nbclient.exceptions import CellExecutionError, CellTimeoutError

    missing = sorted(checks - set(_CHECK.findall(source)))
    if missing:
        calls = ", ".join(f"check_{m}" for m in missing)
        return Grade(name, "wrong", f"the cell no longer calls {calls}: put the check back and run it")
    try:
        _execute(client, run, source, limit)
    except CellTimeoutError:
        return Grade(name, "wrong", f"ran past the time limit of {limit} s")
    except CellExecutionError as error:
        if error.ename == "KeyboardInterrupt":  # the kernel interrupted at the time limit
            return Grade(name, "wrong", f"ran past the time limit of {limit} s")
        if error.ename == "NotAnswered":
            return Grade(name, "not answered", error.evalue)
        return Grade(name, "wrong", _message(error))
    return Grade(name, "correct")


def grade_all(
    paths: Sequence[Path],
    lesson: Path | None = None,
    timeout: int = 600,
    fast: bool = True,
    jobs: int = 1,
    verbose: bool = False,
) -> list[Report]:
    """Grade every file, ``jobs`` at a time (each in its own process and kernel)."""
    n = len(paths)
    if jobs <= 1:
        return [grade(p, lesson, timeout, fast, verbose) for p in paths]
    with ProcessPoolExecutor(jobs) as pool:
        return list(pool.map(grade, paths, [lesson] * n, [timeout] * n, [fast] * n, [verbose] * n))


def markdown(reports: Sequence[Report]) -> str:
    """One table per lesson: a row per learner file, a column per exercise; then the failed checks' messages."""
    out: list[str] = []
    for lesson in sorted({r.lesson for r in reports}):
        rows = [r for r in reports if r.lesson == lesson]
        names = next((r.grades for r in rows if r.grades), [])
        out += [f"## {lesson or 'not graded'}", ""]
        out.append("| file | score | " + " | ".join(g.exercise for g in names) + " |")
        out.append("|---|---|" + "---|" * len(names))
        for r in rows:
            cells = [MARK[g.status] for g in r.grades] if not r.error else ["error"] * max(1, len(names))
            out.append(f"| {Path(r.path).name} | {r.score:.0%} | " + " | ".join(cells) + " |")
        out.append("")
        out += [f"- {Path(r.path).name}: {r.error}" for r in rows if r.error]
        for r in rows:
            for g in r.grades:
                if g.status != "correct":
                    first = g.message.splitlines()[0] if g.message else ""
                    out.append(f"- {Path(r.path).name}, {g.exercise} ({g.status}): {first}")
        out.append("")
    out.append(f"{MARK['correct']} correct · {MARK['wrong']} wrong (the check's message above) · "
               f"{MARK['not answered']} not answered")  # fmt: skip
    return "\n".join(out) + "\n"


def write(reports: Sequence[Report], out: Path) -> tuple[Path, Path]:
    """Write ``grades.json`` and ``grades.md`` into ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    records = [{**asdict(r), "score": r.score} for r in reports]
    (out / "grades.json").write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n")
    (out / "grades.md").write_text(markdown(reports))
    return out / "grades.json", out / "grades.md"
