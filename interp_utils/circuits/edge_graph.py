"""A model's computational graph at the granularity of circuit discovery, and patching along its edges.

Upstream nodes write to the residual stream: the embeddings (token + position), each head, each MLP. Downstream
nodes read from it: each head's query, key and value inputs, each MLP's input, the logits. An edge runs from every
upstream node to every later downstream node (Conmy et al. 2023). Patching an edge replaces what flows along it, the
upstream node's output, by its value on the corrupted input, with everything else computed as usual. EAP and EAP-IG,
which estimate every edge's effect from gradients, are in :mod:`interp_utils.circuits.edge_attribution`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.core.hooks import Hook
from interp_utils.core.runtime import copies_per_pass

Metric = Callable[[Tensor], Tensor]  # logits [batch pos vocab] -> a scalar tensor (differentiable for EAP)
Letter = Literal["q", "k", "v"]
MAX_ELEMENTS = 5e7  # default cap on the numbers one patched pass holds (copies x batch x pos x (upstream x d + vocab))


@dataclass(frozen=True)
class EdgeGraph:
    """The nodes of a model's graph, in the order the forward pass computes them.

    Upstream: ``embed``, then per layer each head ``"l.h"`` and the MLP ``"mlp l"``. Downstream: per layer each head's
    ``"l.h.q"``, ``"l.h.k"``, ``"l.h.v"`` and ``"mlp l"``, then ``"logits"``. An upstream node feeds a downstream node
    when it comes earlier in the forward pass (``allowed``)."""

    n_layers: int
    n_heads: int
    has_mlp: bool

    @classmethod
    def of(cls, model: HookedTransformer) -> EdgeGraph:
        if model.cfg.n_key_value_heads not in (None, model.cfg.n_heads):
            raise ValueError("Grouped-query attention is not supported: every head needs its own key and value input.")
        return cls(model.cfg.n_layers, model.cfg.n_heads, not model.cfg.attn_only)

    @property
    def _per_up(self) -> int:
        return self.n_heads + int(self.has_mlp)

    @property
    def _per_down(self) -> int:
        return 3 * self.n_heads + int(self.has_mlp)

    def head_up(self, layer: int, head: int) -> int:
        return 1 + layer * self._per_up + head

    def mlp_up(self, layer: int) -> int:
        return 1 + layer * self._per_up + self.n_heads

    def head_down(self, layer: int, head: int, letter: Letter) -> int:
        return layer * self._per_down + "qkv".index(letter) * self.n_heads + head

    def mlp_down(self, layer: int) -> int:
        return layer * self._per_down + 3 * self.n_heads

    @property
    def logits(self) -> int:
        return self.n_layers * self._per_down

    @property
    def upstream(self) -> list[str]:
        names = ["embed"]
        for layer in range(self.n_layers):
            names += [f"{layer}.{h}" for h in range(self.n_heads)] + ([f"mlp {layer}"] if self.has_mlp else [])
        return names

    @property
    def downstream(self) -> list[str]:
        names = []
        for layer in range(self.n_layers):
            names += [f"{layer}.{h}.{x}" for x in "qkv" for h in range(self.n_heads)]
            names += [f"mlp {layer}"] if self.has_mlp else []
        return names + ["logits"]

    def up_order(self) -> Int[Tensor, " up"]:
        """Where each upstream node is computed: 0 for the embeddings, 2l + 1 for layer l's heads, 2l + 2 its MLP."""
        per_layer = [2 * layer + 1 for layer in range(self.n_layers) for _ in range(self.n_heads)]
        if self.has_mlp:
            per_layer = []
            for layer in range(self.n_layers):
                per_layer += [2 * layer + 1] * self.n_heads + [2 * layer + 2]
        return torch.tensor([0, *per_layer])

    def down_order(self) -> Int[Tensor, " down"]:
        """Where each downstream node reads: 2l + 1 for layer l's heads, 2l + 2 its MLP, 2L + 1 the logits."""
        orders = []
        for layer in range(self.n_layers):
            orders += [2 * layer + 1] * (3 * self.n_heads) + ([2 * layer + 2] if self.has_mlp else [])
        return torch.tensor([*orders, 2 * self.n_layers + 1])

    @property
    def allowed(self) -> Bool[Tensor, "up down"]:
        """Which (upstream, downstream) pairs are edges: the upstream node is computed before the downstream reads."""
        return self.up_order()[:, None] < self.down_order()[None, :]

    @property
    def n_edges(self) -> int:
        return int(self.allowed.sum())

    def edges(self) -> Int[Tensor, "edge 2"]:
        """Every edge as (upstream index, downstream index), in a fixed order."""
        return self.allowed.nonzero()

    def edge_names(self) -> list[str]:
        up, down = self.upstream, self.downstream
        return [f"{up[u]} → {down[d]}" for u, d in self.edges().tolist()]

    def as_matrix(self, values: Float[Tensor, " edge"]) -> Float[Tensor, "up down"]:
        """Edge values (in ``edges()`` order) as an [upstream, downstream] matrix, zero where no edge is."""
        if values.shape != (self.n_edges,):
            raise ValueError(f"Expected one value per edge ({self.n_edges}), got shape {tuple(values.shape)}.")
        out = torch.zeros(len(self.upstream), len(self.downstream), dtype=values.dtype, device=values.device)
        out[self.allowed.to(values.device)] = values
        return out

    def as_edges(self, matrix: Tensor) -> Tensor:
        """An [upstream, downstream] matrix's values on the edges, in ``edges()`` order."""
        if matrix.shape != self.allowed.shape:
            raise ValueError(f"Expected an [upstream, downstream] matrix {tuple(self.allowed.shape)}, got "
                             f"{tuple(matrix.shape)}.")  # fmt: skip
        return matrix[self.allowed.to(matrix.device)]


