"""Attribution graphs (Ameisen et al. 2025) on a TransformerLens model with per-layer transcoders.

For one prompt the *local replacement model* swaps every MLP for its transcoder
(:mod:`interp_utils.dictionaries.transcoders`), freezes attention patterns and LayerNorm scales at their values on
that prompt and adds back each transcoder's error, so it reproduces the model's output exactly and is linear in its
leaves: token embeddings, feature activations and error terms. :func:`attribute` fills the graph
(:mod:`interp_utils.tracing.attribution_graph`) with the direct effect of every leaf on every feature's
pre-activation and on the top output logits, one backward pass per batch of targets. Interventions check a graph's
predictions; head contributions split its paths by attention head.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import torch
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.core.hooks import Hook, store_hook
from interp_utils.dictionaries.clt import CrossLayerTranscoder
from interp_utils.dictionaries.transcoders import Transcoders, as_replacement
from interp_utils.tracing.attribution_graph import AttributionGraph


def frozen_names(n_layers: int) -> dict[str, list[str]]:
    """What the local replacement model freezes, by kind: every attention pattern, and every LayerNorm scale."""
    layernorm = hooks.layer_names("ln1_scale", n_layers) + hooks.layer_names("ln2_scale", n_layers)
    return {
        "attention": hooks.layer_names("pattern", n_layers),
        "layernorm": [*layernorm, hooks.name("ln_final_scale")],
    }


class LocalReplacement:
    """The local replacement model of one prompt: transcoders (per-layer or cross-layer) for the MLPs, attention
    patterns and LayerNorm scales frozen at their values in the real forward pass, and each MLP's error added back.

    ``features[L]`` holds layer L's feature activations ([pos, d_sae], zero at BOS), ``errors[L]`` the MLP output
    minus the transcoders' prediction of it, ``embed`` the token embeddings. As in circuit-tracer, position
    embeddings are constants, like biases, not nodes.
    """

    def __init__(
        self, model: HookedTransformer, transcoders: Transcoders | CrossLayerTranscoder, tokens: Int[Tensor, " pos"]
    ):
        self.replacement = as_replacement(model, transcoders)
        if tokens.ndim != 1:
            raise ValueError(f"LocalReplacement takes one prompt's tokens ([pos]), got shape {tuple(tokens.shape)}.")
        self.model, self.transcoders, self.tokens = model, transcoders, tokens.to(model.cfg.device)
        self.n_layers = model.cfg.n_layers
        L, R = self.n_layers, self.replacement
        frozen = frozen_names(L)
        mlp = hooks.layer_names("ln2_normalized", L) + hooks.layer_names("mlp_out", L)
        with torch.no_grad():
            names = [hooks.name("embed"), *mlp, *frozen["attention"], *frozen["layernorm"]]
            logits, cache = model.run_with_cache(self.tokens[None], names_filter=names)
            self.logits: Float[Tensor, "pos vocab"] = logits[0]
            # what is frozen, by kind: attention patterns and LayerNorm scales on this prompt
            self.frozen = {kind: {name: cache[name][0] for name in group} for kind, group in frozen.items()}
            self.embed: Float[Tensor, "pos d"] = cache[hooks.name("embed")][0]
            self.features: list[Tensor] = []
            for layer in range(L):
                f = R.encode(layer, cache[hooks.name("ln2_normalized", layer)][0])
                f[0] = 0.0  # no features at BOS (as circuit-tracer): its MLP output is all error
                self.features.append(f)
            self.errors = [
                cache[hooks.name("mlp_out", layer)][0] - R.decode(layer, self.features) for layer in range(L)
            ]

    def _hooks(
        self, mlp_out: Callable[[int, Tensor], Tensor], attention: bool = True, layernorm: bool = True
    ) -> list[Hook]:
        """Hooks that freeze attention patterns and/or LayerNorm scales and replace each MLP's output."""
        out: list[Hook] = []
        for kind, wanted in (("attention", attention), ("layernorm", layernorm)):
            out += [(name, hooks.replace_with(value)) for name, value in self.frozen[kind].items() if wanted]
        for layer in range(self.n_layers):
            out.append((hooks.name("mlp_out", layer), lambda act, hook, layer=layer: mlp_out(layer, act)))
        return out

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
        features: list[Tensor] = []  # this run's, layer by layer

        def mlp_out(layer: int, act: Tensor) -> Tensor:
            f = self.replacement.encode(layer, stored[hooks.name("ln2_normalized", layer)][0])
            f[0] = 0.0
            for (lay, pos, feat), value in interventions.items():
                if lay == layer:
                    f[pos, feat] = value
            features.append(f)
            return (self.replacement.decode(layer, features) + self.errors[layer])[None].to(act.dtype)

        stored: dict[str, Tensor] = {}
        with torch.no_grad():
            fwd: list[Hook] = [
                (name, store_hook(stored)) for name in hooks.layer_names("ln2_normalized", self.n_layers)
            ]
            fwd += self._hooks(mlp_out, freeze_attention, freeze_layernorm)
            return self.model.run_with_hooks(self.tokens[None], fwd_hooks=fwd)[0]

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
        """What each per-layer transcoder feature at ``index`` writes per unit of activation (its decoder row, in
        model units). A cross-layer feature writes to several layers: see :meth:`writes`."""
        if isinstance(self.transcoders, CrossLayerTranscoder):
            raise ValueError("A cross-layer feature has one decoder row per layer it writes to: use writes(index).")
        rows = [
            self.replacement.decoder_vectors(int(layer), index[index[:, 0] == layer, 2])[:, 0]
            for layer in range(self.n_layers)
        ]
        order = torch.cat([(index[:, 0] == layer).nonzero().squeeze(1) for layer in range(self.n_layers)])
        return torch.cat(rows)[order.argsort()]

    def writes(
        self, index: Int[Tensor, "n 3"]
    ) -> tuple[Int[Tensor, " w"], Int[Tensor, " w"], Int[Tensor, " w"], Tensor]:
        """What the features at ``index`` write, one entry per feature and MLP output it reaches: the output's layer,
        the position, the feature's row of ``index``, and its activation times its decoder vector there ([w, d])."""
        acts = self.feature_values(index)
        parts = []
        for layer in range(self.n_layers):
            mine = (index[:, 0] == layer).nonzero().squeeze(1)
            if len(mine) == 0:
                continue
            outs = self.replacement.output_layers(layer)
            vectors = self.replacement.decoder_vectors(layer, index[mine, 2]) * acts[mine, None, None]
            out_layers = torch.arange(outs.start, outs.stop, device=index.device).repeat(len(mine))
            parts.append(
                (
                    out_layers,
                    index[mine, 1].repeat_interleave(len(outs)),
                    mine.repeat_interleave(len(outs)),
                    vectors.flatten(0, 1),
                )
            )
        if not parts:
            empty = index.new_zeros(0)
            return empty, empty, empty, self.embed.new_zeros(0, self.embed.shape[-1])
        return tuple(torch.cat(p) for p in zip(*parts, strict=True))  # type: ignore[return-value]

    def linear_forward(
        self, batch: int, feature_index: Int[Tensor, "n 3"], biases_only: bool = False
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """One forward pass of the frozen (linear) replacement model for ``batch`` copies of the prompt.

        Returns two leaves, which require grad and hold their clean values (zeros if ``biases_only``): ``embed``, the
        token embeddings ([batch, pos, d]), and ``mlp``, what the features at ``feature_index`` and the error
        nodes add to each MLP output ([batch, layer, pos, d]; a feature's gradient is its decoder vectors dotted
        with the gradient where they write). Also the readouts targets are read from, by hook name: each layer's
        MLP input and the final normalised residual ([batch, pos, d])."""
        errors = self.error_nodes()
        bos_errors = torch.stack(self.errors) - errors  # constants, like biases
        layer, pos, _, vectors = self.writes(feature_index)
        written = torch.zeros_like(errors).index_put_((layer, pos), vectors, accumulate=True)
        scale = 0.0 if biases_only else 1.0
        leaves = {
            "embed": (scale * self.embed).expand(batch, *self.embed.shape).clone().requires_grad_(True),
            "mlp": (scale * (written + errors)).expand(batch, *errors.shape).clone().requires_grad_(True),
        }
        readouts: dict[str, Tensor] = {}
        biases = [self.replacement.out_bias(layer) + bos_errors[layer] for layer in range(self.n_layers)]

        def mlp_out(layer: int, act: Tensor) -> Tensor:
            return biases[layer] + leaves["mlp"][:, layer]

        fwd: list[Hook] = [(hooks.name("embed"), lambda act, hook: leaves["embed"]), *self._hooks(mlp_out)]
        readout_names = [*hooks.layer_names("ln2_normalized", self.n_layers), hooks.name("ln_final_normalized")]
        fwd += [(name, store_hook(readouts)) for name in readout_names]
        # the attention patterns and LN scales are replaced by detached copies, so gradients see a linear map
        self.model.run_with_hooks(self.tokens[None].expand(batch, -1), fwd_hooks=fwd, return_type=None)
        return leaves, readouts


def _slots(
    local: LocalReplacement, features: Int[Tensor, "n 3"]
) -> tuple[Float[Tensor, "slot m d"], Int[Tensor, "slot m"]]:
    """Every feature's writes grouped by where they land (slot = layer * pos + position): ``vectors[slot, i]`` is
    the i-th write there (zero padding) and ``node[slot, i]`` its feature's row (``len(features)`` for padding)."""
    n_pos = len(local.tokens)
    layer, pos, node, vectors = local.writes(features)
    slot = layer * n_pos + pos
    order = slot.argsort(stable=True)
    slot, node, vectors = slot[order], node[order], vectors[order]
    n_slots = local.n_layers * n_pos
    counts = torch.bincount(slot, minlength=n_slots)
    rank = torch.arange(len(slot), device=slot.device) - (counts.cumsum(0) - counts)[slot]
    m = max(int(counts.max()) if len(slot) else 0, 1)
    padded = vectors.new_zeros(n_slots, m, vectors.shape[-1]).index_put_((slot, rank), vectors)
    nodes = torch.full((n_slots, m), len(features), device=slot.device).index_put_((slot, rank), node)
    return padded, nodes


def attribute(
    model: HookedTransformer,
    transcoders: Transcoders | CrossLayerTranscoder,
    prompt: str | Int[Tensor, " pos"],
    max_logits: int = 10,
    logit_prob: float = 0.95,
    batch_size: int = 128,
    progress: bool = True,
) -> AttributionGraph:
    """The attribution graph of ``prompt``: the logit targets are the most likely next tokens until their
    probabilities add up to ``logit_prob`` (at most ``max_logits``), read along demeaned unembedding columns;
    every active feature is a target too. One forward pass of ``batch_size`` copies of the prompt, then one
    backward pass per ``batch_size`` targets, from the readouts those targets read (so a batch of early-layer
    features backpropagates through early layers only). Per-layer transcoders or a cross-layer transcoder."""
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

    device = tokens.device
    n_feat, n_pos, L = len(features), len(tokens), model.cfg.n_layers
    n_nodes = n_feat + L * n_pos + n_pos + n_logits
    # each target is read along one direction at one place: (readout index, position, direction, constant)
    where = torch.cat([features[:, 0], torch.full((n_logits,), L, device=device)])  # L: final residual
    at = torch.cat([features[:, 1], torch.full((n_logits,), n_pos - 1, device=device)])
    encoders, b_enc = torch.zeros(n_feat, model.cfg.d_model, device=device), torch.zeros_like(acts)
    for layer in range(L):  # a feature's pre-activation reads its encoder vector
        mine = (features[:, 0] == layer).nonzero().squeeze(1)
        encoders[mine], b_enc[mine] = local.replacement.encoder_vectors(layer, features[mine, 2])
    directions = torch.cat([encoders, logit_dirs])  # [n_targets, d]
    constants = torch.cat([b_enc, logit_bias])
    names = [*hooks.layer_names("ln2_normalized", L), hooks.name("ln_final_normalized")]

    def read(readouts: dict[str, Tensor]) -> Tensor:
        """Every target's value in the (batch-1) forward pass that gave ``readouts``."""
        stacked = torch.stack([readouts[name][0] for name in names])  # [L + 1, pos, d]
        return (stacked[where, at] * directions).sum(-1) + constants

    with torch.no_grad():
        target_values = read(local.linear_forward(1, features)[1])
        bias_values = read(local.linear_forward(1, features, biases_only=True)[1])  # every leaf at zero: biases only

    # one forward pass of batch_size copies, then one backward pass per batch of targets, each copy carrying
    # one target's direction as its gradient
    targets = torch.cat([torch.arange(n_feat), torch.arange(n_nodes - n_logits, n_nodes)]).to(device)
    copies = min(batch_size, len(targets))
    leaves, readouts = local.linear_forward(copies, features)
    inputs = [leaves["mlp"], leaves["embed"]]
    errors = local.error_nodes()
    # feature j's edge: the gradient where each of its writes lands, dotted with what it writes there; grouped by
    # landing place, that is one batched matmul ([slot, batch, d] @ [slot, d, m]) per backward pass
    slot_vectors, slot_nodes = _slots(local, features)
    slot_vectors_T, flat_nodes = slot_vectors.transpose(1, 2), slot_nodes.flatten()
    adjacency = torch.zeros(n_nodes, n_nodes, device=device)
    chunks = list(range(0, len(targets), copies))
    for start in tqdm(chunks, desc="attribution (backward passes)", disable=not progress):
        rows = torch.arange(start, min(start + copies, len(targets)), device=device)
        n, index = len(rows), targets[rows]
        used = where[rows].unique().tolist()  # backpropagate from the readouts this batch reads only
        grad_outputs = [torch.zeros_like(readouts[names[o]]) for o in used]
        for o, grad in zip(used, grad_outputs, strict=True):
            mine = where[rows] == o
            grad[mine.nonzero().squeeze(1), at[rows][mine]] = directions[rows][mine]
        outputs = [readouts[names[o]] for o in used]
        grads = torch.autograd.grad(outputs, inputs, grad_outputs, retain_graph=True, allow_unused=True)
        g_mlp, g_emb = (torch.zeros_like(x) if g is None else g for g, x in zip(grads, inputs, strict=True))
        g_mlp = g_mlp[:n]
        per_slot = torch.bmm(g_mlp.flatten(1, 2).transpose(0, 1), slot_vectors_T)  # [slot, n, m]
        edges = torch.zeros(n, n_feat + 1, device=device).index_add_(1, flat_nodes, per_slot.transpose(0, 1).flatten(1))
        adjacency[index, :n_feat] = edges[:, :n_feat]
        adjacency[index, n_feat : n_feat + L * n_pos] = (g_mlp * errors).sum(-1).flatten(1)
        adjacency[index, n_feat + L * n_pos : n_nodes - n_logits] = (g_emb[:n] * local.embed).sum(-1)
    return AttributionGraph(
        tokens=tokens.cpu(),
        str_tokens=cast(list[str], model.to_str_tokens(tokens)),
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
    transcoders: Transcoders | CrossLayerTranscoder,
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

    clean = value(local.run(None, freeze_attention, freeze_layernorm))
    out = []
    for i in nodes:
        if not 0 <= i < graph.n_features:
            raise ValueError(f"Node {i} is not a feature node (there are {graph.n_features}).")
        layer, pos, feat = graph.features[i].tolist()
        new = scale * graph.activations[i].item()
        out.append(value(local.run({(layer, pos, feat): new}, freeze_attention, freeze_layernorm)) - clean)
    return torch.tensor(out)


def head_contributions(
    model: HookedTransformer,
    transcoders: Transcoders | CrossLayerTranscoder,
    tokens: Int[Tensor, " pos"],
    direction: Float[Tensor, " d"],
) -> Float[Tensor, "layer head src"]:
    """How much each attention head, reading from each source position, adds to ``direction`` read at the last
    position (e.g. an IO-minus-S unembedding), in the prompt's local replacement model: each head's value
    vectors (bias removed) times the gradient there, so paths through later layers count too."""
    local = LocalReplacement(model, transcoders, tokens)
    values: dict[str, Tensor] = {}

    def keep(act, hook):
        act.retain_grad()
        values[hook.name] = act

    names = hooks.layer_names("v", local.n_layers)
    with model.hooks(fwd_hooks=[(name, keep) for name in names]):
        _, readouts = local.linear_forward(1, local.active_features()[0])
    (readouts[hooks.name("ln_final_normalized")][0, -1] @ direction.to(local.tokens.device)).backward()
    out = []
    for layer, name in enumerate(names):
        v, grad = values[name][0] - model.b_V[layer], values[name].grad  # [pos, head, d_head]
        assert grad is not None, "the direction does not depend on the heads' values"
        out.append((v * grad[0]).sum(-1).T)  # [head, pos]
    return torch.stack(out).detach().cpu()
