"""Checks for notebook 05's exercises (circuit tracing), each on cases with known answers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.course.checks import answered, close
from interp_utils.course.checks.circuit_tracing_core import (  # the core exercises' checks, re-exported
    check_attribution as check_attribution,
)
from interp_utils.course.checks.circuit_tracing_core import check_clt_nmse as check_clt_nmse
from interp_utils.course.checks.circuit_tracing_core import check_local_logits as check_local_logits
from interp_utils.course.checks.circuit_tracing_core import check_prune as check_prune
from interp_utils.data import activations
from interp_utils.dictionaries.clt import CLTConfig, CrossLayerTranscoder
from interp_utils.dictionaries.sae import SAE, SAEConfig
from interp_utils.dictionaries.transcoders import Transcoders, replacement_hooks
from interp_utils.tracing import attribution
from interp_utils.tracing.attribution import LocalReplacement, frozen_names
from interp_utils.tracing.attribution_graph import (
    AttributionGraph,
    graph_scores,
    influence,
    logit_weights,
    normalise_rows,
)


@answered
def check_influence(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Influence on a hand-made chain emb -> f1 -> f2 -> logit (plus a direct emb -> logit edge), and on a random
    acyclic graph against the closed form w ((I - A)^-1 - I)."""
    A = torch.zeros(4, 4)  # nodes: 0 emb, 1 f1, 2 f2, 3 logit; rows are targets
    A[1, 0], A[2, 1], A[3, 2], A[3, 0] = 1.0, 1.0, 0.5, 0.5
    w = torch.tensor([0.0, 0.0, 0.0, 1.0])
    expected = torch.tensor([1.0, 0.5, 0.5, 0.0])  # emb: 0.5 direct + 0.5 through f1 and f2
    got = fn(A, w)
    if got.shape != w.shape or not torch.allclose(got, expected, atol=1e-5):
        raise AssertionError(
            f"On the chain emb->f1->f2->logit with a direct emb->logit edge expected {expected.tolist()}, got "
            f"{got.tolist() if torch.is_tensor(got) else got}. Sum w A^k over k >= 1: paths of every length."
        )
    torch.manual_seed(0)
    A = torch.rand(6, 6).tril(-1)
    A = A / A.sum(1, keepdim=True).clamp_min(1e-10)
    w = torch.rand(6)
    closed = w @ (torch.linalg.inv(torch.eye(6) - A) - torch.eye(6))
    if not torch.allclose(fn(A, w), closed, atol=1e-5):
        raise AssertionError("On a random acyclic graph the result differs from w ((I - A)^-1 - I).")
    print("influence: correct.")


@answered
def check_threshold(fn: Callable[[Tensor, float], Tensor]) -> None:
    """The pruning threshold: the smallest score among the largest scores that make up the fraction."""
    scores = torch.tensor([0.1, 0.4, 0.2, 0.3])
    cases = {0.5: 0.3, 0.7: 0.3, 0.8: 0.2, 1.0: 0.1, 0.0: 0.4}
    for fraction, expected in cases.items():
        got = float(fn(scores, fraction))
        if abs(got - expected) > 1e-6:
            raise AssertionError(
                f"For scores {scores.tolist()} and fraction {fraction} expected {expected} (sorted descending, "
                f"the cumulative shares are 0.4, 0.7, 0.9, 1.0: keep scores until the share reaches the fraction), "
                f"got {got}."
            )
    got = float(fn(scores * 10, 0.5))
    if abs(got - 3.0) > 1e-5:
        raise AssertionError(
            f"For scores {(scores * 10).tolist()} (total 10) and fraction 0.5 expected 3.0, got {got}: the shares are "
            "cumulative sums divided by the total, not the raw sums."
        )
    print("threshold: correct.")


# --- transcoders and the replacement model ---


def _tokens(model: HookedTransformer, n: int = 4, n_ctx: int = 24, seed: int = 7) -> Tensor:
    return next(activations.token_batches(model, n, n_ctx=n_ctx, seed=seed)).to(model.cfg.device)


