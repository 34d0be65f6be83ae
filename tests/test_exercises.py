import nbformat
import pytest

from interp_utils import exercises
from interp_utils.course.exercises import (
    BEGIN,
    CORE_LINES,
    STUB,
    answer_lines,
    exercise_stats,
    hint_problems,
    is_solution,
    learner_notebook,
    strip_solution,
)
from interp_utils.course.reproduce import find_notebooks

NOTEBOOKS = find_notebooks()  # the numbered lessons


def test_strip_solution_keeps_the_signature_and_indentation():
    src = "def f(x):\n    '''doc'''\n    # BEGIN SOLUTION\n    return x + 1\n    # END SOLUTION\n\ncheck(f)"
    out = strip_solution(src)
    assert "return x + 1" not in out and f"    {STUB}" in out and "def f(x):" in out and "check(f)" in out


def test_an_exercise_block_is_the_learners_scaffold_and_the_solution_copys_comment():
    src = "def f(x):\n    # BEGIN EXERCISE\n    # total = 0\n    #\n    # raise NotImplementedError\n"
    src += "    # END EXERCISE\n"
    src += "    # BEGIN SOLUTION\n    return sum(x)\n    # END SOLUTION\n\n\nprint(f([1]))"
    namespace: dict = {}
    exec(src, namespace)  # the solution copy runs the answer; the block above it is a comment
    assert namespace["f"]([2, 3]) == 5
    out = strip_solution(src)
    assert out == "def f(x):\n    total = 0\n\n    raise NotImplementedError\n\n\nprint(f([1]))"
    with pytest.raises(ValueError, match="comments only"):
        strip_solution("# BEGIN EXERCISE\nx = 1\n# END EXERCISE\n# BEGIN SOLUTION\n# END SOLUTION")
    # an untouched scaffold must not run through to a return
    with pytest.raises(ValueError, match="must raise NotImplementedError"):
        strip_solution("# BEGIN EXERCISE\n# return 0\n# END EXERCISE\n# BEGIN SOLUTION\n# END SOLUTION")
    with pytest.raises(ValueError, match="followed by its"):
        strip_solution("# BEGIN EXERCISE\n# raise NotImplementedError\n# END EXERCISE\ny = 2")


def test_unbalanced_markers_are_errors():
    with pytest.raises(ValueError, match="without"):
        strip_solution("# END SOLUTION")
    with pytest.raises(ValueError, match="without"):
        strip_solution("# BEGIN SOLUTION\nx = 1")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_learner_notebooks_derive_from_the_solutions(path):
    nb = nbformat.read(path, as_version=4)
    solutions = [c for c in nb.cells if is_solution(c)]
    assert solutions, f"{path.name} has no exercise cells tagged 'solution'"
    learner = learner_notebook(nb)
    for cell, original in zip(learner.cells, nb.cells, strict=True):
        if is_solution(original):
            assert BEGIN not in cell.source and STUB in cell.source
        else:
            assert cell.source == original.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_clean_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{path.name} has outputs"
    assert any("parameters" in c.metadata.get("tags", []) for c in code), f"{path.name} has no parameters cell"
    assert any("table.show(" in c.source for c in code), f"{path.name} does not show its reproduction table"


@pytest.mark.parametrize("path", exercises.lessons_with_exercises(), ids=lambda p: p.name)
def test_committed_learner_copies_are_what_the_lessons_derive_to(path):
    """The learner copies are committed (Colab opens them from a badge) and never edited by hand."""
    assert not exercises.stale(path), (
        f"{exercises.learner_path(path).name} is missing or out of date: run python -m interp_utils.course.exercises"
    )


# Lessons that are problem sets (EXERCISES.md): at least 8 exercises, 4 of them core (the learner writes the heart of a
# method: CORE_LINES code lines or more), each with its marker line, hints without code, and a check.
PROBLEM_SETS = [
    "01_superposition", "02_induction_heads", "03_ioi", "04_sparse_autoencoders", "05_circuit_tracing",
    "06_circuit_discovery",
    "07_probes_steering",
]  # fmt: skip


