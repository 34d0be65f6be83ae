"""Transcoders, the local replacement model and attribution graphs (interp_utils.tracing.attribution), on the
bundled model.

Untrained transcoders are enough here: the identities below hold for any transcoder, since the local replacement
model adds back whatever error a transcoder makes.
"""

import pytest
import torch

from interp_utils import activations, attribution, hooks, transcoders
from interp_utils.dictionaries.dashboards import feature_dashboards
from interp_utils.dictionaries.sae import SAE, SAEConfig
from interp_utils.dictionaries.sae_metrics import latent_activations
from interp_utils.tracing import circuit_tracer_interop as interop
from interp_utils.tracing.attribution import LocalReplacement, attribute
from interp_utils.tracing.attribution_graph import (
    AttributionGraph,
    collapse,
    graph_scores,
    permuted_edges,
    plot_collapsed,
    plot_graph,
    prune,
)

PROMPT = "Then, Mary and John went to the store. John gave a drink to"


@pytest.fixture
def model(bundled_model):
    return bundled_model


def make_transcoders(model, architecture: str = "topk", seed: int = 0, d_sae: int = 256) -> dict[int, SAE]:
    """Untrained transcoders with their scales and decoder bias set from real activations
    (ReLU ones with encoder biases that let about 10% of features fire)."""
    torch.manual_seed(seed)
    tokens = next(activations.token_batches(model, 8, n_ctx=64, seed=seed))
    out = {}
    for layer in range(model.cfg.n_layers):
        cfg = SAEConfig(d_in=model.cfg.d_model, d_sae=d_sae, architecture=architecture, k=8, d_out=model.cfg.d_model)
        tc = SAE(cfg, device=model.W_E.device)
        x, y = activations.collect(model, [hooks.name("ln2_normalized", layer), hooks.name("mlp_out", layer)], tokens)
        x, y = x.to(model.W_E.device), y.to(model.W_E.device)
        tc.init_from_data(x, y)
        if architecture == "relu":
            with torch.no_grad():
                tc.b_enc -= tc.pre_acts(x).quantile(0.9, dim=0)
        out[layer] = tc
    return out


@pytest.fixture(scope="module")
def tcs(bundled_model):
    return make_transcoders(bundled_model)


@pytest.fixture(scope="module")
def graph(bundled_model, tcs):
    return attribute(bundled_model, tcs, PROMPT, batch_size=64, progress=False)


def test_local_replacement_reproduces_the_output_exactly(model, tcs):
    local = LocalReplacement(model, tcs, model.to_tokens(PROMPT)[0])
    clean = model(model.to_tokens(PROMPT))[0]
    assert torch.allclose(local.logits, clean)
    for freeze in (True, False):
        assert torch.allclose(local.run(freeze_attention=freeze, freeze_layernorm=freeze), clean, atol=1e-4)
    assert all(f[0].abs().sum() == 0 for f in local.features)  # no features at BOS
    assert (local.error_nodes()[:, 0] == 0).all()


def test_edges_add_up_to_each_target(model, graph):
    check_edges(model, graph)


def check_edges(model, graph: AttributionGraph) -> None:
    """The replacement model is affine in its leaves: each target = its bias term + the sum of its edges."""
    rows = list(range(graph.n_features)) + list(range(graph.logits.start, graph.logits.stop))
    reconstructed = graph.bias_values + graph.adjacency[rows].sum(1)
    assert torch.allclose(reconstructed, graph.target_values, atol=1e-4)
    # features: their pre-activation is their activation; logits: the token's logit minus the mean logit
    assert torch.allclose(graph.target_values[: graph.n_features], graph.activations, atol=1e-4)
    logits = model(graph.tokens[None])[0, -1]
    assert torch.allclose(
        graph.target_values[graph.n_features :], logits[graph.logit_tokens] - logits.mean(), atol=1e-4
    )
    assert graph.logit_probs.sum() >= 0.95 or len(graph.logit_tokens) == 10
    # edges only run forwards: from earlier layers, and never from a later position
    for i in range(graph.n_features):
        sources = graph.adjacency[i, : graph.n_features].nonzero().squeeze(1)
        layer, pos, _ = graph.features[i].tolist()
        assert (graph.features[sources, 0] < layer).all() and (graph.features[sources, 1] <= pos).all()


@pytest.mark.filterwarnings("ignore:Full backward hook")  # a PyTorch notice about circuit-tracer's hooks
def test_graph_matches_circuit_tracer(model, tcs, graph):
    check_against_circuit_tracer(model, tcs, graph)


