import json

import pytest
import torch

from interp_utils import plotting, report, runtime
from interp_utils.core.report import Band, ReproductionMismatch, ReproductionTable, markdown_table, show_source


def test_plot_helpers():
    assert plotting.imshow(torch.randn(3, 4)).data[0].z.shape == (3, 4)
    with pytest.raises(ValueError, match="2-D"):
        plotting.imshow(torch.randn(3))
    assert len(plotting.line({"a": [1, 2], "b": [2, 3]}).data) == 2
    with pytest.raises(ValueError, match="same number"):
        plotting.scatter([1, 2], [1, 2, 3])
    fig = plotting.facets({"left": torch.zeros(2, 3), "right": torch.ones(2, 3)})
    assert [a.text for a in fig.layout.annotations] == ["left", "right"]
    with pytest.raises(ValueError, match="one shape"):
        plotting.facets({"a": torch.zeros(2, 3), "b": torch.zeros(3, 2)})


def test_reproduction_table_saves_when_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_REPORT_DIR", str(tmp_path))
    monkeypatch.delenv("INTERP_EXPECTED_COUNTS", raising=False)
    table = ReproductionTable("nb", model="m")
    table.judge("finding", "paper says", "we measured", 0.9, Band.at_least(0.8), 0.5, "random scores")
    assert "| finding | paper says | we measured | ≥ 0.8 | 0.5 (random scores) | yes |" in table.markdown()
    monkeypatch.setenv("INTERP_FAST", "1")
    table.show()
    saved = json.loads((tmp_path / "nb.json").read_text())
    assert saved["rows"][0]["agrees"] is True and saved["mode"] == "fast" and 0 <= saved["seconds"] < 60
    assert saved["rows"][0]["control"] == 0.5 and saved["rows"][0]["low"] == 0.8 and saved["rows"][0]["high"] is None
    assert saved["counts"] == {"findings": 1, "findings_agree": 1, "sanity": 0, "sanity_hold": 0, "not_judged": 0}
    assert (saved["device"], saved["peak_gpu_bytes"]) == (runtime.device_name(), runtime.peak_gpu_memory())
    if not torch.cuda.is_available():
        assert saved["device"] == "cpu" and saved["peak_gpu_bytes"] is None  # no GPU memory to report
    monkeypatch.setenv("INTERP_FAST", "0")
    table.show()
    assert json.loads((tmp_path / "nb.json").read_text())["mode"] == "full"


def test_a_finding_agrees_only_when_its_control_falls_outside_the_band():
    table = ReproductionTable("nb")
    assert table.judge("real", "p", "m", 0.9, Band.at_least(0.8), 0.5, "random scores")
    assert not table.judge("control passes too", "p", "m", 0.9, Band.at_least(0.8), 0.85, "random scores")
    assert not table.judge("value outside", "p", "m", 0.7, Band.at_least(0.8), 0.5, "random scores")
    assert not table.judge("undefined value", "p", "m", float("nan"), Band.at_least(0.8), 0.5, "random scores")
    assert table.judge("two-sided", "0.869", "m", 0.85, Band.near(0.869, 0.1), 0.5, "random scores")
    assert not table.judge("control in two-sided", "0.869", "m", 0.85, Band.near(0.869, 0.1), 0.9, "random")
    assert [r.agrees for r in table.rows] == [True, False, False, False, True, False]
    with pytest.raises(ValueError, match="Say what the control is"):
        table.judge("no null", "p", "m", 1.0, Band.at_least(0.5), 0.0, "")
    with pytest.raises(TypeError, match="band must be a Band"):
        table.judge("no band", "p", "m", 1.0, 0.5, 0.0, "random")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="low end"):
        Band.between(2, 1)
    with pytest.raises(ValueError, match="needs a low end"):
        Band()
    assert (str(Band.at_least(0.8)), str(Band.at_most(0.01)), str(Band.between(1, 2))) == ("≥ 0.8", "≤ 0.01", "1 to 2")


