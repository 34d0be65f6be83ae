"""Automated circuit discovery on an :class:`~interp_utils.circuits.edge_graph.EdgeGraph`: ACDC (Conmy et al. 2023),
and how a method's edges are scored against a reference circuit (ROC curves and their area, faithfulness of the top
edges)."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from interp_utils.circuits.edge_graph import EdgeGraph, Metric, masked_metrics, record_outputs
from interp_utils.core.metrics import normalised_metric


def kl_divergence(
    clean_logits: Float[Tensor, "batch pos vocab"], where: Bool[Tensor, "batch pos"] | None = None
) -> Metric:
    """ACDC's metric: KL(clean ‖ patched) of the next-token distributions, averaged over the positions ``where``
    is True (every position when None); 0 for the clean run, never below 0."""
    clean = clean_logits.detach().log_softmax(-1)
    mask = torch.ones(clean.shape[:2], dtype=torch.bool) if where is None else where
    if mask.shape != clean.shape[:2]:
        raise ValueError(f"where must be [batch, pos] = {tuple(clean.shape[:2])}, got {tuple(mask.shape)}.")
    mask = mask.to(clean.device)

    def metric(logits: Tensor) -> Tensor:
        kl = (clean.exp() * (clean - logits.log_softmax(-1))).sum(-1)
        return kl[mask].mean().clamp_min(0.0)

    return metric


def distance_from_clean(metric: Metric, clean_value: float) -> Metric:
    """ACDC with a task metric (Conmy et al. also use the logit difference): |metric − its clean value|, a distance
    from the full model that is 0 for the clean run."""

    def distance(logits: Tensor) -> Tensor:
        return (metric(logits) - clean_value).abs()

    return distance


@dataclass
class ACDCResult:
    kept: Bool[Tensor, "up down"]  # the circuit's edges
    passes: int  # forward passes run
    seconds: float
    metric: float  # the circuit's metric (its distance from the full model)


def owner(graph: EdgeGraph, down: int) -> int | None:
    """The upstream node whose input downstream node ``down`` is (a head's q/k/v, an MLP's input); None for logits."""
    if down == graph.logits:
        return None
    name = graph.downstream[down]
    if name.startswith("mlp"):
        return graph.mlp_up(int(name.split()[1]))
    layer, head, _ = name.split(".")
    return graph.head_up(int(layer), int(head))


def acdc_search(
    graph: EdgeGraph, measure: Callable[[Bool[Tensor, "up down"]], float], tau: float, progress: bool = False
) -> tuple[Bool[Tensor, "up down"], int]:
    """ACDC's search: visit the downstream nodes from the logits backwards and, at each, its incoming edges from the
    latest sender back; patch the edge and keep it patched when ``measure`` (of the patched edges; a distance from the
    full model) grows by less than ``tau`` over the circuit so far. A node none of whose outgoing edges remain loses
    its incoming edges without a measurement. Returns the kept edges and the number of measurements."""
    if tau < 0:
        raise ValueError(f"tau must be 0 or more (0 keeps every edge that changes anything), got {tau}.")
    kept = graph.allowed.clone()
    current, passes = measure(graph.allowed & ~kept), 1
    bar = tqdm(total=int(kept.sum()), desc=f"ACDC τ={tau:g}", disable=not progress, mininterval=1.0)
    for down in reversed(range(len(graph.downstream))):
        senders = kept[:, down].nonzero().flatten().tolist()
        node = owner(graph, down)
        if node is not None and not kept[node].any():  # nothing reads this node any more: its inputs do not matter
            kept[:, down] = False
            bar.update(len(senders))
            continue
        for up in reversed(senders):
            kept[up, down] = False
            value = measure(graph.allowed & ~kept)
            passes += 1
            if value - current < tau:
                current = value
            else:
                kept[up, down] = True
            bar.update(1)
    bar.close()
    return kept, passes


def acdc(
    model: HookedTransformer,
    graph: EdgeGraph,
    tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    tau: float,
    progress: bool = False,
) -> ACDCResult:
    """ACDC (Conmy et al. 2023) on ``model``: :func:`acdc_search`, each measurement a forward pass with the patched
    edges' senders taken from ``corrupt_tokens`` (resample ablation) and ``metric`` a distance from the full model,
    such as :func:`kl_divergence`."""
    start = time.perf_counter()
    corrupt = record_outputs(model, graph, corrupt_tokens)

    def measure(patched: Tensor) -> float:
        return float(masked_metrics(model, graph, tokens, corrupt, patched[None], metric)[0])

    kept, passes = acdc_search(graph, measure, tau, progress)
    return ACDCResult(kept, passes, time.perf_counter() - start, measure(graph.allowed & ~kept))


def roc(scores: Float[Tensor, " edge"], truth: Bool[Tensor, " edge"]) -> tuple[Tensor, Tensor]:
    """The ROC curve of ranking edges by ``|scores|`` against the reference ``truth``: (false positive rate, true
    positive rate) at every threshold, from (0, 0) to (1, 1). Tied scores enter together (a diagonal step)."""
    if scores.shape != truth.shape or scores.ndim != 1:
        raise ValueError(f"scores and truth must be one value per edge, got {tuple(scores.shape)} and "
                         f"{tuple(truth.shape)}.")  # fmt: skip
    if truth.all() or not truth.any():
        raise ValueError("The reference circuit must hold some edges and leave some out: a ROC curve needs both.")
    magnitude = scores.abs().double().cpu()
    truth = truth.bool().cpu()
    values, inverse = torch.unique(magnitude, sorted=True, return_inverse=True)
    positives = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, truth.double())
    negatives = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, (~truth).double())
    tpr = positives.flip(0).cumsum(0) / truth.sum()
    fpr = negatives.flip(0).cumsum(0) / (~truth).sum()
    zero = torch.zeros(1, dtype=torch.float64)
    return torch.cat([zero, fpr]), torch.cat([zero, tpr])


def auc(fpr: Tensor, tpr: Tensor) -> float:
    """The area under a ROC curve (trapezoids), its points sorted by false positive rate."""
    order = torch.argsort(fpr * 2 + tpr * 1e-9)  # by fpr, then tpr
    return float(torch.trapezoid(tpr[order].double(), fpr[order].double()))


def circuit_roc(circuits: Sequence[Bool[Tensor, " edge"]], truth: Bool[Tensor, " edge"]) -> tuple[Tensor, Tensor]:
    """ROC points of a method that returns circuits rather than scores (ACDC over a sweep of τ), with (0, 0) and
    (1, 1) added."""
    truth = truth.bool().cpu()
    points = [(0.0, 0.0), (1.0, 1.0)]
    for circuit in circuits:
        circuit = circuit.bool().cpu()
        points.append(((circuit & ~truth).sum().item() / (~truth).sum().item(), (circuit & truth).sum().item() /
                       truth.sum().item()))  # fmt: skip
    points.sort()
    return torch.tensor([p[0] for p in points]), torch.tensor([p[1] for p in points])


def pessimistic_auc(fpr: Tensor, tpr: Tensor) -> float:
    """Conmy et al.'s area under ACDC's ROC points (``pessimistic_auc`` in acdc/acdc_graphics.py, after
    ``discard_non_pareto_optimal`` in notebooks/make_plotly_plots.py of their repository): drop each point that
    another beats on both axes (lower false positive rate, higher true positive rate), sort the rest, and let each
    rise in the true positive rate count only from its own false positive rate on, ``Σ (1 − fpr_i)(tpr_i − tpr_{i−1})``:
    the area under a staircase through the points, never the straight line between them (trapezoids). Vectorised, so
    it also scores a ranking's ROC through every threshold (tens of thousands of points on GPT-2's graph)."""
    x, y = fpr.detach().double().cpu().flatten(), tpr.detach().double().cpu().flatten()
    if x.shape != y.shape:
        raise ValueError(f"fpr and tpr need one value per point, got {len(x)} and {len(y)}.")
    order = torch.argsort(x, stable=True)
    x, y = x[order], y[order]
    # a point is beaten when a point with a strictly lower fpr has a higher tpr: the best tpr before its fpr's first
    best = torch.cummax(y, 0).values
    first = torch.searchsorted(x, x)
    before = torch.where(first > 0, best[(first - 1).clamp(min=0)], torch.full_like(y, -torch.inf))
    kept = torch.unique(torch.stack([x, y], 1)[before <= y], dim=0)  # distinct points, sorted by fpr then tpr
    return float(((1 - kept[1:, 0]) * (kept[1:, 1] - kept[:-1, 1])).sum())


def random_circuits(sizes: Sequence[int], n_edges: int, seed: int = 0) -> list[Bool[Tensor, " edge"]]:
    """A control for a method that returns circuits: for each size, a circuit of that many edges drawn at random."""
    g = torch.Generator().manual_seed(seed)
    circuits = []
    for n in sizes:
        circuit = torch.zeros(n_edges, dtype=torch.bool)
        circuit[torch.randperm(n_edges, generator=g)[:n]] = True
        circuits.append(circuit)
    return circuits


def top_edges(scores: Float[Tensor, " edge"], n: int) -> Bool[Tensor, " edge"]:
    """The ``n`` edges with the largest ``|scores|`` (ties broken by edge order)."""
    if not 0 <= n <= len(scores):
        raise ValueError(f"n must be between 0 and the number of edges ({len(scores)}), got {n}.")
    keep = torch.zeros(len(scores), dtype=torch.bool)
    keep[torch.argsort(scores.abs().cpu(), descending=True, stable=True)[:n]] = True
    return keep


def faithfulness_curve(
    model: HookedTransformer,
    graph: EdgeGraph,
    tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    scores: Float[Tensor, " edge"],
    sizes: Sequence[int],
) -> Float[Tensor, " size"]:
    """For each n in ``sizes``: the task ``metric`` with only the top-n edges by ``|scores|`` clean (every other edge
    patched), normalised between the corrupted (0) and clean (1) runs."""
    corrupt = record_outputs(model, graph, corrupt_tokens)
    with torch.inference_mode():
        clean_value = float(metric(model(tokens.to(model.cfg.device))))
        corrupt_value = float(metric(model(corrupt_tokens.to(model.cfg.device))))
    masks = torch.stack([graph.allowed & ~graph.as_matrix(top_edges(scores, n).float()).bool() for n in sizes])
    values = masked_metrics(model, graph, tokens, corrupt, masks, metric)
    return torch.as_tensor(normalised_metric(values, clean_value, corrupt_value))


def spearman(a: Tensor, b: Tensor) -> float:
    """Spearman's rank correlation (Pearson's on the ranks; ties take their mean rank)."""

    def ranks(x: Tensor) -> Tensor:
        x = x.double().cpu()
        order = torch.argsort(x)
        r = torch.empty_like(x)
        r[order] = torch.arange(len(x), dtype=torch.float64)
        values, inverse = torch.unique(x, return_inverse=True)
        mean = torch.zeros(len(values), dtype=torch.float64).index_add_(0, inverse, r)
        return (mean / torch.bincount(inverse, minlength=len(values)))[inverse]

    return float(torch.corrcoef(torch.stack([ranks(a), ranks(b)]))[0, 1])
