"""Edge attribution patching: every edge's effect estimated from gradients, EAP (Syed et al. 2023) and EAP-IG
(Hanna et al. 2024), on the graph of :mod:`interp_utils.circuits.edge_graph`."""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.circuits.edge_graph import (
    EdgeGraph,
    Metric,
    downstream_points,
    edge_hooks_enabled,
    input_hook,
    record_outputs,
)
from interp_utils.core import hooks
from interp_utils.core.hooks import Hook


def downstream_gradients(
    model: HookedTransformer,
    graph: EdgeGraph,
    tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    embed: Callable[[Tensor], Tensor] | None = None,
) -> Float[Tensor, "batch pos down d_model"]:
    """The gradient of ``metric`` with respect to every downstream node's input, in one forward and backward pass.
    ``embed`` may replace the embeddings (resid_pre 0) before the blocks read them (EAP-IG interpolates them)."""
    inputs: dict[int, Tensor] = {}

    def start(act, hook):
        return (embed(act) if embed else act).detach().requires_grad_(True)

    def keep(act, hook, cols):
        inputs[cols[0]] = act
        return act

    fwd: list[Hook] = [(hooks.name("resid_pre", 0), start)]
    fwd += [
        (input_hook(what, layer), lambda act, hook, cols=cols: keep(act, hook, cols))
        for what, layer, cols, _ in downstream_points(graph)
    ]
    with torch.enable_grad(), edge_hooks_enabled(model):
        value = metric(model.run_with_hooks(tokens.to(model.cfg.device), fwd_hooks=fwd))
        firsts = sorted(inputs)
        grads = torch.autograd.grad(value, [inputs[c] for c in firsts], allow_unused=True)
    out = torch.zeros(*tokens.shape, len(graph.downstream), model.cfg.d_model, device=model.cfg.device)
    for first, grad in zip(firsts, grads, strict=True):
        if grad is not None:
            width = grad.shape[2] if grad.ndim == 4 else 1
            out[:, :, first : first + width] = grad.reshape(*grad.shape[:2], width, -1)
    return out


def edge_scores(
    graph: EdgeGraph, diff: Float[Tensor, "batch pos up d"], grads: Float[Tensor, "batch pos down d"]
) -> Float[Tensor, " edge"]:
    return graph.as_edges(torch.einsum("bpud,bpwd->uw", diff, grads))


def eap(
    model: HookedTransformer,
    graph: EdgeGraph,
    tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
) -> Float[Tensor, " edge"]:
    """Edge attribution patching (Syed et al. 2023): each edge's effect estimated to first order, (corrupted − clean
    output of its upstream node) · (gradient of the metric at its downstream input, on the clean run)."""
    diff = record_outputs(model, graph, corrupt_tokens) - record_outputs(model, graph, tokens)
    return edge_scores(graph, diff, downstream_gradients(model, graph, tokens, metric))


def eap_ig(
    model: HookedTransformer,
    graph: EdgeGraph,
    tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    steps: int = 5,
) -> Float[Tensor, " edge"]:
    """EAP with integrated gradients (Hanna et al. 2024): the gradients averaged over ``steps`` runs whose embeddings
    go from the corrupted input's towards the clean input's (α = 1/steps, 2/steps, ..., 1), instead of taken at the
    clean run alone."""
    if steps < 1:
        raise ValueError(f"steps must be at least 1 (1 is plain EAP), got {steps}.")
    clean, corrupt = record_outputs(model, graph, tokens), record_outputs(model, graph, corrupt_tokens)
    total = torch.zeros(*tokens.shape, len(graph.downstream), model.cfg.d_model, device=model.cfg.device)
    for k in range(1, steps + 1):
        alpha = k / steps
        mix = corrupt[:, :, 0] + alpha * (clean[:, :, 0] - corrupt[:, :, 0])

        def embed(act: Tensor, mix: Tensor = mix) -> Tensor:
            return mix

        total += downstream_gradients(model, graph, tokens, metric, embed=embed)
    return edge_scores(graph, corrupt - clean, total / steps)
