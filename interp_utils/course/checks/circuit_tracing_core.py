"""Checks for notebook 05's core exercises (the local replacement model run forward, attribution by batched backward
passes, pruning, the CLT's metrics), each against the suite's reference on small cases."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.course.checks import answered
from interp_utils.data import activations
from interp_utils.dictionaries.transcoders import Transcoders
from interp_utils.tracing import attribution
from interp_utils.tracing.attribution import LocalReplacement
from interp_utils.tracing.attribution_graph import AttributionGraph, Pruned, prune


def _prompt(model: HookedTransformer, n_ctx: int = 10, seed: int = 11) -> Tensor:
    return next(activations.token_batches(model, 1, n_ctx=n_ctx, seed=seed))[0].to(model.cfg.device)


@answered
def check_local_logits(fn: Callable[..., Tensor], model: HookedTransformer, transcoders: Transcoders) -> None:
    """The local replacement model run forward: the model's logits exactly, and with one feature zeroed the logits
    of ``LocalReplacement.run`` (attention and LayerNorm frozen, later features recomputed)."""
    tokens = _prompt(model)
    local = LocalReplacement(model, transcoders, tokens)
    with torch.no_grad():
        got = fn(model, transcoders, tokens)
    if not torch.is_tensor(got) or tuple(got.shape) != tuple(local.logits.shape):
        shape = tuple(got.shape) if torch.is_tensor(got) else type(got).__name__
        raise AssertionError(
            f"Return the logits of the one prompt, [pos, vocab] = {tuple(local.logits.shape)}; got {shape}."
        )
    gap = (got.float() - local.logits).abs().max().item()
    if gap > 1e-3:
        raise AssertionError(
            f"With nothing ablated the output should be the model's exactly; it is {gap:.2e} away. Each MLP's output "
            "is its transcoder's (no features at BOS, the same as in error_terms) plus the error term."
        )
    features, acts = local.active_features()
    for i in acts.argsort(descending=True)[:2].tolist():
        layer, pos, feat = (int(v) for v in features[i].tolist())
        key = (layer, pos, feat)
        want = local.run({key: 0.0})
        with torch.no_grad():
            got = fn(model, transcoders, tokens, key)
        if (got.float() - local.run({key: 0.0}, False, False)).abs().max() < 1e-4 < (want - local.logits).abs().max():
            raise AssertionError(
                f"Zeroing feature {key}: attention patterns and LayerNorm scales responded. Freeze them (your "
                "freeze_hooks on the clean cache): in the local replacement model only features move."
            )
        gap = (got.float() - want).abs().max().item()
        if gap > 1e-3:
            raise AssertionError(
                f"Zeroing feature {key} (layer, pos, feature): the logits are {gap:.2e} away from the local "
                "replacement model's. Zero it after encoding its layer, and recompute every later layer's features "
                "from this run's MLP input (stored by a hook as the run reaches it), not from the clean cache."
            )
    print("local replacement model, run forward: correct.")


def _targets(model: HookedTransformer, graph: AttributionGraph) -> Tensor:
    W_U = model.W_U.float()
    return (W_U[:, graph.logit_tokens.to(W_U.device)] - W_U.mean(1, keepdim=True)).T


@answered
def check_attribution(fn: Callable[..., Tensor], model: HookedTransformer, transcoders: Transcoders) -> None:
    """The adjacency matrix by batched backward passes, block by block against ``attribute``'s."""
    tokens = _prompt(model)
    graph = attribution.attribute(model, transcoders, tokens, progress=False)
    local = LocalReplacement(model, transcoders, tokens)
    dirs = _targets(model, graph)
    got = fn(local, dirs, batch_size=16)  # several batches of targets
    n = len(graph.adjacency)
    if not torch.is_tensor(got) or tuple(got.shape) != (n, n):
        shape = tuple(got.shape) if torch.is_tensor(got) else type(got).__name__
        raise AssertionError(
            f"Return the [n_nodes, n_nodes] adjacency ({graph.n_features} features + {graph.n_layers} x "
            f"{graph.n_pos} error nodes + {graph.n_pos} tokens + {len(dirs)} logits = {n}); got {shape}."
        )
    got, want = got.detach().float().cpu(), graph.adjacency
    feat, logits = list(range(graph.n_features)), list(range(graph.logits.start, graph.logits.stop))
    rows = feat + logits
    sums = graph.bias_values + got[rows].sum(1)
    if (sums - graph.target_values).abs().max() > 1e-3 and torch.allclose(got[: graph.logits.start], 0 * got[0]):
        raise AssertionError(
            "Every row is zero up to the logit nodes: a feature's row is its pre-activation's backward pass. Rows "
            "are targets (every active feature, then the logits), columns sources."
        )
    late = rows[16:]  # targets past the first batch of 16
    if len(late) and got[late].abs().max() == 0 and want[late].abs().max() > 0:
        raise AssertionError(
            f"Called with batch_size=16, only the first 16 targets' rows are filled ({len(rows)} targets): check "
            "which rows a batch of targets fills (the batch's own targets' rows, not the first ones again)."
        )
    inert = got[graph.errors.start : graph.logits.start].abs().max() + got[:, graph.logits.start :].abs().max()
    if inert > 1e-6 or got[logits].abs().max() == 0:
        raise AssertionError(
            "Rows of error and token nodes, and columns of logit nodes, stay zero (they are never targets or "
            f"sources); each logit's row is row {graph.logits.start} on, after the features, errors and tokens."
        )
    tol = 1e-4 * max(1.0, want.abs().max().item())
    blocks = {
        "token embedding columns": (graph.embeds, "the gradient at the embedding leaf dotted with the embedding"),
        "error node columns": (
            graph.errors,
            "the gradient at the mlp leaf dotted with the error term, layer-major (layer x pos); BOS's error is a "
            "constant, not a node: use local.error_nodes()",
        ),
        "feature columns": (
            slice(0, graph.n_features),
            "the gradient at the feature's layer and position dotted with its decoder row, times its activation",
        ),
    }
    for what, (cols, hint) in blocks.items():
        diff = (got[rows][:, cols] - want[rows][:, cols]).abs()
        if diff.max() > tol:
            i = int(diff.max(1).values.argmax())
            block = "the logit rows" if rows[i] >= graph.logits.start else "the feature rows"
            raise AssertionError(
                f"The {what} differ from attribute()'s by up to {diff.max():.2e}, first in {block} (row {rows[i]}): "
                f"each edge is {hint}. If only later batches are wrong, check which rows a batch of targets fills."
            )
    if (sums - graph.target_values).abs().max() > 1e-3:
        raise AssertionError("Each target should equal its bias term plus the sum of its row.")
    print("attribution: every edge agrees with attribute().")


