import nbformat
import pytest

from interp_utils.exercises import BEGIN, STUB, is_solution, learner_notebook, strip_solution
from interp_utils.reproduce import find_notebooks

NOTEBOOKS = find_notebooks()  # the numbered lessons


def test_strip_solution_keeps_the_signature_and_indentation():
    src = "def f(x):\n    '''doc'''\n    # BEGIN SOLUTION\n    return x + 1\n    # END SOLUTION\n\ncheck(f)"
    out = strip_solution(src)
    assert "return x + 1" not in out and f"    {STUB}" in out and "def f(x):" in out and "check(f)" in out


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
