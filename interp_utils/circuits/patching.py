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
from transformer_lens import ActivationCache, HookedTransformer

from interp_utils.core import hooks
from interp_utils.core.hooks import Hook, hook_layer
from interp_utils.core.runtime import copies_per_pass

Metric = Callable[[Float[Tensor, "batch pos vocab"]], Float[Tensor, " batch"]]  # one value per prompt
MAX_LOGITS = 5e7  # default cap on the logits one pass may hold (copies x batch x pos x vocab numbers)
Head = tuple[int, int]
Cache = dict[str, Tensor] | ActivationCache  # activations by hook name (run_with_cache gives one)


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
    source: Cache,
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
    per_pass = copies_per_pass(tokens.numel() * model.cfg.d_vocab, max_elements)  # the logits of each copy
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
    clean_cache: Cache,
    corrupt_cache: Cache,
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
    per_pass = copies_per_pass(tokens.numel() * model.cfg.d_vocab, max_elements)  # the logits of each copy
    out = []
    for start in range(0, len(senders), per_pass):
        chunk = list(senders[start : start + per_pass])
        out += _path_patch_chunk(model, tokens, clean_cache, corrupt_cache, chunk, metric, receivers, receiver_input)
    return torch.stack(out).cpu()


def freeze_hooks(clean_cache: Cache, corrupt_cache: Cache, senders: Sequence[Head], n_layers: int) -> list[Hook]:
    """Path patching's first step for a run of ``len(senders)`` stacked copies of the batch: every head's ``z``
    frozen at its clean value, except that copy ``i`` takes sender ``i``'s ``z`` from ``corrupt_cache``."""
    n = len(senders)

    def freeze(z: Tensor, hook) -> Tensor:
        view = z.unflatten(0, (n, z.shape[0] // n))
        view[:] = clean_cache[hook.name].to(z.device, z.dtype)
        for copy, (s_layer, s_head) in enumerate(senders):
            if s_layer == hook.layer():
                view[copy, :, :, s_head] = corrupt_cache[hook.name][:, :, s_head].to(z.device, z.dtype)
        return z

    return [(name, freeze) for name in hooks.layer_names("z", n_layers)]


@torch.inference_mode()
def receiver_inputs(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    clean_cache: Cache,
    corrupt_cache: Cache,
    senders: Sequence[Head],
    layers: Sequence[int],
    receiver_input: Literal["q", "k", "v"] = "q",
) -> dict[str, Tensor]:
    """The ``receiver_input`` ("q", "k" or "v") of every head at ``layers`` in path patching's first run: one copy
    of the batch per sender (stacked along the batch axis), that sender corrupted and all other heads frozen clean."""
    if receiver_input not in ("q", "k", "v"):
        raise ValueError(f"receiver_input must be 'q', 'k' or 'v', got {receiver_input!r}.")
    saved: dict[str, Tensor] = {}

    def save(act: Tensor, hook) -> None:
        saved[hook.name] = act.clone()

    names = [hooks.name(receiver_input, layer) for layer in sorted(set(layers))]
    model.run_with_hooks(
        tokens.repeat(len(senders), 1),
        return_type=None,
        fwd_hooks=freeze_hooks(clean_cache, corrupt_cache, senders, model.cfg.n_layers) + [(n, save) for n in names],
        stop_at_layer=max(layers) + 1,
    )
    return saved


def _path_patch_chunk(model, tokens, clean_cache, corrupt_cache, chunk, metric, receivers, receiver_input) -> list:
    """Path patching for a few senders at once, one copy of the batch per sender."""
    batch, n = tokens.shape[0], len(chunk)
    big = tokens.repeat(n, 1)
    if receivers is None:
        frozen = freeze_hooks(clean_cache, corrupt_cache, chunk, model.cfg.n_layers)
        return [metric(part).mean() for part in model.run_with_hooks(big, fwd_hooks=frozen).split(batch)]
    layers = sorted({layer for layer, _ in receivers})
    saved = receiver_inputs(model, tokens, clean_cache, corrupt_cache, chunk, layers, receiver_input)

    def replace(act: Tensor, hook) -> Tensor:
        heads_here = [h for layer, h in receivers if layer == hook.layer()]
        act[:, :, heads_here] = saved[hook.name][:, :, heads_here]
        return act

    logits = model.run_with_hooks(big, fwd_hooks=[(name, replace) for name in saved])
    return [metric(part).mean() for part in logits.split(batch)]


# ---------------------------------------------------------------- attribution patching


def attribution_patch_heads(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    source_cache: Cache,
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


Kept = Head | tuple[int, int, str]  # (layer, head): at every position; (layer, head, pos): only at a named position


def ablate_except(
    z: Float[Tensor, "batch pos head d_head"],
    means: Float[Tensor, "batch pos head d_head"],
    keep: Sequence[tuple[int, Int[Tensor, " batch"] | None]],
) -> Float[Tensor, "batch pos head d_head"]:
    """``means`` everywhere except the kept entries of ``z``: each ``(head, pos)`` of ``keep`` keeps that head's
    ``z`` at each prompt's own position ``pos[b]``, or at every position when ``pos`` is None."""
    out = means.to(z.device, z.dtype).clone()
    rows = torch.arange(z.shape[0], device=z.device)
    for head, pos in keep:
        if pos is None:
            out[:, :, head] = z[:, :, head]
        else:
            out[rows, pos.to(z.device), head] = z[rows, pos.to(z.device), head]
    return out


def group_means(reference: Float[Tensor, "batch pos ..."], groups: Int[Tensor, " batch"]) -> Tensor:
    """Each prompt's row replaced by the mean of the rows in its group (prompts sharing a template and length)."""
    groups = groups.to(reference.device)
    means = torch.empty_like(reference)
    for g in groups.unique():
        rows = (groups == g).nonzero().flatten()
        means[rows] = reference[rows].mean(0, keepdim=True)
    return means


@torch.inference_mode()
def mean_ablation_hooks(
    model: HookedTransformer,
    reference_cache: Cache,
    groups: Int[Tensor, " batch"],
    keep: Sequence[Kept],
    positions: dict[str, Int[Tensor, " batch"]] | None = None,
    ablate: Callable[..., Tensor] = ablate_except,
) -> list[Hook]:
    """Hooks that replace every head's ``z`` outside ``keep`` with its mean over the reference prompts of the same
    group, position by position, as Wang et al. do. ``keep`` holds heads ``(layer, head)``, kept at every position,
    or ``(layer, head, pos)`` pairs, kept only at each prompt's position ``positions[pos]``.
    ``ablate(z, means, keep)`` does the replacing (notebook 03's learner writes one)."""
    by_layer: dict[int, list[tuple[int, Tensor | None]]] = defaultdict(list)
    for item in keep:
        if len(item) == 3:
            if positions is None or item[2] not in positions:
                raise KeyError(f"{item} keeps a head at {item[2]!r}: pass positions with that key (batch.positions).")
            by_layer[int(item[0])].append((int(item[1]), positions[item[2]]))
        else:
            by_layer[int(item[0])].append((int(item[1]), None))
    out: list[Hook] = []
    for layer in range(model.cfg.n_layers):
        keep_here = by_layer.get(layer, [])
        if {h for h, pos in keep_here if pos is None} == set(range(model.cfg.n_heads)):
            continue
        means = group_means(reference_cache[hooks.name("z", layer)], groups)

        def hook(z: Tensor, hook, means: Tensor = means, keep_here: list = keep_here) -> Tensor:
            return ablate(z, means, keep_here)

        out.append((hooks.name("z", layer), hook))
    return out