def check_against_circuit_tracer(model, tcs, graph: AttributionGraph) -> None:
    """circuit-tracer, on the same model and transcoders, computes the same graph, pruning and scores."""
    theirs = interop.attribute(interop.to_circuit_tracer(model, tcs), graph.tokens, batch_size=64)
    agreement = interop.compare(graph, theirs)
    assert interop.agrees(agreement, score_tol=1e-5), agreement


def test_pruning_keeps_tokens_and_logits_and_prunes_features(graph):
    pruned = prune(graph)
    assert pruned.node_mask[graph.embeds.start :].all()
    assert 0 < pruned.node_mask[: graph.n_features].sum() < graph.n_features
    assert not pruned.edge_mask[~pruned.node_mask].any() and not pruned.edge_mask[:, ~pruned.node_mask].any()
    everything = prune(graph, 1.0, 1.0)
    assert everything.node_mask.sum() >= pruned.node_mask.sum()
    with pytest.raises(ValueError, match="fractions"):
        prune(graph, 1.5)


def test_scores_are_one_without_errors(graph):
    """With the error columns zeroed, nothing flows through errors: both scores are 1."""
    clean = AttributionGraph(**{**graph.__dict__, "adjacency": graph.adjacency.clone()})
    clean.adjacency[:, clean.errors] = 0.0
    assert graph_scores(clean) == pytest.approx({"replacement": 1.0, "completeness": 1.0})
    scores = graph_scores(graph)
    assert 0 < scores["replacement"] < 1 and 0 < scores["completeness"] < 1


def test_permuted_edges_keep_the_weights_and_the_pattern_but_not_the_graph(graph):
    """The control of lesson 05's intervention row: the same edges, their weights shuffled among them."""
    shuffled = permuted_edges(graph, seed=0)
    nonzero = graph.adjacency != 0
    assert torch.equal(shuffled.adjacency != 0, nonzero) and not torch.equal(shuffled.adjacency, graph.adjacency)
    assert torch.equal(shuffled.adjacency[nonzero].sort().values, graph.adjacency[nonzero].sort().values)
    assert torch.equal(permuted_edges(graph, seed=0).adjacency, shuffled.adjacency)  # seeded
    assert shuffled.features is graph.features and graph.adjacency.data_ptr() != shuffled.adjacency.data_ptr()
    target = graph.logits.start
    assert torch.isfinite(attribution.total_effects(shuffled, target)).all()  # still acyclic: still solvable


def test_total_effects_predict_small_interventions(model):
    """ReLU transcoders are continuous, so a small nudge to one feature moves the logit as the graph predicts."""
    relu = make_transcoders(model, "relu", seed=1, d_sae=64)
    graph = attribute(model, relu, PROMPT, batch_size=256, progress=False)
    target = graph.logits.start
    nodes = graph.adjacency[target, : graph.n_features].abs().argsort(descending=True)[:5].tolist()
    nodes += [i for i in range(graph.n_features) if graph.features[i, 0] == 0][:5]  # early: effects through others
    predicted = attribution.total_effects(graph, target)[nodes]
    measured = attribution.intervention_effects(model, relu, graph, nodes, target, scale=0.99)
    assert torch.allclose(measured, 0.01 * predicted, rtol=0.05, atol=2e-4)


def test_replacement_losses(model, tcs):
    tokens = next(activations.token_batches(model, 4, n_ctx=64, seed=3))
    silent = {layer: SAE(tc.cfg) for layer, tc in tcs.items()}
    for tc in silent.values():
        with torch.no_grad():
            tc.W_dec.zero_()  # predicts zero: the same as ablating the MLP
    losses = transcoders.replacement_losses(model, silent, tokens)
    assert losses["all"] == pytest.approx(losses["mlp_ablated"], rel=1e-5)
    assert losses["clean"] < losses["all_but_first"] < losses["all"]
    assert set(losses) >= {f"layer_{layer}" for layer in range(model.cfg.n_layers)}


def test_head_contributions_shape_and_causality(model, tcs):
    tokens = model.to_tokens(PROMPT)[0]
    direction = model.W_U[:, model.to_single_token(" Mary")] - model.W_U[:, model.to_single_token(" John")]
    contributions = attribution.head_contributions(model, tcs, tokens, direction)
    assert contributions.shape == (model.cfg.n_layers, model.cfg.n_heads, len(tokens))
    assert contributions.abs().sum() > 0


