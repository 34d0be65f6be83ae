"""Attribution graphs as data (Ameisen et al. 2025): node order, influence, pruning, scores, supernodes, the picture.

A graph's nodes are ordered as circuit-tracer orders them (active features, error nodes, token embeddings, logits),
and pruning and scores follow its definitions, so its functions read our graphs too. Graphs are built by
:func:`interp_utils.tracing.attribution.attribute`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor


@dataclass
class AttributionGraph:
    """Direct effects between nodes, ordered as circuit-tracer orders them: active features (layer by layer),
    error nodes (layer-major: ``n_layers * n_pos``), token embeddings (one per position), logits.
    ``adjacency[target, source]`` is the source's direct effect on the target (a feature's pre-activation or a
    demeaned logit), in the local replacement model."""

    tokens: Int[Tensor, " pos"]
    str_tokens: list[str]
    features: Int[Tensor, "n_features 3"]  # (layer, pos, feature)
    activations: Float[Tensor, " n_features"]
    logit_tokens: Int[Tensor, " n_logits"]
    logit_strs: list[str]
    logit_probs: Float[Tensor, " n_logits"]
    adjacency: Float[Tensor, "n_nodes n_nodes"]
    n_layers: int
    target_values: Float[Tensor, " n_targets"]  # features' pre-activations, then demeaned logits
    bias_values: Float[Tensor, " n_targets"]  # the same with every leaf at zero: what biases alone give

    @property
    def n_pos(self) -> int:
        return len(self.tokens)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def errors(self) -> slice:
        return slice(self.n_features, self.n_features + self.n_layers * self.n_pos)

    @property
    def embeds(self) -> slice:
        return slice(self.errors.stop, self.errors.stop + self.n_pos)

    @property
    def logits(self) -> slice:
        return slice(self.embeds.stop, self.embeds.stop + len(self.logit_tokens))

    def node(self, i: int) -> dict:
        """What node ``i`` is: kind, layer (-1 embeddings, n_layers logits), position and a label."""
        last = self.n_pos - 1
        if i < self.n_features:
            layer, pos, feat = self.features[i].tolist()
            return {"kind": "feature", "layer": layer, "pos": pos, "feature": feat, "label": f"L{layer} #{feat}"}
        if i < self.errors.stop:
            layer, pos = divmod(i - self.n_features, self.n_pos)
            return {"kind": "error", "layer": layer, "pos": pos, "label": f"error L{layer}"}
        if i < self.embeds.stop:
            pos = i - self.embeds.start
            return {"kind": "embedding", "layer": -1, "pos": pos, "label": f"emb {self.str_tokens[pos]!r}"}
        j = i - self.logits.start
        return {"kind": "logit", "layer": self.n_layers, "pos": last, "label": f"logit {self.logit_strs[j]!r}"}


def permuted_edges(graph: AttributionGraph, seed: int = 0) -> AttributionGraph:
    """A copy of ``graph`` whose edge weights are shuffled among its nonzero edges (the same sparsity pattern, so
    still acyclic; every weight kept, but attached to another pair of nodes): the null for "interventions agree with
    the graph", a graph with the right size and weights but not this prompt's structure."""
    adjacency = graph.adjacency.clone()
    nonzero = adjacency != 0
    order = torch.randperm(int(nonzero.sum()), generator=torch.Generator().manual_seed(seed))
    adjacency[nonzero] = adjacency[nonzero][order.to(adjacency.device)]
    return replace(graph, adjacency=adjacency)


# --- pruning and scores (Ameisen et al. 2025, methods; the same definitions as circuit-tracer) ---


def normalise_rows(adjacency: Float[Tensor, "n n"]) -> Float[Tensor, "n n"]:
    """|A| with each row scaled to sum to 1: the share of a target's inputs that each source gives."""
    a = adjacency.abs()
    return a / a.sum(1, keepdim=True).clamp_min(1e-10)


def logit_weights(graph: AttributionGraph) -> Float[Tensor, " n_nodes"]:
    """Each node's weight as a target: the logit nodes' probabilities, zero elsewhere."""
    w = torch.zeros(len(graph.adjacency))
    w[graph.logits] = graph.logit_probs
    return w


