"""Checks for notebook 06's gradient exercises (every writer's output, every reader's gradient, EAP, EAP-IG) and for
the faithfulness curve, against :mod:`interp_utils.circuits.edge_attribution` and :mod:`~interp_utils.circuits.
discovery`, on tiny random models; :mod:`interp_utils.course.checks.circuit_discovery` re-exports them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils.circuits import discovery, edge_attribution, edge_graph
from interp_utils.circuits import reference_circuits as rc
from interp_utils.circuits.edge_graph import EdgeGraph
from interp_utils.core import hooks
from interp_utils.course.checks import answered, close


def _graph(n_layers: int, n_heads: int, has_mlp: bool) -> EdgeGraph:
    return EdgeGraph(n_layers, n_heads, has_mlp)


def _handset_case():
    model = rc.handset_model()
    tokens, corrupt = rc.repeated_pairs(3, 8, seed=5)
    return model, EdgeGraph.of(model), tokens, corrupt, rc.next_token_logit(tokens, 8)


def _random_case(mlp: bool = False, normalization: str | None = "LN"):
    """A 2-layer model (attention only unless ``mlp``) with random weights: every edge matters a little."""
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_heads=2, d_head=8, n_ctx=8, d_vocab=12, attn_only=not mlp,
                                  d_mlp=32 if mlp else None, act_fn="gelu",
                                  normalization_type=normalization, seed=4)  # fmt: skip
    model = HookedTransformer(cfg)
    if mlp:  # biases that are not zero, so that a head output holding b_O shows
        g = torch.Generator().manual_seed(5)
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.split(".")[-1].startswith("b_"):
                    param.add_(0.1 * torch.randn(param.shape, generator=g))
    tokens, corrupt = torch.randint(0, 12, (2, 4, 6), generator=torch.Generator().manual_seed(6))

    def metric(logits: Tensor) -> Tensor:
        return logits[:, -1, 3].mean() - logits[:, -1, 7].mean()

    return model, EdgeGraph.of(model), tokens, corrupt, metric


@answered
def check_writer_outputs(fn: Callable[[HookedTransformer, EdgeGraph, Tensor], Tensor]) -> None:
    model, graph, tokens, _, _ = _random_case(mlp=True)
    got = fn(model, graph, tokens)
    want = edge_graph.record_outputs(model, graph, tokens)
    if not isinstance(got, Tensor) or got.shape != want.shape:
        raise AssertionError(f"Return [batch, pos, writer, d_model] = {tuple(want.shape)} (writers: "
                             f"{', '.join(graph.upstream)}); got {tuple(getattr(got, 'shape', ()))}.")  # fmt: skip
    if got.requires_grad:
        raise AssertionError("Your outputs require grad: they are recorded values. Compute them in inference mode "
                             "(the einsum with W_O too): no gradient graph should hang on them.")  # fmt: skip
    with torch.inference_mode():
        _, cache = model.run_with_cache(tokens)
    if torch.allclose(got[:, :, 0], cache["hook_embed"], atol=1e-5):
        raise AssertionError("The embeddings' output is the token embedding plus the position embedding: read it "
                             "where the first block reads it (resid_pre of layer 0).")  # fmt: skip
    head = graph.head_up(1, 0)
    if torch.allclose(got[:, :, head] - want[:, :, head], model.b_O[1].expand_as(want[:, :, head]), atol=1e-5):
        raise AssertionError("Head 1.0's output holds b_O: the bias is added once per layer, not once per head, and "
                             "no edge carries it. Take z times the head's rows of W_O only.")  # fmt: skip
    swapped = want.clone()
    for layer in range(graph.n_layers):
        first = graph.head_up(layer, 0)
        order = [graph.mlp_up(layer)] + list(range(first, first + graph.n_heads))
        swapped[:, :, first : first + graph.n_heads + 1] = want[:, :, order]
    if torch.allclose(got, swapped, atol=1e-5):
        raise AssertionError("Follow graph.upstream's order: in each layer the heads first, then the MLP (it runs "
                             "after them).")  # fmt: skip
    if not torch.allclose(got, want, atol=1e-5):
        raise AssertionError("Your outputs differ from edge_graph.record_outputs on a 2-layer model with MLPs: the "
                             "embeddings, each head's z times its rows of W_O, each MLP's output.")  # fmt: skip
    resid = cache[hooks.name("resid_post", graph.n_layers - 1)]
    bias = sum(model.b_O[layer] for layer in range(graph.n_layers))
    if not torch.allclose(got.sum(2) + bias, resid, atol=1e-4):
        raise AssertionError("The writers' outputs plus the b_O biases must add up to the last residual stream.")


def _readers_in_head_order(graph: EdgeGraph) -> list[int]:
    """The readers listed head by head (each head's q, k, v together): the wrong order for graph.downstream."""
    order: list[int] = []
    for layer in range(graph.n_layers):
        order += [graph.head_down(layer, h, x) for h in range(graph.n_heads) for x in "qkv"]  # type: ignore[arg-type]
        order += [graph.mlp_down(layer)] if graph.has_mlp else []
    return order + [graph.logits]


@answered
def check_reader_gradients(fn: Callable[..., Tensor]) -> None:
    model, graph, tokens, _, _ = _random_case(normalization=None)  # no LayerNorm: the logits are linear in their input
    batch = len(tokens)

    def logit3(logits: Tensor) -> Tensor:
        return logits[:, -1, 3].mean()

    got = fn(model, graph, tokens, logit3)
    shape = (*tokens.shape, len(graph.downstream), model.cfg.d_model)
    if not isinstance(got, Tensor) or got.shape != shape:
        raise AssertionError(f"Return [batch, pos, reader, d_model] = {shape}, every position and every reader of "
                             f"graph.downstream; got {tuple(getattr(got, 'shape', ()))}.")  # fmt: skip
    want = torch.zeros(shape[:2] + shape[3:])
    want[:, -1] = model.W_U[:, 3].detach() / batch
    if not torch.allclose(got[:, :, graph.logits], want, atol=1e-5):
        raise AssertionError(
            f"Hand case, no LayerNorm: the metric logits[:, -1, 3].mean() over a batch of {batch} has the gradient "
            "W_U[:, 3] / batch at the logits' input at the last position, 0 at the others. Read the logits' input "
            "at the last block's resid_post."
        )
    model, graph, tokens, corrupt, metric = _random_case(mlp=True)
    got = fn(model, graph, tokens, metric)
    want = edge_attribution.downstream_gradients(model, graph, tokens, metric)
    if torch.allclose(got, want, atol=1e-5):
        other = edge_graph.record_outputs(model, graph, corrupt)[:, :, 0].clone()
        with_embed = fn(model, graph, tokens, metric, embed=lambda act: other)
        if torch.allclose(with_embed, want, atol=1e-6):
            raise AssertionError(
                "`embed` changed nothing: when it is given, the embeddings (resid_pre of layer 0) "
                "must be replaced by embed(act) before the blocks read them (EAP-IG needs this)."
            )
        close((with_embed - edge_attribution.downstream_gradients(model, graph, tokens, metric,
              embed=lambda act: other)).abs().max().item(), 0.0, "With `embed` given",
              "Return the gradients of the run whose embeddings are embed(act).", tol=1e-5)  # fmt: skip
        return
    cols = [graph.head_down(1, h, x) for x in ("q", "k", "v") for h in range(graph.n_heads)]
    if (got[:, :, cols] - got[:, :, cols[:1]]).abs().max() < 1e-7:
        raise AssertionError("Every query, key and value input of layer 1 got the same gradient: they read the "
                             "residual stream through their own copies. Turn on the per-head copies "
                             "(edge_graph.edge_hooks_enabled) and hook q_input, k_input, v_input.")  # fmt: skip
    if torch.allclose(got, want[:, :, _readers_in_head_order(graph)], atol=1e-5):
        raise AssertionError("Follow graph.downstream's order: in each layer every head's query, then every head's "
                             "key, then every value, then the MLP (graph.head_down gives the index).")  # fmt: skip
    if torch.allclose(got[:, -1], want[:, -1], atol=1e-5):
        raise AssertionError("Only the last position is right: keep the gradient at every position, an edge carries "
                             "the writer's output at all of them.")  # fmt: skip
    raise AssertionError("On a 2-layer model with MLPs and LayerNorm your gradients differ from "
                         "edge_attribution.downstream_gradients. Look at the MLP's input (mlp_in) and the logits' "
                         "(the last resid_post).")  # fmt: skip


def _eap_variant(model, graph, tokens, corrupt, metric, grads_on=None) -> Tensor:
    """EAP with the gradients taken on ``grads_on`` (the clean tokens when None)."""
    diff = edge_graph.record_outputs(model, graph, corrupt) - edge_graph.record_outputs(model, graph, tokens)
    grads = edge_attribution.downstream_gradients(model, graph, tokens if grads_on is None else grads_on, metric)
    return edge_attribution.edge_scores(graph, diff, grads)


@answered
def check_eap(fn: Callable[..., Tensor]) -> None:
    model, graph, tokens, corrupt, metric = _random_case(mlp=True)
    same = fn(model, graph, tokens, tokens, metric)
    if not isinstance(same, Tensor) or same.shape != (graph.n_edges,):
        raise AssertionError(f"Return one score per edge, ({graph.n_edges},) in graph.edges() order "
                             f"(graph.as_edges); got {tuple(getattr(same, 'shape', ()))}.")  # fmt: skip
    if same.abs().max() > 0:
        raise AssertionError("Clean and corrupted prompts the same: no writer's output moves, so every score must "
                             "be 0. Use corrupted − clean outputs.")  # fmt: skip
    got = fn(model, graph, tokens, corrupt, metric)
    want = edge_attribution.eap(model, graph, tokens, corrupt, metric)
    if torch.allclose(got, want, atol=1e-5):
        return
    if torch.allclose(got, -want, atol=1e-5):
        raise AssertionError("The sign is reversed: the patch moves each writer from its clean output to its "
                             "corrupted one, so the difference is corrupted − clean.")  # fmt: skip
    if torch.allclose(got, _eap_variant(model, graph, tokens, corrupt, metric, grads_on=corrupt), atol=1e-5):
        raise AssertionError("The gradients come from the corrupted run: EAP takes them on the clean run, the run "
                             "the patch starts from.")  # fmt: skip
    if torch.allclose(got * tokens.shape[1], want, atol=1e-5):
        raise AssertionError("Sum over positions, do not average: each position's patch adds to the effect.")
    raise AssertionError(
        "Your scores differ from edge_attribution.eap on a 2-layer model with MLPs: (corrupted − "
        "clean output of each writer) · (gradient at each reader), summed over batch and positions."
    )


def _ig_variant(model, graph, tokens, corrupt, metric, alphas, mean=True, start="corrupt") -> Tensor:
    """EAP-IG along the embeddings at ``alphas`` (from the corrupted input when ``start`` is "corrupt", from the clean
    one otherwise), the gradients averaged (``mean``) or summed."""
    clean_out, corrupt_out = (edge_graph.record_outputs(model, graph, t) for t in (tokens, corrupt))
    a, b = (corrupt_out, clean_out) if start == "corrupt" else (clean_out, corrupt_out)
    total = torch.zeros(*tokens.shape, len(graph.downstream), model.cfg.d_model)
    for alpha in alphas:
        mix = a[:, :, 0] + alpha * (b[:, :, 0] - a[:, :, 0])

        def embed(act: Tensor, x: Tensor = mix) -> Tensor:
            return x

        total += edge_attribution.downstream_gradients(model, graph, tokens, metric, embed=embed)
    return edge_attribution.edge_scores(graph, corrupt_out - clean_out, total / (len(alphas) if mean else 1))


@answered
def check_eap_ig(fn: Callable[..., Tensor]) -> None:
    model, graph, tokens, corrupt, metric = _random_case()
    one = fn(model, graph, tokens, corrupt, metric, 1)
    if not isinstance(one, Tensor) or one.shape != (graph.n_edges,):
        raise AssertionError(f"Return one score per edge, ({graph.n_edges},); got {tuple(getattr(one, 'shape', ()))}.")
    if not torch.allclose(one, edge_attribution.eap(model, graph, tokens, corrupt, metric), atol=1e-5):
        raise AssertionError("With one step the only input on the path is the clean one (α = 1): EAP-IG must equal "
                             "EAP. Check the path's last step and the scores.")  # fmt: skip
    steps = 3
    got = fn(model, graph, tokens, corrupt, metric, steps)
    want = edge_attribution.eap_ig(model, graph, tokens, corrupt, metric, steps)
    if torch.allclose(got, want, atol=1e-5):
        try:
            fn(model, graph, tokens, corrupt, metric, 0)
        except ValueError:
            return
        raise AssertionError("steps = 0 must raise a ValueError (there is no path to average over).")
    alphas = [k / steps for k in range(1, steps + 1)]
    wrong = [
        (dict(alphas=[k / steps for k in range(1, steps + 1)], mean=False), "Average the gradients over the steps "
         "(divide their sum by steps): the sum grows with the number of steps."),
        (dict(alphas=[k / (steps - 1) for k in range(steps)]), "The path's steps are α = 1/steps, ..., 1: α = 0 is the "
         "corrupted input itself, which is not a step."),
        (dict(alphas=alphas, start="clean"), "The path starts at the corrupted input and ends at the clean one (α = 1 "
         "is the clean embeddings)."),
        (dict(alphas=[1.0] * steps), "Every step ran on the clean embeddings: replace the embeddings with each "
         "interpolated input (the embed argument of your reader_gradients)."),
    ]  # fmt: skip
    for options, message in wrong:
        if torch.allclose(got, _ig_variant(model, graph, tokens, corrupt, metric, **options), atol=1e-5):  # type: ignore[arg-type]
            raise AssertionError(message)
    raise AssertionError("With 3 steps your scores differ from edge_attribution.eap_ig: the mean of the gradients "
                         "over the interpolated embeddings, times corrupted − clean outputs.")  # fmt: skip


def _curve_variant(model, graph, tokens, corrupt_tokens, metric, scores, sizes, invert=False, raw=False,
                   signed=False) -> Tensor:  # fmt: skip
    corrupt = edge_graph.record_outputs(model, graph, corrupt_tokens)
    with torch.inference_mode():
        clean_value, corrupt_value = float(metric(model(tokens))), float(metric(model(corrupt_tokens)))
    ranked = scores if signed else scores.abs()
    masks = []
    for n in sizes:
        keep = torch.zeros(len(scores), dtype=torch.bool)
        keep[torch.argsort(ranked, descending=True, stable=True)[:n]] = True
        kept = graph.as_matrix(keep.float()).bool()
        masks.append(graph.allowed & (kept if invert else ~kept))
    values = edge_graph.masked_metrics(model, graph, tokens, corrupt, torch.stack(masks), metric)
    return values if raw else (values - corrupt_value) / (clean_value - corrupt_value)


@answered
def check_faithfulness_curve(fn: Callable[..., Tensor]) -> None:
    model, graph, tokens, corrupt, metric = _handset_case()
    ends = fn(model, graph, tokens, corrupt, metric, torch.randn(graph.n_edges), [0, graph.n_edges])
    if not isinstance(ends, Tensor) or ends.shape != (2,):
        raise AssertionError(f"Return a tensor of one faithfulness per size, here (2,); got {ends!r}.")
    if torch.allclose(ends.double(), torch.tensor([1.0, 0.0], dtype=torch.float64), atol=1e-4):
        raise AssertionError("Size 0 gave the clean run and all edges the corrupted one: keep the top-n edges clean "
                             "and patch every other edge, not the reverse.")  # fmt: skip
    if not torch.allclose(ends.double(), torch.tensor([0.0, 1.0], dtype=torch.float64), atol=1e-4):
        raise AssertionError(f"Hand case: no edge kept is the corrupted run (0), every edge kept the clean run (1); "
                             f"got {ends.tolist()}. Normalise: (value − corrupted) / (clean − corrupted).")  # fmt: skip
    scores = torch.randn(graph.n_edges, generator=torch.Generator().manual_seed(7)) * 3
    sizes = [1, 3, 5, 10, 20]
    got = fn(model, graph, tokens, corrupt, metric, scores, sizes).double()
    want = discovery.faithfulness_curve(model, graph, tokens, corrupt, metric, scores, sizes).double()
    if torch.allclose(got, want, atol=1e-4):
        return
    variant = _curve_variant(model, graph, tokens, corrupt, metric, scores, sizes, signed=True).double()
    if torch.allclose(got, variant, atol=1e-4):
        raise AssertionError("Rank the edges by |score|: an edge whose patch lowers the metric matters as much.")
    raise AssertionError(f"Random scores, sizes {sizes}: expected {[round(v, 4) for v in want.tolist()]}, got "
                         f"{[round(v, 4) for v in got.tolist()]}. Keep the top-n edges by |score| clean, patch the "
                         "rest (edge_graph.masked_metrics), then normalise.")  # fmt: skip


@answered
def check_eap_scores(fn: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]) -> None:
    graph = _graph(1, 1, False)
    clean = torch.zeros(1, 1, 2, 2)
    corrupt = torch.tensor([[[[1.0, 0.0], [0.0, 2.0]]]])
    grads = torch.tensor([[[[1.0, 1.0], [2.0, 0.0], [0.0, 1.0], [3.0, 3.0]]]])
    got = fn(clean, corrupt, grads, graph.allowed)
    if not isinstance(got, Tensor) or got.shape != (2, 4):
        raise AssertionError(f"Return an [upstream, downstream] matrix, here (2, 4); got {getattr(got, 'shape', got)}.")
    want = torch.tensor([[1.0, 2.0, 0.0, 3.0], [0.0, 0.0, 0.0, 6.0]])
    if torch.allclose(got, -want):
        raise AssertionError("The sign is reversed: patching takes each sender from clean to corrupted, so the "
                             "difference is corrupted − clean.")  # fmt: skip
    if got[1, :3].abs().sum() > 0:
        raise AssertionError("A head's own output cannot reach its own inputs: zero every pair that is not an edge "
                             "(multiply by `allowed`).")  # fmt: skip
    if not torch.allclose(got, want):
        raise AssertionError(f"Hand case: expected {want.tolist()}, got {got.tolist()}.")
    g = torch.Generator().manual_seed(2)
    graph = _graph(2, 2, True)
    clean, corrupt = torch.randn(2, 3, 4, len(graph.upstream), 6, generator=g)
    grads = torch.randn(3, 4, len(graph.downstream), 6, generator=g)
    want = graph.as_matrix(edge_attribution.edge_scores(graph, corrupt - clean, grads))
    got = fn(clean, corrupt, grads, graph.allowed)
    if torch.allclose(got, want / 4, atol=1e-4):
        raise AssertionError("Sum over positions, as over the batch: each position's patch adds to the effect.")
    if not torch.allclose(got, want, atol=1e-4):
        raise AssertionError("On random outputs and gradients the scores differ from the reference: sum the product "
                             "over batch, position and d_model.")  # fmt: skip