@answered
def check_transcoder_loss(fn: Callable[..., Tensor]) -> None:
    """The squared error of a transcoder's prediction of the MLP output from the MLP input."""
    torch.manual_seed(0)
    tc = SAE(SAEConfig(d_in=8, d_sae=16, architecture="topk", k=4, d_out=8))
    mlp_in, mlp_out = torch.randn(32, 8), torch.randn(32, 8)
    got = fn(tc, mlp_in, mlp_out)
    if not torch.is_tensor(got) or got.numel() != 1:
        raise AssertionError("Return one number as a tensor (so that it can be backpropagated): the mean loss.")
    got_f = float(got.detach())
    with torch.no_grad():
        pred = tc(mlp_in)
        want = (pred - mlp_out).pow(2).sum(-1).mean().item()
        if abs(got_f - (pred - mlp_in).pow(2).sum(-1).mean().item()) < 1e-4:
            raise AssertionError("That compares the prediction with the MLP's input: a transcoder predicts its output.")
        if abs(got_f - (pred - mlp_out).pow(2).mean().item()) < 1e-4:
            raise AssertionError("The squared error is summed over dimensions, then averaged over tokens.")
    close(got_f, want, "the transcoder loss", "Predict from tc(mlp_in); compare with the MLP output.", 1e-4)
    print("transcoder loss: correct.")


@answered
def check_replacement_loss(fn: Callable[..., float], model: HookedTransformer, transcoders: Transcoders) -> None:
    """The next-token loss with every MLP replaced at once, against ``hooks.mean_loss`` with the suite's hooks."""
    tokens = _tokens(model)
    with torch.no_grad():
        got = float(fn(model, transcoders, tokens))
        want = hooks.mean_loss(model, tokens, replacement_hooks(transcoders))
        _, cache = model.run_with_cache(tokens)
        clean_inputs: list[hooks.Hook] = [
            (hooks.name("mlp_out", layer), _from_clean(tc, cache[hooks.name("ln2_normalized", layer)]))
            for layer, tc in transcoders.items()
        ]
        if abs(got - hooks.mean_loss(model, tokens, clean_inputs)) < 1e-4 and abs(got - want) > 1e-4:
            raise AssertionError(
                "Each transcoder must read the MLP input of the model as replaced so far (errors compound), not the "
                "input from a clean run: replace the outputs in one forward pass, reading each input as it comes."
            )
    close(
        got, want, "the mean loss", "Replace every layer's MLP output (past BOS) with tc(MLP input) in one run.", 1e-4
    )
    print("replacement loss: correct.")


def _from_clean(tc: SAE, clean_in: Tensor) -> Callable:
    def hook(act: Tensor, hook) -> Tensor:
        act = act.clone()
        act[:, 1:] = tc(clean_in[:, 1:].float()).to(act.dtype)
        return act

    return hook


@answered
def check_freeze_hooks(fn: Callable[..., list], model: HookedTransformer) -> None:
    """Hooks that hold every attention pattern and LayerNorm scale at its value on one prompt."""
    tokens = _tokens(model, n=2, n_ctx=16)
    L = model.cfg.n_layers
    want = {name for names in frozen_names(L).values() for name in names}
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens[:1], names_filter=list(want))
        got = fn(cache, L)
        names = {name for name, _ in got}
        if names != want:
            raise AssertionError(
                f"Freeze these and only these: missing {sorted(want - names)}, not wanted {sorted(names - want)}."
            )
        seen: dict[str, Tensor] = {}
        store = [(name, hooks.store_hook(seen)) for name in want]
        model.run_with_hooks(tokens[1:], fwd_hooks=[*got, *store])  # another prompt of the same length
    for name in sorted(want):
        if not torch.allclose(seen[name][0], cache[name][0], atol=1e-6):
            raise AssertionError(f"On another prompt {name} changed: each hook must return the value from the cache.")
    print("frozen attention and LayerNorm: correct.")


