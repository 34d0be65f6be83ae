"""Cross-layer transcoders (Ameisen et al. 2025): each feature reads one layer's MLP input and writes to that
layer's MLP output and every later one's.

Layer s's features are TopK(W_enc[s] x_s + b_enc[s]) (k per layer and token, as a per-layer transcoder), and MLP
output l is predicted as sum_{s <= l} f_s W_dec[s][:, l - s] + b_dec[l]. ``W_dec[s]`` is [d_sae, n_layers - s, d],
circuit-tracer's layout; each feature's decoders together have unit norm. Inputs and outputs are rescaled per
layer inside the module, as :class:`interp_utils.dictionaries.sae.SAE` does; ``encode`` and ``decode`` are in
model units.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float, Int
from torch import Tensor, nn
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.core.hooks import Hook
from interp_utils.core.loading import TextSource
from interp_utils.data import activations
from interp_utils.dictionaries.sae import geometric_median, topk_relu
from interp_utils.dictionaries.training import LoopConfig, TrainLog, train_loop


@dataclass
class CLTConfig:
    """Sizes: ``d_sae`` features per layer, ``k`` of them active per layer and token."""

    n_layers: int
    d_model: int
    d_sae: int
    k: int = 16
    aux_k: int = 0  # dead features per layer the AuxK loss may use (0: d_model // 2, as Gao et al.)
    aux_coeff: float = 1 / 32
    dead_tokens: int = 200_000

    def __post_init__(self) -> None:
        if not 0 < self.k <= self.d_sae:
            raise ValueError(f"k must be between 1 and d_sae={self.d_sae}, got {self.k}.")
        if self.n_layers < 1:
            raise ValueError(f"A cross-layer transcoder needs at least one layer, got n_layers={self.n_layers}.")
        self.aux_k = self.aux_k or max(1, self.d_model // 2)


class CrossLayerTranscoder(nn.Module):
    """Per-layer encoders [layer, d, d_sae]; decoders from layer s's features to MLP outputs s..n_layers-1."""

    in_scale: Tensor  # [layer] buffers, as SAE's scalars
    out_scale: Tensor

    def __init__(self, cfg: CLTConfig, device: str | torch.device = "cpu"):
        super().__init__()
        self.cfg = cfg
        L, d, f = cfg.n_layers, cfg.d_model, cfg.d_sae
        self.W_enc = nn.Parameter(torch.randn(L, d, f) / d**0.5)
        self.b_enc = nn.Parameter(torch.zeros(L, f))
        self.W_dec = nn.ParameterList([nn.Parameter(torch.randn(f, L - s, d)) for s in range(L)])
        self.b_dec = nn.Parameter(torch.zeros(L, d))
        self.register_buffer("in_scale", torch.ones(L))
        self.register_buffer("out_scale", torch.ones(L))
        self.normalise_decoder_()
        self.to(device)

    @property
    def n_layers(self) -> int:
        return self.cfg.n_layers

    def output_layers(self, layer: int) -> range:
        """The MLP outputs layer ``layer``'s features write to."""
        return range(layer, self.n_layers)

    def _check(self, x: Tensor, shape: tuple[int, ...], what: str) -> None:
        if tuple(x.shape[-len(shape) :]) != shape:
            raise ValueError(f"{what} must end in {shape}, got shape {tuple(x.shape)}.")
        if x.device != self.b_enc.device:
            raise ValueError(f"{what} is on {x.device} but the transcoder is on {self.b_enc.device}: move one.")

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        """TopK over each layer's features: the k largest pre-activations (through a ReLU), all others zero."""
        return topk_relu(pre, self.cfg.k)

    def pre_acts_all(self, x: Float[Tensor, "batch layer d"]) -> Float[Tensor, "batch layer d_sae"]:
        """Every layer's pre-activations from every layer's MLP input, in one einsum."""
        self._check(x, (self.n_layers, self.cfg.d_model), "The MLP inputs")
        return torch.einsum("bld,ldf->blf", x / self.in_scale[:, None], self.W_enc) + self.b_enc

    def decode_all(self, f: Float[Tensor, "batch layer d_sae"]) -> Float[Tensor, "batch layer d"]:
        """Every MLP output predicted (scaled units): layer l gets b_dec[l] + sum_{s <= l} f_s W_dec[s][:, l-s]."""
        out = self.b_dec.expand(f.shape[0], -1, -1)
        for s in range(self.n_layers):
            written = torch.einsum("bf,fkd->bkd", f[:, s], self.W_dec[s])  # [batch, layers s.., d]
            out = torch.cat([out[:, :s], out[:, s:] + written], dim=1)
        return out

    def forward(self, x: Float[Tensor, "batch layer d"]) -> Float[Tensor, "batch layer d"]:
        """Every MLP output predicted from every MLP input (model units)."""
        return self.decode_all(self.activate(self.pre_acts_all(x))) * self.out_scale[:, None]

    # --- one layer at a time, as the replacement model runs (model units) ---

    def encode(self, layer: int, x: Float[Tensor, "... d"]) -> Float[Tensor, "... d_sae"]:
        """Layer ``layer``'s features from its MLP input."""
        self._check(x, (self.cfg.d_model,), "The MLP input")
        return self.activate(x / self.in_scale[layer] @ self.W_enc[layer] + self.b_enc[layer])

    def decode(self, layer: int, features: Sequence[Tensor]) -> Float[Tensor, "... d"]:
        """MLP output ``layer``'s prediction from ``features[s]``, the features of every layer s <= ``layer``."""
        if len(features) <= layer:
            raise ValueError(f"Decoding layer {layer} needs the features of layers 0..{layer}, got {len(features)}.")
        out = self.b_dec[layer] + sum(features[s] @ self.W_dec[s][:, layer - s] for s in range(layer + 1))
        return out * self.out_scale[layer]

    def encoder_vectors(self, layer: int, ids: Int[Tensor, " n"]) -> tuple[Float[Tensor, "n d"], Float[Tensor, " n"]]:
        """Each feature's pre-activation is ``x . vector + bias`` on the model's own MLP input."""
        return (self.W_enc[layer][:, ids] / self.in_scale[layer]).T.detach(), self.b_enc[layer, ids].detach()

    def decoder_vectors(self, layer: int, ids: Int[Tensor, " n"]) -> Float[Tensor, "n out d"]:
        """What each feature writes per unit of activation to each of ``output_layers(layer)``."""
        return (self.W_dec[layer][ids] * self.out_scale[layer:, None]).detach()

    def out_bias(self, layer: int) -> Float[Tensor, " d"]:
        return (self.b_dec[layer] * self.out_scale[layer]).detach()

    # --- training ---

    def losses(
        self, x: Float[Tensor, "batch layer d"], y: Float[Tensor, "batch layer d"], dead: Tensor | None = None
    ) -> dict[str, Tensor]:
        """Squared error summed over every layer's output and its dimensions, averaged over tokens (scaled units),
        plus the AuxK loss: each layer's top dead features try to reconstruct the error they could write to."""
        pre = self.pre_acts_all(x)
        f = self.activate(pre)
        err = y / self.out_scale[:, None] - self.decode_all(f)
        out = {"mse": err.pow(2).sum((-1, -2)).mean(), "acts": f, "err": err}
        out["aux"] = self._aux_loss(pre, err, dead)
        out["loss"] = out["mse"] + self.cfg.aux_coeff * out["aux"]
        return out

    def _aux_loss(self, pre: Tensor, err: Tensor, dead: Tensor | None) -> Tensor:
        total = torch.zeros((), device=pre.device)
        if dead is None:
            return total
        for s in range(self.n_layers):
            if not dead[s].any():
                continue
            dead_pre = pre[:, s, dead[s]]
            f_dead = topk_relu(dead_pre, min(self.cfg.aux_k, dead_pre.shape[1]))
            fix = torch.einsum("bf,fkd->bkd", f_dead, self.W_dec[s][dead[s]])
            total = total + (err[:, s:].detach() - fix).pow(2).sum((-1, -2)).mean()
        return total

    @torch.no_grad()
    def init_from_data(self, x: Float[Tensor, "n layer d"], y: Float[Tensor, "n layer d"]) -> None:
        """Per-layer scales so that mean input and output norms are sqrt(d); b_dec at each output's median."""
        d = x.shape[-1]
        self.in_scale.copy_(x.norm(dim=-1).mean(0) / d**0.5)
        self.out_scale.copy_(y.norm(dim=-1).mean(0) / d**0.5)
        for layer in range(self.n_layers):
            self.b_dec[layer] = geometric_median(y[:, layer] / self.out_scale[layer])

    @torch.no_grad()
    def normalise_decoder_(self) -> None:
        """Each feature's decoders, to every layer together, at unit norm."""
        for W in self.W_dec:
            W.div_(W.norm(dim=(1, 2), keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_grads_(self) -> None:
        for W in self.W_dec:
            if W.grad is not None:
                unit = W / W.norm(dim=(1, 2), keepdim=True).clamp_min(1e-8)
                W.grad -= (W.grad * unit).sum((1, 2), keepdim=True) * unit


def clt_hooks(model: HookedTransformer) -> list[str]:
    """The activations a CLT trains on: every MLP input, then every MLP output."""
    L = model.cfg.n_layers
    return hooks.layer_names("ln2_normalized", L) + hooks.layer_names("mlp_out", L)


def train_clt(
    model: HookedTransformer,
    cfg: CLTConfig,
    n_tokens: int,
    batch_size: int = 512,
    lr: float = 1e-3,
    pool_tokens: int = 2**16,
    n_ctx: int = 128,
    seed: int = 0,
    lr_decay: float = 0.2,
    log_every: int = 10,
    progress: bool = True,
    source: TextSource | None = None,
) -> tuple[CrossLayerTranscoder, TrainLog]:
    """A CLT trained with Adam on ``n_tokens`` (MLP inputs, MLP outputs) of every layer at once, from the same
    shuffling buffer as the per-layer transcoders; dead features (not fired for ``min(cfg.dead_tokens,
    n_tokens // 4)`` tokens) train through the AuxK loss."""
    if cfg.n_layers != model.cfg.n_layers or cfg.d_model != model.cfg.d_model:
        raise ValueError(
            f"The config is for {cfg.n_layers} layers of width {cfg.d_model}; the model has "
            f"{model.cfg.n_layers} of width {model.cfg.d_model}."
        )
    start = time.perf_counter()
    torch.manual_seed(seed)
    L = cfg.n_layers
    # the model's own text unless ``source`` says otherwise
    text = activations.token_batches(model, 32, n_ctx=min(n_ctx, model.cfg.n_ctx), seed=seed, source=source)
    pool_tokens = max(2 * batch_size, min(pool_tokens, n_tokens))
    buffer = activations.ActivationBuffer(model, clt_hooks(model), text, batch_size=batch_size, pool_tokens=pool_tokens)
    device = model.W_E.device
    clt = CrossLayerTranscoder(cfg, device=device)
    first = next(buffer).to(device)
    clt.init_from_data(first[:, :L], first[:, L:])

    def step(opt: torch.optim.Optimizer, batch: Tensor, dead: Tensor, l1_scale: float) -> dict[str, Tensor]:
        out = clt.losses(batch[:, :L], batch[:, L:], dead)  # TopK: no L1 term to scale
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        clt.remove_parallel_grads_()
        opt.step()
        clt.normalise_decoder_()
        return out

    log = train_loop(
        clt,
        buffer,
        first,
        max(1, n_tokens // batch_size),
        step,
        lambda batch: batch[:, L:] / clt.out_scale[:, None],
        torch.zeros(L, cfg.d_sae, device=device),  # [layer, d_sae]: each layer's features counted on their own
        min(cfg.dead_tokens, max(1, n_tokens // 4)),
        LoopConfig(lr, 0.0, lr_decay, log_every, progress, "cross-layer transcoder"),
    )
    log.seconds = time.perf_counter() - start  # filling the buffer included
    return clt, log


def clt_replacement_hooks(clt: CrossLayerTranscoder) -> list[Hook]:
    """Forward hooks that replace every MLP's output (past BOS) with the CLT's prediction, each layer's features
    read from the input the (already replaced) model gives that layer."""
    features: dict[int, Tensor] = {}

    def read(act, hook):
        features[hook.layer()] = clt.encode(hook.layer(), act[:, 1:].float())

    def write(act, hook):
        layer = hook.layer()
        act = act.clone()
        act[:, 1:] = clt.decode(layer, [features[s] for s in range(layer + 1)]).to(act.dtype)
        return act

    L = clt.n_layers
    return [(name, read) for name in hooks.layer_names("ln2_normalized", L)] + [
        (name, write) for name in hooks.layer_names("mlp_out", L)
    ]