@pytest.mark.parametrize("name", PROBLEM_SETS)
def test_problem_sets_have_core_exercises_each_marked_with_hints_and_a_check(name):
    path = find_notebooks([name])[0]
    nb = nbformat.read(path, as_version=4)
    exercises = [i for i, c in enumerate(nb.cells) if is_solution(c)]
    stats = exercise_stats(path)
    assert len(exercises) >= 8 and stats["core"] >= 4, f"{name}: {stats}"
    for i in exercises:  # a core exercise is long, and not too long to be one exercise
        lines = len(answer_lines(nb.cells[i].source))
        assert lines <= 60, f"{name} cell {i}: {lines} lines of answer; split it into two exercises"
        if lines >= CORE_LINES:
            assert "🔴🔴🔴" in nb.cells[i - 1].source, f"{name} cell {i}: a core exercise is difficulty 3 or more"
    for i in exercises:
        above = nb.cells[i - 1]
        assert above.cell_type == "markdown" and "✏️" in above.source, f"{name} cell {i}: no exercise text above"
        assert "Difficulty" in above.source and "Importance" in above.source and "minutes" in above.source, i
        assert "<details>" in above.source, f"{name} cell {i}: no hints"
        assert "check_" in nb.cells[i].source, f"{name} cell {i}: the exercise has no check"


def test_the_problem_sets_have_learners_write_900_lines_or_more():
    lines = {name: exercise_stats(find_notebooks([name])[0])["lines"] for name in PROBLEM_SETS}
    assert sum(lines.values()) >= 900, lines


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_hints_give_the_approach_never_the_code(path):
    """EXERCISES.md: a hint never holds code (no code block, no code span longer than a short name, no answer line)."""
    problems = hint_problems(nbformat.read(path, as_version=4))
    assert not problems, "\n".join(problems)


def test_the_hint_rule_catches_code_spans_blocks_and_answer_lines():
    def lesson(hints: str, answer: str = "total = values.sum(dim=-1)"):
        exercise = nbformat.v4.new_code_cell(f"def f(values):\n    # BEGIN SOLUTION\n    {answer}\n    # END SOLUTION")
        exercise.metadata["tags"] = ["solution"]
        return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(hints), exercise])

    assert hint_problems(lesson("<details>Sum over the last axis: `dim` names it.</details>")) == []
    assert "code span" in hint_problems(lesson("<details>`torch.einsum('bi,bi->b', a, b)`</details>"))[0]
    assert "code block" in hint_problems(lesson("<details>\n```python\nx = 1\n```\n</details>"))[0]
    assert "a line of the answer" in hint_problems(lesson("<details>Write total = values.sum(dim=-1).</details>"))[0]
    assert "a line of the answer" in hint_problems(lesson("Outside the hints: `total = values.sum(dim=-1)`"))[0]
    assert "code span" in hint_problems(lesson("<details>Slice it: `x[:, 1:]`.</details>"))[0]  # short, but code
    for fine in ("`[batch, pos, d_model]`", "`W_U`", "`n × n`", "`src < dest`", "`model.W_V[layer, head]`"):
        assert hint_problems(lesson(f"<details>A shape, a name or maths: {fine}.</details>")) == [], fine


@pytest.mark.parametrize("name", PROBLEM_SETS)
def test_a_learner_copy_stops_at_its_first_exercise_saying_not_answered_yet(name, tmp_path):
    """Run as a learner would, stubs in place: the first exercise's check stops the run, with its message."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = find_notebooks([name])[0]
    learner = learner_notebook(nbformat.read(path, as_version=4))
    first = next(i for i, c in enumerate(learner.cells) if is_solution(c))
    learner.cells = learner.cells[: first + 2]  # up to the first exercise, and one cell past it
    ran: list[int] = []
    client = NotebookClient(
        learner,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        on_cell_executed=lambda cell_index, **_: ran.append(cell_index),
    )
    with pytest.raises(CellExecutionError) as error:
        client.execute()
    assert error.value.ename == "NotAnswered" and "not answered yet" in error.value.evalue
    assert ran[-1] == first, f"stopped at cell {ran[-1]}, not at the first exercise (cell {first})"


def test_the_check_command_fails_on_a_stale_learner_copy(tmp_path, capsys):
    lesson = tmp_path / "09_demo.ipynb"
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("def f():\n    # BEGIN SOLUTION\n    return 1\n    # END SOLUTION")
    cell.metadata["tags"] = ["solution"]
    nb.cells.append(cell)
    nbformat.write(nb, lesson)
    with pytest.raises(SystemExit):  # no learner copy yet
        exercises.main([str(lesson), "--check"])
    exercises.main([str(lesson)])
    exercises.main([str(lesson), "--check"])
    assert "up to date" in capsys.readouterr().out
    cell.source = cell.source.replace("return 1", "return 2")
    nbformat.write(nb, lesson)
    assert not exercises.stale(lesson)  # the answer changed, the learner's stub did not
    cell.source = "def g():\n" + cell.source.split("\n", 1)[1]
    nbformat.write(nb, lesson)
    assert exercises.stale(lesson)
    with pytest.raises(SystemExit):
        exercises.main([str(lesson), "--check"])
