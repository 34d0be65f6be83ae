"""Interventions along directions: adding α · direction to the residual stream (activation steering, ActAdd by
Turner et al. 2023), and pinning an SAE latent to a value through the SAE's splice."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.core.hooks import Hook, LayerKind
from interp_utils.dictionaries.sae import SAE


def add_hooks(
    layer: int,
    vector: Float[Tensor, "... d_model"],
    alpha: float = 1.0,
    positions: Sequence[int] | None = None,
    at: Int[Tensor, " batch"] | None = None,
) -> list[Hook]:
    """A hook that adds ``alpha · vector`` to the residual stream entering ``layer`` (resid_pre): at ``positions``
    (the same for every row), at ``at`` (one position per row), or, when both are None, at every position after
    BOS. ``vector`` is ``[d_model]``, or ``[pos, d_model]`` added from position 0 on (an ActAdd vector)."""
    if vector.ndim not in (1, 2):
        raise ValueError(f"vector must be [d_model] or [pos, d_model], got shape {tuple(vector.shape)}.")
    if positions is not None and at is not None:
        raise ValueError("Give positions (the same for every row) or at (one per row), not both.")

    def hook(act: Tensor, hook) -> Tensor:
        act = act.clone()
        v = alpha * vector.to(act)
        if v.ndim == 2:
            n = min(len(v), act.shape[1])
            act[:, :n] += v[:n]
        elif at is not None:
            if len(at) != len(act):
                raise ValueError(f"at has {len(at)} positions for a batch of {len(act)} rows.")
            act[torch.arange(len(act), device=act.device), at.to(act.device)] += v
        elif positions is None:
            act[:, 1:] += v
        else:
            act[:, list(positions)] += v
        return act

    return [(hooks.name("resid_pre", layer), hook)]


def logit_gap(
    logits: Float[Tensor, "batch pos vocab"], at: Int[Tensor, " batch"], plus: Tensor, minus: Tensor
) -> Float[Tensor, " batch"]:
    """How much the model prefers one class of next token to another at each row's position ``at``: the logsumexp
    of the ``plus`` tokens' logits minus that of the ``minus`` tokens' (e.g. names against nouns)."""
    final = logits[torch.arange(len(logits), device=logits.device), at.to(logits.device)]
    return final[:, plus.to(final.device)].logsumexp(-1) - final[:, minus.to(final.device)].logsumexp(-1)


def slope(alphas: Sequence[float], values: Sequence[float]) -> float:
    """The least-squares slope of ``values`` against ``alphas``: effect per unit of α."""
    a, v = torch.tensor(alphas, dtype=torch.float64), torch.tensor(values, dtype=torch.float64)
    if len(a) != len(v) or len(a) < 2:
        raise ValueError(f"Need at least two (alpha, value) pairs of equal length, got {len(a)} and {len(v)}.")
    a = a - a.mean()
    return float((a * (v - v.mean())).sum() / (a * a).sum())


def class_separation(
    direction: Float[Tensor, " d"], x_true: Float[Tensor, "n d"], x_false: Float[Tensor, "m d"]
) -> float:
    """How far apart the two classes' means lie along the unit ``direction``: Marks & Tegmark's scale for adding a
    direction (their interventions.py), so that the added vector moves the False mean as far as the True mean lies."""
    unit = direction / direction.norm()
    return float((x_true.mean(0) - x_false.mean(0)).to(unit) @ unit)


def mt_effect(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    at: Int[Tensor, " batch"],
    layer: int,
    direction: Float[Tensor, " d_model"],
    x_true: Float[Tensor, "n d_model"],
    x_false: Float[Tensor, "m d_model"],
    plus: Tensor,
    minus: Tensor,
    size: float | None = None,
    positions: Int[Tensor, " batch"] | None = None,
    *,
    kind: LayerKind = "resid_post",
    start: int = 1,
    unit: bool = True,
    change: bool = True,
    sign: float = 1.0,
) -> Float[Tensor, " batch"]:
    """Marks & Tegmark's intervention (their interventions.py), measured per prompt: add the unit ``direction``
    scaled by the classes' separation along it (:func:`class_separation`; ``size`` replaces that scale) to the
    residual stream after ``layer`` at every position after BOS, or, with ``positions``, at one position per row,
    and return the change of :func:`logit_gap` at ``at`` (steered minus clean).

    The keyword switches give the variants a check compares against (the usual mistakes): ``kind`` the hook point
    of ``layer`` written to, ``start`` the first position, ``unit=False`` the direction unnormalised,
    ``change=False`` the steered gap itself, ``sign`` a factor on the scale."""
    alpha = sign * class_separation(direction, x_true, x_false) if size is None else size
    vector = direction / direction.norm() if unit else direction
    fwd = add_hooks(layer + 1, alpha * vector, at=positions) if positions is not None else []

    def hook(act: Tensor, hook) -> Tensor:
        act = act.clone()
        act[:, start:] += alpha * vector.to(act)
        return act

    fwd = fwd or [(hooks.name(kind, layer), hook)]
    with torch.inference_mode():
        steered = model.run_with_hooks(tokens, fwd_hooks=fwd)
        clean = model(tokens)
    gap = logit_gap(steered, at, plus, minus)
    return gap - logit_gap(clean, at, plus, minus) if change else gap


def pad_pair(a: Int[Tensor, "1 p"], b: Int[Tensor, "1 q"], pad_id: int) -> tuple[Tensor, Tensor]:
    """Two token rows brought to the same length by appending ``pad_id`` to the shorter (ActAdd pads with spaces), so
    that their residual streams can be subtracted position by position."""
    n = max(a.shape[1], b.shape[1])
    grow = [torch.cat([t, t.new_full((1, n - t.shape[1]), pad_id)], 1) for t in (a, b)]
    return grow[0], grow[1]


@torch.inference_mode()
def actadd_vector(model: HookedTransformer, plus: str, minus: str, layer: int) -> Float[Tensor, "pos d_model"]:
    """ActAdd's steering vector: the residual stream entering ``layer`` on ``plus`` minus on ``minus``, position by
    position; the two prompts must have the same number of tokens (pad the shorter with spaces)."""
    a, b = model.to_tokens(plus), model.to_tokens(minus)
    if a.shape != b.shape:
        raise ValueError(f"{plus!r} and {minus!r} have {a.shape[1]} and {b.shape[1]} tokens: ActAdd subtracts them "
                         "position by position, so pad the shorter one (with spaces) to the same length.")  # fmt: skip
    name = hooks.name("resid_pre", layer)
    _, cache_a = model.run_with_cache(a, names_filter=name)
    _, cache_b = model.run_with_cache(b, names_filter=name)
    return (cache_a[name] - cache_b[name])[0]


def pin_hooks(
    sae: SAE, hook_name: str, latents: Int[Tensor, " k"] | Sequence[int], value: float | Tensor
) -> list[Hook]:
    """A hook that pins SAE latents to ``value`` at ``hook_name`` past BOS and keeps the SAE's error: the activation
    becomes x + decode(f pinned) − decode(f), so with the latents pinned to what they were, nothing changes."""
    index = torch.as_tensor(latents, dtype=torch.long)

    def hook(act: Tensor, hook) -> Tensor:
        x = act[:, 1:].float()
        f = sae.encode(x)
        pinned = f.clone()
        pinned[..., index.to(f.device)] = torch.as_tensor(value, dtype=f.dtype, device=f.device)
        act = act.clone()
        act[:, 1:] = (x + sae.decode(pinned) - sae.decode(f)).to(act.dtype)
        return act

    return [(hook_name, hook)]
