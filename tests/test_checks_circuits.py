"""Notebook 05's checks pass the reference answers and reject plausible wrong ones with the message meant for them."""

import pytest
import torch
from test_attribution import PROMPT, make_transcoders

from interp_utils import attribution, hooks
from interp_utils import attribution_graph as graph
from interp_utils.course.checks import circuit_tracing as checks
from interp_utils.dictionaries.transcoders import replacement_hooks


@pytest.fixture(scope="module")
def tcs(bundled_model):
    return make_transcoders(bundled_model)


@pytest.fixture(scope="module")
def ioi_graph(bundled_model, tcs):
    return attribution.attribute(bundled_model, tcs, PROMPT, batch_size=64, progress=False)


def test_transcoder_and_replacement_checks(bundled_model, tcs):
    checks.check_transcoder_loss(lambda tc, x, y: (tc(x) - y).pow(2).sum(-1).mean())
    with pytest.raises(AssertionError, match="a transcoder predicts its output"):
        checks.check_transcoder_loss(lambda tc, x, y: (tc(x) - x).pow(2).sum(-1).mean())
    with pytest.raises(AssertionError, match="summed over dimensions"):
        checks.check_transcoder_loss(lambda tc, x, y: (tc(x) - y).pow(2).mean())

    def by_hand(model, transcoders, tokens, clean_inputs=False, layers=None):
        _, cache = model.run_with_cache(tokens)
        stored = {}

        def save(act, hook):
            stored[hook.layer()] = cache[hook.name] if clean_inputs else act

        def replace(act, hook):
            act = act.clone()
            act[:, 1:] = transcoders[hook.layer()](stored[hook.layer()][:, 1:])
            return act

        fwd = []
        for layer in layers if layers is not None else transcoders:
            fwd += [(hooks.name("ln2_normalized", layer), save), (hooks.name("mlp_out", layer), replace)]
        return model.run_with_hooks(tokens, return_type="loss", fwd_hooks=fwd).item()

    checks.check_replacement_loss(by_hand, bundled_model, tcs)
    checks.check_replacement_loss(lambda m, t, x: hooks.mean_loss(m, x, replacement_hooks(t)), bundled_model, tcs)
    with pytest.raises(AssertionError, match="not the input from a clean run"):
        checks.check_replacement_loss(lambda m, t, x: by_hand(m, t, x, clean_inputs=True), bundled_model, tcs)
    with pytest.raises(AssertionError, match="Replace every layer's MLP output"):  # the last layer only
        checks.check_replacement_loss(lambda m, t, x: by_hand(m, t, x, layers=[max(t)]), bundled_model, tcs)


def freeze(cache, n_layers, final=True, replace=True):
    names = hooks.layer_names("pattern", n_layers) + hooks.layer_names("ln1_scale", n_layers)
    names += hooks.layer_names("ln2_scale", n_layers) + ([hooks.name("ln_final_scale")] if final else [])
    return [(n, hooks.replace_with(cache[n][0]) if replace else (lambda act, hook: act)) for n in names]


def errors(model, transcoders, tokens, sign=1.0, zero_bos=True):
    _, cache = model.run_with_cache(tokens[None])
    out = []
    for layer in range(model.cfg.n_layers):
        f = transcoders[layer].encode(cache[hooks.name("ln2_normalized", layer)][0])
        if zero_bos:
            f[0] = 0.0
        out.append(sign * (cache[hooks.name("mlp_out", layer)][0] - transcoders[layer].decode(f)))
    return torch.stack(out)


def test_local_replacement_checks(bundled_model, tcs):
    checks.check_freeze_hooks(freeze, bundled_model)
    with pytest.raises(AssertionError, match=r"missing \['ln_final.hook_scale'\]"):
        checks.check_freeze_hooks(lambda c, n: freeze(c, n, final=False), bundled_model)
    with pytest.raises(AssertionError, match="must return the value from the cache"):
        checks.check_freeze_hooks(lambda c, n: freeze(c, n, replace=False), bundled_model)
    checks.check_error_terms(errors, bundled_model, tcs)
    with pytest.raises(AssertionError, match="sign is reversed"):
        checks.check_error_terms(lambda m, t, x: errors(m, t, x, sign=-1.0), bundled_model, tcs)
    with pytest.raises(AssertionError, match=r"Position 0 \(BOS\) has no features"):
        checks.check_error_terms(lambda m, t, x: errors(m, t, x, zero_bos=False), bundled_model, tcs)


def targets(logits, max_logits, logit_prob, plus_one=1, cap=True):
    probs = logits.softmax(-1)
    top = probs.topk(min(max_logits, len(probs)) if cap else len(probs))
    n = min(int((top.values.cumsum(0) < logit_prob).sum()) + plus_one, len(top.values))
    return top.indices[:n], top.values[:n]


def edge(local, features, target, source, times_activation=True):
    leaves, readouts = local.linear_forward(1, features)
    layer, pos, feat = features[target].tolist()
    tc = local.transcoders[layer]
    pre = readouts[hooks.name("ln2_normalized", layer)][0, pos] @ (tc.W_enc[:, feat] / tc.in_scale)
    (grad,) = torch.autograd.grad(pre, leaves["mlp"])
    layer_s, pos_s, _ = features[source].tolist()
    value = grad[0, layer_s, pos_s] @ local.decoder_rows(features[source : source + 1])[0]
    return (value * local.feature_values(features[source : source + 1])[0] if times_activation else value).item()


