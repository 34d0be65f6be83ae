import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils.metrics import induction_scores, ioi_logit_diffs, repeated_random_tokens


def small_model(**overrides) -> HookedTransformer:
    cfg = dict(n_layers=2, d_model=32, n_heads=2, d_head=16, n_ctx=64, d_vocab=50, attn_only=True, seed=0)
    return HookedTransformer(HookedTransformerConfig(**{**cfg, **overrides}))


def test_repeated_tokens_repeat():
    model = small_model()
    tokens = repeated_random_tokens(model, seq_len=10, batch=3)
    assert tokens.shape == (3, 21)
    assert torch.equal(tokens[:, 1:11], tokens[:, 11:])
    with pytest.raises(ValueError, match="exceeds the model's context"):
        repeated_random_tokens(model, seq_len=40, batch=1)


def test_random_model_scores_near_chance():
    scores, chance = induction_scores(small_model(), seq_len=20, batch=8)
    assert scores.shape == (2, 2)
    assert scores.max() < 5 * chance


def test_hand_built_induction_head_is_found(induction_model):
    scores, chance = induction_scores(induction_model, seq_len=25, batch=8)
    assert scores[1, 0] > 0.75 and scores[1, 0] > 10 * chance
    assert scores[0, 0] < 0.1 and scores[1, 1] < 0.1


def test_direct_effects_add_up_to_the_logit_difference(bundled_model):
    from interp_utils import corpus
    from interp_utils.ioi import ioi_batch, make_ioi_prompts, single_token_names
    from interp_utils.metrics import head_direct_effects, layer_direct_effects, logit_diff

    names = single_token_names(bundled_model, corpus.HELD_OUT_NAMES)
    batch = ioi_batch(bundled_model, make_ioi_prompts(16, names, corpus.TRAIN_TEMPLATES, seed=0))
    logits, cache = bundled_model.run_with_cache(batch.tokens)
    diff = logit_diff(logits, batch)
    assert torch.allclose(diff, ioi_logit_diffs(bundled_model, batch.prompts), atol=1e-4)
    layers = layer_direct_effects(bundled_model, cache, batch)
    bias = (bundled_model.b_U[batch.io] - bundled_model.b_U[batch.s]).mean().item()
    assert sum(layers.values()) + bias == pytest.approx(diff.mean().item(), abs=1e-3)
    per_head = head_direct_effects(bundled_model, cache, batch)
    assert per_head.shape == (4, 4)
    # heads plus each layer's output bias make up the attention layer's effect
    rows, end = torch.arange(len(batch)), batch.positions["end"]
    scale = cache["ln_final.hook_scale"][rows, end]
    direction = (bundled_model.W_U[:, batch.io] - bundled_model.W_U[:, batch.s]).T
    b_o = ((bundled_model.b_O[0] / scale) * direction).sum(-1).mean().item()
    assert per_head[0].sum().item() + b_o == pytest.approx(layers["attn 0"], abs=1e-3)
