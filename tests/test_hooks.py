import pytest
import torch

from interp_utils import hooks


def test_kinds_mean_what_transformer_lens_means(bundled_model):
    """A kind that TransformerLens's get_act_name turns into a real hook names the same hook here (no "mlp_in" that
    means another)."""
    from typing import get_args

    from transformer_lens.utilities import get_act_name

    shared = 0
    for kind in get_args(hooks.LayerKind):
        try:
            theirs = get_act_name(kind, 2)
        except Exception:
            continue
        if theirs not in bundled_model.hook_dict:  # a name TransformerLens builds but no model has
            continue
        shared += 1
        assert hooks.name(kind, 2) == theirs, kind
    assert shared >= 8 and hooks.name("mlp_in", 2) == get_act_name("mlp_in", 2)


def test_names_match_transformer_lens(bundled_model):
    for kind in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "ln2_normalized", "mlp_post", "q", "k",
                 "v", "z", "pattern", "ln1_scale", "ln2_scale"):  # fmt: skip
        assert hooks.name(kind, 3) in bundled_model.hook_dict, kind
    for kind in ("embed", "pos_embed", "ln_final_scale", "ln_final_normalized"):
        assert hooks.name(kind) in bundled_model.hook_dict, kind
    assert (
        hooks.name("z", 5) == "blocks.5.attn.hook_z"
        and hooks.name("ln2_normalized", 0) == "blocks.0.ln2.hook_normalized"
    )
    assert hooks.layer_names("pattern", 2) == ["blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"]
    assert hooks.hook_layer(hooks.name("q", 11)) == 11 and hooks.hook_layer(hooks.name("embed")) is None


def test_bad_names_are_explained():
    with pytest.raises(ValueError, match="Unknown hook kind 'attn'.*resid_pre"):
        hooks.name("attn", 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="give its layer"):
        hooks.name("z")
    with pytest.raises(ValueError, match="without a layer"):
        hooks.name("embed", 0)


def test_splicing_an_exact_reconstruction_changes_nothing(bundled_model):
    tokens = bundled_model.to_tokens(["Then, Mary and John went to the store."])
    exact = lambda x: x  # noqa: E731
    clean = hooks.mean_loss(bundled_model, tokens, [])
    spliced = hooks.splice_hooks([(exact, hooks.name("resid_pre", 2), None)])
    assert hooks.mean_loss(bundled_model, tokens, spliced) == pytest.approx(clean, abs=1e-5)
    zeroed = hooks.mean_loss(bundled_model, tokens, [(hooks.name("mlp_out", 1), hooks.zero_past_bos)])
    assert zeroed != pytest.approx(clean, abs=1e-3)
    # a module reading another hook (a transcoder): layer 1's MLP predicted from its own input by the real MLP
    mlp = bundled_model.blocks[1].mlp
    as_transcoder = hooks.splice_hooks([(mlp, hooks.name("mlp_out", 1), hooks.name("ln2_normalized", 1))])
    assert hooks.mean_loss(bundled_model, tokens, as_transcoder) == pytest.approx(clean, abs=1e-4)


def test_store_and_replace_hooks(bundled_model):
    tokens = bundled_model.to_tokens(["Then, Mary and John went to the store."])
    kept: dict[str, torch.Tensor] = {}
    name = hooks.name("pattern", 0)
    bundled_model.run_with_hooks(tokens, fwd_hooks=[(name, hooks.store_hook(kept))])
    uniform = torch.full_like(kept[name][0], 0.0)
    out = {}
    bundled_model.run_with_hooks(
        tokens.expand(3, -1), fwd_hooks=[(name, hooks.replace_with(uniform)), (name, hooks.store_hook(out))]
    )
    assert out[name].shape == (3, *uniform.shape) and (out[name] == 0).all()
