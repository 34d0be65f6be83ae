"""Activation patching, path patching and attribution patching, with many patches per forward pass.

A sweep starts each run at the patched layer from a cached residual stream (the layers before it are the
same in every run) and stacks copies of the prompt batch along the batch axis, one copy per patch.
``benchmarks/patching.py`` times it against TransformerLens's ``patching`` module.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils import hooks
from interp_utils.heads import z_replacement_hooks
from interp_utils.hooks import Hook, hook_layer

Metric = Callable[[Float[Tensor, "batch pos vocab"]], Float[Tensor, " batch"]]  # one value per prompt
MAX_LOGITS = 5e7  # default cap on the logits one pass may hold (copies x batch x pos x vocab numbers)
Head = tuple[int, int]


@dataclass(frozen=True)
class Patch:
    """One activation to overwrite: a hook point, optionally one named position and one head."""

    hook: str  # a hook name, e.g. hooks.name("resid_pre", 3) or hooks.name("z", 5)
    pos: str | None = None  # a key of the positions dict (e.g. "S2"); None patches every position
    head: int | None = None  # for per-head hooks ([batch, pos, head, d_head]); None patches all heads


def resid_patches(model: HookedTransformer, positions: Sequence[str]) -> list[Patch]:
    """The residual stream before each layer at each named position, layer-major."""
    return [Patch(hooks.name("resid_pre", layer), pos) for layer in range(model.cfg.n_layers) for pos in positions]


def head_patches(model: HookedTransformer, pos: str | None = None) -> list[Patch]:
    """Every head's output ``z``, layer-major (at one named position, or all positions)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    return [Patch(hooks.name("z", layer), pos, head) for layer in range(n_layers) for head in range(n_heads)]


