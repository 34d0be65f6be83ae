"""Notebook 05's checks pass the reference answers and reject plausible wrong ones with the message meant for them."""

import pytest
import torch
from test_attribution import PROMPT, make_transcoders

from interp_utils import attribution, hooks
from interp_utils import attribution_graph as graph
from interp_utils.course.checks import circuit_tracing as checks
from interp_utils.course.checks import circuit_tracing_core as core
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
    with pytest.raises(AssertionError, match="Return one number as a tensor"):
        checks.check_transcoder_loss(lambda tc, x, y: (tc(x) - y).pow(2).sum(-1).mean().item())

    def by_hand(model, transcoders, tokens, clean_inputs=False, layers=None, first=1):
        _, cache = model.run_with_cache(tokens)
        stored = {}

        def save(act, hook):
            stored[hook.layer()] = cache[hook.name] if clean_inputs else act

        def replace(act, hook):
            act = act.clone()
            act[:, first:] = transcoders[hook.layer()](stored[hook.layer()][:, first:])
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
    with pytest.raises(AssertionError, match=r"\(past BOS\)"):  # BOS replaced too
        checks.check_replacement_loss(lambda m, t, x: by_hand(m, t, x, first=0), bundled_model, tcs)


def freeze(cache, n_layers, final=True, replace=True, ln2=True):
    names = hooks.layer_names("pattern", n_layers) + hooks.layer_names("ln1_scale", n_layers)
    names += hooks.layer_names("ln2_scale", n_layers) if ln2 else []
    names += [hooks.name("ln_final_scale")] if final else []
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
    with pytest.raises(AssertionError, match=r"missing \['blocks.0.ln2.hook_scale'"):
        checks.check_freeze_hooks(lambda c, n: freeze(c, n, ln2=False), bundled_model)
    checks.check_error_terms(errors, bundled_model, tcs)
    with pytest.raises(AssertionError, match="sign is reversed"):
        checks.check_error_terms(lambda m, t, x: errors(m, t, x, sign=-1.0), bundled_model, tcs)
    with pytest.raises(AssertionError, match=r"Position 0 \(BOS\) has no features"):
        checks.check_error_terms(lambda m, t, x: errors(m, t, x, zero_bos=False), bundled_model, tcs)
    with pytest.raises(AssertionError, match=r"Return a \[layer, pos, d_model\] tensor"):  # stacked on the wrong axis
        checks.check_error_terms(lambda m, t, x: errors(m, t, x).transpose(0, 1), bundled_model, tcs)


def targets(logits, max_logits, logit_prob, plus_one=1, cap=True):
    probs = logits.softmax(-1)
    top = probs.topk(min(max_logits, len(probs)) if cap else len(probs))
    n = min(int((top.values.cumsum(0) < logit_prob).sum()) + plus_one, len(top.values))
    return top.indices[:n], top.values[:n]


def edge(local, features, target, source, times_activation=True, source_layer=True):
    leaves, readouts = local.linear_forward(1, features)
    layer, pos, feat = features[target].tolist()
    tc = local.transcoders[layer]
    pre = readouts[hooks.name("ln2_normalized", layer)][0, pos] @ (tc.W_enc[:, feat] / tc.in_scale)
    (grad,) = torch.autograd.grad(pre, leaves["mlp"])
    layer_s, pos_s, _ = features[source].tolist()
    value = grad[0, layer_s if source_layer else layer, pos_s] @ local.decoder_rows(features[source : source + 1])[0]
    return (value * local.feature_values(features[source : source + 1])[0] if times_activation else value).item()


