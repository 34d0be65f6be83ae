"""Every benchmark still runs (tiny arguments): they lean on other libraries' internals, which can move under them.

Timings are not checked here; speed and memory targets live in the benchmarks themselves.
"""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
TINY = {
    "patching.py": ["--prompts", "4"],
    "sae_training.py": ["--tokens", "4096", "--d-sae", "64", "--batch", "512", "--activations", "8192"],
    "attribution.py": ["--lengths", "8", "--train-tokens", "4096", "--pool-tokens", "4096", "--repeats", "1"],
}


def test_every_benchmark_is_listed():
    assert sorted(p.name for p in BENCHMARKS.glob("*.py")) == sorted(TINY)


@pytest.mark.filterwarnings("ignore:Full backward hook")  # a PyTorch notice about circuit-tracer's hooks
@pytest.mark.parametrize("name", sorted(TINY))
def test_benchmark_runs(name, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"benchmark_{Path(name).stem}", BENCHMARKS / name)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    module.main(TINY[name])
    out = capsys.readouterr().out
    assert "difference" in out or "Δ" in out or "explained variance" in out, out
