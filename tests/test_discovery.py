"""Circuit discovery on a model whose circuit is set by hand: exact patching, EAP, EAP-IG and ACDC against the
known edges; ROC and AUC; faithfulness; the reference circuits."""

import pytest
import torch

from interp_utils import discovery, edge_attribution, edge_graph, hooks
from interp_utils import reference_circuits as rc
from interp_utils.circuits.edge_graph import EdgeGraph
from interp_utils.core.metrics import normalised_metric
from tests.conftest import HANDSET_HALF as HALF


def test_the_handset_circuits_edges_are_exactly_the_ones_that_matter(handset):
    model, graph, tokens, corrupt, truth, metric = handset
    effects = edge_graph.edge_patching(model, graph, tokens, corrupt, metric, progress=False)
    assert truth.sum() == 5 and effects[truth].abs().min() > 1.0
    assert effects[~truth].abs().max() < 1e-4  # the distractors compute, but nothing they compute reaches the logits
    assert discovery.auc(*discovery.roc(effects, truth)) == 1.0
    with torch.inference_mode():  # the distractors are not zeros
        _, cache = model.run_with_cache(tokens)
    assert cache[hooks.name("z", 0)][:, :, 1].abs().max() > 0.1 and cache[hooks.name("z", 1)][:, :, 1].abs().max() > 0.1


def test_eap_misses_the_edges_through_saturated_attention_and_eap_ig_does_not(handset):
    model, graph, tokens, corrupt, truth, metric = handset
    scores = edge_attribution.eap(model, graph, tokens, corrupt, metric)
    exact = edge_graph.edge_patching(model, graph, tokens, corrupt, metric, progress=False)
    through_attention = {"embed → 0.0.v", "0.0 → 1.0.k", "embed → 1.0.q"}  # they act by moving 1.0's attention
    for k, name in enumerate(graph.edge_names()):
        if name in through_attention:
            assert abs(scores[k].item()) < 1e-3 * abs(exact[k].item()), (name, scores[k].item(), exact[k].item())
        elif truth[k]:  # through 1.0's values and output, linear once the attention is fixed: EAP is exact
            assert scores[k].item() == pytest.approx(exact[k].item(), rel=1e-4), name
    # the cause: head 1.0 puts all but 1e-5 of its attention on the repeat (a gap of 200 / sqrt(d_head) = 14.4 in its
    # scores), so the gradient through its softmax, p(1 − p), is below 1e-4 there
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens)
    pattern = cache[hooks.name("pattern", 1)][:, 0, HALF + 1 : -1]
    assert (pattern * (1 - pattern)).max() < 1e-4
    # EAP still ranks them above the other edges, whose scores are exactly 0
    assert discovery.auc(*discovery.roc(scores, truth)) == 1.0 and (scores[~truth] == 0).all()
    ig = edge_attribution.eap_ig(model, graph, tokens, corrupt, metric, steps=5)
    assert discovery.auc(*discovery.roc(ig, truth)) >= 0.95
    ig_attention = [ig[graph.edge_names().index(n)].abs().item() for n in through_attention]
    assert min(ig_attention) > 1e-3  # integrated gradients pass through the unsaturated middle of the path


def test_acdc_finds_the_handset_circuit_keeps_everything_at_tau_0_and_nothing_at_a_huge_tau(handset):
    model, graph, tokens, corrupt, truth, metric = handset
    with torch.inference_mode():
        clean_logits = model(tokens)
    where = torch.zeros(tokens.shape, dtype=torch.bool)
    where[:, HALF:-1] = True
    kl = discovery.kl_divergence(clean_logits, where)
    found = discovery.acdc(model, graph, tokens, corrupt, kl, tau=0.1)
    assert torch.equal(graph.as_edges(found.kept), truth)
    assert found.passes < graph.n_edges  # nodes nothing reads lose their inputs without a pass
    assert discovery.acdc(model, graph, tokens, corrupt, kl, tau=0.0).kept.sum() == graph.n_edges
    assert discovery.acdc(model, graph, tokens, corrupt, kl, tau=1e9).kept.sum() == 0
    clean_value = float(metric(clean_logits))
    by_logit = discovery.acdc(model, graph, tokens, corrupt, discovery.distance_from_clean(metric, clean_value), 0.5)
    assert torch.equal(graph.as_edges(by_logit.kept), truth)  # the task metric finds the same circuit
    fpr, tpr = discovery.circuit_roc([graph.as_edges(found.kept)], truth)
    assert discovery.auc(fpr, tpr) >= 0.95
    with pytest.raises(ValueError, match="tau must be 0 or more"):
        discovery.acdc(model, graph, tokens, corrupt, kl, tau=-1)


