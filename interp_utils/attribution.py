"""Transcoders (Dunefsky et al. 2024) and attribution graphs (Ameisen et al. 2025) on a TransformerLens model.

A per-layer transcoder reads an MLP's input (``blocks.L.ln2.hook_normalized``) and predicts its output
(``blocks.L.hook_mlp_out``); it is an :class:`interp_utils.sae.SAE` with ``d_out`` set. For one prompt the
*local replacement model* swaps every MLP for its transcoder, freezes attention patterns and LayerNorm scales at
their values on that prompt and adds back each transcoder's error, so it reproduces the model's output exactly and
is linear in its leaves: token embeddings, feature activations and error terms. The *attribution graph* holds
the direct effect of every leaf on every feature's pre-activation and on the top output logits, one backward
pass per target (batched). Node order and pruning follow circuit-tracer, so its functions read our graphs too.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from interp_utils import activations
from interp_utils.sae import SAE, SAEConfig, TrainLog, mean_loss, splice_hooks, store_hook, train_sae, zero_past_bos

Transcoders = dict[int, SAE]  # layer -> transcoder for that layer's MLP


def in_hook(layer: int) -> str:
    """Where a layer's transcoder reads: the MLP's input, after its LayerNorm."""
    return f"blocks.{layer}.ln2.hook_normalized"


def out_hook(layer: int) -> str:
    """What a layer's transcoder predicts: the MLP's output."""
    return f"blocks.{layer}.hook_mlp_out"


def _check_layers(model: HookedTransformer, transcoders: Transcoders, need_all: bool = True) -> None:
    wrong = [layer for layer in transcoders if not 0 <= layer < model.cfg.n_layers]
    if wrong:
        raise ValueError(f"Transcoders for layers {wrong}, but the model has layers 0..{model.cfg.n_layers - 1}.")
    missing = sorted(set(range(model.cfg.n_layers)) - set(transcoders))
    if need_all and missing:
        raise ValueError(
            f"A replacement model needs a transcoder for every layer; layers {missing} have none. "
            "Train them with train_transcoders(model, layers=range(model.cfg.n_layers), ...)."
        )
    for layer, tc in transcoders.items():
        if not tc.is_transcoder or tc.cfg.d_in != model.cfg.d_model or tc.cfg.d_out != model.cfg.d_model:
            raise ValueError(
                f"The module for layer {layer} is not a {model.cfg.d_model}->{model.cfg.d_model} transcoder."
            )


# --- training and the replacement model's loss ---


def train_transcoders(
    model: HookedTransformer,
    layers,
    cfg: SAEConfig,
    n_tokens: int,
    batch_size: int = 4096,
    pool_tokens: int = 2**17,
    n_ctx: int = 128,
    seed: int = 0,
    **train_kwargs,
) -> tuple[Transcoders, dict[int, TrainLog]]:
    """One transcoder per layer in ``layers`` (``cfg`` gives the sizes), each trained on ``n_tokens`` fresh
    (MLP input, MLP output) pairs from :func:`interp_utils.activations.token_batches`."""
    if cfg.d_out is None:
        raise ValueError("cfg.d_out must be set (to d_model) for a transcoder.")
    transcoders, logs = {}, {}
    for layer in layers:
        start = time.perf_counter()
        torch.manual_seed(seed + layer)
        text = activations.token_batches(model, 32, n_ctx=min(n_ctx, model.cfg.n_ctx), seed=seed + layer)
        buffer = activations.ActivationBuffer(
            model, [in_hook(layer), out_hook(layer)], text, batch_size=batch_size, pool_tokens=pool_tokens
        )
        transcoders[layer] = SAE(cfg, device=model.cfg.device)
        logs[layer] = train_sae(
            transcoders[layer], buffer, n_tokens, batch_size=batch_size, desc=f"transcoder L{layer}", **train_kwargs
        )
        logs[layer].seconds = time.perf_counter() - start  # filling the buffer included
    return transcoders, logs


def splice(transcoders: Transcoders) -> list[tuple[str, Callable]]:
    """Forward hooks that replace each listed layer's MLP output (past BOS) with its transcoder's prediction."""
    return splice_hooks([(tc, out_hook(layer), in_hook(layer)) for layer, tc in sorted(transcoders.items())])


@torch.no_grad()
def replacement_losses(
    model: HookedTransformer, transcoders: Transcoders, tokens: Int[Tensor, "batch pos"], model_batch: int = 16
) -> dict[str, float]:
    """Next-token loss of the clean model, with every MLP zero-ablated (past BOS), and with the MLPs replaced by
    transcoders: all of them, all but layer 0's, and each layer's alone. Each transcoder reads the input the
    (partly replaced) model gives it, so errors compound as they would in a replacement model."""
    _check_layers(model, transcoders, need_all=False)

    layers = sorted(transcoders)
    out = {
        "clean": mean_loss(model, tokens, [], model_batch),
        "mlp_ablated": mean_loss(model, tokens, [(out_hook(layer), zero_past_bos) for layer in layers], model_batch),
        "all": mean_loss(model, tokens, splice(transcoders), model_batch),
    }
    if len(layers) > 1:
        rest = {layer: transcoders[layer] for layer in layers[1:]}
        out["all_but_first"] = mean_loss(model, tokens, splice(rest), model_batch)
    for layer in layers:
        out[f"layer_{layer}"] = mean_loss(model, tokens, splice({layer: transcoders[layer]}), model_batch)
    return out


# --- the local replacement model ---


class LocalReplacement:
    """The local replacement model of one prompt: transcoders for the MLPs, attention patterns and LayerNorm
    scales frozen at their values in the real forward pass, and each transcoder's error added back.

    ``features[L]`` holds layer L's feature activations ([pos, d_sae], zero at BOS), ``errors[L]`` the MLP output
    minus the transcoder's, ``embed`` the token embeddings. As in circuit-tracer, position embeddings are
    constants, like biases, not nodes.
    """

    def __init__(self, model: HookedTransformer, transcoders: Transcoders, tokens: Int[Tensor, " pos"]):
        _check_layers(model, transcoders)
        if tokens.ndim != 1:
            raise ValueError(f"LocalReplacement takes one prompt's tokens ([pos]), got shape {tuple(tokens.shape)}.")
        self.model, self.transcoders, self.tokens = model, transcoders, tokens.to(model.cfg.device)
        self.n_layers = model.cfg.n_layers
        names = {"hook_embed", "ln_final.hook_scale"}
        for layer in range(self.n_layers):
            names |= {f"blocks.{layer}.attn.hook_pattern", f"blocks.{layer}.ln1.hook_scale"}
            names |= {f"blocks.{layer}.ln2.hook_scale", in_hook(layer), out_hook(layer)}
        with torch.no_grad():
            logits, cache = model.run_with_cache(self.tokens[None], names_filter=lambda n: n in names)
            self.logits: Float[Tensor, "pos vocab"] = logits[0]
            self.frozen = {name: cache[name][0] for name in names if "hook_pattern" in name or "hook_scale" in name}
            self.embed: Float[Tensor, "pos d"] = cache["hook_embed"][0]
            self.features, self.errors = [], []
            for layer in range(self.n_layers):
                f = transcoders[layer].encode(cache[in_hook(layer)][0])
                f[0] = 0.0  # no features at BOS (as circuit-tracer): its MLP output is all error
                self.features.append(f)
                self.errors.append(cache[out_hook(layer)][0] - transcoders[layer].decode(f))

    def _hooks(
        self, batch: int, mlp_out: Callable[[int, Tensor], Tensor], attention: bool = True, layernorm: bool = True
    ) -> list:
        """Hooks that freeze attention patterns and/or LayerNorm scales and replace each MLP's output."""
        hooks = []
        for name, value in self.frozen.items():
            if (attention and "hook_pattern" in name) or (layernorm and "hook_scale" in name):
                hooks.append((name, lambda act, hook, v=value: v.expand(batch, *v.shape)))
        for layer in range(self.n_layers):
            hooks.append((out_hook(layer), lambda act, hook, layer=layer: mlp_out(layer, act)))
        return hooks

    def run(
        self,
        interventions: dict[tuple[int, int, int], float] | None = None,
        freeze_attention: bool = True,
        freeze_layernorm: bool = True,
    ) -> Float[Tensor, "pos vocab"]:
        """Logits of the replacement model run forward, with features recomputed from their (possibly changed)
        inputs; ``interventions`` {(layer, pos, feature): value} fix chosen features (0 ablates). Errors stay at
        their clean values. Unfrozen attention patterns or LayerNorm scales respond to the change too.
        With no interventions the logits equal the model's."""
        interventions = interventions or {}

        def mlp_out(layer: int, act: Tensor) -> Tensor:
            tc = self.transcoders[layer]
            f = tc.encode(stored[in_hook(layer)][0])
            f[0] = 0.0
            for (lay, pos, feat), value in interventions.items():
                if lay == layer:
                    f[pos, feat] = value
            return (tc.decode(f) + self.errors[layer])[None].to(act.dtype)

        stored: dict[str, Tensor] = {}
        with torch.no_grad():
            hooks = [(in_hook(layer), store_hook(stored)) for layer in range(self.n_layers)]
            hooks += self._hooks(1, mlp_out, freeze_attention, freeze_layernorm)
            return self.model.run_with_hooks(self.tokens[None], fwd_hooks=hooks)[0]

    def error_nodes(self) -> Float[Tensor, "layer pos d"]:
        """The errors that are graph nodes: all but BOS's, whose MLP output is a constant (as in circuit-tracer)."""
        errors = torch.stack(self.errors).clone()
        errors[:, 0] = 0.0
        return errors

    def active_features(self) -> tuple[Int[Tensor, "n 3"], Float[Tensor, " n"]]:
        """Every active feature as (layer, pos, feature), layer by layer, with its activation."""
        index = torch.cat(
            [
                torch.cat([torch.full((len(nz), 1), layer, device=nz.device), nz], dim=1)
                for layer, nz in ((layer, f.nonzero()) for layer, f in enumerate(self.features))
            ]
        )
        return index, self.feature_values(index)

    def feature_values(self, index: Int[Tensor, "n 3"]) -> Float[Tensor, " n"]:
        """The activations of the features at ``index`` rows (layer, pos, feature)."""
        return torch.stack(self.features)[index[:, 0], index[:, 1], index[:, 2]]

    def decoder_rows(self, index: Int[Tensor, "n 3"]) -> Float[Tensor, "n d"]:
        """What each feature at ``index`` writes per unit of activation (its decoder row, in model units)."""
        rows = [
            self.transcoders[layer].W_dec[feat] * self.transcoders[layer].out_scale for layer, _, feat in index.tolist()
        ]
        return torch.stack(rows).detach() if rows else self.embed.new_zeros(0, self.embed.shape[-1])

    def linear_forward(
        self, batch: int, feature_index: Int[Tensor, "n 3"], zero: bool = False
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """One forward pass of the frozen (linear) replacement model for ``batch`` copies of the prompt.

        Returns two leaves, which require grad and hold their clean values (zeros if ``zero``): ``embed``, the
        token embeddings ([batch, pos, d]), and ``mlp``, what the features at ``feature_index`` and the error
        nodes add to each MLP output ([batch, layer, pos, d]; a feature's gradient is its decoder row dotted
        with the gradient there). Also the readouts targets are read from, by hook name: each layer's MLP
        input and the final normalised residual ([batch, pos, d])."""
        errors = self.error_nodes()
        bos_errors = torch.stack(self.errors) - errors  # constants, like biases
        written = torch.zeros_like(errors).index_put_(
            (feature_index[:, 0], feature_index[:, 1]),
            self.feature_values(feature_index)[:, None] * self.decoder_rows(feature_index),
            accumulate=True,
        )
        scale = 0.0 if zero else 1.0
        leaves = {
            "embed": (scale * self.embed).expand(batch, *self.embed.shape).clone().requires_grad_(True),
            "mlp": (scale * (written + errors)).expand(batch, *errors.shape).clone().requires_grad_(True),
        }
        readouts: dict[str, Tensor] = {}

        def mlp_out(layer: int, act: Tensor) -> Tensor:
            tc = self.transcoders[layer]
            return (tc.b_dec * tc.out_scale).detach() + bos_errors[layer] + leaves["mlp"][:, layer]

        hooks = [("hook_embed", lambda act, hook: leaves["embed"])] + self._hooks(batch, mlp_out)
        hooks += [(in_hook(layer), store_hook(readouts)) for layer in range(self.n_layers)]
        hooks += [("ln_final.hook_normalized", store_hook(readouts))]
        # the attention patterns and LN scales are replaced by detached copies, so gradients see a linear map
        self.model.run_with_hooks(self.tokens[None].expand(batch, -1), fwd_hooks=hooks, return_type=None)
        return leaves, readouts


# --- attribution graphs ---


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


def attribute(
    model: HookedTransformer,
    transcoders: Transcoders,
    prompt: str | Int[Tensor, " pos"],
    max_logits: int = 10,
    logit_prob: float = 0.95,
    batch_size: int = 128,
    progress: bool = True,
) -> AttributionGraph:
    """The attribution graph of ``prompt``: the logit targets are the most likely next tokens until their
    probabilities add up to ``logit_prob`` (at most ``max_logits``), read along demeaned unembedding columns;
    every active feature is a target too. One forward pass of ``batch_size`` copies of the prompt, then one
    backward pass per ``batch_size`` targets."""
    tokens = model.to_tokens(prompt)[0] if isinstance(prompt, str) else prompt.to(model.cfg.device)
    local = LocalReplacement(model, transcoders, tokens)
    features, acts = local.active_features()
    probs = local.logits[-1].float().softmax(-1)
    top = probs.topk(min(max_logits, len(probs)))
    n_logits = min(int((top.values.cumsum(0) < logit_prob).sum()) + 1, len(top.values))
    logit_tokens, logit_probs = top.indices[:n_logits], top.values[:n_logits]
    W_U = model.W_U.float()
    logit_dirs = (W_U[:, logit_tokens] - W_U.mean(1, keepdim=True)).T  # [n_logits, d]
    logit_bias = (model.b_U[logit_tokens] - model.b_U.mean()).float()  # so targets are logit - mean logit

    n_feat, n_pos, L = len(features), len(tokens), model.cfg.n_layers
    n_nodes = n_feat + L * n_pos + n_pos + n_logits
    # each target is read along one direction at one place: (readout index, position, direction, constant)
    where = torch.cat([features[:, 0], torch.full((n_logits,), L, device=tokens.device)])  # L: final residual
    at = torch.cat([features[:, 1], torch.full((n_logits,), n_pos - 1, device=tokens.device)])
    by_layer = [(features[:, 0] == layer).nonzero().squeeze(1) for layer in range(L)]
    encoders, b_enc = torch.zeros(n_feat, model.cfg.d_model, device=tokens.device), torch.zeros_like(acts)
    for layer, mine in enumerate(by_layer):  # a feature's pre-activation reads its encoder column
        tc, ids = transcoders[layer], features[mine, 2]
        encoders[mine], b_enc[mine] = (tc.W_enc[:, ids] / tc.in_scale).T.detach(), tc.b_enc[ids].detach()
    directions = torch.cat([encoders, logit_dirs])  # [n_targets, d]
    constants = torch.cat([b_enc, logit_bias])
    names = [in_hook(layer) for layer in range(L)] + ["ln_final.hook_normalized"]

    def read(readouts: dict[str, Tensor]) -> Tensor:
        """Every target's value in the (batch-1) forward pass that gave ``readouts``."""
        stacked = torch.stack([readouts[name][0] for name in names])  # [L + 1, pos, d]
        return (stacked[where, at] * directions).sum(-1) + constants

    with torch.no_grad():
        target_values = read(local.linear_forward(1, features)[1])
        bias_values = read(local.linear_forward(1, features, zero=True)[1])  # every leaf at zero: biases only

    # one forward pass of batch_size copies, then one backward pass per batch of targets, each copy carrying
    # one target's direction as its gradient
    targets = torch.cat([torch.arange(n_feat), torch.arange(n_nodes - n_logits, n_nodes)]).to(tokens.device)
    copies = min(batch_size, len(targets))
    leaves, readouts = local.linear_forward(copies, features)
    outputs = [readouts[name] for name in names]
    inputs = [leaves["mlp"], leaves["embed"]]
    errors = local.error_nodes()
    rows_of = local.decoder_rows(features)  # [n_feat, d]
    adjacency = torch.zeros(n_nodes, n_nodes, device=tokens.device)
    chunks = list(range(0, len(targets), copies))
    for start in tqdm(chunks, desc="attribution (backward passes)", disable=not progress):
        rows = torch.arange(start, min(start + copies, len(targets)), device=tokens.device)
        grad_outputs = [torch.zeros_like(out) for out in outputs]
        copy = torch.arange(len(rows), device=tokens.device)
        for o, grad in enumerate(grad_outputs):
            mine = where[rows] == o
            grad[copy[mine], at[rows][mine]] = directions[rows][mine]
        grads = torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph=True, allow_unused=True)
        g_mlp, g_emb = (torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True))
        n, index = len(rows), targets[rows]
        for layer, mine in enumerate(by_layer):  # feature j's gradient: its decoder row . the gradient where it writes
            per_pos = g_mlp[:n, layer] @ rows_of[mine].T  # [n, pos, n_layer_features]
            adjacency[index[:, None], mine[None, :]] = (
                per_pos[:, features[mine, 1], torch.arange(len(mine), device=tokens.device)] * acts[mine]
            )
        adjacency[index, n_feat : n_feat + L * n_pos] = (g_mlp[:n] * errors).sum(-1).flatten(1)
        adjacency[index, n_feat + L * n_pos : n_nodes - n_logits] = (g_emb[:n] * local.embed).sum(-1)
    return AttributionGraph(
        tokens=tokens.cpu(),
        str_tokens=model.to_str_tokens(tokens),
        features=features.cpu(),
        activations=acts.detach().cpu(),
        logit_tokens=logit_tokens.cpu(),
        logit_strs=[model.to_single_str_token(int(t)) for t in logit_tokens],
        logit_probs=logit_probs.detach().cpu(),
        adjacency=adjacency.cpu(),
        n_layers=L,
        bias_values=bias_values.detach().cpu(),
        target_values=target_values.detach().cpu(),
    )