def test_target_and_edge_checks(bundled_model, tcs):
    checks.check_logit_targets(targets)
    with pytest.raises(AssertionError, match="the token that reaches it included"):
        checks.check_logit_targets(lambda lg, m, p: targets(lg, m, p, plus_one=0))
    with pytest.raises(AssertionError, match="never more than max_logits"):
        checks.check_logit_targets(lambda lg, m, p: targets(lg, m, p, cap=False))
    with pytest.raises(AssertionError, match="Return the tokens' probabilities"):  # the logits beside them
        checks.check_logit_targets(lambda lg, m, p: (targets(lg, m, p)[0], lg[targets(lg, m, p)[0]]))
    checks.check_demeaned_unembedding(lambda W, ids: (W[:, ids] - W.mean(1, keepdim=True)).T)
    with pytest.raises(AssertionError, match="Subtract the mean over the vocabulary"):
        checks.check_demeaned_unembedding(lambda W, ids: W[:, ids].T)
    with pytest.raises(AssertionError, match="mean over the vocabulary \\(axis 1\\)"):
        checks.check_demeaned_unembedding(lambda W, ids: (W[:, ids] - W.mean(0, keepdim=True)[:, ids]).T)
    with pytest.raises(AssertionError, match="one direction per token"):  # not transposed
        checks.check_demeaned_unembedding(lambda W, ids: W[:, ids] - W.mean(1, keepdim=True))
    checks.check_feature_edge(edge, bundled_model, tcs)
    with pytest.raises(AssertionError, match="Multiply by the source's activation"):
        checks.check_feature_edge(lambda *a: edge(*a, times_activation=False), bundled_model, tcs)
    with pytest.raises(AssertionError, match="Backpropagate the target's pre-activation"):  # target and source swapped
        checks.check_feature_edge(lambda local, f, t, s: edge(local, f, t, t), bundled_model, tcs)
    with pytest.raises(
        AssertionError, match="Backpropagate the target's pre-activation"
    ):  # the gradient at the target's layer
        checks.check_feature_edge(lambda *a: edge(*a, source_layer=False), bundled_model, tcs)


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

    def raw(g):  # influence of |A| without normalising its rows
        A, w = g.adjacency.abs(), graph.logit_weights(g)
        inf = graph.influence(A / A.sum().clamp_min(1e-10), w)
        tokens, errs = inf[g.embeds].sum(), inf[g.errors].sum()
        return graph.graph_scores(g) | {"replacement": (tokens / (tokens + errs)).item()}

    with pytest.raises(AssertionError, match="Use the row-normalised"):
        checks.check_graph_scores(raw, ioi_graph)
    checks.check_total_effects(attribution.total_effects, ioi_graph)
    with pytest.raises(AssertionError, match="direct effect only"):
        checks.check_total_effects(lambda g, t: -g.adjacency[t, : g.n_features], ioi_graph)
    with pytest.raises(AssertionError, match="change is minus a_s"):
        checks.check_total_effects(lambda g, t: -attribution.total_effects(g, t), ioi_graph)

    def undivided(g, t):  # J and d not divided by the source activations
        n = g.n_features
        return -torch.linalg.solve((torch.eye(n) - g.adjacency[:n, :n]).T, g.adjacency[t, :n]) * g.activations

    with pytest.raises(AssertionError, match="J is adjacency / source activation"):
        checks.check_total_effects(undivided, ioi_graph)

    def ablation(local, g, node, target, frozen=True, sign=1.0, at=-1):
        token = int(g.logit_tokens[target - g.logits.start])
        layer, pos, feat = g.features[node].tolist()

        def value(logits):
            return (logits[at, token] - logits[at].mean()).item()

        ablated = local.run({(layer, pos, feat): 0.0}, frozen, frozen)
        return sign * (value(ablated) - value(local.run(None, frozen, frozen)))

    checks.check_ablation_effect(ablation, bundled_model, tcs, ioi_graph)
    with pytest.raises(AssertionError, match="sign is reversed"):
        checks.check_ablation_effect(lambda *a: ablation(*a, sign=-1.0), bundled_model, tcs, ioi_graph)
    with pytest.raises(AssertionError, match="Keep attention patterns and LayerNorm scales frozen"):
        checks.check_ablation_effect(lambda *a: ablation(*a, frozen=False), bundled_model, tcs, ioi_graph)
    with pytest.raises(AssertionError, match="compare the target token's logit"):
        checks.check_ablation_effect(lambda *a: ablation(*a, at=0), bundled_model, tcs, ioi_graph)


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


# --- the core exercises: the notebook's reference answers, and wrong ones each caught with its message ---


def _notebook_functions():
    """The answers of notebook 05's solution cells, defined by running those cells' definitions (not their checks)."""
    import json
    from pathlib import Path

    import interp_utils.tracing as tracing
    from interp_utils.tracing.attribution_graph import Pruned, normalise_rows

    nb = json.loads((Path(__file__).parents[1] / "notebooks" / "05_circuit_tracing.ipynb").read_text())
    scope = {"torch": torch, "hooks": hooks, "Pruned": Pruned, "normalise_rows": normalise_rows, "tracing": tracing}
    for cell in nb["cells"]:
        if "solution" in cell["metadata"].get("tags", []):
            source = "".join(cell["source"])
            exec("\n".join(line for line in source.splitlines() if not line.startswith("check_")), scope)
    return scope


NB = _notebook_functions()


