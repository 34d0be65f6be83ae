"""The edge graph and edge patching: exact patching against a hand-written two-run patch, EAP against autograd."""

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils import edge_attribution, edge_graph, hooks
from interp_utils.circuits.edge_graph import EdgeGraph


@pytest.fixture(scope="module")
def small():
    """A 2-layer model with MLPs and LayerNorm, random weights; its tokens and a corrupted twin."""
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, d_mlp=32, n_ctx=12, d_vocab=20, act_fn="gelu",
        normalization_type="LN", seed=3,
    )  # fmt: skip
    model = HookedTransformer(cfg)
    g = torch.Generator().manual_seed(0)
    tokens, corrupt = torch.randint(0, 20, (2, 3, 6), generator=g)
    return model, EdgeGraph.of(model), tokens, corrupt


def metric(logits):
    return logits[:, -1].log_softmax(-1)[:, 3].mean() - logits[:, 2].log_softmax(-1)[:, 5].mean()


def test_the_graph_counts_and_orders_its_edges(small, induction_model, bundled_model):
    model, graph, _, _ = small
    assert graph.upstream == ["embed", "0.0", "0.1", "mlp 0", "1.0", "1.1", "mlp 1"]
    assert graph.downstream[:7] == ["0.0.q", "0.1.q", "0.0.k", "0.1.k", "0.0.v", "0.1.v", "mlp 0"]
    # layer 0's heads read the embeddings; its MLP also its heads; layer 1 reads all of layer 0; the logits read all
    assert graph.n_edges == 6 * 1 + 1 * 3 + 6 * 4 + 1 * 6 + 7
    assert "0.1 → mlp 0" in graph.edge_names() and "mlp 0 → 0.0.q" not in graph.edge_names()
    attn_only = EdgeGraph.of(induction_model)
    assert attn_only.upstream == ["embed", "0.0", "0.1", "1.0", "1.1"] and attn_only.n_edges == 6 + 6 * 3 + 5
    big = EdgeGraph.of(bundled_model)
    assert (len(big.upstream), len(big.downstream)) == (21, 53)
    values = torch.arange(float(big.n_edges))
    assert torch.equal(big.as_edges(big.as_matrix(values)), values)


def test_patching_nothing_is_the_clean_run_and_everything_the_corrupted_run(small):
    model, graph, tokens, corrupt_tokens = small
    corrupt = edge_graph.record_outputs(model, graph, corrupt_tokens)
    masks = torch.stack([torch.zeros_like(graph.allowed), graph.allowed])
    logits = edge_graph.patched_logits(model, graph, tokens, corrupt, masks)
    with torch.inference_mode():
        assert torch.allclose(logits[0], model(tokens), atol=1e-5)
        assert torch.allclose(logits[1], model(corrupt_tokens), atol=1e-4)


def _hand_patch(model, graph, tokens, corrupt_tokens, up: int, down: int) -> float:
    """One edge patched by hand: cache both runs, then add (corrupted − clean output of the sender) to the
    receiver's input in a third run."""
    name = graph.upstream[up]
    with torch.inference_mode():
        _, clean = model.run_with_cache(tokens)
        _, corrupt = model.run_with_cache(corrupt_tokens)

    def output(cache):
        if name == "embed":
            return cache[hooks.name("resid_pre", 0)]
        if name.startswith("mlp"):
            return cache[hooks.name("mlp_out", int(name.split()[1]))]
        layer, head = map(int, name.split("."))
        return torch.einsum(
            "bphz,zd->bpd", cache[hooks.name("z", layer)][:, :, head : head + 1], model.W_O[layer, head]
        )

    delta = output(corrupt) - output(clean)
    receiver = graph.downstream[down]
    if receiver == "logits":
        point, head = hooks.name("resid_post", model.cfg.n_layers - 1), None
    elif receiver.startswith("mlp"):
        point, head = hooks.name("mlp_in", int(receiver.split()[1])), None
    else:
        layer, head, letter = receiver.split(".")
        point, head = hooks.name(f"{letter}_input", int(layer)), int(head)  # type: ignore[arg-type]

    def add(act, hook):
        if head is None:
            return act + delta
        act = act.clone()
        act[:, :, head] += delta
        return act

    with torch.inference_mode(), edge_graph.edge_hooks_enabled(model):
        return float(metric(model.run_with_hooks(tokens, fwd_hooks=[(point, add)])) - metric(model(tokens)))


def test_exact_edge_patching_equals_a_hand_written_two_run_patch(small):
    model, graph, tokens, corrupt_tokens = small
    effects = edge_graph.edge_patching(model, graph, tokens, corrupt_tokens, metric, max_elements=2e4, progress=False)
    names, pairs = graph.edge_names(), graph.edges().tolist()
    chosen = ["embed → 0.1.k", "0.0 → mlp 0", "mlp 0 → 1.1.v", "0.1 → 1.0.q", "1.1 → logits", "embed → logits"]
    for label in chosen:
        k = names.index(label)
        assert effects[k].item() == pytest.approx(
            _hand_patch(model, graph, tokens, corrupt_tokens, *pairs[k]), abs=1e-5
        )
    assert effects.abs().max() > 0.01  # the edges do something on this model


def test_eap_equals_the_first_order_estimate_by_autograd_edge_by_edge(small):
    model, graph, tokens, corrupt_tokens = small
    scores = edge_attribution.eap(model, graph, tokens, corrupt_tokens, metric)
    clean, corrupt = (edge_graph.record_outputs(model, graph, t) for t in (tokens, corrupt_tokens))
    for k, (up, down) in enumerate(graph.edges().tolist()):
        eps = torch.tensor(1e-20, requires_grad=True)  # nonzero, so the patch runs; tiny, so this is the slope at 0
        mask = torch.zeros(1, *graph.allowed.shape)
        mask[0, up, down] = 1.0
        # the edge's patch scaled by eps: d metric / d eps at eps = 0 is the first-order estimate of its effect
        fwd = edge_graph.patch_hooks(model, graph, corrupt, mask * eps)
        with torch.enable_grad(), edge_graph.edge_hooks_enabled(model):
            value = metric(model.run_with_hooks(tokens, fwd_hooks=fwd))
            (grad,) = torch.autograd.grad(value, eps)
        assert scores[k].item() == pytest.approx(grad.item(), abs=1e-5), graph.edge_names()[k]
    assert scores.shape == (graph.n_edges,) and clean.shape == corrupt.shape


def test_eap_ig_with_one_step_is_eap_and_more_steps_move_towards_exact_patching(small):
    model, graph, tokens, corrupt_tokens = small
    plain = edge_attribution.eap(model, graph, tokens, corrupt_tokens, metric)
    assert torch.allclose(
        edge_attribution.eap_ig(model, graph, tokens, corrupt_tokens, metric, steps=1), plain, atol=1e-6
    )
    with pytest.raises(ValueError, match="at least 1"):
        edge_attribution.eap_ig(model, graph, tokens, corrupt_tokens, metric, steps=0)


def test_bad_masks_and_outputs_get_clear_errors(small):
    model, graph, tokens, corrupt_tokens = small
    corrupt = edge_graph.record_outputs(model, graph, corrupt_tokens)
    with pytest.raises(ValueError, match=r"\[copy, upstream, downstream\]"):
        edge_graph.patched_logits(model, graph, tokens, corrupt, graph.allowed)
    with pytest.raises(ValueError, match="record them with record_outputs"):
        edge_graph.patched_logits(model, graph, tokens[:, :4], corrupt, graph.allowed[None])
    with pytest.raises(ValueError, match="one value per edge"):
        graph.as_matrix(torch.zeros(3))
