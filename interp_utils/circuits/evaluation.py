"""Circuit discovery methods side by side on one task: exact edge patching, EAP, EAP-IG and ACDC over a sweep of
thresholds, each timed and scored against a reference circuit by ROC and AUC (notebook 06, section by section).

Every piece a learner writes in notebook 06 can stand in for the reference (:class:`Methods`), so the notebook's
comparison runs on the learner's code."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go
import torch
from jaxtyping import Bool, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.circuits import discovery, edge_attribution
from interp_utils.circuits.edge_graph import EdgeGraph, Metric, edge_patching, patched_logits, record_outputs
from interp_utils.core.runtime import Clock


@dataclass(frozen=True)
class Methods:
    """The pieces :func:`compare_methods` runs: EAP-IG ``(model, graph, tokens, corrupt, metric, steps) -> [edge]``,
    ACDC's metric ``(clean_logits, logits, where) -> KL``, ACDC's search ``(graph, measure, tau) -> kept [up, down]``,
    the ROC curve ``(scores, truth) -> (fpr, tpr)`` and its area ``(fpr, tpr) -> float``."""

    eap_ig: Callable[[HookedTransformer, EdgeGraph, Tensor, Tensor, Metric, int], Tensor]
    kl: Callable[[Tensor, Tensor, Tensor], Tensor]
    acdc_search: Callable[[EdgeGraph, Callable[[Tensor], float], float], Tensor]
    roc: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
    auc: Callable[[Tensor, Tensor], float]


def reference_methods() -> Methods:
    """The package's own EAP-IG, KL, ACDC search, ROC and AUC."""
    return Methods(
        eap_ig=lambda model, graph, tokens, corrupt, metric, steps: edge_attribution.eap_ig(
            model, graph, tokens, corrupt, metric, steps=steps
        ),
        kl=lambda clean_logits, logits, where: discovery.kl_divergence(clean_logits, where)(logits),
        acdc_search=lambda graph, measure, tau: discovery.acdc_search(graph, measure, tau)[0],
        roc=discovery.roc,
        auc=discovery.auc,
    )


def compare_methods(
    model: HookedTransformer,
    graph: EdgeGraph,
    tokens: Int[Tensor, "batch pos"],
    corrupt: Int[Tensor, "batch pos"],
    metric: Metric,
    where: Bool[Tensor, "batch pos"],
    truth: Bool[Tensor, " edge"],
    taus: Sequence[float],
    methods: Methods | None = None,
    ig_steps: int = 5,
    seed: int = 0,
    acdc_tokens: Tensor | None = None,
    acdc_corrupt: Tensor | None = None,
    where_acdc: Tensor | None = None,
    n_exact: int | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Exact patching (every edge, or a random sample of ``n_exact``), EAP, EAP-IG and ACDC (KL from the clean run at
    the positions ``where``, one search per threshold in ``taus``; on ``acdc_tokens`` where given) on one task, scored
    against ``truth`` (one bool per edge).

    Returns a dict: each method's scores (``exact``, ``EAP``, ``EAP-IG``, [edge]), the ``sample`` patched exactly,
    ``ACDC`` (kept edges by τ) and ``acdc_passes`` (forward passes by τ), ``roc_acdc`` (ACDC's ROC points over τ),
    ``times`` (seconds by method, waiting for the device) and ``auc`` (by method; exact patching only when every edge
    was patched)."""
    methods = methods or reference_methods()
    device = tokens.device
    out: dict[str, Any] = {"times": {}, "auc": {}}
    clock = Clock(device)
    sample = torch.arange(graph.n_edges)
    if n_exact is not None and graph.n_edges > n_exact:  # patch a random sample of edges exactly, for the correlations
        sample = torch.randperm(graph.n_edges, generator=torch.Generator().manual_seed(seed))[:n_exact]
    out["exact"] = edge_patching(model, graph, tokens, corrupt, metric, which=sample, progress=progress).cpu()
    out["sample"] = sample
    out["times"]["exact patching"] = clock.seconds()
    clock = Clock(device)
    out["EAP"] = edge_attribution.eap(model, graph, tokens, corrupt, metric).cpu()
    out["times"]["EAP"] = clock.seconds()
    clock = Clock(device)
    out["EAP-IG"] = methods.eap_ig(model, graph, tokens, corrupt, metric, ig_steps).cpu()
    out["times"]["EAP-IG"] = clock.seconds()
    acdc_tokens = tokens if acdc_tokens is None else acdc_tokens
    acdc_corrupt = corrupt if acdc_corrupt is None else acdc_corrupt
    where_acdc = where if where_acdc is None else where_acdc
    recorded = record_outputs(model, graph, acdc_corrupt)
    with torch.inference_mode():
        clean_logits = model(acdc_tokens)
    passes = [0]

    def measure(patched: Tensor) -> float:
        passes[0] += 1
        logits = patched_logits(model, graph, acdc_tokens, recorded, patched[None])[0]
        return methods.kl(clean_logits, logits, where_acdc).item()

    out["ACDC"], out["acdc_passes"], clock = {}, {}, Clock(device)
    for tau in taus:
        before = passes[0]
        out["ACDC"][tau] = graph.as_edges(methods.acdc_search(graph, measure, tau)).cpu()
        out["acdc_passes"][tau] = passes[0] - before
    out["times"]["ACDC"] = clock.seconds()
    truth = truth.cpu()
    for method in ("EAP", "EAP-IG"):
        out["auc"][method] = methods.auc(*methods.roc(out[method], truth))
    if len(sample) == graph.n_edges:
        out["auc"]["exact patching"] = methods.auc(*methods.roc(out["exact"], truth))
    out["roc_acdc"] = discovery.circuit_roc(list(out["ACDC"].values()), truth)
    out["auc"]["ACDC"] = methods.auc(*out["roc_acdc"])
    return out


def plot_rocs(result: dict[str, Any], truth: Tensor, title: str, methods: Methods | None = None) -> go.Figure:
    """Each method's ROC curve from :func:`compare_methods`, with its AUC, against chance."""
    methods = methods or reference_methods()
    fig = go.Figure()
    for method in ("exact", "EAP", "EAP-IG"):
        if method == "exact" and len(result["sample"]) < len(truth):
            continue
        fpr, tpr = methods.roc(result[method], truth.cpu())
        label = "exact patching" if method == "exact" else method
        fig.add_scatter(x=fpr, y=tpr, mode="lines", name=f"{label} (AUC {methods.auc(fpr, tpr):.3f})")
    fpr, tpr = result["roc_acdc"]
    fig.add_scatter(x=fpr, y=tpr, mode="lines+markers", name=f"ACDC over τ (AUC {result['auc']['ACDC']:.3f})")
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="chance")
    fig.update_layout(title=title, xaxis_title="false positive rate", yaxis_title="true positive rate", height=420)
    return fig
