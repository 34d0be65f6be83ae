import json

import pytest

from interp_utils.core.report import Band, ReproductionTable
from interp_utils.course import counts


def write_tables(folder, mode="fast"):
    folder.mkdir(exist_ok=True)
    first = ReproductionTable("01_a", model="interp-mini-gpt2 (gpt2 could not be loaded)")
    first.judge("f", "p", "m", 1.0, Band.at_least(0.5), 0.0, "random")
    first.judge("g", "p", "m", 0.0, Band.at_least(0.5), 0.0, "random")
    first.sanity("s", "e", "m", True)
    second = ReproductionTable("02_b", model="toy")
    second.note("n", "p", "m", "no reference")
    for table in (first, second):
        (folder / f"{table.notebook}.json").write_text(json.dumps(table.record(mode, 1.0)))


def test_counts_are_gathered_from_the_tables_and_written_into_the_readme(tmp_path):
    write_tables(tmp_path / "tables")
    record = counts.gather(tmp_path / "tables")
    assert record["notebooks"]["01_a"] == {
        "model": "interp-mini-gpt2",
        "findings": 2,
        "findings_agree": 1,
        "sanity": 1,
        "sanity_hold": 1,
        "not_judged": 0,
    }
    assert record["total"] == {"findings": 2, "findings_agree": 1, "sanity": 1, "sanity_hold": 1, "not_judged": 1}
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{counts.BEGIN}\nold\n{counts.END}\n\nmore\n")
    counts.update_readme(record, readme)
    text = readme.read_text()
    assert (
        "| 01_a | interp-mini-gpt2 | 1 of 2 | 1 of 1 | 0 |" in text and "| **all** |  | 1 of 2 | 1 of 1 | 1 |" in text
    )
    assert "\nold\n" not in text and text.endswith("\n\nmore\n") and counts.readme_is_current(record, readme)
    with pytest.raises(ValueError, match="no .* block"):
        counts.update_readme(record, tmp_path / "tables" / "01_a.json")


def test_mixed_modes_and_empty_folders_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="No lesson tables"):
        counts.gather(tmp_path)
    write_tables(tmp_path / "t")
    (tmp_path / "t" / "03_c.json").write_text(json.dumps(ReproductionTable("03_c").record("full", 1.0)))
    with pytest.raises(ValueError, match="mix modes"):
        counts.gather(tmp_path / "t")


def test_the_readme_quotes_the_recorded_counts():
    """The README's counts are the recorded file's (regenerate both with python -m interp_utils.course.counts)."""
    record = counts.load()
    assert counts.readme_is_current(record), "run python -m interp_utils.course.counts TABLE_DIR"
    assert set(record["notebooks"]) == {p.stem for p in counts.ROOT.glob("notebooks/[0-9][1-9]_*.ipynb")} - {
        p.stem for p in counts.ROOT.glob("notebooks/*_exercises.ipynb")
    }
