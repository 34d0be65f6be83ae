"""Direct logit attribution: what each component writes at the last token along the IO-minus-S unembedding.

With the final LayerNorm's scale frozen from the run, the final residual stream is a sum of the components' outputs,
so each one's projection onto W_U[IO] - W_U[S] is its direct share of the logit difference; the shares add up.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor
from transformer_lens import ActivationCache, HookedTransformer

from interp_utils.core import hooks
from interp_utils.data.ioi import IOIBatch


def _at_end(
    model: HookedTransformer, cache: ActivationCache, batch: IOIBatch
) -> tuple[Callable[[str], Tensor], Float[Tensor, "batch d_model"]]:
    """A function reading a cached activation at each prompt's last token, and the IO-minus-S unembedding
    direction divided by the final LayerNorm's scale from the run."""
    rows, end = torch.arange(len(batch)), batch.positions["end"].cpu()
    direction = (model.W_U[:, batch.io] - model.W_U[:, batch.s]).T.detach().cpu()

    def read(name: str) -> Tensor:
        return cache[name][rows, end].cpu()

    return read, direction / read(hooks.name("ln_final_scale"))


def head_direct_effects(
    model: HookedTransformer, cache: ActivationCache, batch: IOIBatch
) -> Float[Tensor, "layer head"]:
    """Each head's output at the last token, through the frozen final LayerNorm scale and the unembedding, onto
    the IO-minus-S direction; mean over prompts."""
    read, unit = _at_end(model, cache, batch)
    out = []
    for layer in range(model.cfg.n_layers):
        z = read(hooks.name("z", layer))  # [batch, head, d_head]
        result = torch.einsum("bhd,hdm->bhm", z, model.W_O[layer].detach().cpu())  # [batch, head, d_model]
        out.append((result * unit[:, None]).sum(-1).mean(0))
    return torch.stack(out)


def layer_direct_effects(model: HookedTransformer, cache: ActivationCache, batch: IOIBatch) -> dict[str, float]:
    """The direct effect of the embeddings and of each layer's attention and MLP output (mean over prompts)."""
    read, unit = _at_end(model, cache, batch)

    def project(name: str) -> float:
        return (read(name) * unit).sum(-1).mean().item()

    pos_embed = hooks.name("pos_embed")
    out = {"embed": project(hooks.name("embed")) + (project(pos_embed) if pos_embed in cache else 0.0)}
    for layer in range(model.cfg.n_layers):
        out[f"attn {layer}"] = project(hooks.name("attn_out", layer))
        if not model.cfg.attn_only:
            out[f"mlp {layer}"] = project(hooks.name("mlp_out", layer))
    return out


def head_output_along(
    model: HookedTransformer, cache: ActivationCache, batch: IOIBatch, layer: int, head: int, tokens: Tensor
) -> Float[Tensor, " batch"]:
    """One head's output at each prompt's last token projected onto the unembedding of that prompt's entry of
    ``tokens`` (e.g. ``batch.io``), as in Wang et al.'s Figure 3c (no LayerNorm scale: the raw dot product)."""
    read, _ = _at_end(model, cache, batch)
    out = read(hooks.name("z", layer))[:, head] @ model.W_O[layer, head].detach().cpu()  # [batch, d_model]
    return (out * model.W_U[:, tokens].T.detach().cpu()).sum(-1)
