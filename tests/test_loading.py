import pytest
import torch

from interp_utils import loading


def test_unknown_model_name_is_explained():
    with pytest.raises(ValueError, match="Unknown model name 'gpt-17'.*'bundled'"):
        loading.load_model("gpt-17")


def test_missing_bundled_files_are_explained(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(loading.BundledModelMissing, match="model.safetensors, tokenizer.json missing.*retrain"):
        loading.load_bundled(tmp_path)


def test_offline_falls_back_to_bundled_model_with_a_banner(monkeypatch, capsys):
    monkeypatch.setattr(loading, "hub_reachable", lambda *a, **k: False)
    monkeypatch.setattr(loading, "_in_hf_cache", lambda name: False)
    model = loading.load_model("gpt2", device="cpu")
    out = capsys.readouterr().out
    assert "FALLING BACK to the bundled model" in out and "gpt2 could NOT be loaded" in out
    assert loading.is_bundled(model)


def test_bundled_by_name_round_trips_text():
    model = loading.load_model("bundled", device="cpu", verbose=False)
    tokens = model.to_tokens("Then, Mary and John went to the store.")
    assert tokens[0, 0] == model.tokenizer.bos_token_id
    assert model.to_string(tokens[0, 1:]).split()[:3] == ["Then", ",", "Mary"]
    assert model.to_single_token(" Mary") == model.to_single_token("Mary")


def test_hub_reachable_honours_offline_flag(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert not loading.hub_reachable()


def test_online_path_loads_the_real_model(monkeypatch, capsys):
    """With the hub reachable, load_model asks TransformerLens for the official model (stubbed here: no network)."""
    calls = []
    monkeypatch.setattr(loading, "hub_reachable", lambda *a, **k: True)
    monkeypatch.setattr(
        loading.HookedTransformer,
        "from_pretrained",
        classmethod(lambda cls, name, device: calls.append((name, device))),
    )
    loading.load_model("gpt2-small", device="cpu")
    assert calls == [("gpt2", "cpu")]
    assert "FALLING BACK" not in capsys.readouterr().out


def test_processed_bundled_model_computes_the_same_function(bundled_model):
    raw = loading.load_bundled(device="cpu", process_weights=False)
    processed = bundled_model  # the session's model, loaded with its weights processed
    assert processed.cfg.normalization_type == "LNPre" and raw.cfg.normalization_type == "LN"
    tokens = raw.to_tokens("Then , Mary and John went to the store .")
    a, b = raw(tokens), processed(tokens).cpu()
    # the unembedding is centred, so logits agree up to a constant per position
    assert torch.allclose(a - a.mean(-1, keepdim=True), b - b.mean(-1, keepdim=True), atol=1e-3)


def test_model_label_says_when_the_bundled_model_stands_in(bundled_model):
    name = bundled_model.cfg.model_name
    assert loading.model_label(bundled_model, "bundled") == name
    assert loading.model_label(bundled_model, "gpt2") == f"{name} (gpt2 could not be loaded)"