def test_strict_mode_fails_on_a_row_that_disagrees(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_REPORT_DIR", str(tmp_path))
    monkeypatch.delenv("INTERP_EXPECTED_COUNTS", raising=False)
    table = ReproductionTable("nb")
    table.judge("holds", "p", "m", 1.0, Band.at_least(0.5), 0.0, "random")
    table.note("judgement", "p", "m", "no reference on this model")
    table.sanity("by construction", "all", "all", True)
    table.judge("broken", "p", "m", 0.0, Band.at_least(0.5), 0.0, "random")
    assert "**Sanity checks**" in table.markdown() and "not judged: no reference on this model" in table.markdown()
    assert table.counts_text() == (
        "1 of 2 findings judged with a control agree; 1 of 1 sanity checks hold; 1 row(s) not judged on this model."
    )
    monkeypatch.setenv("INTERP_STRICT", "0")
    table.show()
    monkeypatch.setenv("INTERP_STRICT", "1")
    with pytest.raises(ReproductionMismatch, match="1 row.*broken"):
        table.show()
    assert json.loads((tmp_path / "nb.json").read_text())["rows"][3]["agrees"] is False  # written before failing
    table.rows[3].agrees = True  # a flag set by hand does not pass: the stored numbers are judged again
    with pytest.raises(ReproductionMismatch, match="broken .its control is inside the band"):
        table.show()
    failing = ReproductionTable("nb")
    failing.sanity("by construction", "all", "some", False)
    with pytest.raises(ReproductionMismatch, match="by construction"):
        failing.show()


def test_strict_mode_fails_when_the_recorded_counts_are_stale(tmp_path, monkeypatch):
    recorded = {"mode": "fast", "notebooks": {"nb": {"model": "m", "findings": 2, "sanity": 0, "not_judged": 0}}}
    (tmp_path / "counts.json").write_text(json.dumps(recorded))
    monkeypatch.setenv("INTERP_EXPECTED_COUNTS", str(tmp_path / "counts.json"))
    monkeypatch.setenv("INTERP_REPORT_DIR", str(tmp_path / "tables"))
    monkeypatch.setenv("INTERP_FAST", "1")
    table = ReproductionTable("nb", model="m (gpt2 could not be loaded)")
    table.judge("holds", "p", "m", 1.0, Band.at_least(0.5), 0.0, "random")
    with pytest.raises(ReproductionMismatch, match="findings 1, sanity 0, not_judged 0.*differ.*findings 2"):
        table.show()
    ReproductionTable("nb", model="another model").show()  # counts recorded for another model: not compared
    monkeypatch.setenv("INTERP_FAST", "0")
    table.show()  # nor for another mode


def test_markdown_table_and_source(monkeypatch):
    assert markdown_table(["a", "b"], [(1, "x"), (2.5, None)]) == "| a | b |\n|---|---|\n| 1 | x |\n| 2.5 | None |"
    with pytest.raises(ValueError, match="Every row needs 2 cells"):
        markdown_table(["a", "b"], [(1,)])
    shown = []
    monkeypatch.setattr(report, "show_markdown", shown.append)
    show_source(markdown_table)
    assert shown[0].startswith("```python\ndef markdown_table(")


def test_layer_position_heatmap():
    fig = plotting.layer_position(torch.zeros(3, 2), ["S2", "end"], "sweep")
    assert list(fig.data[0].x) == ["S2", "end"] and fig.layout.title.text == "sweep"


def test_add_heads_builds_a_row_against_a_reference_list():
    from interp_utils.core.report import ReproductionTable

    table = ReproductionTable("t")
    untrained = {"control": ["0.1", "7.1"], "null": "untrained model"}
    table.add_heads("induction heads", ["5.5", "6.9"], ["5.5", "7.1"], 1, "Olsson et al.", ranked=True, **untrained)
    table.add_heads("name movers", ["9.9", "9.6", "10.0"], ["9.9"], 2, overlap=True, **untrained)
    table.add_heads("card", ["1.3"], ["1.2", "1.3"], "first", **untrained)
    table.add_heads("none found", ["0.1"], [], None, why="no reference for this model")
    table.add_heads("control finds them too", ["5.5"], ["5.5"], 1, control=["5.5"], null="permuted attention")
    rows = [(r.paper, r.measured, r.agrees, r.kind) for r in table.rows]
    assert rows == [
        ("5.5, 6.9 (Olsson et al.)", "top 2 by score: 5.5, 7.1", True, "finding"),
        ("9.9, 9.6, 10.0", "9.9 (1 of 3 of the paper's)", False, "finding"),
        ("1.3", "1.2, 1.3", False, "finding"),
        ("0.1", "none", None, "note"),
        ("5.5", "5.5", False, "finding"),
    ]
    assert table.rows[0].control_text() == "0 (untrained model: 0.1, 7.1)"
    with pytest.raises(ValueError, match="need must be between"):
        table.add_heads("too many", ["0.1"], ["0.1"], 2, control=[], null="x")
    with pytest.raises(ValueError, match="needs control="):
        table.add_heads("no control", ["0.1"], ["0.1"], 1)
