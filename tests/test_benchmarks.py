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
    "sae_synthetic.py": "--features 256 --dim 32 --samples 2048 --batch 256 --eval-samples 512 --ortho-steps 0".split(),
    "attribution.py": ["--lengths", "8", "--train-tokens", "4096", "--pool-tokens", "4096", "--repeats", "1"],
    "circuit_discovery.py": [
        "--prompts",
        "2",
        "--sample",
        "4",
        "--acdc-visits",
        "3",
        "--check-edges",
        "2",
        "--tau",
        "1000",
        "--ig-steps",
        "2",
    ],  # fmt: skip
    # the template at the test width, at the two smallest exact fractions of its budgets; written to a temporary file
    "footprint.py": ["--only", "template", "--width", "96", "--levels", "0.03125", "0.0625", "--out", "{tmp}/fp.json"],
}


def test_every_benchmark_is_listed():
    assert sorted(p.name for p in BENCHMARKS.glob("*.py")) == sorted(TINY)


@pytest.mark.filterwarnings("ignore:Full backward hook")  # a PyTorch notice about circuit-tracer's hooks
@pytest.mark.parametrize("name", sorted(TINY))
def test_benchmark_runs(name, capsys, monkeypatch, tmp_path):
    spec = importlib.util.spec_from_file_location(f"benchmark_{Path(name).stem}", BENCHMARKS / name)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    module.main([arg.format(tmp=tmp_path) for arg in TINY[name]])
    out = capsys.readouterr().out
    assert any(word in out for word in ("difference", "Δ", "explained variance", "peak")), out