@answered
def check_error_terms(fn: Callable[..., Tensor], model: HookedTransformer, transcoders: Transcoders) -> None:
    """Each layer's MLP output minus its transcoder's output, against ``LocalReplacement.errors``."""
    tokens = _tokens(model, n=1)[0]
    want = torch.stack(LocalReplacement(model, transcoders, tokens).errors).detach().cpu()
    with torch.no_grad():
        got = fn(model, transcoders, tokens)
    if not torch.is_tensor(got) or tuple(got.shape) != tuple(want.shape):
        raise AssertionError(f"Return a [layer, pos, d_model] tensor, shape {tuple(want.shape)}.")
    got = got.detach().float().cpu()
    if torch.allclose(got, -want, atol=1e-4):
        raise AssertionError("The sign is reversed: the error is what the MLP wrote minus what the transcoder wrote.")
    if torch.allclose(got[:, 1:], want[:, 1:], atol=1e-4) and not torch.allclose(got[:, 0], want[:, 0], atol=1e-4):
        raise AssertionError("Position 0 (BOS) has no features: zero them there, so its whole MLP output is error.")
    if not torch.allclose(got, want, atol=1e-4):
        raise AssertionError(
            "Encode each layer's MLP input, zero the features at BOS, decode, subtract from the output."
        )
    print("error terms: correct.")


# --- the graph's targets and edges ---