@answered
def check_ig_inputs(fn: Callable[[Tensor, Tensor, int], Tensor]) -> None:
    clean, corrupt = torch.tensor([4.0, 0.0]), torch.tensor([0.0, 4.0])
    got = fn(clean, corrupt, 4)
    if not isinstance(got, Tensor) or got.shape != (4, 2):
        shape = getattr(got, "shape", got)
        raise AssertionError(f"Return one input per step, shape [steps, ...] = (4, 2); got {shape}.")
    want = torch.tensor([[1.0, 3.0], [2.0, 2.0], [3.0, 1.0], [4.0, 0.0]])
    if torch.allclose(got, torch.stack([corrupt + k / 4 * (clean - corrupt) for k in range(4)])):
        raise AssertionError("α = 0, 1/4, 2/4, 3/4 starts on the corrupted input and never reaches the clean one: the "
                             "last step must be the clean input (α = 1); the corrupted one is not a step.")  # fmt: skip
    if torch.allclose(got, want.flip(1)):
        raise AssertionError("The path goes from the corrupted input (α = 0) towards the clean one (α = 1).")
    if torch.allclose(got, torch.stack([corrupt + a * (clean - corrupt) for a in torch.linspace(0, 1, 4)])):
        raise AssertionError("α = 0, 1/3, 2/3, 1 puts one step on the corrupted input itself and spaces them unevenly: "
                             "use α = k / steps for k = 1 ... steps.")  # fmt: skip
    if not torch.allclose(got, want):
        raise AssertionError(f"Four steps from [0, 4] to [4, 0]: expected {want.tolist()}, got {got.tolist()}.")
    x, y = torch.randn(2, 3, 5, 7)
    if fn(x, y, 1).shape != (1, 3, 5, 7) or not torch.allclose(fn(x, y, 1)[0], x):
        raise AssertionError("With one step the only input is the clean one (plain EAP), with a leading axis of 1.")