def local_logits(model, transcoders, tokens, ablate=None, frozen=True, clean_inputs=False, zero_bos=True):
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[None])
        errs = errors(model, transcoders, tokens)
    stored = {}

    def save(act, hook):
        stored[hook.layer()] = cache[hook.name] if clean_inputs else act

    def replaced(act, hook):
        layer = hook.layer()
        f = transcoders[layer].encode(stored[layer][0])
        if zero_bos:
            f[0] = 0.0
        if ablate is not None and ablate[0] == layer:
            f[ablate[1], ablate[2]] = 0.0
        return (transcoders[layer].decode(f) + errs[layer])[None]

    fwd = freeze(cache, model.cfg.n_layers) if frozen else []
    for layer in range(model.cfg.n_layers):
        fwd += [(hooks.name("ln2_normalized", layer), save), (hooks.name("mlp_out", layer), replaced)]
    with torch.no_grad():
        return model.run_with_hooks(tokens[None], fwd_hooks=fwd)[0]


def test_local_logits_check(bundled_model, tcs):
    core.check_local_logits(local_logits, bundled_model, tcs)
    scope = dict(NB)
    core.check_local_logits(scope["local_logits"], bundled_model, tcs)
    with pytest.raises(AssertionError, match="attention patterns and LayerNorm scales responded"):
        core.check_local_logits(lambda *a: local_logits(*a, frozen=False), bundled_model, tcs)
    with pytest.raises(AssertionError, match="recompute every later layer's features"):
        core.check_local_logits(lambda *a: local_logits(*a, clean_inputs=True), bundled_model, tcs)
    with pytest.raises(AssertionError, match="no features at BOS"):
        core.check_local_logits(lambda *a: local_logits(*a, zero_bos=False), bundled_model, tcs)
    with pytest.raises(AssertionError, match=r"\[pos, vocab\]"):
        core.check_local_logits(lambda *a: local_logits(*a)[None], bundled_model, tcs)


def adjacency(local, logit_dirs, batch_size=128, times_act=True, bos_error=False, offset=True, logit_rows=True):
    """The notebook's answer, with switches for the usual mistakes."""
    features, acts = local.active_features()
    L, n_pos, n_feat, n_logits = local.n_layers, len(local.tokens), len(features), len(logit_dirs)
    n_nodes = n_feat + L * n_pos + n_pos + n_logits
    names = [*hooks.layer_names("ln2_normalized", L), hooks.name("ln_final_normalized")]
    encoders = torch.zeros(n_feat, logit_dirs.shape[1])
    for layer in range(L):
        mine = (features[:, 0] == layer).nonzero().squeeze(1)
        encoders[mine] = local.replacement.encoder_vectors(layer, features[mine, 2])[0]
    directions = torch.cat([encoders, logit_dirs])
    where = torch.cat([features[:, 0], torch.full((n_logits,), L)])
    at = torch.cat([features[:, 1], torch.full((n_logits,), n_pos - 1)])
    first_logit = n_nodes - n_logits if logit_rows else n_feat
    rows_of = torch.cat([torch.arange(n_feat), torch.arange(first_logit, first_logit + n_logits)])
    decoders = local.decoder_rows(features) * (acts[:, None] if times_act else 1.0)
    errs = torch.stack(local.errors) if bos_error else local.error_nodes()
    copies = min(batch_size, len(directions))
    leaves, readouts = local.linear_forward(copies, features)
    out = torch.zeros(n_nodes, n_nodes)
    for start in range(0, len(directions), copies):
        batch = torch.arange(start, min(start + copies, len(directions)))
        n, used = len(batch), where[batch].unique().tolist()
        grads = [torch.zeros_like(readouts[names[o]]) for o in used]
        for o, grad in zip(used, grads, strict=True):
            mine = (where[batch] == o).nonzero().squeeze(1)
            grad[mine, at[batch][mine]] = directions[batch][mine]
        outputs, inputs = [readouts[names[o]] for o in used], [leaves["mlp"], leaves["embed"]]
        g_mlp, g_emb = torch.autograd.grad(outputs, inputs, grads, retain_graph=True, allow_unused=True)
        g_mlp = torch.zeros_like(leaves["mlp"]) if g_mlp is None else g_mlp
        g_emb = torch.zeros_like(leaves["embed"]) if g_emb is None else g_emb
        rows = rows_of[batch] if offset else rows_of[: len(batch)]
        for layer in range(L):
            mine = (features[:, 0] == layer).nonzero().squeeze(1)
            per_pos = g_mlp[:n, layer] @ decoders[mine].T
            out[rows[:, None], mine] = per_pos[:, features[mine, 1], torch.arange(len(mine))]
        out[rows, n_feat : n_feat + L * n_pos] = (g_mlp[:n] * errs).sum(-1).flatten(1)
        out[rows, n_feat + L * n_pos : n_nodes - n_logits] = (g_emb[:n] * local.embed).sum(-1)
    return out