def influence(matrix: Float[Tensor, "n n"], weights: Float[Tensor, " n"], max_iter: int = 1000) -> Float[Tensor, " n"]:
    """Each node's indirect influence on the weighted targets: w (A + A^2 + ...), summed until it vanishes
    (the graph is acyclic, so A is nilpotent)."""
    total, current = torch.zeros_like(weights), weights @ matrix
    for _ in range(max_iter):
        if not current.any():
            return total
        total, current = total + current, current @ matrix
    raise RuntimeError("Influence did not converge: the adjacency matrix has a cycle.")


def path_length(graph: AttributionGraph, pruned: Pruned | None = None, max_len: int = 1000) -> float:
    """The mean number of edges on the paths from the token embeddings to the logits, each length weighted by the
    share of the logits' (probability-weighted, normalised) inputs that reaches the embeddings along paths of that
    length; on the pruned graph's edges if ``pruned`` is given."""
    A = graph.adjacency if pruned is None else graph.adjacency * pruned.edge_mask
    matrix, current = normalise_rows(A), logit_weights(graph)
    total = weighted = 0.0
    for length in range(1, max_len + 1):
        current = current @ matrix
        if not current.any():
            return weighted / max(total, 1e-10)
        share = current[graph.embeds].sum().item()
        total, weighted = total + share, weighted + length * share
    raise RuntimeError("Paths did not end: the adjacency matrix has a cycle.")


def threshold(scores: Tensor, fraction: float) -> Tensor:
    """The smallest score among the top scores that together make up ``fraction`` of the total."""
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum().clamp_min(1e-10)
    return ordered[min(int(torch.searchsorted(cumulative, fraction)), len(ordered) - 1)]


@dataclass
class Pruned:
    """What pruning kept (circuit-tracer's names: ``node_mask``, ``edge_mask``) and every node's influence."""

    node_mask: Bool[Tensor, " n_nodes"]  # kept nodes
    edge_mask: Bool[Tensor, "n_nodes n_nodes"]  # kept edges (target, source)
    node_influence: Float[Tensor, " n_nodes"]  # each node's influence on the logits (before pruning)


