"""Transcoders (Dunefsky et al. 2024): one sparse module per MLP that reads the MLP's input and predicts its output.

A per-layer transcoder reads ``hooks.name("ln2_normalized", L)`` (the MLP's input, after its LayerNorm) and predicts
``hooks.name("mlp_out", L)``; it is an :class:`interp_utils.dictionaries.sae.SAE` with ``d_out`` set. Here: training
one per layer and the next-token loss with MLPs replaced (conversion to circuit-tracer:
:mod:`interp_utils.tracing.circuit_tracer_interop`).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from typing import Protocol

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.core.hooks import Hook, mean_loss, splice_hooks, zero_past_bos
from interp_utils.core.loading import TextSource
from interp_utils.data import activations
from interp_utils.dictionaries.clt import CrossLayerTranscoder, clt_replacement_hooks
from interp_utils.dictionaries.sae import SAE, SAEConfig, train_sae
from interp_utils.dictionaries.training import TrainLog

Transcoders = dict[int, SAE]  # layer -> transcoder for that layer's MLP


class Replacement(Protocol):
    """What a replacement model needs from its transcoders, per-layer or cross-layer (model units throughout)."""

    @property
    def n_layers(self) -> int: ...

    def output_layers(self, layer: int) -> range: ...  # the MLP outputs layer ``layer``'s features write to
    def encode(self, layer: int, x: Tensor) -> Tensor: ...
    def decode(self, layer: int, features: Sequence[Tensor]) -> Tensor: ...  # features[s] for layers s <= layer
    def encoder_vectors(self, layer: int, ids: Tensor) -> tuple[Tensor, Tensor]: ...
    def decoder_vectors(self, layer: int, ids: Tensor) -> Tensor: ...  # [n, len(output_layers(layer)), d]
    def out_bias(self, layer: int) -> Tensor: ...


class PerLayer:
    """Per-layer transcoders seen as a :class:`Replacement`: layer L's features write to MLP output L only."""

    def __init__(self, transcoders: Transcoders):
        self.transcoders, self.n_layers = transcoders, len(transcoders)

    def output_layers(self, layer: int) -> range:
        return range(layer, layer + 1)

    def encode(self, layer: int, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d_sae"]:
        return self.transcoders[layer].encode(x)

    def decode(self, layer: int, features: Sequence[Tensor]) -> Float[Tensor, "... d"]:
        return self.transcoders[layer].decode(features[layer])

    def encoder_vectors(self, layer: int, ids: Int[Tensor, " n"]) -> tuple[Float[Tensor, "n d"], Float[Tensor, " n"]]:
        tc = self.transcoders[layer]
        return (tc.W_enc[:, ids] / tc.in_scale).T.detach(), tc.b_enc[ids].detach()

    def decoder_vectors(self, layer: int, ids: Int[Tensor, " n"]) -> Float[Tensor, "n 1 d"]:
        tc = self.transcoders[layer]
        return (tc.W_dec[ids] * tc.out_scale)[:, None].detach()

    def out_bias(self, layer: int) -> Float[Tensor, " d"]:
        tc = self.transcoders[layer]
        return (tc.b_dec * tc.out_scale).detach()


def as_replacement(model: HookedTransformer, transcoders: Transcoders | CrossLayerTranscoder) -> Replacement:
    """Per-layer transcoders (checked to cover every layer) or a CLT (checked against the model), as a Replacement."""
    if isinstance(transcoders, CrossLayerTranscoder):
        if (transcoders.n_layers, transcoders.cfg.d_model) != (model.cfg.n_layers, model.cfg.d_model):
            raise ValueError(
                f"The cross-layer transcoder spans {transcoders.n_layers} layers of width {transcoders.cfg.d_model}; "
                f"the model has {model.cfg.n_layers} of width {model.cfg.d_model}."
            )
        return transcoders
    if not isinstance(transcoders, dict):
        raise TypeError(f"Expected {{layer: transcoder}} or a CrossLayerTranscoder, got {type(transcoders).__name__}.")
    check_layers(model, transcoders)
    return PerLayer(transcoders)


def check_layers(model: HookedTransformer, transcoders: Transcoders, need_all: bool = True) -> None:
    """Raise a clear error unless ``transcoders`` are d_model -> d_model transcoders for layers the model has
    (for every layer, with ``need_all``)."""
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


def train_transcoders(
    model: HookedTransformer,
    layers: Iterable[int],
    cfg: SAEConfig,
    n_tokens: int,
    batch_size: int = 4096,
    pool_tokens: int = 2**17,
    n_ctx: int = 128,
    seed: int = 0,
    source: TextSource | None = None,
    **train_kwargs,
) -> tuple[Transcoders, dict[int, TrainLog]]:
    """One transcoder per layer in ``layers`` (``cfg`` gives the sizes), each trained on ``n_tokens`` fresh
    (MLP input, MLP output) pairs from :func:`interp_utils.data.activations.token_batches` (text from ``source``, by
    default the model's own), shuffled in a buffer of ``pool_tokens`` (no more than ``n_tokens``: a short run needs no
    bigger pool)."""
    if cfg.d_out is None:
        raise ValueError("cfg.d_out must be set (to d_model) for a transcoder.")
    pool_tokens = max(2 * batch_size, min(pool_tokens, n_tokens))
    transcoders, logs = {}, {}
    for layer in layers:
        start = time.perf_counter()
        torch.manual_seed(seed + layer)
        text = activations.token_batches(model, 32, n_ctx=min(n_ctx, model.cfg.n_ctx), seed=seed + layer, source=source)
        pair = [hooks.name("ln2_normalized", layer), hooks.name("mlp_out", layer)]
        buffer = activations.ActivationBuffer(model, pair, text, batch_size=batch_size, pool_tokens=pool_tokens)
        transcoders[layer] = SAE(cfg, device=model.W_E.device)
        logs[layer] = train_sae(
            transcoders[layer], buffer, n_tokens, batch_size=batch_size, desc=f"transcoder L{layer}", **train_kwargs
        )
        logs[layer].seconds = time.perf_counter() - start  # filling the buffer included
    return transcoders, logs


def replacement_hooks(transcoders: Transcoders | CrossLayerTranscoder) -> list[Hook]:
    """Forward hooks that replace each listed layer's MLP output (past BOS) with its transcoder's prediction
    (a cross-layer transcoder: every layer's)."""
    if isinstance(transcoders, CrossLayerTranscoder):
        return clt_replacement_hooks(transcoders)
    return splice_hooks(
        [
            (tc, hooks.name("mlp_out", layer), hooks.name("ln2_normalized", layer))
            for layer, tc in sorted(transcoders.items())
        ]
    )


@torch.no_grad()
def replacement_losses(
    model: HookedTransformer,
    transcoders: Transcoders | CrossLayerTranscoder,
    tokens: Int[Tensor, "batch pos"],
    model_batch: int = 16,
) -> dict[str, float]:
    """Next-token loss of the clean model, with every MLP zero-ablated (past BOS), and with the MLPs replaced by
    transcoders: all of them, all but layer 0's, and each layer's alone. Each transcoder reads the input the
    (partly replaced) model gives it, so errors compound as they would in a replacement model. A cross-layer
    transcoder replaces every MLP or none: clean, MLP-ablated and all."""
    if isinstance(transcoders, CrossLayerTranscoder):
        as_replacement(model, transcoders)
        layers = list(range(model.cfg.n_layers))
    else:
        check_layers(model, transcoders, need_all=False)
        layers = sorted(transcoders)
    out = {
        "clean": mean_loss(model, tokens, [], model_batch),
        "mlp_ablated": mean_loss(
            model, tokens, [(hooks.name("mlp_out", layer), zero_past_bos) for layer in layers], model_batch
        ),
        "all": mean_loss(model, tokens, replacement_hooks(transcoders), model_batch),
    }
    if isinstance(transcoders, CrossLayerTranscoder):
        return out
    if len(layers) > 1:
        rest = {layer: transcoders[layer] for layer in layers[1:]}
        out["all_but_first"] = mean_loss(model, tokens, replacement_hooks(rest), model_batch)
    for layer in layers:
        out[f"layer_{layer}"] = mean_loss(model, tokens, replacement_hooks({layer: transcoders[layer]}), model_batch)
    return out
