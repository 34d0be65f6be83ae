"""Measurements shared by several notebooks: induction scores and the IOI logit difference."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from transformer_lens import HookedTransformer

from interp_utils.heads import chance_scores, head_scores
from interp_utils.ioi import IOIPrompt


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
    logits = model(tokens)[torch.arange(len(prompts)), lengths - 1]
    return (logits.gather(1, io[:, None]) - logits.gather(1, s[:, None])).squeeze(1).cpu()
