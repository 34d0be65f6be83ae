import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils.metrics import induction_scores, repeated_random_tokens


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
