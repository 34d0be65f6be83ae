"""The memory check the notebooks make before loading GPT-2, and the measurements it reads."""

import json

import nbformat
import pytest

from interp_utils import footprint
from interp_utils.course.reproduce import NOTEBOOK_DIR

# 03 on GPT-2: a peak of 3 GB plus 14 GB at full budgets (17 GB in full mode); loading GPT-2 peaks at 2.7 GB
MEASURED = {
    "gpt2_load_bytes": 2.7e9,
    "idle_kernel_bytes": 0.5e9,
    "notebooks": {"03_ioi": {"ram_gb": 17.0, "peak_gb_fit": [3.0, 14.0], "cpu_minutes": 48.0, "t4_minutes": 2.9}},
}


@pytest.fixture
def data(tmp_path):
    path = tmp_path / "footprint.json"
    path.write_text(json.dumps(MEASURED))
    return path


def machine(monkeypatch, gb):
    monkeypatch.setattr(footprint, "available_memory", lambda: None if gb is None else int(gb * 1e9))


def test_a_machine_that_cannot_load_gpt2_runs_the_bundled_model_and_says_so(data, monkeypatch, capsys):
    machine(monkeypatch, 2)  # Binder
    assert footprint.affordable("03_ioi", path=data) == 0
    assert footprint.choose_model("gpt2", "03_ioi", path=data) == "bundled"
    out = capsys.readouterr().out
    assert "does not fit" in out and "2.0 GB of memory here" in out and "2.7 GB" in out and "BUNDLED" in out
    monkeypatch.setenv(footprint.CHECK, "0")  # the learner insists
    assert footprint.choose_model("gpt2", "03_ioi", path=data) == "gpt2"


def test_a_machine_that_holds_part_of_the_budgets_keeps_gpt2_and_cuts_them(data, monkeypatch, capsys):
    machine(monkeypatch, 12)  # Colab's RAM, on the CPU: (12 - 3) / 14 of the full budgets
    assert footprint.affordable("03_ioi", path=data) == pytest.approx(9 / 14)
    assert footprint.choose_model("gpt2", "03_ioi", path=data) == "gpt2"
    assert "about 48 minutes on a 2-core CPU and about 3 on a Colab T4" in capsys.readouterr().out
    assert footprint.shrink("gpt2", 120, 120, "03_ioi", path=data) == 77
    assert "running with 77 instead of 120" in capsys.readouterr().out
    assert footprint.shrink("gpt2", 40, 120, "03_ioi", path=data) == 40  # fast mode fits
    assert footprint.shrink("bundled", 120, 120, "03_ioi", path=data) == 120
    assert capsys.readouterr().out == ""


def test_a_big_or_unknown_machine_is_left_alone(data, monkeypatch, capsys):
    for gb in (24, None):
        machine(monkeypatch, gb)
        assert footprint.affordable("03_ioi", path=data) == 1.0
        assert footprint.choose_model("gpt2", "03_ioi", path=data) == "gpt2"
        assert footprint.shrink("gpt2", 120, 120, "03_ioi", path=data) == 120
    assert "does not fit" not in capsys.readouterr().out
    machine(monkeypatch, 1)
    assert footprint.choose_model("bundled", "03_ioi", path=data) == "bundled"
    assert capsys.readouterr().out == ""


def test_unknown_notebooks_and_missing_measurements_say_what_to_run(data, tmp_path):
    with pytest.raises(KeyError, match="No footprint measured for '09_x'.*03_ioi.*benchmarks/footprint.py"):
        footprint.choose_model("gpt2", "09_x", path=data)
    with pytest.raises(FileNotFoundError, match="run python benchmarks/footprint.py"):
        footprint.choose_model("gpt2", "03_ioi", path=tmp_path / "none.json")


def test_this_machines_memory_is_read():
    memory = footprint.available_memory()
    assert memory is None or 2**28 < memory < 2**50


def test_every_notebook_that_loads_gpt2_checks_its_own_measured_needs():
    needs = footprint.measured()["notebooks"]
    for path in sorted(NOTEBOOK_DIR.glob("*.ipynb")):
        source = "\n".join(c.source for c in nbformat.read(path, 4).cells if c.cell_type == "code")
        if "load_model(MODEL" in source and not path.stem.endswith("_exercises"):
            assert f'choose_model(MODEL, "{path.stem}"' in source, path.name
            assert path.stem in needs, f"{path.stem}: run python benchmarks/footprint.py --only {path.stem[:2]}"
            row = needs[path.stem]
            assert row["ram_gb"] > 0 and row["cpu_minutes"] > 0 and row["t4_minutes"] > 0, row
            if row["peak_gb_fit"][1] > 0:  # the memory grows with a budget: the notebook cuts it to fit
                assert f'"{path.stem}", DEVICE)' in source and "shrink(" in source, path.name