def test_faithfulness_of_the_top_edges_goes_from_corrupted_to_clean(handset):
    model, graph, tokens, corrupt, truth, metric = handset
    curve = discovery.faithfulness_curve(model, graph, tokens, corrupt, metric, truth.float(), [0, 5, graph.n_edges])
    assert curve[0].item() == pytest.approx(0.0, abs=1e-4) and curve[2].item() == pytest.approx(1.0, abs=1e-4)
    assert curve[1].item() == pytest.approx(1.0, abs=1e-3)  # the five reference edges alone do the task


def test_roc_auc_and_ranks_on_small_cases():
    truth = torch.tensor([True, True, False, False])
    assert discovery.auc(*discovery.roc(torch.tensor([4.0, -3.0, 2.0, 1.0]), truth)) == 1.0
    assert discovery.auc(*discovery.roc(torch.tensor([1.0, 2.0, 3.0, 4.0]), truth)) == 0.0
    assert discovery.auc(*discovery.roc(torch.ones(4), truth)) == 0.5  # all tied: the diagonal
    fpr, tpr = discovery.roc(torch.tensor([4.0, 2.0, 3.0, 1.0]), truth)
    assert fpr.tolist() == [0, 0, 0.5, 0.5, 1] and tpr.tolist() == [0, 0.5, 0.5, 1, 1]
    assert discovery.top_edges(torch.tensor([0.1, -5.0, 2.0]), 2).tolist() == [False, True, True]
    assert discovery.spearman(torch.tensor([1.0, 2.0, 3.0]), torch.tensor([10.0, 20.0, 15.0])) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="some edges and leave some out"):
        discovery.roc(torch.ones(3), torch.ones(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="same metric"):
        normalised_metric(1.0, 2.0, 2.0)


def test_reference_circuits_as_edges(bundled_model):
    graph = EdgeGraph.of(bundled_model)
    ind = rc.induction_reference(graph, previous=[(1, 2)], induction=[(2, 0), (2, 2)])
    names = {n for n, t in zip(graph.edge_names(), graph.as_edges(ind), strict=True) if t}
    assert names == {"embed → 1.2.v", "1.2 → 2.0.k", "1.2 → 2.2.k", "embed → 2.0.q", "embed → 2.0.v",
                     "embed → 2.2.q", "embed → 2.2.v", "2.0 → logits", "2.2 → logits"}  # fmt: skip
    classes = {"name mover": [(3, 1)], "S-inhibition": [(2, 3)], "induction": [(1, 0)], "previous-token": [(0, 2)]}
    ioi_mask = rc.class_reference(graph, classes)
    kept = {n for n, t in zip(graph.edge_names(), graph.as_edges(ioi_mask), strict=True) if t}
    for edge in ["2.3 → 3.1.q", "3.1 → logits", "embed → 3.1.v", "1.0 → 2.3.k", "0.2 → 1.0.v", "mlp 0 → 2.3.q",
                 "embed → mlp 1", "mlp 2 → logits", "2.3 → mlp 3"]:  # fmt: skip
        assert edge in kept, edge
    for edge in ["0.0 → logits", "2.3 → 3.1.k", "1.1 → 3.1.q", "mlp 0 → 1.1.q",  # heads outside, or unlisted
                 "2.3 → logits", "1.0 → logits", "embed → 1.0.q", "embed → 2.3.k"]:  # fmt: skip
        assert edge not in kept, edge  # only name movers reach the logits; the embeddings only the listed inputs
    with pytest.raises(ValueError, match="not an edge"):
        rc.edge_mask(graph, [("3.1", "2.0.q")])
    with pytest.raises(ValueError, match="unknown node"):
        rc.edge_mask(graph, [("9.9", "logits")])


def test_the_ioi_reference_is_conmy_et_als_963_edges_on_gpt2_smalls_graph():
    from interp_utils.circuits import ioi_circuit

    graph = EdgeGraph(12, 12, True)  # GPT-2 small's shape: no weights needed
    classes = {c: [tuple(map(int, h.split("."))) for h in hs] for c, hs in ioi_circuit.WANG_CLASSES.items()}
    mask = rc.class_reference(graph, classes)
    assert graph.n_edges == 32_491 and int(mask.sum()) == 963  # get_ioi_true_edges, counted on this graph
    kept = {n for n, t in zip(graph.edge_names(), graph.as_edges(mask), strict=True) if t}
    assert "9.9 → logits" in kept and "10.7 → logits" in kept and "5.5 → logits" not in kept
    assert "embed → 9.9.k" in kept and "embed → 9.9.q" not in kept and "embed → 5.5.q" not in kept
    assert "mlp 3 → 5.5.q" in kept and "5.5 → mlp 7" in kept and "mlp 0 → logits" in kept
    assert not any(n.startswith("1.1 ") or n.endswith("→ 1.1.q") for n in kept)  # 1.1 is in no class


def test_pessimistic_auc_is_conmy_et_als_staircase():
    t = torch.tensor
    cases = [([0, 1], [0, 1], 0.0), ([0, 0.5, 1], [0, 0.5, 1], 0.25), ([0, 0.25, 1], [0, 0.25, 1], 0.1875),
             ([0, 0.25, 0.5, 1], [0, 0.25, 0.5, 1], 5 / 16), ([0, 0.25, 0.75, 1], [0, 0.25, 0.5, 1], 0.25)]  # fmt: skip
    for xs, ys, want in cases:  # their module's own asserts
        assert discovery.pessimistic_auc(t(xs), t(ys)) == pytest.approx(want)
    # a point beaten on both axes is dropped; each rise counts from its own false positive rate on
    fpr, tpr = t([0.0, 0.1, 0.3, 0.2, 1.0]), t([0.0, 0.6, 0.5, 0.8, 1.0])
    assert discovery.pessimistic_auc(fpr, tpr) == pytest.approx(0.9 * 0.6 + 0.8 * 0.2)
    fpr, tpr = t([0.0, 0.1, 0.2, 1.0]), t([0.0, 0.6, 0.8, 1.0])  # the staircase lies under the trapezoids
    assert discovery.pessimistic_auc(fpr, tpr) < discovery.auc(fpr, tpr)
    circuits = discovery.random_circuits([0, 3, 10], 10, seed=0)
    assert [int(c.sum()) for c in circuits] == [0, 3, 10]


def test_compare_methods_times_and_scores_every_method_and_takes_a_learners_pieces(handset):
    from interp_utils.circuits import evaluation

    model, graph, tokens, corrupt, truth, metric = handset
    where = torch.zeros(tokens.shape, dtype=torch.bool)
    where[:, HALF:-1] = True
    result = evaluation.compare_methods(model, graph, tokens, corrupt, metric, where, truth, [0.1, 1e9])
    assert set(result["times"]) == {"exact patching", "EAP", "EAP-IG", "ACDC"}
    assert result["auc"]["exact patching"] == pytest.approx(1.0) and result["auc"]["ACDC"] >= 0.95
    assert torch.equal(result["ACDC"][0.1], truth) and result["ACDC"][1e9].sum() == 0
    assert 0 < result["acdc_passes"][0.1] < graph.n_edges
    assert result["auc_random"] < 0.95 and result["auc_pessimistic"]["ACDC"] >= 0.95  # the controls, same run
    assert result["auc_pessimistic"]["random circuits"] < 0.95
    calls = []
    mine = evaluation.reference_methods()
    yours = evaluation.Methods(mine.eap_ig, mine.kl, mine.acdc_search, mine.roc, lambda f, t: calls.append(1) or 0.5)
    sampled = evaluation.compare_methods(model, graph, tokens, corrupt, metric, where, truth, [0.1], yours, n_exact=3)
    assert calls and set(sampled["auc"].values()) == {0.5} and len(sampled["sample"]) == 3
    assert "exact patching" not in sampled["auc"]  # only a sample was patched exactly
    assert evaluation.plot_rocs(result, truth, "hand-set").data


def test_pessimistic_auc_on_a_rankings_roc_matches_its_definition_point_by_point():
    def by_definition(fpr, tpr):  # their estimator written out: drop the beaten points, then the staircase
        points = list(zip(fpr.double().tolist(), tpr.double().tolist(), strict=True))
        kept = sorted({(x, y) for x, y in points if not any(x1 < x and y1 > y for x1, y1 in points)})
        return sum((1 - x) * (y - y0) for (_, y0), (x, y) in zip(kept, kept[1:], strict=False))

    g = torch.Generator().manual_seed(0)
    truth = torch.rand(60, generator=g) < 0.2
    scores = torch.randn(60, generator=g, dtype=torch.float64) + 1.5 * truth
    fpr, tpr = discovery.roc(scores, truth)
    assert discovery.pessimistic_auc(fpr, tpr) == pytest.approx(by_definition(fpr, tpr))
    # through every threshold without ties each step is a corner, so the staircase and the trapezoids agree
    assert discovery.pessimistic_auc(fpr, tpr) == pytest.approx(discovery.auc(fpr, tpr))
    # ties make diagonal steps: the staircase gives them nothing of the triangle that the trapezoids count
    tied = discovery.roc(scores.round(), truth)
    assert discovery.pessimistic_auc(*tied) == pytest.approx(by_definition(*tied))
    assert discovery.pessimistic_auc(*tied) < discovery.auc(*tied)
    for _ in range(20):  # scattered points, some beaten, some repeated
        xs, ys = ((torch.rand(12, generator=g) * 4).round() / 4 for _ in range(2))
        assert discovery.pessimistic_auc(xs, ys) == pytest.approx(by_definition(xs, ys))
    with pytest.raises(ValueError, match="one value per point"):
        discovery.pessimistic_auc(torch.zeros(3), torch.zeros(2))
