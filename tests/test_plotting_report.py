import json

import pytest
import torch

from interp_utils import plotting
from interp_utils.report import ReproductionMismatch, ReproductionTable


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
    table.show(mode="fast", seconds=1.0)
    saved = json.loads((tmp_path / "nb.json").read_text())
    assert saved["rows"][0]["agrees"] is True and saved["mode"] == "fast"


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