def prune(graph: AttributionGraph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
    """Keep the nodes that carry ``node_threshold`` of the total influence on the logits (tokens and logits
    always), then the edges that carry ``edge_threshold`` of the influence left, then drop feature and error
    nodes left with no outgoing edge and features with no incoming one, until nothing changes."""
    if not (0 <= node_threshold <= 1 and 0 <= edge_threshold <= 1):
        raise ValueError(f"Thresholds are fractions in [0, 1], got {node_threshold} and {edge_threshold}.")
    A, w = graph.adjacency, logit_weights(graph)
    node_influence = influence(normalise_rows(A), w)
    nodes = node_influence >= threshold(node_influence, node_threshold)
    nodes[graph.embeds.start :] = True
    kept = A * nodes[:, None] * nodes[None, :]
    edge_scores = normalise_rows(kept) * (influence(normalise_rows(kept), w) + w)[:, None]
    edges = edge_scores >= threshold(edge_scores.flatten(), edge_threshold)
    n_feat, inner = graph.n_features, graph.embeds.start
    while True:
        before = nodes.clone()
        edges &= nodes[:, None] & nodes[None, :]
        nodes[:inner] &= edges[:, :inner].any(0)  # features and errors must feed something
        nodes[:n_feat] &= edges[:n_feat].any(1)  # features must be fed by something
        if torch.equal(nodes, before):
            return Pruned(nodes, edges, node_influence)


def graph_scores(graph: AttributionGraph) -> dict[str, float]:
    """Replacement score: the share of the token-to-logit influence that avoids error nodes.
    Completeness score: the influence-weighted share of every node's inputs that come from features or tokens."""
    A, w = normalise_rows(graph.adjacency), logit_weights(graph)
    node_influence = influence(A, w)
    tokens, errors = node_influence[graph.embeds].sum(), node_influence[graph.errors].sum()
    non_error = 1 - A[:, graph.errors].sum(1)
    weight = node_influence + w
    return {
        "replacement": (tokens / (tokens + errors)).item(),
        "completeness": ((non_error * weight).sum() / weight.sum()).item(),
    }


def plot_graph(
    graph: AttributionGraph,
    pruned: Pruned,
    labels: dict[tuple[int, int], str] | None = None,
    title: str = "Attribution graph",
    max_edges: int = 400,
):
    """The pruned graph: position along x, layer up y (embeddings at the bottom, logits on top); features are
    circles, error nodes grey squares; edge width grows with |weight|, blue positive, red negative.
    Hover a node for its label (``labels[(layer, feature)]``: a name, or a dashboard's summary), activation and
    influence."""
    import plotly.graph_objects as go

    labels = labels or {}
    kept = pruned.node_mask.nonzero().squeeze(1).tolist()
    coords, hover, kind = {}, {}, {}
    groups: dict[tuple[int, int], list[int]] = {}
    for i in kept:
        node = graph.node(i)
        groups.setdefault((node["layer"], node["pos"]), []).append(i)
        kind[i] = node["kind"]
        text = node["label"]
        if node["kind"] == "feature":
            text += f": {labels.get((node['layer'], node['feature']), '')}<br>activation {graph.activations[i]:.2f}"
        elif node["kind"] == "logit":
            text += f"<br>p = {graph.logit_probs[i - graph.logits.start]:.3f}"
        hover[i] = f"{text}<br>influence {pruned.node_influence[i]:.3f}"
    for (layer, pos), members in groups.items():
        for j, i in enumerate(members):  # spread nodes that share a cell across it
            offset = (j - (len(members) - 1) / 2) * min(0.8 / max(len(members), 1), 0.15)
            coords[i] = (pos + offset, layer)
    A = graph.adjacency * pruned.edge_mask
    targets, sources = A.nonzero(as_tuple=True)
    weights = A[targets, sources]
    order = weights.abs().argsort(descending=True)[:max_edges]
    fig = go.Figure()
    biggest = weights.abs().max().item() if len(weights) else 1.0
    for sign, colour in ((1, "rgba(31,119,180,{a})"), (-1, "rgba(214,39,40,{a})")):
        for lo, hi in ((0.0, 0.1), (0.1, 0.3), (0.3, 1.01)):  # a few width classes keep the figure light
            xs, ys = [], []
            for e in order.tolist():
                w = weights[e].item()
                if (w > 0) == (sign > 0) and lo <= abs(w) / biggest < hi:
                    (x0, y0), (x1, y1) = coords[int(sources[e])], coords[int(targets[e])]
                    xs += [x0, x1, None]
                    ys += [y0, y1, None]
            if xs:
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="lines",
                        hoverinfo="skip",
                        showlegend=False,
                        line=dict(width=1 + 6 * hi, color=colour.format(a=0.25 + 0.5 * min(hi, 1))),
                    )
                )
    styles = {
        "feature": dict(symbol="circle", color="#ff7f0e", size=11),
        "error": dict(symbol="square", color="#999999", size=9),
        "embedding": dict(symbol="diamond", color="#2ca02c", size=12),
        "logit": dict(symbol="diamond", color="#9467bd", size=14),
    }
    for name, style in styles.items():
        members = [i for i in kept if kind[i] == name]
        fig.add_trace(
            go.Scatter(
                x=[coords[i][0] for i in members],
                y=[coords[i][1] for i in members],
                mode="markers",
                name=name,
                marker=style,
                text=[hover[i] for i in members],
                hoverinfo="text",
            )
        )
    fig.update_layout(
        title=title,
        height=160 + 90 * (graph.n_layers + 2),
        xaxis=dict(tickmode="array", tickvals=list(range(graph.n_pos)), ticktext=graph.str_tokens, title="position"),
        yaxis=dict(
            tickmode="array",
            tickvals=list(range(-1, graph.n_layers + 1)),
            ticktext=["embed"] + [f"layer {i}" for i in range(graph.n_layers)] + ["logits"],
            title="",
        ),
    )
    return fig


# --- supernodes: features grouped by role, the paper's way of reading a graph ---