@answered
def check_logit_targets(fn: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """The most likely next tokens until their probabilities reach ``logit_prob``, at most ``max_logits``."""
    probs = torch.tensor([0.05, 0.5, 0.0, 0.3, 0.15])
    logits = probs.clamp_min(1e-9).log()
    for (max_logits, logit_prob), want in {(10, 0.9): [1, 3, 4], (2, 0.9): [1, 3], (10, 0.4): [1]}.items():
        ids, p = fn(logits, max_logits, logit_prob)
        if torch.as_tensor(ids).tolist() != want:
            raise AssertionError(
                f"With probabilities {probs.tolist()}, max_logits={max_logits} and logit_prob={logit_prob} expected "
                f"tokens {want}, got {torch.as_tensor(ids).tolist()}: take tokens by probability (softmax of the "
                "logits) until their sum "
                "reaches logit_prob (the token that reaches it included), and never more than max_logits."
            )
        if not torch.allclose(torch.as_tensor(p).float().cpu(), probs[want], atol=1e-5):
            raise AssertionError("Return the tokens' probabilities beside them (softmax of the logits).")
    print("logit targets: correct.")


@answered
def check_demeaned_unembedding(fn: Callable[..., Tensor]) -> None:
    """Each target token's unembedding column minus the mean column: its logit minus the mean logit."""
    g = torch.Generator().manual_seed(0)
    W_U, ids = torch.randn(6, 10, generator=g), torch.tensor([3, 7])
    got = fn(W_U, ids)
    want = (W_U[:, ids] - W_U.mean(1, keepdim=True)).T
    if not torch.is_tensor(got) or tuple(got.shape) != (2, 6):
        raise AssertionError("Return one direction per token, [n_tokens, d_model].")
    if torch.allclose(got, W_U[:, ids].T):
        raise AssertionError("Subtract the mean over the vocabulary: the target is a logit minus the mean logit.")
    if not torch.allclose(got, want, atol=1e-6):
        raise AssertionError("Take W_U[:, token] minus W_U's mean over the vocabulary (axis 1), one row per token.")
    print("demeaned unembedding: correct.")


@answered
def check_feature_edge(fn: Callable[..., float], model: HookedTransformer, transcoders: Transcoders) -> None:
    """Edges between features by one backward pass, against the graph ``attribute`` builds."""
    tokens = _tokens(model, n=1, n_ctx=12)[0]
    graph = attribution.attribute(model, transcoders, tokens, progress=False)
    local = LocalReplacement(model, transcoders, tokens)
    layers = graph.features[:, 0]
    pairs = [(t, s) for t in range(graph.n_features) for s in range(graph.n_features) if layers[s] < layers[t]]
    pairs = sorted(pairs, key=lambda ts: -abs(float(graph.adjacency[ts])))[:3]
    if not pairs:
        raise AssertionError("This prompt has no features in two different layers; train the transcoders first.")
    for target, source in pairs:
        got = float(fn(local, graph.features.to(model.cfg.device), target, source))
        want = float(graph.adjacency[target, source])
        act = float(graph.activations[source])
        if abs(got * act - want) < 1e-4 * max(1, abs(want)) and abs(act - 1) > 1e-3:
            raise AssertionError("Multiply by the source's activation: the edge is its decoder row . gradient x a_s.")
        close(got, want, f"edge {source} -> {target}", "Backpropagate the target's pre-activation (its MLP "
               "input . its encoder column) to the MLP outputs, dot the source's decoder row with the gradient at "
               "its layer and position, times its activation.", 1e-4)  # fmt: skip
    print("feature-to-feature edges: correct.")


# --- scores and interventions ---


@answered
def check_graph_scores(fn: Callable[..., dict[str, float]], graph: AttributionGraph) -> None:
    """The replacement and completeness scores, against ``graph.graph_scores``."""
    got, want = fn(graph), graph_scores(graph)
    if set(got) != {"replacement", "completeness"}:
        raise AssertionError("Return {'replacement': ..., 'completeness': ...}.")
    A = normalise_rows(graph.adjacency)
    inf = influence(A, logit_weights(graph))
    unweighted = (1 - A[:, graph.errors].sum(1)).mean().item()
    if abs(got["completeness"] - unweighted) < 1e-5 and abs(want["completeness"] - unweighted) > 1e-4:
        raise AssertionError("Weight each node's non-error share by its influence plus its own logit weight.")
    share = (inf[graph.embeds].sum() / inf[: graph.embeds.stop].sum()).item()  # features counted too
    if abs(got["replacement"] - share) < 1e-5 and abs(want["replacement"] - share) > 1e-4:
        raise AssertionError("Replacement compares tokens with errors only: tokens / (tokens + errors), by influence.")
    for key in want:
        close(got[key], want[key], f"the {key} score", "Use the row-normalised |adjacency| and influence().", 1e-5)
    print("replacement and completeness scores: correct.")


@answered
def check_total_effects(fn: Callable[..., Tensor], graph: AttributionGraph) -> None:
    """The graph's prediction of ablating each feature, against ``attribution.total_effects``."""
    target = graph.logits.start
    want = attribution.total_effects(graph, target)
    got = torch.as_tensor(fn(graph, target)).float().cpu()
    if tuple(got.shape) != tuple(want.shape):
        raise AssertionError(f"Return one number per feature, shape {tuple(want.shape)}.")
    if torch.allclose(got, -want, atol=1e-4):
        raise AssertionError("Ablating removes the feature's contribution: the change is minus a_s times its effect.")
    direct = -graph.adjacency[target, : graph.n_features]
    if torch.allclose(got, direct, atol=1e-4) and not torch.allclose(want, direct, atol=1e-4):
        raise AssertionError("That is the direct effect only: solve (I - J)^T x = d to follow every path.")
    if not torch.allclose(got, want, atol=1e-4, rtol=1e-3):
        raise AssertionError("J is adjacency / source activation between features; see the hints.")
    print("total effects: correct.")


@answered
def check_ablation_effect(
    fn: Callable[..., float], model: HookedTransformer, transcoders: Transcoders, graph: AttributionGraph
) -> None:
    """The measured effect of zeroing one feature, against ``attribution.intervention_effects``."""
    local = LocalReplacement(model, transcoders, graph.tokens)
    target = graph.logits.start
    nodes = graph.activations.argsort(descending=True)[:2].tolist()
    want = attribution.intervention_effects(model, transcoders, graph, nodes, target)
    free = attribution.intervention_effects(model, transcoders, graph, nodes, target, 0.0, False, False)
    for node, expected, unfrozen in zip(nodes, want.tolist(), free.tolist(), strict=True):
        got = float(fn(local, graph, node, target))
        if abs(got + expected) < 1e-4 and abs(expected) > 1e-4:
            raise AssertionError("The sign is reversed: report ablated minus clean.")
        if abs(got - unfrozen) < 1e-4 and abs(unfrozen - expected) > 1e-4:
            raise AssertionError(
                "Keep attention patterns and LayerNorm scales frozen (local.run's defaults): the graph's prediction "
                "assumes them fixed, so the intervention that tests it must too."
            )
        close(got, expected, "the change", "Run local.run with the feature set to 0 and without, and compare "
               "the target token's logit minus the mean logit at the last position.", 1e-4)  # fmt: skip
    print("ablation effect: correct.")


# --- cross-layer transcoders ---


def _tiny_clt() -> CrossLayerTranscoder:
    """Three layers, scales that differ by layer, nonzero biases: every part of the forward pass shows."""
    torch.manual_seed(0)
    clt = CrossLayerTranscoder(CLTConfig(n_layers=3, d_model=8, d_sae=16, k=4))
    with torch.no_grad():
        clt.in_scale.copy_(torch.tensor([1.0, 2.0, 0.5]))
        clt.out_scale.copy_(torch.tensor([0.5, 3.0, 2.0]))
        clt.b_dec.normal_()
    return clt


@answered
def check_clt_forward(fn: Callable[..., Tensor]) -> None:
    """Every layer's prediction: its bias plus what every layer at or before it writes there, times its scale."""
    clt, x = _tiny_clt(), torch.randn(5, 3, 8)
    with torch.no_grad():
        got, want = fn(clt, x), clt(x)
        if not torch.is_tensor(got) or got.shape != want.shape:
            shape = tuple(got.shape) if torch.is_tensor(got) else type(got).__name__
            raise AssertionError(f"Return [batch, layer, d_model], here {tuple(want.shape)}; got {shape}.")
        if torch.allclose(got, want, atol=1e-4):
            clt.b_enc.fill_(-2.0)  # most pre-activations negative: the ReLU after the TopK matters
            if not torch.allclose(fn(clt, x), clt(x), atol=1e-4):
                raise AssertionError(
                    "With most pre-activations negative the prediction differs: the features are the k largest "
                    "pre-activations through a ReLU (a negative one among them gives 0)."
                )
            print("clt_forward: correct.")
            return
        f = clt.activate(clt.pre_acts_all(x))
        own = torch.stack([(f[:, s] @ clt.W_dec[s][:, 0] + clt.b_dec[s]) * clt.out_scale[s] for s in range(3)], 1)
        if torch.allclose(got, own, atol=1e-4):
            raise AssertionError(
                "Each layer gets only its own features' decoder: that is a per-layer transcoder. Layer l also "
                "receives what every earlier layer s writes to it, features[s] @ clt.W_dec[s][:, l - s]."
            )
        if torch.allclose(got, clt.decode_all(f), atol=1e-4):
            raise AssertionError("Right sums, in the CLT's scaled units: multiply layer l's by clt.out_scale[l].")
        if torch.allclose(got[:, 0], want[:, 0], atol=1e-4):
            raise AssertionError(
                "Layer 0 is right, later layers are not: layer s's decoder to layer l is W_dec[s][:, l - s] "
                "(W_dec[s] starts at layer s), and the bias and scale are layer l's."
            )
        raise AssertionError("Layer 0 is already wrong: its features are clt.encode(0, mlp_in[:, 0]).")


@answered
def check_clt_loss(fn: Callable[..., Tensor]) -> None:
    """Squared error summed over layers and dimensions, averaged over tokens (model units)."""
    clt, x, y = _tiny_clt(), torch.randn(6, 3, 8), torch.randn(6, 3, 8)
    got = fn(clt, x, y)
    if not torch.is_tensor(got) or got.numel() != 1:
        raise AssertionError("Return one number as a tensor (so that it can be backpropagated): the mean loss.")
    with torch.no_grad():
        err = (clt(x) - y).pow(2)
        want = err.sum((-1, -2)).mean().item()
        wrong = {
            "averaged over layers: a CLT's loss adds up every MLP output it reconstructs": err.sum(-1).mean().item(),
            "averaged over dimensions: sum the squared error over dimensions and layers": err.mean().item(),
            "the last layer only: every layer's output counts": err[:, -1].sum(-1).mean().item(),
        }
    close_enough = abs(float(got.detach()) - want) < 1e-4 * max(1.0, want)
    for message, value in wrong.items():
        if not close_enough and abs(float(got.detach()) - value) < 1e-4 * max(1.0, value):
            raise AssertionError(f"That is the squared error {message}.")
    close(float(got.detach()), want, "The loss", "Compare clt(mlp_in) with mlp_out, square, sum, then average.")
    print("clt_loss: correct.")