def _copies_per_pass(model: HookedTransformer, tokens: Tensor, max_elements: float) -> int:
    """How many copies of the batch fit in one pass, keeping the logits under ``max_elements`` numbers."""
    return max(1, int(max_elements // (tokens.numel() * model.cfg.d_vocab)))


def _write(view: Tensor, src: Tensor, patch: Patch, positions: dict[str, Tensor] | None) -> None:
    """Overwrite one copy's activation ``view`` ([batch, pos, ...]) with ``src`` where ``patch`` says."""
    if patch.pos is None:
        if patch.head is None:
            view[:] = src
        else:
            view[:, :, patch.head] = src[:, :, patch.head]
        return
    if positions is None or patch.pos not in positions:
        raise KeyError(f"Patch at position {patch.pos!r} but positions has {sorted(positions or {})}.")
    rows, cols = torch.arange(view.shape[0], device=view.device), positions[patch.pos].to(view.device)
    if patch.head is None:
        view[rows, cols] = src[rows, cols]
    else:
        view[rows, cols, patch.head] = src[rows, cols, patch.head]


@torch.inference_mode()
def patch_sweep(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    source: dict[str, Tensor],
    patches: Sequence[Patch],
    metric: Metric,
    positions: dict[str, Int[Tensor, " batch"]] | None = None,
    max_elements: float = MAX_LOGITS,
    progress: bool = False,
) -> Float[Tensor, " patch"]:
    """Run ``tokens`` once per patch with that activation taken from ``source``; the mean metric of each run.

    ``source`` maps hook names to activations of the same batch on other inputs (an ActivationCache
    works). Two savings over one full forward pass per patch: the layers before a patch are computed once
    and shared (each pass starts at the patched layer from a cached residual stream), and patches at the
    same layer share passes, as many copies of the batch as keep the logits under ``max_elements`` numbers.
    """
    missing = sorted({p.hook for p in patches} - set(source.keys()))
    if missing:
        raise KeyError(f"source has no activations for {missing[:5]}; cache them (run_with_cache) first.")
    batch = tokens.shape[0]
    per_pass = _copies_per_pass(model, tokens, max_elements)
    _, base = model.run_with_cache(tokens, names_filter=hooks.layer_names("resid_pre", model.cfg.n_layers))
    by_layer: dict[int | None, list[int]] = defaultdict(list)
    for i, patch in enumerate(patches):
        by_layer[hook_layer(patch.hook)].append(i)
    jobs = [(layer, idx[k : k + per_pass]) for layer, idx in by_layer.items() for k in range(0, len(idx), per_pass)]
    if progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="patching")
    out = torch.empty(len(patches))
    for layer, idx in jobs:
        chunk = [patches[i] for i in idx]
        by_hook: dict[str, list[tuple[int, Patch]]] = defaultdict(list)
        for copy, patch in enumerate(chunk):
            by_hook[patch.hook].append((copy, patch))

        def make_hook(items: list[tuple[int, Patch]], n: int = len(chunk)) -> Callable:
            def hook(act: Tensor, hook) -> Tensor:
                view = act.unflatten(0, (n, batch))
                for copy, patch in items:
                    _write(view[copy], source[patch.hook].to(act.device, act.dtype), patch, positions)
                return act

            return hook

        patchers: list[Hook] = [(name, make_hook(items)) for name, items in by_hook.items()]
        if layer is None:
            logits = model.run_with_hooks(tokens.repeat(len(chunk), 1), fwd_hooks=patchers)
        else:
            resid = base[hooks.name("resid_pre", layer)].repeat(len(chunk), 1, 1)
            logits = model.run_with_hooks(resid, start_at_layer=layer, fwd_hooks=patchers)
        out[idx] = torch.stack([metric(part).mean() for part in logits.split(batch)]).float().cpu()
    return out


# ---------------------------------------------------------------- path patching


@torch.inference_mode()
def path_patch_heads(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    clean_cache: dict[str, Tensor],
    corrupt_cache: dict[str, Tensor],
    senders: Sequence[Head],
    metric: Metric,
    receivers: Sequence[Head] | None = None,
    receiver_input: Literal["q", "k", "v"] = "q",
    max_elements: float = MAX_LOGITS,
) -> Float[Tensor, " sender"]:
    """Path patching (Wang et al. 2022): each sender head's corrupted output, along direct paths only.

    Step 1 runs ``tokens`` with one sender's ``z`` taken from ``corrupt_cache`` and every other head frozen at
    its clean value (MLPs recompute). With ``receivers=None`` the metric is read from that run's logits (the
    sender's direct path to the logits, plus paths through MLPs). Otherwise the receivers' ``receiver_input``
    ("q", "k" or "v") is saved from step 1 and step 2 reruns the clean tokens with only those inputs replaced.
    """
    if receiver_input not in ("q", "k", "v"):
        raise ValueError(f"receiver_input must be 'q', 'k' or 'v', got {receiver_input!r}.")
    per_pass = _copies_per_pass(model, tokens, max_elements)
    out = []
    for start in range(0, len(senders), per_pass):
        chunk = list(senders[start : start + per_pass])
        out += _path_patch_chunk(model, tokens, clean_cache, corrupt_cache, chunk, metric, receivers, receiver_input)
    return torch.stack(out).cpu()


def _path_patch_chunk(model, tokens, clean_cache, corrupt_cache, chunk, metric, receivers, receiver_input) -> list:
    """Path patching for a few senders at once, one copy of the batch per sender."""
    batch, n = tokens.shape[0], len(chunk)

    def freeze(z: Tensor, hook) -> Tensor:
        view = z.unflatten(0, (n, batch))
        view[:] = clean_cache[hook.name].to(z.device, z.dtype)
        for copy, (s_layer, s_head) in enumerate(chunk):
            if s_layer == hook.layer():
                view[copy, :, :, s_head] = corrupt_cache[hook.name][:, :, s_head].to(z.device, z.dtype)
        return z

    frozen = [(name, freeze) for name in hooks.layer_names("z", model.cfg.n_layers)]
    big = tokens.repeat(n, 1)
    if receivers is None:
        return [metric(part).mean() for part in model.run_with_hooks(big, fwd_hooks=frozen).split(batch)]
    layers = sorted({layer for layer, _ in receivers})
    saved: dict[str, Tensor] = {}

    def save(act: Tensor, hook) -> None:
        saved[hook.name] = act.clone()

    names = [hooks.name(receiver_input, layer) for layer in layers]
    model.run_with_hooks(
        big, return_type=None, fwd_hooks=frozen + [(name, save) for name in names], stop_at_layer=layers[-1] + 1
    )

    def replace(act: Tensor, hook) -> Tensor:
        heads_here = [h for layer, h in receivers if layer == hook.layer()]
        act[:, :, heads_here] = saved[hook.name][:, :, heads_here]
        return act

    logits = model.run_with_hooks(big, fwd_hooks=[(name, replace) for name in names])
    return [metric(part).mean() for part in logits.split(batch)]


# ---------------------------------------------------------------- attribution patching


def attribution_patch_heads(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    source_cache: dict[str, Tensor],
    metric: Metric,
) -> Float[Tensor, "layer head"]:
    """Linear estimate of patching each head's ``z`` from ``source_cache`` into a run on ``tokens``.

    (z_source - z) . d metric / d z, from one forward and one backward pass (Nanda 2023).
    """
    z_acts: dict[str, Tensor] = {}

    def keep(z: Tensor, hook) -> Tensor:
        z.retain_grad()
        z_acts[hook.name] = z
        return z

    names = hooks.layer_names("z", model.cfg.n_layers)
    with torch.enable_grad():
        logits = model.run_with_hooks(tokens, fwd_hooks=[(name, keep) for name in names])
        metric(logits).mean().backward()
    estimate = []
    for n in names:  # the gradient is of the batch mean
        z, grad = z_acts[n], z_acts[n].grad
        assert grad is not None, "the metric does not depend on the heads' outputs"
        estimate.append(((source_cache[n].to(z.device) - z.detach()) * grad).sum((0, 1, 3)))
    model.zero_grad(set_to_none=True)
    return torch.stack(estimate).detach().cpu()


# ---------------------------------------------------------------- circuits


@torch.inference_mode()
def mean_ablation_hooks(
    model: HookedTransformer,
    reference_cache: dict[str, Tensor],
    groups: Int[Tensor, " batch"],
    keep: Sequence[Head],
) -> list[Hook]:
    """Hooks that replace the ``z`` of every head not in ``keep`` with its mean over the reference prompts of
    the same group (prompts sharing a template and length), position by position, as Wang et al. do."""
    keep_set = {(int(layer), int(head)) for layer, head in keep}
    groups = groups.cpu()
    replacements: dict[int, tuple[list[int], Tensor | float]] = {}
    for layer in range(model.cfg.n_layers):
        ablate = [h for h in range(model.cfg.n_heads) if (layer, h) not in keep_set]
        if not ablate:
            continue
        ref = reference_cache[hooks.name("z", layer)]
        means = torch.empty_like(ref)
        for g in groups.unique():
            rows = (groups == g).nonzero().flatten().to(ref.device)
            means[rows] = ref[rows].mean(0, keepdim=True)
        replacements[layer] = (ablate, means[:, :, ablate])
    return z_replacement_hooks(replacements)