# --- pruning and scores (Ameisen et al. 2025, methods; the same definitions as circuit-tracer) ---


def normalized(adjacency: Float[Tensor, "n n"]) -> Float[Tensor, "n n"]:
    """|A| with each row scaled to sum to 1: the share of a target's inputs that each source gives."""
    a = adjacency.abs()
    return a / a.sum(1, keepdim=True).clamp_min(1e-10)


def _logit_weights(graph: AttributionGraph) -> Tensor:
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


def _threshold(scores: Tensor, fraction: float) -> Tensor:
    """The smallest score among the top scores that together make up ``fraction`` of the total."""
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum().clamp_min(1e-10)
    return ordered[min(int(torch.searchsorted(cumulative, fraction)), len(ordered) - 1)]


@dataclass
class Pruned:
    nodes: Tensor  # bool [n_nodes]: kept nodes
    edges: Tensor  # bool [n_nodes, n_nodes]: kept edges (target, source)
    node_influence: Tensor  # each node's influence on the logits (before pruning)


def prune(graph: AttributionGraph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
    """Keep the nodes that carry ``node_threshold`` of the total influence on the logits (tokens and logits
    always), then the edges that carry ``edge_threshold`` of the influence left, then drop feature and error
    nodes left with no outgoing edge and features with no incoming one, until nothing changes."""
    if not (0 <= node_threshold <= 1 and 0 <= edge_threshold <= 1):
        raise ValueError(f"Thresholds are fractions in [0, 1], got {node_threshold} and {edge_threshold}.")
    A, w = graph.adjacency, _logit_weights(graph)
    node_influence = influence(normalized(A), w)
    nodes = node_influence >= _threshold(node_influence, node_threshold)
    nodes[graph.embeds.start :] = True
    kept = A * nodes[:, None] * nodes[None, :]
    edge_scores = normalized(kept) * (influence(normalized(kept), w) + w)[:, None]
    edges = edge_scores >= _threshold(edge_scores.flatten(), edge_threshold)
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
    A, w = normalized(graph.adjacency), _logit_weights(graph)
    node_influence = influence(A, w)
    tokens, errors = node_influence[graph.embeds].sum(), node_influence[graph.errors].sum()
    non_error = 1 - A[:, graph.errors].sum(1)
    weight = node_influence + w
    return {
        "replacement": (tokens / (tokens + errors)).item(),
        "completeness": ((non_error * weight).sum() / weight.sum()).item(),
    }


# --- checking a graph by intervention ---


def total_effects(graph: AttributionGraph, target: int) -> Float[Tensor, " n_features"]:
    """What the graph predicts for ablating each feature: the change in ``target`` (a node index) through every
    path, treating downstream features as linear (so their activations move by their own total effects)."""
    n = graph.n_features
    acts = graph.activations.clamp_min(1e-10)
    J = graph.adjacency[:n, :n] / acts[None, :]  # d pre_t / d a_s
    to_target = graph.adjacency[target, :n] / acts
    # d target / d a_s in total = to_target (I - J)^-1 ; ablating a_s changes it by -a_s times that
    total = torch.linalg.solve((torch.eye(n) - J).T, to_target)
    return -total * graph.activations


def intervention_effects(
    model: HookedTransformer,
    transcoders: Transcoders,
    graph: AttributionGraph,
    nodes: list[int],
    target: int,
    scale: float = 0.0,
    freeze_attention: bool = True,
    freeze_layernorm: bool = True,
) -> Float[Tensor, " n"]:
    """The measured change in ``target`` (a logit node: its token's logit minus the mean logit) when each feature
    node in ``nodes``, one at a time, is set to ``scale`` times its activation (0 ablates) in the replacement
    model run forward, every downstream feature recomputed (attention patterns and LayerNorm scales frozen unless
    told otherwise). The graph's prediction is ``(1 - scale) * total_effects(graph, target)``."""
    if not graph.logits.start <= target < graph.logits.stop:
        raise ValueError(f"target must be a logit node ({graph.logits.start}..{graph.logits.stop - 1}), got {target}.")
    local = LocalReplacement(model, transcoders, graph.tokens)
    token = int(graph.logit_tokens[target - graph.logits.start])

    def value(logits: Tensor) -> float:
        return (logits[-1, token] - logits[-1].mean()).item()

    frozen = {"freeze_attention": freeze_attention, "freeze_layernorm": freeze_layernorm}
    clean = value(local.run(**frozen))
    out = []
    for i in nodes:
        if not 0 <= i < graph.n_features:
            raise ValueError(f"Node {i} is not a feature node (there are {graph.n_features}).")
        layer, pos, feat = graph.features[i].tolist()
        new = scale * graph.activations[i].item()
        out.append(value(local.run({(layer, pos, feat): new}, **frozen)) - clean)
    return torch.tensor(out)


def head_contributions(
    model: HookedTransformer, transcoders: Transcoders, tokens: Int[Tensor, " pos"], direction: Float[Tensor, " d"]
) -> Float[Tensor, "layer head src"]:
    """How much each attention head, reading from each source position, adds to ``direction`` read at the last
    position (e.g. an IO-minus-S unembedding), in the prompt's local replacement model: each head's value
    vectors (bias removed) times the gradient there, so paths through later layers count too."""
    local = LocalReplacement(model, transcoders, tokens)
    values: dict[str, Tensor] = {}

    def keep(act, hook):
        act.retain_grad()
        values[hook.name] = act

    names = [f"blocks.{layer}.attn.hook_v" for layer in range(local.n_layers)]
    with model.hooks(fwd_hooks=[(name, keep) for name in names]):
        _, readouts = local.linear_forward(1, local.active_features()[0])
    (readouts["ln_final.hook_normalized"][0, -1] @ direction.to(local.tokens.device)).backward()
    out = []
    for layer, name in enumerate(names):
        v = values[name][0] - model.blocks[layer].attn.b_V  # [pos, head, d_head]
        out.append((v * values[name].grad[0]).sum(-1).T)  # [head, pos]
    return torch.stack(out).detach().cpu()


# --- labels and the picture ---


@torch.no_grad()
def feature_labels(
    model: HookedTransformer,
    transcoders: Transcoders,
    features: list[tuple[int, int]],
    tokens: Int[Tensor, "batch pos"],
    k: int = 3,
) -> dict[tuple[int, int], str]:
    """For each (layer, feature): the ``k`` distinct tokens it fires on most strongly in ``tokens``, e.g.
    "Mary / John / Alice", a quick name for the feature (in the spirit of the paper's feature labels)."""
    from interp_utils.sae import latent_activations

    labels = {}
    for layer in sorted({layer for layer, _ in features}):
        acts = latent_activations(model, transcoders[layer], in_hook(layer), tokens)
        for lay, feat in features:
            if lay != layer:
                continue
            a = acts[..., feat].flatten()
            seen: list[str] = []
            for index in a.argsort(descending=True)[: 50 * k].tolist():
                if a[index] <= 0 or len(seen) == k:
                    break
                word = model.to_single_str_token(int(tokens.flatten()[index]))
                if word not in seen:
                    seen.append(word)
            labels[(lay, feat)] = " / ".join(repr(w.strip() or w) for w in seen) or "(never fires)"
    return labels


def plot_graph(
    graph: AttributionGraph,
    pruned: Pruned,
    labels: dict[tuple[int, int], str] | None = None,
    title: str = "Attribution graph",
    max_edges: int = 400,
):
    """The pruned graph: position along x, layer up y (embeddings at the bottom, logits on top); features are
    circles, error nodes grey squares; edge width grows with |weight|, blue positive, red negative.
    Hover a node for its label, activation and influence."""
    import plotly.graph_objects as go

    labels = labels or {}
    kept = pruned.nodes.nonzero().squeeze(1).tolist()
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
    A = graph.adjacency * pruned.edges
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


# --- circuit-tracer ---


class _Activation(torch.nn.Module):
    """Our transcoder's nonlinearity, for circuit-tracer (its TopK has no ReLU on the kept values)."""

    def __init__(self, tc: SAE):
        super().__init__()
        self.tc = [tc]  # a list, so the SAE is not registered as a submodule

    def forward(self, pre: Tensor) -> Tensor:
        return self.tc[0].activate(pre)


def to_circuit_tracer(model: HookedTransformer, transcoders: Transcoders):
    """The model with our transcoders as a circuit-tracer ``ReplacementModel`` (its per-layer ``TranscoderSet``
    format: W_enc [d_sae, d], W_dec [d_sae, d]; our input and output scales are folded into the weights)."""
    import re

    from circuit_tracer.replacement_model.replacement_model_transformerlens import TransformerLensReplacementModel
    from circuit_tracer.transcoder.single_layer_transcoder import SingleLayerTranscoder, TranscoderSet

    _check_layers(model, transcoders)
    device = torch.device(model.cfg.device)
    converted = {}
    for layer, tc in transcoders.items():
        d_model, d_sae = tc.cfg.d_in, tc.cfg.d_sae
        ct = SingleLayerTranscoder(d_model, d_sae, _Activation(tc), layer, device=device, dtype=torch.float32)
        with torch.no_grad():
            ct.W_enc.copy_((tc.W_enc / tc.in_scale).T)
            ct.b_enc.copy_(tc.b_enc)
            ct.W_dec.copy_(tc.W_dec * tc.out_scale)
            ct.b_dec.copy_(tc.b_dec * tc.out_scale)
        converted[layer] = ct
    tc_set = TranscoderSet(converted, feature_input_hook="ln2.hook_normalized", feature_output_hook="hook_mlp_out")
    replacement = TransformerLensReplacementModel.from_config(model.cfg, tc_set)
    # circuit-tracer wraps each MLP and the unembedding; our weights go inside the wrappers
    state = {
        re.sub(r"^(blocks\.\d+\.mlp)\.", r"\1.old_mlp.", k).replace("unembed.", "unembed.old_unembed."): v
        for k, v in model.state_dict().items()
    }
    missing, unexpected = replacement.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("transcoders.") for k in missing):
        raise RuntimeError(f"Could not map the weights onto circuit-tracer's model: {unexpected or missing}.")
    replacement.set_tokenizer(model.tokenizer)
    return replacement


# --- checks a learner calls on their exercise solutions (notebook 05) ---


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
    print("threshold: correct.")
