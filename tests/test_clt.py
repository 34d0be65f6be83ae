"""Cross-layer transcoders (interp_utils.dictionaries.clt): the forward pass, training, the replacement model and
attribution graphs built on them, and the same graph from circuit-tracer's CrossLayerTranscoder.

Untrained CLTs (scales and biases set from real activations) are enough for the identities; one short training run
checks that training reduces the loss.
"""

import pytest
import torch
from test_attribution import PROMPT, check_against_circuit_tracer, check_edges

from interp_utils import activations, attribution, hooks, transcoders
from interp_utils.dictionaries.clt import CLTConfig, CrossLayerTranscoder, clt_hooks, train_clt
from interp_utils.dictionaries.sae import SAE, SAEConfig
from interp_utils.tracing.attribution import LocalReplacement, attribute


def pairs(model, n_seqs: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Every layer's MLP inputs and outputs on the same tokens: [n, layer, d] each."""
    tokens = next(activations.token_batches(model, n_seqs, n_ctx=64, seed=seed))
    acts = torch.stack(activations.collect(model, clt_hooks(model), tokens), dim=1)
    L = model.cfg.n_layers
    return acts[:, :L], acts[:, L:]


def make_clt(model, d_sae: int = 128, k: int = 8, seed: int = 0) -> CrossLayerTranscoder:
    torch.manual_seed(seed)
    cfg = CLTConfig(n_layers=model.cfg.n_layers, d_model=model.cfg.d_model, d_sae=d_sae, k=k)
    clt = CrossLayerTranscoder(cfg)
    clt.init_from_data(*pairs(model, seed=seed))
    return clt


@pytest.fixture(scope="module")
def clt(bundled_model):
    return make_clt(bundled_model)


@pytest.fixture(scope="module")
def clt_graph(bundled_model, clt):
    return attribute(bundled_model, clt, PROMPT, batch_size=64, progress=False)


def test_forward_equals_layer_by_layer_decoding(bundled_model, clt):
    x, _ = pairs(bundled_model, n_seqs=2, seed=1)
    full = clt(x)
    features = [clt.encode(layer, x[:, layer]) for layer in range(clt.n_layers)]
    assert all(((f > 0).sum(-1) <= clt.cfg.k).all() for f in features)
    for layer in range(clt.n_layers):
        assert torch.allclose(clt.decode(layer, features), full[:, layer], atol=1e-5)
    # layer l's output reads features of layers <= l only: changing a later layer's input leaves it alone
    later = x.clone()
    later[:, -1] += 1.0
    assert torch.allclose(clt(later)[:, :-1], full[:, :-1], atol=1e-6)
    assert all(torch.allclose(W.norm(dim=(1, 2)), torch.ones(len(W))) for W in clt.W_dec)


def test_a_clt_without_cross_layer_decoders_is_per_layer_transcoders(bundled_model, clt):
    """Copy each layer's encoder and same-layer decoder into per-layer transcoders and zero the rest: the replacement
    model, and every edge of the graph, are the same."""
    clt = make_clt(bundled_model, seed=2)
    per_layer = {}
    with torch.no_grad():
        for s, W in enumerate(clt.W_dec):
            W[:, 1:] = 0.0
            cfg = clt.cfg
            tc = SAE(SAEConfig(d_in=cfg.d_model, d_sae=cfg.d_sae, k=cfg.k, d_out=cfg.d_model))
            tc.W_enc.copy_(clt.W_enc[s]), tc.b_enc.copy_(clt.b_enc[s])
            tc.W_dec.copy_(W[:, 0]), tc.b_dec.copy_(clt.b_dec[s])
            tc.in_scale.fill_(clt.in_scale[s].item()), tc.out_scale.fill_(clt.out_scale[s].item())
            per_layer[s] = tc
    ours = attribute(bundled_model, clt, PROMPT, progress=False)
    theirs = attribute(bundled_model, per_layer, PROMPT, progress=False)
    assert torch.equal(ours.features, theirs.features)
    assert torch.allclose(ours.adjacency, theirs.adjacency, atol=1e-5)


def test_local_replacement_with_a_clt_reproduces_the_output(bundled_model, clt):
    tokens = bundled_model.to_tokens(PROMPT)[0]
    local = LocalReplacement(bundled_model, clt, tokens)
    clean = bundled_model(tokens[None])[0]
    for freeze in (True, False):
        assert torch.allclose(local.run(freeze_attention=freeze, freeze_layernorm=freeze), clean, atol=1e-4)
    layer, pos, nodes, vectors = local.writes(local.active_features()[0])
    n_feat = len(local.active_features()[0])
    assert len(vectors) > n_feat  # early-layer features write to several layers
    with pytest.raises(ValueError, match="writes"):
        local.decoder_rows(local.active_features()[0][:1])


def test_clt_edges_add_up_and_run_forwards(bundled_model, clt_graph):
    check_edges(bundled_model, clt_graph)


@pytest.mark.filterwarnings("ignore:Full backward hook")  # a PyTorch notice about circuit-tracer's hooks
def test_clt_graph_matches_circuit_tracer(bundled_model, clt, clt_graph):
    check_against_circuit_tracer(bundled_model, clt, clt_graph)


def test_clt_interventions_follow_the_graph(bundled_model, clt_graph, clt):
    target = clt_graph.logits.start
    nodes = clt_graph.adjacency[target, : clt_graph.n_features].abs().argsort(descending=True)[:3].tolist()
    measured = attribution.intervention_effects(bundled_model, clt, clt_graph, nodes, target, scale=1.0)
    assert torch.allclose(measured, torch.zeros(3), atol=1e-4)  # setting a feature to its own value changes nothing


def test_training_reduces_the_loss_and_replacement_loss(bundled_model):
    cfg = CLTConfig(n_layers=bundled_model.cfg.n_layers, d_model=bundled_model.cfg.d_model, d_sae=128, k=8)
    clt, log = train_clt(bundled_model, cfg, 20_000, batch_size=256, pool_tokens=4096, progress=False)
    mse = log.history["mse"]
    assert mse[-1] < 0.5 * mse[0]
    assert log.history["l0"][-1] <= cfg.k
    tokens = next(activations.token_batches(bundled_model, 4, n_ctx=64, seed=5))
    losses = transcoders.replacement_losses(bundled_model, clt, tokens)
    assert set(losses) == {"clean", "mlp_ablated", "all"}
    assert losses["clean"] < losses["all"] < losses["mlp_ablated"]


def test_bad_inputs_get_clear_errors(bundled_model, clt):
    with pytest.raises(ValueError, match="k must be"):
        CLTConfig(n_layers=2, d_model=8, d_sae=4, k=5)
    wrong = CrossLayerTranscoder(CLTConfig(n_layers=2, d_model=bundled_model.cfg.d_model, d_sae=16, k=2))
    with pytest.raises(ValueError, match="spans 2 layers"):
        LocalReplacement(bundled_model, wrong, bundled_model.to_tokens(PROMPT)[0])
    with pytest.raises(ValueError, match="must end in"):
        clt.encode(0, torch.zeros(3, 5))
    with pytest.raises(ValueError, match="needs the features"):
        clt.decode(2, [torch.zeros(1, clt.cfg.d_sae)])
    with pytest.raises(TypeError, match="CrossLayerTranscoder"):
        attribute(bundled_model, [1, 2], PROMPT)  # type: ignore[arg-type]
    assert hooks.name("ln2_normalized", 0) in clt_hooks(bundled_model)