def test_target_and_edge_checks(bundled_model, tcs):
    checks.check_logit_targets(targets)
    with pytest.raises(AssertionError, match="the token that reaches it included"):
        checks.check_logit_targets(lambda lg, m, p: targets(lg, m, p, plus_one=0))
    with pytest.raises(AssertionError, match="never more than max_logits"):
        checks.check_logit_targets(lambda lg, m, p: targets(lg, m, p, cap=False))
    checks.check_demeaned_unembedding(lambda W, ids: (W[:, ids] - W.mean(1, keepdim=True)).T)
    with pytest.raises(AssertionError, match="Subtract the mean over the vocabulary"):
        checks.check_demeaned_unembedding(lambda W, ids: W[:, ids].T)
    with pytest.raises(AssertionError, match="mean over the vocabulary \\(axis 1\\)"):
        checks.check_demeaned_unembedding(lambda W, ids: (W[:, ids] - W.mean(0, keepdim=True)[:, ids]).T)
    checks.check_feature_edge(edge, bundled_model, tcs)
    with pytest.raises(AssertionError, match="Multiply by the source's activation"):
        checks.check_feature_edge(lambda *a: edge(*a, times_activation=False), bundled_model, tcs)
    with pytest.raises(AssertionError, match="Backpropagate the target's pre-activation"):  # target and source swapped
        checks.check_feature_edge(lambda local, f, t, s: edge(local, f, t, t), bundled_model, tcs)


def test_score_and_intervention_checks(bundled_model, tcs, ioi_graph):
    checks.check_graph_scores(graph.graph_scores, ioi_graph)

    def unweighted(g):
        A = graph.normalise_rows(g.adjacency)
        return graph.graph_scores(g) | {"completeness": (1 - A[:, g.errors].sum(1)).mean().item()}

    with pytest.raises(AssertionError, match="Weight each node's non-error share"):
        checks.check_graph_scores(unweighted, ioi_graph)

    def with_features(g):
        inf = graph.influence(graph.normalise_rows(g.adjacency), graph.logit_weights(g))
        return graph.graph_scores(g) | {"replacement": (inf[g.embeds].sum() / inf[: g.embeds.stop].sum()).item()}

    with pytest.raises(AssertionError, match="tokens / \\(tokens \\+ errors\\)"):
        checks.check_graph_scores(with_features, ioi_graph)
    checks.check_total_effects(attribution.total_effects, ioi_graph)
    with pytest.raises(AssertionError, match="direct effect only"):
        checks.check_total_effects(lambda g, t: -g.adjacency[t, : g.n_features], ioi_graph)
    with pytest.raises(AssertionError, match="change is minus a_s"):
        checks.check_total_effects(lambda g, t: -attribution.total_effects(g, t), ioi_graph)

    def ablation(local, g, node, target, frozen=True, sign=1.0):
        token = int(g.logit_tokens[target - g.logits.start])
        layer, pos, feat = g.features[node].tolist()

        def value(logits):
            return (logits[-1, token] - logits[-1].mean()).item()

        ablated = local.run({(layer, pos, feat): 0.0}, frozen, frozen)
        return sign * (value(ablated) - value(local.run(None, frozen, frozen)))

    checks.check_ablation_effect(ablation, bundled_model, tcs, ioi_graph)
    with pytest.raises(AssertionError, match="sign is reversed"):
        checks.check_ablation_effect(lambda *a: ablation(*a, sign=-1.0), bundled_model, tcs, ioi_graph)
    with pytest.raises(AssertionError, match="Keep attention patterns and LayerNorm scales frozen"):
        checks.check_ablation_effect(lambda *a: ablation(*a, frozen=False), bundled_model, tcs, ioi_graph)


def test_clt_checks():
    def forward(clt, x, cross=True, scale=True, offset=True):
        L = x.shape[1]
        features = [clt.encode(layer, x[:, layer]) for layer in range(L)]
        out = []
        for target in range(L):
            sources = range(target + 1) if cross else [target]
            # the wrong offset reads W_dec[s][:, l] (as far as it goes) instead of W_dec[s][:, l - s]
            cols = {s: target - s if offset else min(target, clt.W_dec[s].shape[1] - 1) for s in sources}
            y = clt.b_dec[target] + sum(features[s] @ clt.W_dec[s][:, cols[s]] for s in sources)
            out.append(y * (clt.out_scale[target] if scale else 1.0))
        return torch.stack(out, 1)

    checks.check_clt_forward(forward)
    with pytest.raises(AssertionError, match="per-layer transcoder"):
        checks.check_clt_forward(lambda clt, x: forward(clt, x, cross=False))
    with pytest.raises(AssertionError, match="scaled units"):
        checks.check_clt_forward(lambda clt, x: forward(clt, x, scale=False))
    with pytest.raises(AssertionError, match=r"W_dec\[s\]\[:, l - s\]"):
        checks.check_clt_forward(lambda clt, x: forward(clt, x, offset=False))
    with pytest.raises(AssertionError, match="Return"):
        checks.check_clt_forward(lambda clt, x: forward(clt, x)[:, 0])

    checks.check_clt_loss(lambda clt, x, y: (clt(x) - y).pow(2).sum((-1, -2)).mean())
    with pytest.raises(AssertionError, match="averaged over layers"):
        checks.check_clt_loss(lambda clt, x, y: (clt(x) - y).pow(2).sum(-1).mean())
    with pytest.raises(AssertionError, match="averaged over dimensions"):
        checks.check_clt_loss(lambda clt, x, y: (clt(x) - y).pow(2).mean())
    with pytest.raises(AssertionError, match="last layer only"):
        checks.check_clt_loss(lambda clt, x, y: (clt(x)[:, -1] - y[:, -1]).pow(2).sum(-1).mean())
    with pytest.raises(AssertionError, match="one number"):
        checks.check_clt_loss(lambda clt, x, y: (clt(x) - y).pow(2).sum((-1, -2)))
