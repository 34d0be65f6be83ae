import json

import pytest
import torch

from interp_utils import plotting, report, runtime
from interp_utils.core.report import ReproductionMismatch, ReproductionTable, markdown_table, show_source


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
    table = ReproductionTable("nb", model="m")
    table.add("finding", "paper says", "we measured", True)
    assert "| finding | paper says | we measured | yes |" in table.markdown()
    monkeypatch.setenv("INTERP_FAST", "1")
    table.show()
    saved = json.loads((tmp_path / "nb.json").read_text())
    assert saved["rows"][0]["agrees"] is True and saved["mode"] == "fast" and 0 <= saved["seconds"] < 60
    assert (saved["device"], saved["peak_gpu_bytes"]) == (runtime.device_name(), runtime.peak_gpu_memory())
    if not torch.cuda.is_available():
        assert saved["device"] == "cpu" and saved["peak_gpu_bytes"] is None  # no GPU memory to report
    monkeypatch.setenv("INTERP_FAST", "0")
    table.show()
    assert json.loads((tmp_path / "nb.json").read_text())["mode"] == "full"


def test_strict_mode_fails_on_a_row_that_disagrees(tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_REPORT_DIR", str(tmp_path))
    table = ReproductionTable("nb")
    table.add("holds", "p", "m", True)
    table.add("judgement", "p", "m", None)
    table.add("broken", "p", "m", False)
    monkeypatch.setenv("INTERP_STRICT", "0")
    table.show()
    monkeypatch.setenv("INTERP_STRICT", "1")
    with pytest.raises(ReproductionMismatch, match="1 finding.*broken"):
        table.show()
    assert json.loads((tmp_path / "nb.json").read_text())["rows"][2]["agrees"] is False  # written before failing


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
    table.add_heads("induction heads", ["5.5", "6.9"], ["5.5", "7.1"], 1, "Olsson et al.", ranked=True)
    table.add_heads("name movers", ["9.9", "9.6", "10.0"], ["9.9"], 2, overlap=True)
    table.add_heads("card", ["1.3"], ["1.2", "1.3"], "first")
    table.add_heads("none found", ["0.1"], [], None)
    rows = [(r.paper, r.measured, r.agrees) for r in table.rows]
    assert rows == [
        ("5.5, 6.9 (Olsson et al.)", "top 2 by score: 5.5, 7.1", True),
        ("9.9, 9.6, 10.0", "9.9 (1 of 3 of the paper's)", False),
        ("1.3", "1.2, 1.3", False),
        ("0.1", "none", None),
    ]
    with pytest.raises(ValueError, match="need must be between"):
        table.add_heads("too many", ["0.1"], ["0.1"], 2)