def _tiny_graph() -> AttributionGraph:
    """A graph worked out by hand: one layer, two positions, features f0 (pos 1) and f1 (pos 1, fed by f0)."""
    # nodes: 0 f0, 1 f1, 2-3 errors (layer 0, pos 0/1), 4-5 tokens, 6 logit
    A = torch.zeros(7, 7)
    A[0, 5], A[0, 3] = 2.0, 0.05  # f0 <- token 1, a little error
    A[1, 0], A[1, 4] = 1.0, 0.02  # f1 <- f0, a little of token 0
    A[6, 1], A[6, 5], A[6, 3] = 3.0, 0.5, 0.1  # logit <- f1, token 1, error
    return AttributionGraph(
        tokens=torch.tensor([0, 1]),
        str_tokens=["<bos>", "x"],
        features=torch.tensor([[0, 1, 0], [0, 1, 1]]),
        activations=torch.tensor([1.0, 1.0]),
        logit_tokens=torch.tensor([5]),
        logit_strs=["y"],
        logit_probs=torch.tensor([1.0]),
        adjacency=A,
        n_layers=1,
        target_values=torch.zeros(3),
        bias_values=torch.zeros(3),
    )


@answered
def check_prune(fn: Callable[..., Pruned], graph: AttributionGraph) -> None:
    """Pruning by influence: a graph worked out by hand, then ``prune`` on a real graph at several thresholds."""
    tiny = _tiny_graph()
    got = fn(tiny, 0.8, 0.98)
    if not isinstance(got, Pruned):
        raise AssertionError("Return Pruned(node_mask, edge_mask, node_influence).")
    if got.node_mask.shape != (7,) or got.edge_mask.shape != (7, 7) or got.node_influence.shape != (7,):
        raise AssertionError(
            "node_mask and node_influence are [n_nodes], edge_mask [n_nodes, n_nodes] (target, source)."
        )
    want = prune(tiny, 0.8, 0.98)
    if not torch.allclose(got.node_influence.float(), want.node_influence, atol=1e-5):
        raise AssertionError(
            f"On a graph worked out by hand (f0 <- token 1, f1 <- f0, logit <- f1 and token 1) the influences should "
            f"be {[round(v, 3) for v in want.node_influence.tolist()]}, got "
            f"{[round(v, 3) for v in got.node_influence.float().tolist()]}: the influence of the row-normalised |A|."
        )
    if not bool(got.node_mask[tiny.embeds.start :].all()):
        raise AssertionError("Token and logit nodes are always kept, whatever their influence.")
    if not torch.equal(got.node_mask.bool(), want.node_mask):
        raise AssertionError(
            f"On the graph worked out by hand expected to keep nodes {want.node_mask.nonzero().flatten().tolist()} "
            f"(of f0, f1, two errors, two tokens, the logit), got {got.node_mask.nonzero().flatten().tolist()}: "
            "features and errors whose outgoing edges were all pruned must go too, until nothing changes."
        )
    for node_t, edge_t in ((0.8, 0.98), (0.5, 0.9), (0.95, 0.8)):
        got, want = fn(graph, node_t, edge_t), prune(graph, node_t, edge_t)
        nodes, edges = got.node_mask.bool(), got.edge_mask.bool()
        stray = int((edges & ~(nodes[:, None] & nodes[None, :])).sum())
        if stray:
            raise AssertionError(
                f"Thresholds {node_t} / {edge_t}: {stray} kept edges start or end at a node you dropped. Drop a "
                "node's edges with it, and repeat the pass until nothing changes."
            )
        extra_nodes = int((nodes & ~want.node_mask).sum())
        if extra_nodes and not (want.node_mask & ~nodes).any() and not (want.edge_mask & ~edges).any():
            raise AssertionError(
                f"Thresholds {node_t} / {edge_t}: {extra_nodes} nodes kept that prune() drops, and nothing missing: "
                "dropping a node can leave another dangling, so repeat the pass until nothing changes."
            )
        if not torch.equal(got.edge_mask.bool(), want.edge_mask):
            extra = int((got.edge_mask.bool() & ~want.edge_mask).sum())
            raise AssertionError(
                f"Thresholds {node_t} / {edge_t}: {extra} edges kept that prune() drops and "
                f"{int((want.edge_mask & ~got.edge_mask.bool()).sum())} dropped that it keeps. Score each edge by its "
                "share of its target's inputs (the row-normalised |A| of the graph left after node pruning) times the "
                "target's influence plus its logit weight, the influence recomputed on that graph."
            )
        if not torch.equal(got.node_mask.bool(), want.node_mask):
            raise AssertionError(
                f"Thresholds {node_t} / {edge_t}: the edges agree but the kept nodes do not; drop the features and "
                "errors left with no outgoing edge and the features with no incoming one, until nothing changes."
            )
    print("pruning: correct.")