def test_dashboards_and_plot(model, tcs, graph):
    pruned = prune(graph)
    kept = pruned.node_mask[: graph.n_features].nonzero()[:5, 0].tolist()
    keep = [tuple(graph.features[i, [0, 2]].tolist()) for i in kept]
    tokens = next(activations.token_batches(model, 8, n_ctx=64, seed=5))
    boards = feature_dashboards(model, tcs, keep, tokens, k=3)
    assert set(boards) == set(keep)
    acts = latent_activations(model, tcs[keep[0][0]], hooks.name("ln2_normalized", keep[0][0]), tokens)[..., keep[0][1]]
    board = boards[keep[0]]
    words, values, at = board.contexts[0]
    assert values[at] == pytest.approx(acts.max().item()) and len(board.contexts) <= 3  # the top context first
    assert board.density == pytest.approx((acts[:, 1:] > 0).float().mean().item())
    assert f"<b> {words[at].strip()}</b>" in board.summary() and "promotes" in board.summary()
    assert f"L{keep[0][0]} #{keep[0][1]}" in board.html() and board.label.startswith("'")
    with pytest.raises(ValueError, match=r"No such \(layer, feature\)"):
        feature_dashboards(model, tcs, [(0, 10**6)], tokens)
    fig = plot_graph(graph, pruned, {key: b.summary() for key, b in boards.items()})
    names = {trace.name for trace in fig.data}
    assert {"feature", "embedding", "logit"} <= names
    assert fig.layout.xaxis.ticktext == tuple(graph.str_tokens)
    hovers = [t for trace in fig.data if trace.name == "feature" for t in trace.text]
    assert any("promotes" in t for t in hovers)  # the dashboard is reachable from the graph view


def test_supernodes_sum_their_members_edges(graph):
    pruned = prune(graph)
    kept = pruned.node_mask[: graph.n_features].nonzero().flatten().tolist()
    a, b = kept[:2], kept[2:4]
    collapsed = collapse(graph, pruned, {"first": a, "second": b})
    A = graph.adjacency * pruned.edge_mask
    assert collapsed.names[:2] == ["first", "second"] and collapsed.kinds[:2] == ["supernode", "supernode"]
    assert collapsed.adjacency[1, 0].item() == pytest.approx(A[b][:, a].sum().item(), abs=1e-5)
    assert collapsed.adjacency[0, 1].item() == pytest.approx(A[a][:, b].sum().item(), abs=1e-5)
    assert len(collapsed.names) == int(pruned.node_mask.sum()) - 4 + 2  # four features became two supernodes
    assert collapsed.adjacency.sum().item() == pytest.approx(A.sum().item(), rel=1e-4)  # no edge lost or doubled
    assert plot_collapsed(collapsed).data
    with pytest.raises(ValueError, match="in two supernodes"):
        collapse(graph, pruned, {"x": a, "y": a[:1]})
    dropped = (~pruned.node_mask[: graph.n_features]).nonzero().flatten().tolist()
    with pytest.raises(ValueError, match="not a kept feature"):
        collapse(graph, pruned, {"x": dropped[:1]})


def test_clear_errors(model, tcs):
    with pytest.raises(ValueError, match="every layer"):
        LocalReplacement(model, {0: tcs[0]}, model.to_tokens(PROMPT)[0])
    with pytest.raises(ValueError, match=r"one prompt"):
        LocalReplacement(model, tcs, model.to_tokens(PROMPT))
    with pytest.raises(ValueError, match="d_out"):
        transcoders.train_transcoders(model, [0], SAEConfig(d_in=128, d_sae=64), 1000)
    with pytest.raises(ValueError, match="layers 0..3"):
        transcoders.replacement_losses(model, {7: tcs[0]}, torch.zeros(1, 4, dtype=torch.long))


def test_path_length_counts_edges_from_embeddings_to_logits(graph):
    from interp_utils.tracing.attribution_graph import path_length

    def only(keep: list[tuple[slice, slice]]) -> AttributionGraph:
        adjacency = torch.zeros_like(graph.adjacency)
        for rows, cols in keep:
            adjacency[rows, cols] = graph.adjacency[rows, cols]
        return AttributionGraph(**{**graph.__dict__, "adjacency": adjacency})

    features = slice(0, graph.n_features)
    assert path_length(only([(graph.logits, graph.embeds)])) == pytest.approx(1.0)
    assert path_length(only([(graph.logits, features), (features, graph.embeds)])) == pytest.approx(2.0)
    assert path_length(graph) >= 1.0
    assert path_length(graph, prune(graph)) >= 1.0