@contextmanager
def edge_hooks_enabled(model: HookedTransformer, split: bool = True) -> Iterator[None]:
    """Turn on the hook points edge patching needs (each MLP's input; with ``split``, each head's own q/k/v input,
    which gradients need and which costs a plain pass several times over), and restore the model's settings
    afterwards. Head outputs come from their z (:func:`_head_outputs`), so no per-head result hook is needed."""
    cfg = model.cfg
    saved = (cfg.use_split_qkv_input, cfg.use_hook_mlp_in)
    model.set_use_split_qkv_input(split)
    if not cfg.attn_only:
        model.set_use_hook_mlp_in(True)
    try:
        yield
    finally:
        model.set_use_split_qkv_input(saved[0])
        if not cfg.attn_only:
            model.set_use_hook_mlp_in(saved[1])


def _head_outputs(model: HookedTransformer, layer: int, z: Tensor) -> Tensor:
    """Each head's output in the residual stream, [batch pos head d_model], from its z (before b_O)."""
    return torch.einsum("bphz,hzd->bphd", z, model.W_O[layer])


def _recording_hooks(model: HookedTransformer, graph: EdgeGraph, out: Tensor) -> list[Hook]:
    """Hooks that write every upstream node's output into ``out`` [copy batch pos up d] as the pass computes it."""
    n, batch, pos, _, d = out.shape

    def embed(act, hook):
        out[:, :, :, 0] = act.reshape(n, batch, pos, d)

    def heads(z, hook, layer):
        first = graph.head_up(layer, 0)
        out[:, :, :, first : first + graph.n_heads] = _head_outputs(model, layer, z).reshape(n, batch, pos, -1, d)

    def mlp(act, hook, layer):
        out[:, :, :, graph.mlp_up(layer)] = act.reshape(n, batch, pos, d)

    fwd: list[Hook] = [(hooks.name("resid_pre", 0), embed)]
    for layer in range(graph.n_layers):
        fwd.append((hooks.name("z", layer), lambda z, hook, layer=layer: heads(z, hook, layer)))
        if graph.has_mlp:
            fwd.append((hooks.name("mlp_out", layer), lambda act, hook, layer=layer: mlp(act, hook, layer)))
    return fwd


def downstream_points(graph: EdgeGraph) -> list[tuple[str, int, list[int], int]]:
    """Where each group of downstream nodes reads: (what: "q", "k", "v", "mlp" or "logits"; its layer; the downstream
    indices; how many upstream nodes come before it)."""
    up_order, points = graph.up_order(), []
    for layer in range(graph.n_layers):
        before = int((up_order < 2 * layer + 1).sum())
        for letter in "qkv":
            points.append((letter, layer, [graph.head_down(layer, h, letter) for h in range(graph.n_heads)], before))  # type: ignore[arg-type]
        if graph.has_mlp:
            points.append(("mlp", layer, [graph.mlp_down(layer)], before + graph.n_heads))
    points.append(("logits", graph.n_layers - 1, [graph.logits], len(up_order)))
    return points