@answered
def check_clt_nmse(fn: Callable[..., list[float]]) -> None:
    """Each layer's normalised MSE: squared error over the output's squared deviation from its mean, by layer."""
    g = torch.Generator().manual_seed(0)
    y = torch.randn(40, 3, 8, generator=g) + torch.tensor([0.0, 3.0, -2.0])[None, :, None]
    y_hat = y + 0.5 * torch.randn(40, 3, 8, generator=g)
    got = fn(y_hat, y)
    if len(got) != 3:
        raise AssertionError("Return one number per layer (a list of floats, [layer]).")
    got_t = torch.tensor([float(v) for v in got])
    want = (y_hat - y).pow(2).sum((0, 2)) / (y - y.mean(0)).pow(2).sum((0, 2))
    wrong = {
        "the squared norm of the outputs, not their deviation from the mean: subtract each dimension's mean over "
        "tokens": (y_hat - y).pow(2).sum((0, 2)) / y.pow(2).sum((0, 2)),
        "the mean over dimensions of a per-dimension ratio: sum over tokens and dimensions, then divide": (
            (y_hat - y).pow(2).sum(0) / (y - y.mean(0)).pow(2).sum(0)
        ).mean(-1),
        "normalised by the variance of all layers together: each layer is normalised by its own": (
            (y_hat - y).pow(2).sum((0, 2)) / (y - y.mean(0)).pow(2).sum() * 3
        ),
    }
    if torch.allclose(got_t, want, atol=1e-5):
        print("normalised MSE by layer: correct.")
        return
    for message, value in wrong.items():
        if torch.allclose(got_t, value, atol=1e-5):
            raise AssertionError(f"That is {message}.")
    raise AssertionError(f"Expected {[round(v, 4) for v in want.tolist()]}, got {[round(v, 4) for v in got]}.")
