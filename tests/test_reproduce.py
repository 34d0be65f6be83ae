from html.parser import HTMLParser

import nbformat
import pytest

from interp_utils import reproduce

TABLE_CELL = """import os
from interp_utils.core.report import ReproductionTable
table = ReproductionTable("01_ok", model="toy")
from interp_utils import Band
measured = os.environ["INTERP_FAST"] + "/" + os.environ["INTERP_MODEL"]
table.judge("a finding", "1.0", measured, 1.0, Band.at_least(0.9), 0.1, "random scores")
table.judge("computing |x| with max |Δ logit|", "|x|", "max |Δ| 0.1", 0.1, Band.at_most(0.2), 3.0, "|random|")
table.note("a judgement call", "big", "medium", "no reference")
table.sanity("τ = 0 keeps every edge", "all", "29 of 29", True)
table.show()"""


class Cells(HTMLParser):
    """The cells of each row of each table in an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[int]] = []

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append(0)
        elif tag in ("td", "th"):
            self.tables[-1][-1] += 1


def assert_every_table_row_has_its_headers_cells(html: str, tables: int) -> None:
    """Every table the report renders (through the report's own renderer) has as many cells per row as its header:
    a ``|`` inside a cell (``|x|``, ``max |Δ logit|``) must not split it."""
    parser = Cells()
    parser.feed(html)
    assert len(parser.tables) == tables, html
    for rows in parser.tables:
        assert len(rows) >= 2 and set(rows) == {rows[0]}, rows


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
    assert "| a finding | 1.0 | 1/bundled | ≥ 0.9 | 0.1 (random scores) | yes |" in report
    assert "| a judgement call | big | medium | — | — | not judged: no reference |" in report
    assert "| 01_ok | toy | cpu |" in report and "| 2 of 2 | 1 of 1 | 1 | ran |" in report and "**failed**" in report
    assert "In all: 2 of 2 findings judged with a control agree; 1 of 1 sanity checks hold; 1 row(s)" in report
    assert "03_never" not in report and "_exercises" not in report
    assert_every_table_row_has_its_headers_cells((out / "report.html").read_text(), tables=3)
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