def input_hook(what: str, layer: int) -> str:
    """The hook point of a downstream node's input: a head's own copy of the residual stream, an MLP's input, or the
    last residual stream (which the logits read)."""
    kind = {"q": "q_input", "k": "k_input", "v": "v_input", "mlp": "mlp_in", "logits": "resid_post"}[what]
    return hooks.name(kind, layer)  # type: ignore[arg-type]


def record_outputs(
    model: HookedTransformer, graph: EdgeGraph, tokens: Int[Tensor, "batch pos"]
) -> Float[Tensor, "batch pos up d_model"]:
    """Every upstream node's output on ``tokens`` (one forward pass)."""
    out = torch.zeros(1, *tokens.shape, len(graph.upstream), model.cfg.d_model, device=model.cfg.device)
    with torch.inference_mode():
        model.run_with_hooks(tokens.to(model.cfg.device), fwd_hooks=_recording_hooks(model, graph, out))
    return out[0]


def patch_hooks(
    model: HookedTransformer,
    graph: EdgeGraph,
    corrupt: Float[Tensor, "batch pos up d_model"],
    masks: Float[Tensor, "copy up down"],
) -> list[Hook]:
    """Hooks for a forward pass on ``copy`` stacked copies of the batch: in copy i, every edge where ``masks[i]`` is 1
    carries the upstream node's corrupted output instead of its output in this pass (``masks`` between 0 and 1
    mixes the two). A patched head input is recomputed for that head alone (its LayerNorm, then W_Q, W_K or W_V), so
    the pass runs at the cost of a plain forward pass plus the patched heads."""
    n, (batch, pos, n_up, d) = masks.shape[0], corrupt.shape
    outs = torch.zeros(n, batch, pos, n_up, d, device=corrupt.device, dtype=corrupt.dtype)
    resid: dict[int, Tensor] = {}

    def deltas(cols: list[int], before: int):
        """The rows (copies) that patch an edge into ``cols``, and what the patches add to each col's input."""
        m = masks[:, :before, cols]  # [copy, up, col]
        rows = m.abs().sum((1, 2)).nonzero().flatten()
        if len(rows) == 0:
            return rows, None
        m = m[rows]
        used = m.abs().sum((0, 2)).nonzero().flatten()  # the senders they patch
        diff = corrupt[None, :, :, used] - outs[rows][:, :, :, used]  # [row, batch, pos, used, d]
        return rows, torch.einsum("nbpud,nuc->nbpcd", diff, m[:, used])

    def keep_resid(act, hook, layer):
        resid[layer] = act

    def patch_head_input(act, hook, layer, letter, cols, before):  # act: [copy*batch, pos, head, d_head]
        rows, delta = deltas(cols, before)
        if delta is None:
            return act
        block = model.blocks[layer]
        x = resid[layer].reshape(n, batch, pos, 1, d)[rows] + delta  # each head's own input
        weight, bias = getattr(block.attn, f"W_{letter.upper()}"), getattr(block.attn, f"b_{letter.upper()}")
        new = torch.einsum("rbphd,hdz->rbphz", block.ln1(x), weight) + bias
        act = act.clone()
        view = act.view(n, batch, pos, graph.n_heads, -1)
        view[rows] = new.to(act.dtype)
        return act

    def patch_resid(act, hook, cols, before):  # an MLP's input or the final residual stream: [copy*batch, pos, d]
        rows, delta = deltas(cols, before)
        if delta is None:
            return act
        act = act.clone()
        view = act.view(n, batch, pos, d)
        view[rows] = view[rows] + delta[:, :, :, 0].to(act.dtype)
        return act

    fwd = _recording_hooks(model, graph, outs)
    for layer in range(graph.n_layers):
        fwd.append((hooks.name("resid_pre", layer), lambda act, hook, layer=layer: keep_resid(act, hook, layer)))
    for what, layer, cols, before in downstream_points(graph):
        if what in ("q", "k", "v"):  # patched at the head's q, k or v, recomputed from its own input
            fwd.append((hooks.name(what, layer), lambda act, hook, layer=layer, letter=what, cols=cols,  # type: ignore[arg-type]
                        before=before: patch_head_input(act, hook, layer, letter, cols, before)))  # fmt: skip
        else:
            fwd.append((input_hook(what, layer), lambda act, hook, cols=cols, before=before: patch_resid(act, hook,
                        cols, before)))  # fmt: skip
    return fwd


