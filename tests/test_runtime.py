import pytest
import torch

from interp_utils import runtime


def test_fast_mode_reads_environment(monkeypatch):
    monkeypatch.setenv("INTERP_FAST", "1")
    assert runtime.fast_mode()
    monkeypatch.setenv("INTERP_FAST", "0")
    assert not runtime.fast_mode()
    monkeypatch.setenv("INTERP_FAST", "maybe")
    with pytest.raises(ValueError, match="INTERP_FAST"):
        runtime.fast_mode()


def test_param_converts_to_default_type(monkeypatch):
    assert runtime.param("seed", 3) == 3
    monkeypatch.setenv("INTERP_SEED", "7")
    assert runtime.param("seed", 3) == 7
    monkeypatch.setenv("INTERP_MODEL", "bundled")
    assert runtime.param("model", "gpt2") == "bundled"
    monkeypatch.setenv("INTERP_SEED", "seven")
    with pytest.raises(ValueError, match="INTERP_SEED"):
        runtime.param("seed", 3)


def test_device_and_seed(monkeypatch):
    assert runtime.get_device("cpu") == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            runtime.get_device("cuda")
    runtime.set_seed(5)
    a = torch.rand(3)
    runtime.set_seed(5)
    assert torch.equal(a, torch.rand(3))
