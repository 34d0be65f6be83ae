"""Hook points: the one place their names are built, and the hooks that splice replacements into a forward pass.

``name("z", 5)`` is ``"blocks.5.attn.hook_z"``, like TransformerLens's ``get_act_name``; every module of the suite
asks here rather than writing ``blocks.`` strings itself. A kind that TransformerLens's ``get_act_name`` also knows
means the same hook there (``"mlp_in"`` is ``hook_mlp_in``, the residual stream before the MLP's LayerNorm); the MLP's
normalised input, where a transcoder reads, is ``"ln2_normalized"``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import torch
from jaxtyping import Int
from torch import Tensor
from transformer_lens import HookedTransformer

Hook = tuple[str | Callable, Callable]  # (hook name or name filter, function), what run_with_hooks takes

LayerKind = Literal[
    "resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "ln2_normalized", "mlp_post",
    "q", "k", "v", "z", "pattern", "ln1_scale", "ln2_scale", "q_input", "k_input", "v_input", "mlp_in",
]  # fmt: skip
GlobalKind = Literal["embed", "pos_embed", "ln_final_scale", "ln_final_normalized"]
_LAYER = {
    "resid_pre": "hook_resid_pre",
    "resid_mid": "hook_resid_mid",
    "resid_post": "hook_resid_post",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "ln2_normalized": "ln2.hook_normalized",  # the MLP's input, after its LayerNorm (where a transcoder reads)
    "mlp_post": "mlp.hook_post",
    "q": "attn.hook_q",
    "k": "attn.hook_k",
    "v": "attn.hook_v",
    "z": "attn.hook_z",
    "pattern": "attn.hook_pattern",
    "ln1_scale": "ln1.hook_scale",
    "ln2_scale": "ln2.hook_scale",
    "q_input": "hook_q_input",  # each head's own copy of the residual stream its queries read (split_qkv_input)
    "k_input": "hook_k_input",  # ... its keys read
    "v_input": "hook_v_input",  # ... its values read
    "mlp_in": "hook_mlp_in",  # the residual stream the MLP reads, before its LayerNorm (use_hook_mlp_in)
}
_GLOBAL = {
    "embed": "hook_embed",
    "pos_embed": "hook_pos_embed",
    "ln_final_scale": "ln_final.hook_scale",
    "ln_final_normalized": "ln_final.hook_normalized",
}
assert set(_LAYER) == set(get_args(LayerKind)) and set(_GLOBAL) == set(get_args(GlobalKind))


def name(kind: LayerKind | GlobalKind, layer: int | None = None) -> str:
    """The hook name of ``kind`` at ``layer`` (e.g. ``name("resid_pre", 3)``); embedding and final-LayerNorm
    hooks take no layer."""
    if kind in _GLOBAL:
        if layer is not None:
            raise ValueError(f"{kind!r} is not inside a block: call name({kind!r}) without a layer.")
        return _GLOBAL[kind]
    if kind not in _LAYER:
        raise ValueError(f"Unknown hook kind {kind!r}; use one of {sorted(_LAYER) + sorted(_GLOBAL)}.")
    if layer is None or layer < 0:
        raise ValueError(f"{kind!r} lives in a block: give its layer (0 or more), e.g. name({kind!r}, 0).")
    return f"blocks.{layer}.{_LAYER[kind]}"


def layer_names(kind: LayerKind, n_layers: int) -> list[str]:
    """``name(kind, layer)`` for every layer, in order."""
    return [name(kind, layer) for layer in range(n_layers)]


def hook_layer(hook: str) -> int | None:
    """The block a hook point belongs to ("blocks.5.attn.hook_z" -> 5); None for embedding and final hooks."""
    parts = hook.split(".")
    return int(parts[1]) if parts[0] == "blocks" else None


# --- splicing: replacing an activation, keeping one, measuring the loss with hooks in place ---


def store_hook(into: dict[str, Tensor]) -> Callable:
    """A forward hook that keeps its activation in ``into`` under the hook's name (and leaves it unchanged)."""

    def hook(act, hook):
        into[hook.name] = act

    return hook


def zero_past_bos(act: Tensor, hook=None) -> Tensor:
    """A forward hook that zero-ablates an activation everywhere but position 0 (BOS)."""
    act = act.clone()
    act[:, 1:] = 0.0
    return act


def splice_hooks(splices: list[tuple[Callable[[Tensor], Tensor], str, str | None]]) -> list[Hook]:
    """Forward hooks that replace each ``(module, hook_name, input_hook)``'s activation at ``hook_name`` (past BOS)
    with the module's output: of that activation (``input_hook`` None, e.g. an SAE's reconstruction) or of the
    activation at ``input_hook`` (e.g. a transcoder's prediction). Each reads what the model, with every earlier
    splice in place, gives it."""
    stored: dict[str, Tensor] = {}
    hooks: list[Hook] = []
    for module, hook_name, input_hook in splices:

        def splice(act, hook, module=module, input_hook=input_hook):
            x = stored.pop(input_hook) if input_hook else act
            act = act.clone()
            act[:, 1:] = module(x[:, 1:].float()).to(act.dtype)
            return act

        hooks += ([(input_hook, store_hook(stored))] if input_hook else []) + [(hook_name, splice)]
    return hooks


def mean_loss(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    hooks: list[Hook],
    model_batch: int = 16,
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> float:
    """Mean next-token loss over ``tokens``, run with the forward ``hooks`` in chunks of ``model_batch`` rows (a
    large vocabulary's logits need not fit at once). ``loss_fn(logits, tokens)`` replaces the model's own loss (a
    learner's, say); each chunk's mean counts by its rows."""
    if len(tokens) == 0:
        raise ValueError("No rows of tokens to take the loss over.")
    total = 0.0
    with torch.inference_mode():
        for chunk in tokens.split(model_batch):
            chunk = chunk.to(model.cfg.device)
            if loss_fn is None:
                loss = model.run_with_hooks(chunk, return_type="loss", fwd_hooks=hooks)
            else:
                loss = loss_fn(model.run_with_hooks(chunk, fwd_hooks=hooks), chunk)
            total += float(loss) * len(chunk)
    return total / len(tokens)


def replace_with(value: Tensor) -> Callable:
    """A forward hook that returns ``value`` (one prompt's activation, without the batch axis), repeated over the
    batch, in place of the activation."""

    def hook(act, hook):
        return value.expand(act.shape[0], *value.shape)

    return hook
