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
from interp_utils.circuits.edge_graph import (
    MAX_ELEMENTS,
    EdgeGraph,
    Metric,
    edge_patching,
    patched_logits,
    record_outputs,
)
from interp_utils.core.report import Band
from interp_utils.core.runtime import Clock, copies_per_pass

# The bands notebook 06 judges its findings by, shared with the tests (tests/test_discovery_mutations.py), so that a
# test judges a deliberately broken method by the notebook's own band.
HANDSET_AUC = Band.at_least(0.95)  # a sanity check: the hand-set circuit is known by construction
INDUCTION_AUC = Band.at_least(0.8)  # EAP's and EAP-IG's AUC (the lower) on notebook 02's induction circuit
ACDC_IOI_AUC = Band.near(0.869, 0.1)  # Conmy et al.'s ACDC AUC on GPT-2's IOI circuit, by their estimator
EAP_SATURATED = Band.at_most(0.01)  # EAP's share of the exact effect through a saturated attention pattern
IG_OVER_EAP = Band.at_least(10.0)  # EAP-IG's share over EAP's on those edges
SPEEDUP = 10.0  # a sanity check: EAP's passes against ACDC's, per threshold


def beats(standard_error: float) -> Band:
    """The band of a comparison "A beats B", judged on the difference A − B: at least two standard errors above 0
    (and above 0 when the error is 0). Its control is the same difference with A's mechanism absent (notebook 06:
    EAP-IG with one step, which is EAP up to numerical noise, against EAP), which falls outside unless that noise is
    two standard errors large."""
    return Band.at_least(max(2.0 * float(standard_error), 1e-9))


