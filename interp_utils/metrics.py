"""Measurements shared by several notebooks: induction scores and the IOI logit difference."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from transformer_lens import HookedTransformer

from interp_utils.heads import chance_scores, head_scores
from interp_utils.ioi import IOIBatch, IOIPrompt


def repeated_random_tokens(
    model: HookedTransformer, seq_len: int, batch: int, seed: int = 0
) -> Int[torch.Tensor, "batch pos"]:
    """``[BOS] + R + R`` for ``batch`` random sequences R of ``seq_len`` ordinary tokens each."""
    if seq_len < 2 or batch < 1:
        raise ValueError(f"Need seq_len >= 2 and batch >= 1, got seq_len={seq_len}, batch={batch}.")
    if 2 * seq_len + 1 > model.cfg.n_ctx:
        raise ValueError(f"2 * seq_len + 1 = {2 * seq_len + 1} exceeds the model's context of {model.cfg.n_ctx}.")
    # without a tokenizer (a model built from a config), token 0 plays BOS, as in heads.repeated_segment_batch
    special = set(model.tokenizer.all_special_ids) if model.tokenizer is not None else {0}
    allowed = torch.tensor([t for t in range(model.cfg.d_vocab) if t not in special])
    gen = torch.Generator().manual_seed(seed)
    rand = allowed[torch.randint(len(allowed), (batch, seq_len), generator=gen)]
    bos = torch.full((batch, 1), model.tokenizer.bos_token_id if model.tokenizer is not None else 0)
    return torch.cat([bos, rand, rand], dim=1).to(model.cfg.device)


def induction_scores(
    model: HookedTransformer, seq_len: int = 40, batch: int = 16, seed: int = 0
) -> tuple[Float[torch.Tensor, "layer head"], float]:
    """Each head's induction score on repeated random tokens (see :func:`interp_utils.heads.head_scores`).

    Returns the scores and the chance level (the score of uniform causal attention).
    """
    tokens = repeated_random_tokens(model, seq_len, batch, seed)
    return head_scores(model, tokens)["induction"], chance_scores(tokens)["induction"]


@torch.inference_mode()
def ioi_logit_diffs(model: HookedTransformer, prompts: list[IOIPrompt]) -> Float[torch.Tensor, " prompt"]:
    """Logit of the indirect object minus logit of the subject at each prompt's last token."""
    if not prompts:
        raise ValueError("No prompts given.")
    tokens = model.to_tokens([p.text for p in prompts], padding_side="right")
    lengths = torch.tensor([model.to_tokens(p.text).shape[1] for p in prompts], device=tokens.device)
    io = torch.tensor([model.to_single_token(" " + p.io) for p in prompts], device=tokens.device)
    s = torch.tensor([model.to_single_token(" " + p.s) for p in prompts], device=tokens.device)
    return _io_minus_s(model(tokens)[torch.arange(len(prompts)), lengths - 1], io, s).cpu()


def _io_minus_s(final: Float[torch.Tensor, "batch vocab"], io: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """The IO logit minus the S logit of each row."""
    io, s = io.to(final.device), s.to(final.device)
    return final.gather(1, io[:, None])[:, 0] - final.gather(1, s[:, None])[:, 0]


def logit_diff(logits: Float[torch.Tensor, "batch pos vocab"], batch: IOIBatch) -> Float[torch.Tensor, " batch"]:
    """IO logit minus S logit at each prompt's last token, for a tokenised IOI batch."""
    rows = torch.arange(len(batch), device=logits.device)
    return _io_minus_s(logits[rows, batch.positions["end"].to(logits.device)], batch.io, batch.s)


def _at_end(model: HookedTransformer, cache, batch: IOIBatch):
    """A function reading a cached activation at each prompt's last token, and the IO-minus-S unembedding
    direction divided by the final LayerNorm's scale from the run: [batch, d_model]."""
    rows, end = torch.arange(len(batch)), batch.positions["end"].cpu()
    direction = (model.W_U[:, batch.io] - model.W_U[:, batch.s]).T.detach().cpu()

    def read(name: str) -> torch.Tensor:
        return cache[name][rows, end].cpu()

    return read, direction / read("ln_final.hook_scale")


def head_direct_effects(model: HookedTransformer, cache, batch: IOIBatch) -> Float[torch.Tensor, "layer head"]:
    """Direct logit attribution: each head's output at the last token, through the final LayerNorm's scale
    (frozen from the run) and the unembedding, onto the IO-minus-S direction; mean over prompts."""
    read, unit = _at_end(model, cache, batch)
    out = []
    for layer in range(model.cfg.n_layers):
        z = read(f"blocks.{layer}.attn.hook_z")  # [batch, head, d_head]
        result = torch.einsum("bhd,hdm->bhm", z, model.W_O[layer].detach().cpu())  # [batch, head, d_model]
        out.append((result * unit[:, None]).sum(-1).mean(0))
    return torch.stack(out)


def layer_direct_effects(model: HookedTransformer, cache, batch: IOIBatch) -> dict[str, float]:
    """Direct logit attribution of the embeddings and of each layer's attention and MLP output (mean over prompts)."""
    read, unit = _at_end(model, cache, batch)

    def project(name: str) -> float:
        return (read(name) * unit).sum(-1).mean().item()

    out = {"embed": project("hook_embed") + (project("hook_pos_embed") if "hook_pos_embed" in cache else 0.0)}
    for layer in range(model.cfg.n_layers):
        out[f"attn {layer}"] = project(f"blocks.{layer}.hook_attn_out")
        if not model.cfg.attn_only:
            out[f"mlp {layer}"] = project(f"blocks.{layer}.hook_mlp_out")
    return out
