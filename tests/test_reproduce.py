import nbformat
import pytest

from interp_utils import reproduce

TABLE_CELL = """import os
from interp_utils.core.report import ReproductionTable
table = ReproductionTable("01_ok", model="toy")
table.add("a finding", "1.0", os.environ["INTERP_FAST"] + "/" + os.environ["INTERP_MODEL"], True)
table.add("a judgement call", "big", "medium")
table.show()"""


def write(path, *sources):
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in sources]), path)


def test_report_gathers_tables_and_names_the_failing_notebook_and_cell(tmp_path):
    notebooks = tmp_path / "nbs"
    notebooks.mkdir()
    write(notebooks / "01_ok.ipynb", TABLE_CELL)
    write(notebooks / "02_broken.ipynb", "x = 1", "# a comment first\nraise ValueError('no such head')", "y = 2")
    write(notebooks / "03_never.ipynb", "z = 3")
    write(notebooks / "01_ok_exercises.ipynb", "raise SystemExit")  # learner copies are not run
    out = tmp_path / "out"
    with pytest.raises(
        reproduce.NotebookFailed,
        match=r"02_broken.ipynb: cell 2 of 3 \('# a comment first'\) "
        r"raised ValueError: no such head",
    ):
        reproduce.reproduce(out, fast=True, model="bundled", directory=notebooks, progress=False)
    report = (out / "report.md").read_text()
    assert (
        "| a finding | 1.0 | 1/bundled | yes |" in report and "| a judgement call | big | medium | see text |" in report
    )
    assert "| 01_ok | toy | cpu |" in report and "1 of 1 judged" in report and "**failed**" in report
    assert "03_never" not in report and "_exercises" not in report
    assert "<table>" in (out / "report.html").read_text()
    executed = nbformat.read(out / "notebooks" / "02_broken.ipynb", as_version=4)
    assert executed.cells[1].outputs[0]["ename"] == "ValueError"


def test_keep_going_runs_the_rest_and_still_fails(tmp_path):
    write(tmp_path / "01_broken.ipynb", "raise ValueError('first')")
    write(tmp_path / "02_ok.ipynb", TABLE_CELL.replace("01_ok", "02_ok"))
    out = tmp_path / "out"
    with pytest.raises(reproduce.NotebookFailed, match="01_broken.ipynb: cell 1 of 1"):
        reproduce.reproduce(out, fast=True, model="bundled", directory=tmp_path, progress=False, keep_going=True)
    report = (out / "report.md").read_text()
    assert "| 02_ok | toy | cpu |" in report and "**failed**" in report


def test_unknown_selection_is_explained(tmp_path):
    write(tmp_path / "01_a.ipynb", "x = 1")
    with pytest.raises(ValueError, match=r"No notebook starts with \['07'\]; choose from \['01_a.ipynb'\]"):
        reproduce.find_notebooks(["07"], tmp_path)
    with pytest.raises(FileNotFoundError, match="No numbered notebooks"):
        reproduce.find_notebooks(None, tmp_path / "empty")
