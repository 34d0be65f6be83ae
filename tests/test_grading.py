"""The grading command on a small lesson made here: filled, unanswered, one wrong answer, a removed check, a cell
that runs forever, and several files at once. tests/test_grading_lesson.py grades copies of a real lesson."""

import json
import os

import nbformat
import pytest

from interp_utils.course import grading
from interp_utils.course.exercises import learner_notebook, main

# The lesson's own NotAnswered and ``answered``, as interp_utils.course.checks defines them (the grader goes by the
# exception's name): importing the package would cost every kernel here seconds (torch, TransformerLens).
SETUP = """import functools


class NotAnswered(Exception):
    pass


def answered(check):
    @functools.wraps(check)
    def run(fn):
        try:
            check(fn)
        except NotImplementedError:
            raise NotAnswered(f"{fn.__name__}: not answered yet.") from None

    return run


@answered
def check_double(fn):
    assert fn(3) == 6, f"double(3) should be 6, got {fn(3)}: multiply by two"


@answered
def check_square(fn):
    assert fn(3) == 9, f"square(3) should be 9, got {fn(3)}: multiply x by itself, not add"


@answered
def check_negate(fn):
    assert fn(2) == -2, "negate(2) should be -2"
"""
EXERCISES = {
    "double": "def double(x):\n    # BEGIN SOLUTION\n    return 2 * x\n    # END SOLUTION\n\n\ncheck_double(double)",
    "square": "def square(x):\n    # BEGIN SOLUTION\n    return x * x\n    # END SOLUTION\n\n\ncheck_square(square)",
    "negate": "def negate(x):\n    # BEGIN SOLUTION\n    return -x\n    # END SOLUTION\n\n\ncheck_negate(negate)\n"
    "check_double(double)",
}
DOWNSTREAM = {"double": "y = double(3)", "square": "z = square(y)\nassert z == 36", "negate": "assert negate(z) == -36"}


