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


def test_hand_built_induction_head_is_found():
    """Layer 0 head 0 copies the previous token's embedding; layer 1 head 0 matches it against the current token."""
    n_ctx, vocab, d_half = 64, 128, 128
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=2 * d_half + n_ctx,
        n_heads=1,
        d_head=d_half + n_ctx,
        n_ctx=n_ctx,
        d_vocab=vocab,
        attn_only=True,
        normalization_type=None,
        seed=0,
    )
    model = HookedTransformer(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        # residual stream: [token one-hot (padded) | previous token one-hot (written by L0) | position one-hot]
        model.W_E[:, :vocab] = torch.eye(vocab)
        model.W_pos[:, 2 * d_half :] = torch.eye(n_ctx)
        # L0H0: attend from position p to p-1 using positions, copy the token slot into the "previous token" slot
        shift = torch.zeros(n_ctx, n_ctx)
        shift[torch.arange(1, n_ctx), torch.arange(n_ctx - 1)] = 1.0
        model.blocks[0].attn.W_Q[0, 2 * d_half :, d_half:] = 200 * torch.eye(n_ctx)
        model.blocks[0].attn.W_K[0, 2 * d_half :, d_half:] = shift.T
        model.blocks[0].attn.W_V[0, :d_half, :d_half] = torch.eye(d_half)
        model.blocks[0].attn.W_O[0, :d_half, d_half : 2 * d_half] = torch.eye(d_half)
        # L1H0: query = current token, key = previous token at the source: attends to the token after a match
        model.blocks[1].attn.W_Q[0, :d_half, :d_half] = 200 * torch.eye(d_half)
        model.blocks[1].attn.W_K[0, d_half : 2 * d_half, :d_half] = torch.eye(d_half)
    model.tokenizer = None
    scores, chance = induction_scores(model, seq_len=25, batch=8)
    assert scores[1, 0] > 0.75 and scores[1, 0] > 10 * chance
    assert scores[0, 0] < 0.1
