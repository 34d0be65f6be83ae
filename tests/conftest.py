"""Fixtures shared by the unit tests."""

import os

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

N_CTX, VOCAB, D_SLOT = 64, 128, 128
# The shared models live on the CPU, or on INTERP_DEVICE where it is set (the GPU check: INTERP_DEVICE=cuda pytest)
DEVICE = os.environ.get("INTERP_DEVICE") or "cpu"


def build_induction_model() -> HookedTransformer:
    """A 2-layer attention-only model whose weights are set by hand so that head 0.0 is a previous-token
    head, head 1.0 an induction head whose OV circuit copies tokens, and head 1.1 does nothing.

    Residual stream slots: [token one-hot | previous token (written by 0.0) | output (written by 1.0) | position].
    """
    cfg = HookedTransformerConfig(
        n_layers=2,
        d_model=3 * D_SLOT + N_CTX,
        n_heads=2,
        d_head=D_SLOT + N_CTX,
        n_ctx=N_CTX,
        d_vocab=VOCAB,
        attn_only=True,
        normalization_type=None,
        seed=0,
        device=DEVICE,
    )
    model = HookedTransformer(cfg)
    tok, prev, out = (slice(i * D_SLOT, (i + 1) * D_SLOT) for i in range(3))
    pos = slice(3 * D_SLOT, None)
    eye = torch.eye(D_SLOT)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.W_E[:, tok] = torch.eye(VOCAB)  # CPU tensors are copied into the model's device
        model.W_pos[:, pos] = torch.eye(N_CTX)
        # 0.0: query position p matches key position p - 1; copies the token slot into the previous-token slot
        shift = torch.zeros(N_CTX, N_CTX)
        shift[torch.arange(1, N_CTX), torch.arange(N_CTX - 1)] = 1.0
        model.blocks[0].attn.W_Q[0, pos, D_SLOT:] = 200 * torch.eye(N_CTX)
        model.blocks[0].attn.W_K[0, pos, D_SLOT:] = shift.T
        model.blocks[0].attn.W_V[0, tok, :D_SLOT] = eye
        model.blocks[0].attn.W_O[0, :D_SLOT, prev] = eye
        # 1.0: query = current token, key = previous token at the source; copies the source's token to the output slot
        model.blocks[1].attn.W_Q[0, tok, :D_SLOT] = 200 * eye
        model.blocks[1].attn.W_K[0, prev, :D_SLOT] = eye
        model.blocks[1].attn.W_V[0, tok, :D_SLOT] = eye
        model.blocks[1].attn.W_O[0, :D_SLOT, out] = eye
        model.W_U[out, :] = 30 * torch.eye(VOCAB)
    model.tokenizer = None
    return model


@pytest.fixture(scope="session")
def induction_model() -> HookedTransformer:
    return build_induction_model()


@pytest.fixture
def fresh_induction_model() -> HookedTransformer:
    """The same hand-built model, new for each test, for tests that change its weights."""
    return build_induction_model()


@pytest.fixture(scope="session")
def bundled_model() -> HookedTransformer:
    from interp_utils import load_bundled

    return load_bundled(device=DEVICE)