@pytest.fixture
def lesson(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A small lesson"), nbformat.v4.new_code_cell(SETUP)]
    for name, source in EXERCISES.items():
        cell = nbformat.v4.new_code_cell(source)
        cell.metadata["tags"] = ["solution"]
        nb.cells += [nbformat.v4.new_markdown_cell(f"✏️ Write `{name}`."), cell]
        nb.cells.append(nbformat.v4.new_code_cell(DOWNSTREAM[name]))
    path = tmp_path / "09_small.ipynb"
    nbformat.write(nb, path)
    return path


def copy(lesson, tmp_path, name, answers=None):
    """The learner's copy of ``lesson``, with ``answers`` (exercise -> source; True: the lesson's own) filled in."""
    nb = nbformat.read(lesson, as_version=4)
    learner = learner_notebook(nb)
    for cell, original in zip(learner.cells, nb.cells, strict=True):
        for exercise, source in (answers or {}).items():
            if original.source == EXERCISES[exercise]:
                cell.source = original.source if source is True else source
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(learner, path)
    return path


def statuses(report):
    return {g.exercise: g.status for g in report.grades}


def test_a_copy_filled_from_the_lesson_grades_full_marks_and_an_empty_copy_zero(lesson, tmp_path):
    before = dict(os.environ)
    full = grading.grade(copy(lesson, tmp_path, "full", dict.fromkeys(EXERCISES, True)), lesson)
    assert dict(os.environ) == before  # the kernel gets its own settings: this run's strict mode stays as it was
    assert not full.error and full.score == 1.0 and statuses(full) == dict.fromkeys(EXERCISES, "correct")
    empty = grading.grade(copy(lesson, tmp_path, "empty"), lesson)  # the downstream cells run on the lesson's answers
    assert not empty.error and empty.score == 0.0 and statuses(empty) == dict.fromkeys(EXERCISES, "not answered")
    assert all("not answered yet" in g.message for g in empty.grades)


def test_one_wrong_answer_fails_that_exercise_alone_with_its_checks_message(lesson, tmp_path, capsys):
    wrong = {"double": True, "square": "def square(x):\n    return x + x\n\n\ncheck_square(square)", "negate": True}
    report = grading.grade(copy(lesson, tmp_path, "wrong", wrong), lesson, verbose=True)
    assert statuses(report) == {"double": "correct", "square": "wrong", "negate": "correct"}
    assert "square(3) should be 9, got 6" in report.grades[1].message and report.score == pytest.approx(2 / 3)
    progress = capsys.readouterr().err  # --verbose: a line per cell, the wrong answer's and then the lesson's
    assert "wrong.ipynb cell 6 (square: wrong)" in progress and "wrong.ipynb cell 6 (answer)" in progress, progress


def test_a_removed_check_an_endless_cell_and_an_error_are_graded_wrong(lesson, tmp_path):
    answers = {
        "double": "def double(x):\n    return 2 * x",  # the check call deleted
        "square": "def square(x):\n    return x * x\n\n\nwhile True:\n    pass\ncheck_square(square)",
        "negate": "def negate(x):\n    return -x\n\n\nnegate(None)\ncheck_negate(negate)\ncheck_double(double)",
    }
    report = grading.grade(copy(lesson, tmp_path, "odd", answers), lesson, timeout=5)
    assert statuses(report) == dict.fromkeys(EXERCISES, "wrong"), report
    double, square, negate = (g.message for g in report.grades)
    assert "no longer calls check_double" in double and "time limit of 5 s" in square and "TypeError" in negate


def test_the_command_grades_several_files_at_once_and_writes_json_and_markdown(lesson, tmp_path, capsys):
    files = [copy(lesson, tmp_path, "alice", dict.fromkeys(EXERCISES, True)), copy(lesson, tmp_path, "bob")]
    main(["--grade", *map(str, files), "--lesson", str(lesson), "--grades", str(tmp_path / "out"), "--jobs", "2"])
    records = json.loads((tmp_path / "out" / "grades.json").read_text())
    assert [(r["path"].split("/")[-1], r["score"]) for r in records] == [("alice.ipynb", 1.0), ("bob.ipynb", 0.0)]
    table = (tmp_path / "out" / "grades.md").read_text()
    assert "| alice.ipynb | 100% | ✅ | ✅ | ✅ |" in table and "| bob.ipynb | 0% | – | – | – |" in table
    assert "bob.ipynb, square (not answered)" in table and table in capsys.readouterr().out


def test_a_copy_of_another_shape_or_of_no_lesson_is_an_error_not_a_grade(lesson, tmp_path):
    nb = nbformat.read(copy(lesson, tmp_path, "short"), as_version=4)
    nb.cells = nb.cells[:4]
    nbformat.write(nb, tmp_path / "short.ipynb")
    report = grading.grade(tmp_path / "short.ipynb", lesson)
    assert "has 1 exercise cells" in report.error and not report.grades
    stranger = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Something else")])
    nbformat.write(stranger, tmp_path / "stranger.ipynb")
    assert "pass --lesson" in grading.grade(tmp_path / "stranger.ipynb").error
    with pytest.raises(SystemExit, match="No such notebook"):
        main(["--grade", str(tmp_path / "missing.ipynb")])


def test_a_learner_copy_is_matched_to_its_lesson_by_its_text():
    from interp_utils.course.exercises import learner_path, lessons_with_exercises

    lessons = lessons_with_exercises()
    for lesson in lessons:
        learner = nbformat.read(learner_path(lesson), as_version=4)
        assert grading.find_lesson(learner, lessons) == lesson


def test_every_check_of_a_cell_must_stay_and_a_dead_kernel_or_a_broken_file_is_an_error(lesson, tmp_path):
    only_one = "def negate(x):\n    return -x\n\n\ncheck_negate(negate)"
    one_check_gone = {"double": True, "square": True, "negate": only_one}
    report = grading.grade(copy(lesson, tmp_path, "gone", one_check_gone), lesson)
    assert statuses(report)["negate"] == "wrong" and "no longer calls check_double" in report.grades[2].message
    dies = {"double": True, "square": "import os\n\nos._exit(1)\ncheck_square(square)"}
    report = grading.grade(copy(lesson, tmp_path, "dies", dies), lesson)
    assert "kernel died" in report.error and "double" in report.error, report
    (tmp_path / "broken.ipynb").write_text("{not json")
    assert "cannot be read as a notebook" in grading.grade(tmp_path / "broken.ipynb", lesson).error