def test_attribution_check(bundled_model, tcs):
    core.check_attribution(adjacency, bundled_model, tcs)
    core.check_attribution(NB["my_adjacency"], bundled_model, tcs)
    with pytest.raises(AssertionError, match="times its activation"):
        core.check_attribution(lambda *a, **k: adjacency(*a, **k, times_act=False), bundled_model, tcs)
    with pytest.raises(AssertionError, match="use local.error_nodes"):  # BOS's error counted as a node
        core.check_attribution(lambda *a, **k: adjacency(*a, **k, bos_error=True), bundled_model, tcs)
    with pytest.raises(AssertionError, match="which rows a batch of targets fills"):  # every batch into the first rows
        core.check_attribution(lambda *a, **k: adjacency(*a, **k, offset=False), bundled_model, tcs)
    with pytest.raises(AssertionError, match="each logit's row is row"):  # logit rows right after the features
        core.check_attribution(lambda *a, **k: adjacency(*a, **k, logit_rows=False), bundled_model, tcs)


def pruning(g, node_t=0.8, edge_t=0.98, keep_io=True, recompute=True, loop=True, normalise=True):
    """prune(), with switches for the usual mistakes."""
    A, w = g.adjacency, graph.logit_weights(g)
    norm = graph.normalise_rows if normalise else (lambda a: a.abs())
    node_influence = graph.influence(norm(A), w)
    nodes = node_influence >= graph.threshold(node_influence, node_t)
    if keep_io:
        nodes[g.embeds.start :] = True
    kept = A * nodes[:, None] * nodes[None, :]
    inf = graph.influence(graph.normalise_rows(kept), w) if recompute else node_influence
    edge_scores = graph.normalise_rows(kept) * (inf + w)[:, None]
    edges = edge_scores >= graph.threshold(edge_scores.flatten(), edge_t)
    n_feat, inner = g.n_features, g.embeds.start
    while True:
        before = nodes.clone()
        edges &= nodes[:, None] & nodes[None, :]
        nodes[:inner] &= edges[:, :inner].any(0)
        nodes[:n_feat] &= edges[:n_feat].any(1)
        if torch.equal(nodes, before) or not loop:
            return graph.Pruned(nodes, edges, node_influence)


def test_prune_check(ioi_graph):
    core.check_prune(pruning, ioi_graph)
    core.check_prune(NB["my_prune"], ioi_graph)
    core.check_prune(graph.prune, ioi_graph)
    with pytest.raises(AssertionError, match="Token and logit nodes are always kept"):
        core.check_prune(lambda *a: pruning(*a, keep_io=False), ioi_graph)
    with pytest.raises(AssertionError, match="the influence of the row-normalised"):
        core.check_prune(lambda *a: pruning(*a, normalise=False), ioi_graph)
    with pytest.raises(AssertionError, match="the influence recomputed on that graph"):
        core.check_prune(lambda *a: pruning(*a, recompute=False), ioi_graph)
    with pytest.raises(AssertionError, match="until nothing changes"):
        core.check_prune(lambda *a: pruning(*a, loop=False), ioi_graph)


def test_clt_core_checks():
    checks.check_clt_forward(NB["clt_forward"])
    checks.check_clt_loss(NB["clt_loss"])
    core.check_clt_nmse(NB["nmse_by_layer"])

    def no_relu(clt, x):  # TopK without the ReLU: negative pre-activations kept
        feats = []
        for s in range(x.shape[1]):
            pre = x[:, s] / clt.in_scale[s] @ clt.W_enc[s] + clt.b_enc[s]
            top = pre.topk(clt.cfg.k, dim=-1)
            feats.append(torch.zeros_like(pre).scatter(-1, top.indices, top.values))
        out = [clt.b_dec[t] + sum(feats[s] @ clt.W_dec[s][:, t - s] for s in range(t + 1)) for t in range(x.shape[1])]
        return torch.stack([y * clt.out_scale[t] for t, y in enumerate(out)], 1)

    with pytest.raises(AssertionError, match="through a ReLU"):
        checks.check_clt_forward(no_relu)
    y_hat = lambda p, y: (p - y).pow(2).sum((0, 2))  # noqa: E731
    with pytest.raises(AssertionError, match="subtract each dimension's mean"):
        core.check_clt_nmse(lambda p, y: (y_hat(p, y) / y.pow(2).sum((0, 2))).tolist())
    with pytest.raises(AssertionError, match="per-dimension ratio"):
        core.check_clt_nmse(lambda p, y: ((p - y).pow(2).sum(0) / (y - y.mean(0)).pow(2).sum(0)).mean(-1).tolist())
    with pytest.raises(AssertionError, match="each layer is normalised by its own"):
        core.check_clt_nmse(lambda p, y: (y_hat(p, y) / (y - y.mean(0)).pow(2).sum() * 3).tolist())