def patched_logits(
    model: HookedTransformer,
    graph: EdgeGraph,
    tokens: Int[Tensor, "batch pos"],
    corrupt: Float[Tensor, "batch pos up d_model"],
    masks: Float[Tensor, "copy up down"] | Bool[Tensor, "copy up down"],
) -> Float[Tensor, "copy batch pos vocab"]:
    """The logits with the edges in each of ``masks`` patched (one copy of the batch per mask)."""
    if masks.ndim != 3 or masks.shape[1:] != graph.allowed.shape:
        raise ValueError(f"masks must be [copy, upstream, downstream] = [n, {len(graph.upstream)}, "
                         f"{len(graph.downstream)}], got {tuple(masks.shape)}.")  # fmt: skip
    if corrupt.shape[:2] != tokens.shape:
        raise ValueError(f"corrupt outputs {tuple(corrupt.shape)} do not match tokens {tuple(tokens.shape)}: record "
                         "them with record_outputs on the corrupted tokens of the same shape.")  # fmt: skip
    masks = (masks.float() * graph.allowed.float()).to(corrupt.device)
    n = len(masks)
    with torch.inference_mode(), edge_hooks_enabled(model, split=False):
        logits = model.run_with_hooks(
            tokens.to(model.cfg.device).repeat(n, 1), fwd_hooks=patch_hooks(model, graph, corrupt, masks)
        )
    return logits.reshape(n, *tokens.shape, -1)


def _copies_per_pass(model: HookedTransformer, graph: EdgeGraph, tokens: Tensor, max_elements: float) -> int:
    """Copies of the batch per patched pass: each holds every upstream node's output and the logits."""
    return copies_per_pass(tokens.numel() * (len(graph.upstream) * model.cfg.d_model + model.cfg.d_vocab), max_elements)


def masked_metrics(
    model: HookedTransformer,
    graph: EdgeGraph,
    tokens: Int[Tensor, "batch pos"],
    corrupt: Float[Tensor, "batch pos up d_model"],
    masks: Bool[Tensor, "n up down"],
    metric: Metric,
    max_elements: float = MAX_ELEMENTS,
    progress: bool = False,
) -> Float[Tensor, " n"]:
    """``metric`` with the edges in each mask patched, the masks batched into passes as memory allows."""
    chunk = _copies_per_pass(model, graph, tokens, max_elements)
    values = []
    for start in tqdm(range(0, len(masks), chunk), desc="patched passes", disable=not progress, mininterval=1.0):
        logits = patched_logits(model, graph, tokens, corrupt, masks[start : start + chunk])
        values += [float(metric(copy)) for copy in logits]
    return torch.tensor(values)


def edge_patching(
    model: HookedTransformer,
    graph: EdgeGraph,
    tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    which: Int[Tensor, " n"] | None = None,
    max_elements: float = MAX_ELEMENTS,
    progress: bool = True,
) -> Float[Tensor, " n"]:
    """Exact edge patching, the reference: for every edge (or the edges at positions ``which`` of ``graph.edges()``),
    ``metric`` with that edge alone patched, minus ``metric`` on the clean run."""
    corrupt = record_outputs(model, graph, corrupt_tokens)
    with torch.inference_mode():
        clean = float(metric(model(tokens.to(model.cfg.device))))
    pairs = graph.edges() if which is None else graph.edges()[which]
    chunk, effects = _copies_per_pass(model, graph, tokens, max_elements), []
    for start in tqdm(range(0, len(pairs), chunk), desc="edge patching", disable=not progress, mininterval=1.0):
        part = pairs[start : start + chunk]  # one-hot masks, built a pass at a time (all of them may not fit)
        masks = torch.zeros(len(part), *graph.allowed.shape, dtype=torch.bool)
        masks[torch.arange(len(part)), part[:, 0], part[:, 1]] = True
        effects.append(masked_metrics(model, graph, tokens, corrupt, masks, metric, max_elements) - clean)
    return torch.cat(effects)