@dataclass
class Collapsed:
    """A pruned graph with named groups of features merged: ``adjacency[t, s]`` sums the kept edges from the
    members of ``s`` to those of ``t`` (direct effects add). Nodes in no group stay as they were."""

    names: list[str]
    kinds: list[str]  # "supernode", or the kind of a node left as it was
    layer: list[float]  # mean layer of the members (-1 embeddings, n_layers logits)
    pos: list[float]  # mean position of the members
    members: list[list[int]]  # each node's indices in the original graph
    adjacency: Float[Tensor, "m m"]


def collapse(graph: AttributionGraph, pruned: Pruned, supernodes: dict[str, list[int]]) -> Collapsed:
    """Merge each named list of kept feature nodes into one supernode; every other kept node stays."""
    seen: dict[int, str] = {}
    for name, group in supernodes.items():
        for i in group:
            if not (0 <= i < graph.n_features and bool(pruned.node_mask[i])):
                raise ValueError(f"Supernode {name!r}: node {i} is not a kept feature of the pruned graph.")
            if i in seen:
                raise ValueError(f"Node {i} is in two supernodes, {seen[i]!r} and {name!r}: a feature joins one.")
            seen[i] = name
        if not group:
            raise ValueError(f"Supernode {name!r} is empty.")
    kept = [i for i in pruned.node_mask.nonzero().flatten().tolist() if i not in seen]
    members = [list(group) for group in supernodes.values()] + [[i] for i in kept]
    nodes = [graph.node(group[0]) for group in members]
    names = list(supernodes) + [node["label"] for node in nodes[len(supernodes) :]]
    kinds = ["supernode"] * len(supernodes) + [node["kind"] for node in nodes[len(supernodes) :]]
    where = [[graph.node(i) for i in group] for group in members]
    layer = [sum(n["layer"] for n in group) / len(group) for group in where]
    pos = [sum(n["pos"] for n in group) / len(group) for group in where]
    assign = torch.zeros(len(members), len(graph.adjacency))  # row m: which original nodes make up node m
    for m, group in enumerate(members):
        assign[m, group] = 1.0
    A = graph.adjacency * pruned.edge_mask
    return Collapsed(names, kinds, layer, pos, members, assign @ A @ assign.T)


def plot_collapsed(collapsed: Collapsed, title: str = "Collapsed graph", min_share: float = 0.02):
    """Supernodes as labelled boxes at their members' mean position and layer, edges by summed weight (those under
    ``min_share`` of the largest left out)."""
    import plotly.graph_objects as go

    A = collapsed.adjacency
    biggest = A.abs().max().clamp_min(1e-12)
    fig = go.Figure()
    for t, s in (A.abs() >= min_share * biggest).nonzero().tolist():
        w = A[t, s].item()
        fig.add_trace(
            go.Scatter(
                x=[collapsed.pos[s], collapsed.pos[t]],
                y=[collapsed.layer[s], collapsed.layer[t]],
                mode="lines",
                showlegend=False,
                hoverinfo="skip",
                line=dict(width=1 + 8 * abs(w) / biggest.item(), color="#1f77b4" if w > 0 else "#d62728"),
            )
        )
    styles = {"supernode": ("square", "#ff7f0e", 22), "feature": ("circle", "#ffbb78", 10)}
    for kind in dict.fromkeys(collapsed.kinds):
        shown = [m for m, k in enumerate(collapsed.kinds) if k == kind]
        symbol, colour, size = styles.get(kind, ("diamond", "#999999", 12))
        fig.add_trace(
            go.Scatter(
                x=[collapsed.pos[m] for m in shown],
                y=[collapsed.layer[m] for m in shown],
                mode="markers+text" if kind == "supernode" else "markers",
                text=[collapsed.names[m] for m in shown],
                textposition="top center",
                name=kind,
                marker=dict(symbol=symbol, color=colour, size=size),
                hovertext=[f"{collapsed.names[m]} ({len(collapsed.members[m])} nodes)" for m in shown],
                hoverinfo="text",
            )
        )
    fig.update_layout(title=title, xaxis_title="position", yaxis_title="layer", height=500)
    return fig
