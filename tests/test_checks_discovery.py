"""Notebook 06's checks pass the reference answers and reject plausible wrong ones with the message meant for them."""

import pytest
import torch

from interp_utils import discovery, edge_graph, hooks
from interp_utils import reference_circuits as rc
from interp_utils.circuits.edge_graph import EdgeGraph
from interp_utils.circuits.heads import head_label
from interp_utils.core.metrics import normalised_metric
from interp_utils.course.checks import circuit_discovery as checks
from interp_utils.course.checks import circuit_discovery_core as core


def test_count_edges_and_patched_input():
    checks.check_count_edges(lambda n_layers, n_heads, mlp: EdgeGraph(n_layers, n_heads, mlp).n_edges)

    def no_same_layer(n_layers, n_heads, mlp):  # an MLP that does not read its own layer's heads
        return EdgeGraph(n_layers, n_heads, mlp).n_edges - (n_layers * n_heads if mlp else 0)

    with pytest.raises(AssertionError, match="the heads of its own layer"):
        checks.check_count_edges(no_same_layer)
    with pytest.raises(AssertionError, match="query, key and value inputs"):  # one input per head
        checks.check_count_edges(lambda n_layers, n_heads, mlp: EdgeGraph(n_layers, n_heads, mlp).n_edges // 3)

    def no_logits(n_layers, n_heads, mlp):  # the heads' and MLPs' inputs only
        graph = EdgeGraph(n_layers, n_heads, mlp)
        return graph.n_edges - len(graph.upstream)

    with pytest.raises(AssertionError, match="Add the logits' edges"):
        checks.check_count_edges(no_logits)

    def patched_input(current, outputs, corrupt, patched):
        return current + torch.einsum("u,...ud->...d", patched.float(), corrupt - outputs)

    checks.check_patched_input(patched_input)
    with pytest.raises(AssertionError, match="returned the corrupted output alone"):
        checks.check_patched_input(lambda c, o, x, p: torch.einsum("u,...ud->...d", p.float(), x))
    with pytest.raises(AssertionError, match="sign is reversed"):
        checks.check_patched_input(lambda c, o, x, p: c + torch.einsum("u,...ud->...d", p.float(), o - x))
    with pytest.raises(AssertionError, match=r"expected \[3, 2\]"):  # every sender patched, whatever `patched` says
        checks.check_patched_input(lambda c, o, x, p: c + (x - o).sum(-2))


def test_kl_and_one_edge_patch():
    def kl(clean, logits, where):
        return discovery.kl_divergence(clean, where)(logits)

    checks.check_kl_from_clean(kl)
    with pytest.raises(AssertionError, match=r"KL\(patched ‖ clean\)"):
        checks.check_kl_from_clean(lambda c, x, w: kl(x, c, w))
    with pytest.raises(AssertionError, match="where` is True only"):
        checks.check_kl_from_clean(lambda c, x, w: kl(c, x, torch.ones_like(w)))
    with pytest.raises(AssertionError, match="clean run from itself"):  # the patched logits used as log-probabilities
        checks.check_kl_from_clean(lambda c, x, w: (c.softmax(-1) * (c.log_softmax(-1) - x)).sum(-1)[w].mean())

    def patch_one_edge(model, tokens, corrupt_tokens, sender, receiver, metric, sign=1.0, whole_head=False,
                       all_heads=False):  # fmt: skip
        with torch.inference_mode():
            _, clean = model.run_with_cache(tokens)
            _, corrupt = model.run_with_cache(corrupt_tokens)

        def output(cache):
            if sender == "embed":
                return cache[hooks.name("resid_pre", 0)]
            layer, head = sender
            return cache[hooks.name("z", layer)][:, :, head] @ model.W_O[layer, head]

        delta = sign * (output(corrupt) - output(clean))
        if whole_head:  # the sender's output patched everywhere: activation patching, not edge patching
            layer, head = sender

            def hook(z, hook):
                z = z.clone()
                z[:, :, head] = corrupt[hook.name][:, :, head]
                return z

            point = hooks.name("z", layer)
        elif receiver == "logits":
            point, hook = hooks.name("resid_post", model.cfg.n_layers - 1), lambda act, hook: act + delta
        else:
            layer, head, letter = receiver
            point = hooks.name(f"{letter}_input", layer)

            def hook(act, hook):
                act = act.clone()
                act[:, :, slice(None) if all_heads else head] += delta[:, :, None] if all_heads else delta
                return act

        with torch.inference_mode(), edge_graph.edge_hooks_enabled(model):
            return (metric(model.run_with_hooks(tokens, fwd_hooks=[(point, hook)])) - metric(model(tokens))).item()

    checks.check_patch_one_edge(patch_one_edge)
    with pytest.raises(AssertionError, match="sign is reversed"):
        checks.check_patch_one_edge(lambda *a: patch_one_edge(*a, sign=-1.0))
    with pytest.raises(AssertionError, match="activation patching"):
        checks.check_patch_one_edge(lambda *a: patch_one_edge(*a, whole_head=a[3] != "embed"))
    with pytest.raises(AssertionError, match="every head of layer 1"):
        checks.check_patch_one_edge(lambda *a: patch_one_edge(*a, all_heads=True))


def test_eap_ig_and_acdc_search():
    def eap_scores(clean, corrupt, grads, allowed):
        return torch.einsum("bpud,bpwd->uw", corrupt - clean, grads) * allowed

    checks.check_eap_scores(eap_scores)
    with pytest.raises(AssertionError, match="sign is reversed"):
        checks.check_eap_scores(lambda c, x, g, a: eap_scores(x, c, g, a))
    with pytest.raises(AssertionError, match="not an edge"):
        checks.check_eap_scores(lambda c, x, g, a: eap_scores(c, x, g, torch.ones_like(a)))
    with pytest.raises(AssertionError, match="Sum over positions"):
        checks.check_eap_scores(lambda c, x, g, a: eap_scores(c, x, g, a) / c.shape[1])

    def ig_inputs(clean, corrupt, steps):
        alphas = torch.arange(1, steps + 1, dtype=clean.dtype) / steps
        return corrupt + alphas.view(-1, *[1] * clean.ndim) * (clean - corrupt)

    checks.check_ig_inputs(ig_inputs)
    with pytest.raises(AssertionError, match="from the corrupted input"):
        checks.check_ig_inputs(lambda c, x, s: ig_inputs(x, c, s))
    with pytest.raises(AssertionError, match="k / steps"):
        checks.check_ig_inputs(lambda c, x, s: x + torch.linspace(0, 1, s).view(-1, *[1] * c.ndim) * (c - x))
    with pytest.raises(AssertionError, match="never reaches the clean one"):
        checks.check_ig_inputs(lambda c, x, s: x + (torch.arange(s) / s).view(-1, *[1] * c.ndim) * (c - x))

    checks.check_acdc_search(lambda graph, measure, tau: discovery.acdc_search(graph, measure, tau)[0])
    for flags, message in [
        (dict(backwards=False), "from the logits backwards"),
        (dict(update=False), "new baseline"),
        (dict(orphans=False), "without measuring"),
        (dict(signed=False), "not its size"),  # abs(value − current) < τ: caught where a removal lowers the metric
    ]:
        with pytest.raises(AssertionError, match=message):
            checks.check_acdc_search(lambda g, m, t, flags=flags: checks._acdc_variant(g, m, t, **flags))

    def at_most_tau(graph, measure, tau):  # removes an edge whose change equals τ: at τ = 0, every idle edge
        return discovery.acdc_search(graph, measure, tau + 1e-12)[0]

    with pytest.raises(AssertionError, match="strictly"):
        checks.check_acdc_search(at_most_tau)


def test_scoring_checks():
    checks.check_roc_points(discovery.roc)
    with pytest.raises(AssertionError, match=r"\|score\|"):
        checks.check_roc_points(lambda s, t: discovery.roc(s.clamp_min(0) + 1e-9 * torch.arange(len(s)), t))
    with pytest.raises(AssertionError, match="Tied scores"):
        checks.check_roc_points(lambda s, t: discovery.roc(s.abs() + 1e-6 * torch.arange(len(s)), t))
    with pytest.raises(AssertionError, match=r"runs from \(0, 0\)"):  # the first point dropped
        checks.check_roc_points(lambda s, t: tuple(r[1:] for r in discovery.roc(s, t)))
    checks.check_area_under(discovery.auc)
    with pytest.raises(AssertionError, match="trapezoids"):  # left rectangles
        checks.check_area_under(lambda f, t: float(((f[1:] - f[:-1]) * t[:-1]).sum()))
    with pytest.raises(AssertionError, match="trapezoids"):  # right rectangles
        checks.check_area_under(lambda f, t: float(((f[1:] - f[:-1]) * t[1:]).sum()))
    with pytest.raises(AssertionError, match="trapezoids"):  # the mean height, whatever the widths
        checks.check_area_under(lambda f, t: float(t.mean()))
    checks.check_top_n(discovery.top_edges)
    with pytest.raises(AssertionError, match="largest"):
        checks.check_top_n(lambda s, n: discovery.top_edges(s.clamp_min(0), n))
    with pytest.raises(AssertionError, match="not the smallest"):
        checks.check_top_n(lambda s, n: discovery.top_edges(1 / s.abs(), n))
    with pytest.raises(AssertionError, match="bool mask"):  # the indices, not a mask
        checks.check_top_n(lambda s, n: torch.argsort(s.abs(), descending=True)[:n])
    checks.check_faithfulness(normalised_metric)
    with pytest.raises(AssertionError, match="subtract it first"):
        checks.check_faithfulness(lambda v, c, x: v / c)
    with pytest.raises(AssertionError, match="sign included"):
        checks.check_faithfulness(lambda v, c, x: (v - x) / abs(c - x))
    with pytest.raises(AssertionError, match="must map to 1"):  # divided by the clean value, not the range
        checks.check_faithfulness(lambda v, c, x: (v - x) / c)


def test_reference_edge_checks():
    def class_edges(graph, classes, connections):
        return set(rc.class_pairs(graph, classes))

    checks.check_class_edges(class_edges)

    def every_input(graph, classes, connections):
        return class_edges(graph, classes, connections) | {
            (u, d[:-1] + x) for u, d in class_edges(graph, classes, connections) if d != "logits" for x in "qkv"
        }

    with pytest.raises(AssertionError, match="inputs the rule names"):
        checks.check_class_edges(every_input)

    def no_order(graph, classes, connections):
        pairs = set()
        for sender, receiver, inputs in connections:
            ups = ["embed"] if sender == "input" else [head_label(h) for h in classes.get(sender, [])]
            downs = ["logits"] if receiver == "output" else [
                f"{head_label(h)}.{x}" for h in classes.get(receiver, []) for x in inputs
            ]  # fmt: skip
            pairs |= {(u, d) for u in ups for d in downs}
        return pairs

    with pytest.raises(AssertionError, match="its own layer or an earlier one"):
        checks.check_class_edges(no_order)
    with pytest.raises(AssertionError, match="Missing"):  # the embeddings' rules ("input") left out
        checks.check_class_edges(lambda g, c, conn: {(u, d) for u, d in class_edges(g, c, conn) if u != "embed"})

    def induction_edges(previous, induction, query=False, values=True):
        pairs = {("embed", f"{head_label(p)}.v") for p in previous if values}
        pairs |= {(head_label(i), "logits") for i in induction} | {("embed", f"{head_label(i)}.{x}") for i in induction
                                                                   for x in "qv"}  # fmt: skip
        pairs |= {(head_label(p), f"{head_label(i)}.{'q' if query else 'k'}") for p in previous for i in induction}
        return pairs

    checks.check_induction_edges(induction_edges)
    with pytest.raises(AssertionError, match="keys"):
        checks.check_induction_edges(lambda p, i: induction_edges(p, i, query=True))
    with pytest.raises(AssertionError, match="feed its values"):
        checks.check_induction_edges(lambda p, i: induction_edges(p, i, values=False))
    with pytest.raises(AssertionError, match="Missing"):  # the induction heads' queries left out
        checks.check_induction_edges(lambda p, i: induction_edges(p, i) - {("embed", f"{head_label(h)}.q") for h in i})


def test_the_handset_case_is_small():
    model, graph, tokens, corrupt, _ = core._handset_case()
    assert tokens.shape == corrupt.shape == (3, 16) and graph.n_edges == 6 + 18 + 5
    assert rc.edge_mask(graph, rc.HANDSET_CIRCUIT).sum() == 5


def writer_outputs(model, graph, tokens, bias=False, token_only=False, mlp_first=False, grad=False):
    """Every writer's output, [batch, pos, writer, d_model] (the flags: plausible mistakes)."""
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    with torch.enable_grad() if grad else torch.no_grad():  # grad: W_O applied with gradients on
        parts = [(cache["hook_embed"] if token_only else cache[hooks.name("resid_pre", 0)])[:, :, None]]
        for layer in range(graph.n_layers):
            heads = torch.einsum("bphz,hzd->bphd", cache[hooks.name("z", layer)], model.W_O[layer])
            heads = heads + model.b_O[layer] if bias else heads
            mlp = [cache[hooks.name("mlp_out", layer)][:, :, None]] if graph.has_mlp else []
            parts += mlp + [heads] if mlp_first else [heads] + mlp
        return torch.cat(parts, dim=2)


def test_writer_outputs():
    checks.check_writer_outputs(writer_outputs)
    for flag, message in [("bias", "b_O"), ("token_only", "position embedding"), ("mlp_first", "heads first"),
                          ("grad", "require grad")]:  # fmt: skip
        with pytest.raises(AssertionError, match=message):
            checks.check_writer_outputs(lambda m, g, t, flag=flag: writer_outputs(m, g, t, **{flag: True}))


def reader_gradients(model, graph, tokens, metric, embed=None, shared=False, head_order=False, last_only=False):
    """The gradient of ``metric`` at every reader's input (the flags: plausible mistakes)."""
    points = []
    for layer in range(graph.n_layers):
        for letter in "qkv":
            name = hooks.name("resid_pre" if shared else f"{letter}_input", layer)
            points.append((name, [graph.head_down(layer, h, letter) for h in range(graph.n_heads)]))
        if graph.has_mlp:
            points.append((hooks.name("mlp_in", layer), [graph.mlp_down(layer)]))
    points.append((hooks.name("resid_post", graph.n_layers - 1), [graph.logits]))
    inputs = {}

    def start(act, hook):
        inputs[hook.name] = (act if embed is None else embed(act)).detach().requires_grad_(True)
        return inputs[hook.name]

    def keep(act, hook):
        inputs[hook.name] = act

    names = list(dict.fromkeys(name for name, _ in points))
    fwd = [(hooks.name("resid_pre", 0), start)] + [(name, keep) for name in names if name != hooks.name("resid_pre", 0)]
    with torch.enable_grad(), edge_graph.edge_hooks_enabled(model):
        value = metric(model.run_with_hooks(tokens, fwd_hooks=fwd))
        grads = dict(zip(names, torch.autograd.grad(value, [inputs[n] for n in names]), strict=True))
    out = torch.zeros(*tokens.shape, len(graph.downstream), model.cfg.d_model)
    for name, readers in points:
        grad = grads.get(name)
        if grad is None:
            continue
        if shared:
            grad = grad[:, :, None].expand(*tokens.shape, len(readers), -1)
        out[:, :, readers] = grad.reshape(*tokens.shape, len(readers), -1)
    if head_order:
        out = out[:, :, core._readers_in_head_order(graph)]
    if last_only:
        out[:, :-1] = 0
    return out


def test_reader_gradients():
    checks.check_reader_gradients(reader_gradients)
    for flags, message in [
        (dict(shared=True), "got the same gradient"),
        (dict(head_order=True), "graph.downstream's order"),
        (dict(last_only=True), "every position"),
    ]:
        with pytest.raises(AssertionError, match=message):
            checks.check_reader_gradients(lambda *a, embed=None, flags=flags: reader_gradients(*a, embed, **flags))
    with pytest.raises(AssertionError, match="`embed` changed nothing"):
        checks.check_reader_gradients(lambda m, g, t, f, embed=None: reader_gradients(m, g, t, f))


def eap(model, graph, tokens, corrupt_tokens, metric, sign=1.0, on_corrupt=False, per_position=False):
    clean, corrupt = writer_outputs(model, graph, tokens), writer_outputs(model, graph, corrupt_tokens)
    grads = reader_gradients(model, graph, corrupt_tokens if on_corrupt else tokens, metric)
    scores = sign * torch.einsum("bpud,bpwd->uw", corrupt - clean, grads) / (tokens.shape[1] if per_position else 1)
    return graph.as_edges(scores)


def test_eap():
    checks.check_eap(eap)
    for flags, message in [
        (dict(sign=-1.0), "sign is reversed"),
        (dict(on_corrupt=True), "corrupted run"),
        (dict(per_position=True), "do not average"),
    ]:
        with pytest.raises(AssertionError, match=message):
            checks.check_eap(lambda *a, flags=flags: eap(*a, **flags))
    with pytest.raises(AssertionError, match="one score per edge"):  # the [writer, reader] matrix
        checks.check_eap(lambda m, g, *a: g.as_matrix(eap(m, g, *a)))


def eap_ig(model, graph, tokens, corrupt_tokens, metric, steps, alphas=None, total=False, check_steps=True):
    if steps < 1 and check_steps:
        raise ValueError(steps)
    clean, corrupt = writer_outputs(model, graph, tokens), writer_outputs(model, graph, corrupt_tokens)
    alphas = [k / steps for k in range(1, steps + 1)] if alphas is None else alphas(steps)
    grads = sum(reader_gradients(model, graph, tokens, metric, embed=lambda act, a=a: corrupt[:, :, 0] + a * (
        clean[:, :, 0] - corrupt[:, :, 0])) for a in alphas)  # fmt: skip
    return graph.as_edges(torch.einsum("bpud,bpwd->uw", corrupt - clean, grads / (1 if total else len(alphas))))


def test_eap_ig():
    checks.check_eap_ig(eap_ig)
    for flags, message in [
        (dict(total=True), "Average the gradients"),
        (dict(alphas=lambda s: [k / s for k in range(s)]), "With one step"),  # α = 0 in, α = 1 out: wrong at 1 step
        (dict(alphas=lambda s: [k / (s - 1) for k in range(s)] if s > 1 else [1.0]), "not a step"),  # linspace(0, 1)
        (dict(alphas=lambda s: [1 - k / s for k in range(1, s + 1)] if s > 1 else [1.0]), "starts at the corrupted"),
        (dict(alphas=lambda s: [1.0] * s), "Every step ran on the clean"),
        (dict(check_steps=False, alphas=lambda s: [k / s for k in range(1, s + 1)] or [1.0]), "steps = 0"),
    ]:
        with pytest.raises(AssertionError, match=message):
            checks.check_eap_ig(lambda *a, flags=flags: eap_ig(*a, **flags))


def faithfulness_curve(model, graph, tokens, corrupt_tokens, metric, scores, sizes, invert=False, raw=False,
                       signed=False):  # fmt: skip
    return core._curve_variant(model, graph, tokens, corrupt_tokens, metric, scores, sizes, invert, raw, signed)


def test_faithfulness_curve():
    checks.check_faithfulness_curve(faithfulness_curve)
    for flag, message in [("invert", "not the reverse"), ("raw", "Normalise"), ("signed", r"\|score\|")]:
        with pytest.raises(AssertionError, match=message):
            checks.check_faithfulness_curve(lambda *a, flag=flag: faithfulness_curve(*a, **{flag: True}))