@dataclass(frozen=True)
class Methods:
    """The pieces :func:`compare_methods` runs: EAP-IG ``(model, graph, tokens, corrupt, metric, steps) -> [edge]``,
    ACDC's metric ``(clean_logits, logits, where) -> KL``, ACDC's search ``(graph, measure, tau) -> kept [up, down]``,
    the ROC curve ``(scores, truth) -> (fpr, tpr)`` and its area ``(fpr, tpr) -> float``; EAP ``(model, graph, tokens,
    corrupt, metric) -> [edge]`` where given (:func:`~interp_utils.circuits.edge_attribution.eap` otherwise)."""

    eap_ig: Callable[[HookedTransformer, EdgeGraph, Tensor, Tensor, Metric, int], Tensor]
    kl: Callable[[Tensor, Tensor, Tensor], Tensor]
    acdc_search: Callable[[EdgeGraph, Callable[[Tensor], float], float], Tensor]
    roc: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
    auc: Callable[[Tensor, Tensor], float]
    eap: Callable[[HookedTransformer, EdgeGraph, Tensor, Tensor, Metric], Tensor] | None = None


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
    was patched; ACDC's by trapezoids through its points). The controls, computed in the same run: ``auc_random``
    (random edge scores, the ROC area of a ranking that knows nothing) and ``acdc_random`` (circuits drawn at random
    with ACDC's sizes, their ROC points); ``auc_pessimistic`` holds ACDC's area and that of its random control by
    Conmy et al.'s estimator (:func:`~interp_utils.circuits.discovery.pessimistic_auc`), and EAP's and the random
    scores' by the same estimator through every threshold of their ranking."""
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
    out["EAP"] = (methods.eap or edge_attribution.eap)(model, graph, tokens, corrupt, metric).cpu()
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
    noise = torch.randn(graph.n_edges, generator=torch.Generator().manual_seed(seed + 1), dtype=torch.float64)
    out["auc_random"] = methods.auc(*methods.roc(noise, truth))
    sizes = [int(c.sum()) for c in out["ACDC"].values()]
    out["acdc_random"] = discovery.circuit_roc(discovery.random_circuits(sizes, graph.n_edges, seed + 2), truth)
    out["auc_random_circuits"] = methods.auc(*out["acdc_random"])
    out["auc_pessimistic"] = {
        "ACDC": discovery.pessimistic_auc(*out["roc_acdc"]),
        "random circuits": discovery.pessimistic_auc(*out["acdc_random"]),
        "EAP": discovery.pessimistic_auc(*methods.roc(out["EAP"], truth)),
        "random scores": discovery.pessimistic_auc(*methods.roc(noise, truth)),
    }
    return out


def per_prompt_values(
    model: HookedTransformer,
    graph: EdgeGraph,
    tokens: Int[Tensor, "batch pos"],
    corrupt: Tensor,
    masks: Bool[Tensor, "n up down"],
    metric: Callable[[Tensor], Tensor],
) -> Tensor:
    """``metric`` (one value per prompt) with the edges of each mask patched: a [mask, prompt] matrix, for error bars
    by resampling the prompts. ``corrupt``: the senders' outputs on the corrupted prompts (``record_outputs``)."""
    per_copy = tokens.numel() * (len(graph.upstream) * model.cfg.d_model + model.cfg.d_vocab)
    chunk = max(1, copies_per_pass(per_copy, MAX_ELEMENTS))
    rows = []
    for start in range(0, len(masks), chunk):
        logits = patched_logits(model, graph, tokens, corrupt, masks[start : start + chunk])
        rows += [metric(copy).detach().double().cpu() for copy in logits]
    return torch.stack(rows)


def curve_area(
    values: Tensor, clean: Tensor, corrupt: Tensor, sizes: Sequence[int], prompts: Tensor | None = None
) -> float:
    """The area under a faithfulness curve: the metric of each circuit (``values``, [size, prompt]) and the clean and
    corrupted runs' ([prompt]) averaged over ``prompts`` (every prompt when None), the circuits' faithfulness
    (corrupted 0, clean 1), and the mean of the curve over log(size) (trapezoids)."""
    idx = torch.arange(values.shape[1]) if prompts is None else prompts
    c, x = clean[idx].mean(), corrupt[idx].mean()
    curve = (values[:, idx].mean(1) - x) / (c - x)
    logs = torch.tensor([float(n) for n in sizes], dtype=torch.float64).log10()
    return float(torch.trapezoid(curve, logs) / (logs[-1] - logs[0]))


def bootstrap_difference(
    a: Tensor, b: Tensor, clean: Tensor, corrupt: Tensor, sizes: Sequence[int], n: int = 200, seed: int = 0
) -> tuple[float, float]:
    """The difference of two faithfulness curves' areas (:func:`curve_area`, ``a`` − ``b``) and its bootstrap
    standard error over prompts (``n`` resamples with replacement)."""
    g = torch.Generator().manual_seed(seed)
    k = a.shape[1]
    diffs = []
    for _ in range(n):
        idx = torch.randint(0, k, (k,), generator=g)
        diffs.append(curve_area(a, clean, corrupt, sizes, idx) - curve_area(b, clean, corrupt, sizes, idx))
    return curve_area(a, clean, corrupt, sizes) - curve_area(b, clean, corrupt, sizes), float(torch.tensor(diffs).std())


def bootstrap_correlation_gain(a: Tensor, b: Tensor, exact: Tensor, n: int = 200, seed: int = 0) -> tuple[float, float]:
    """Pearson's r of ``a`` with ``exact`` minus that of ``b``, and its bootstrap standard error over the edges."""
    g = torch.Generator().manual_seed(seed)

    def gain(idx: Tensor) -> float:
        r = torch.corrcoef(torch.stack([a[idx], b[idx], exact[idx]]).double())
        return float(r[0, 2] - r[1, 2])

    everything = torch.arange(len(exact))
    draws = [gain(torch.randint(0, len(exact), (len(exact),), generator=g)) for _ in range(n)]
    return gain(everything), float(torch.tensor(draws).std())


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
    pessimistic = result["auc_pessimistic"]["ACDC"]
    name = f"ACDC over τ (AUC {result['auc']['ACDC']:.3f} by trapezoids, {pessimistic:.3f} by Conmy et al.'s staircase)"
    fig.add_scatter(x=fpr, y=tpr, mode="lines+markers", name=name)
    fig.add_scatter(x=[0, 1], y=[0, 1], mode="lines", line={"dash": "dot", "color": "grey"}, name="chance")
    fig.update_layout(title=title, xaxis_title="false positive rate", yaxis_title="true positive rate", height=420)
    return fig
