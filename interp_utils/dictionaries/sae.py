"""Sparse autoencoders (Bricken et al. 2023; Gao et al. 2024) and transcoders (Dunefsky et al. 2024), and training.

One module, two activation functions: ``relu``, trained with an L1 penalty by one of two recipes (``bricken2023``:
plain L1 with unit-norm decoder rows and dead latents resampled; ``april2024``, Anthropic's April 2024 update: L1
weighted by each decoder row's norm, rows unconstrained), and ``topk`` (the k largest pre-activations kept, unit-norm
rows, dead latents trained by the AuxK loss; Gao et al.). With ``d_out`` set the same module is a transcoder: it
reads one activation and predicts another. Inputs are rescaled inside the module so that E||x|| = sqrt(d_in), so the
same L1 coefficient works at every layer and model; everything outside (``encode``, ``decode``, metrics) is in the
model's own units. Measuring SAEs is :mod:`interp_utils.dictionaries.sae_metrics`.

Three more architectures train in the same loop: ``jumprelu`` (Rajamanoharan et al. 2024), ``batchtopk`` (Bussmann et
al. 2024) and ``matryoshka`` (Bussmann et al. 2025); :mod:`interp_utils.dictionaries.architectures` explains them and
:mod:`interp_utils.dictionaries.saelens_format` saves any of the five as SAELens loads it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Float
from torch import Tensor, nn

from interp_utils.dictionaries import architectures as arch
from interp_utils.dictionaries.training import LoopConfig, TrainLog, model_unit_weights, train_loop

ARCHITECTURES = ("topk", "relu", "jumprelu", "batchtopk", "matryoshka")


@dataclass
class SAEConfig:
    """Sizes and sparsity settings; ``d_out`` makes a transcoder (target differs from input)."""

    d_in: int
    d_sae: int
    architecture: Literal["topk", "relu", "jumprelu", "batchtopk", "matryoshka"] = "topk"
    k: int = 32  # topk: latents kept per token; batchtopk, matryoshka: per token on average over a training batch
    l1_coeff: float = 5.0  # relu: the L1 penalty's weight
    recipe: Literal["bricken2023", "april2024"] = "bricken2023"  # relu: how the L1 penalty and decoder norms interact
    d_out: int | None = None
    aux_k: int = 0  # topk, batchtopk, matryoshka: dead latents the AuxK loss may use (0: d_in // 2, as Gao et al.)
    aux_coeff: float = 1 / 32
    dead_tokens: int = 200_000  # a latent that has not fired for this many training tokens is dead
    l0_coeff: float = 1.0  # jumprelu: lambda, the L0 penalty's weight (warmed up as the L1 coefficient is)
    bandwidth: float = 0.05  # jumprelu: eps, the straight-through estimator's kernel width (SAELens's default)
    init_threshold: float = 0.01  # jumprelu: every latent's threshold at the start (SAELens's default)
    threshold_lr: float = 0.01  # batchtopk, matryoshka: rate of the running average that sets the inference threshold
    prefixes: tuple[int, ...] = ()  # matryoshka: nested dictionary sizes, d_sae last (default d_sae/16, d_sae/4, d_sae)

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise ValueError(
                "architecture must be 'topk' or 'relu' (notebook 04's), or 'jumprelu', 'batchtopk' or 'matryoshka'; "
                f"got {self.architecture!r}."
            )
        if self.recipe not in ("bricken2023", "april2024"):
            raise ValueError(f"recipe must be 'bricken2023' or 'april2024', got {self.recipe!r}.")
        a = self.architecture
        arch.check_config(a, self.d_sae, self.k, self.bandwidth, self.init_threshold, self.l0_coeff, self.threshold_lr)
        if a == "matryoshka":
            self.prefixes = arch.matryoshka_prefixes(tuple(self.prefixes), self.d_sae)
        self.aux_k = self.aux_k or max(1, self.d_in // 2)

    @property
    def normalise_decoder(self) -> bool:
        """Decoder rows kept at unit norm: every architecture but the April 2024 update's L1. (SAELens leaves the
        decoder free instead and rescales activations by its row norms: the same functions, other training dynamics.)"""
        return self.architecture != "relu" or self.recipe == "bricken2023"

    @property
    def batch_topk(self) -> bool:
        """Trained with BatchTopK, run with one threshold: batchtopk and matryoshka."""
        return self.architecture in ("batchtopk", "matryoshka")

    @property
    def weight_l1_by_norm(self) -> bool:
        """The penalty is sum_i f_i ||W_dec,i|| (April 2024 update); plain sum_i f_i otherwise."""
        return self.architecture == "relu" and self.recipe == "april2024"


class SAE(nn.Module):
    """f = act(W_enc (x - b_dec) + b_enc), x_hat = W_dec f + b_dec (a transcoder skips the ``- b_dec``)."""

    in_scale: Tensor  # buffers: the input and output scales (see init_from_data)
    out_scale: Tensor
    threshold: Tensor  # jumprelu: a parameter [d_sae]; batchtopk, matryoshka: a buffer [] (the inference threshold)

    def __init__(self, cfg: SAEConfig, device: str | torch.device = "cpu"):
        super().__init__()
        self.cfg = cfg
        d_out = cfg.d_out or cfg.d_in
        W_dec = torch.randn(cfg.d_sae, d_out)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        if not cfg.normalise_decoder:
            W_dec *= 0.1  # unconstrained rows start short, so the norm-weighted penalty can grow the useful ones
        self.W_dec = nn.Parameter(W_dec)
        # tied initialisation (Gao et al.): each latent starts reading the direction it writes
        W_enc = W_dec.T.clone() if cfg.d_out is None else torch.randn(cfg.d_in, cfg.d_sae) / cfg.d_in**0.5
        self.W_enc = nn.Parameter(W_enc)
        self.b_enc = nn.Parameter(torch.zeros(cfg.d_sae))
        self.b_dec = nn.Parameter(torch.zeros(d_out))
        self.register_buffer("in_scale", torch.tensor(1.0))
        self.register_buffer("out_scale", torch.tensor(1.0))
        if cfg.architecture == "jumprelu":
            self.threshold = nn.Parameter(torch.full((cfg.d_sae,), float(cfg.init_threshold)))
        elif cfg.batch_topk:
            self.register_buffer("threshold", torch.tensor(0.0))
        self.to(device)

    @property
    def is_transcoder(self) -> bool:
        return self.cfg.d_out is not None

    def _check(self, x: Tensor, d: int, what: str) -> None:
        if x.shape[-1] != d:
            raise ValueError(f"{what} must end in dimension {d}, got shape {tuple(x.shape)}.")
        if x.device != self.W_dec.device:
            raise ValueError(
                f"{what} is on {x.device} but the SAE is on {self.W_dec.device}: move the SAE to the model's "
                f"device (sae.to(model.cfg.device)) or the input to the SAE's."
            )

    def pre_acts(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        """Encoder pre-activations, in the scaled units the SAE trains in."""
        self._check(x, self.cfg.d_in, "The SAE's input")
        x = x / self.in_scale
        if not self.is_transcoder:
            x = x - self.b_dec  # the pre-encoder bias: encode the offset from the data's centre
        return x @ self.W_enc + self.b_enc

    def activate(self, pre: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_sae"]:
        """ReLU, or TopK: the k largest pre-activations (through a ReLU), all others zero; JumpReLU with its learned
        thresholds; BatchTopK and Matryoshka at inference: ReLU above their one estimated threshold."""
        if self.cfg.architecture == "relu":
            return torch.relu(pre)
        if self.cfg.architecture == "jumprelu":
            return arch.jumprelu(pre, self.threshold, self.cfg.bandwidth)
        if self.cfg.batch_topk:
            return arch.threshold_relu(pre, self.threshold)
        return topk_relu(pre, self.cfg.k)

    def encode(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_sae"]:
        return self.activate(self.pre_acts(x))

    def decode(self, f: Float[Tensor, "... d_sae"]) -> Float[Tensor, "... d_out"]:
        self._check(f, self.cfg.d_sae, "Latent activations")
        return (f @ self.W_dec + self.b_dec) * self.out_scale

    def forward(self, x: Float[Tensor, "... d_in"]) -> Float[Tensor, "... d_out"]:
        return self.decode(self.encode(x))

    def losses(
        self,
        x: Float[Tensor, "batch d_in"],
        target: Tensor | None = None,
        dead: Tensor | None = None,
        l1_scale: float = 1.0,
    ) -> dict[str, Tensor]:
        """The training loss and its parts, in scaled units: squared error summed over dimensions, plus the L1
        penalty (relu; weighted by decoder norms in the April 2024 recipe), the L0 penalty (jumprelu; its coefficient
        scaled by ``l1_scale`` too) or the AuxK loss on dead latents (topk, batchtopk, matryoshka); Matryoshka adds
        the errors of its inner prefixes (``prefix_mse``: every prefix's, the last the whole dictionary's). A
        BatchTopK step in training mode with gradients on moves the inference threshold's running average."""
        y = (x if target is None else target) / self.out_scale
        pre = self.pre_acts(x)
        f = self.train_acts(pre)
        err = y - (f @ self.W_dec + self.b_dec)
        out = {"mse": err.pow(2).sum(-1).mean(), "acts": f, "err": err}
        if self.cfg.architecture == "relu":
            out["l1"] = (f * self.W_dec.norm(dim=1) if self.cfg.weight_l1_by_norm else f).sum(-1).mean()
            out["loss"] = out["mse"] + l1_scale * self.cfg.l1_coeff * out["l1"]
        elif self.cfg.architecture == "jumprelu":
            out["l0"] = self.l0_penalty(pre)
            out["loss"] = out["mse"] + l1_scale * self.cfg.l0_coeff * out["l0"]
        else:
            out["aux"] = self._aux_loss(pre, err, dead)
            out["loss"] = out["mse"] + self.cfg.aux_coeff * out["aux"]
        if self.cfg.architecture == "matryoshka":
            inner = self.prefix_losses(f, y)
            out["prefix_mse"] = torch.cat([inner, out["mse"][None]])
            out["loss"] = out["loss"] + inner.sum()
        if self.cfg.batch_topk and self.training and torch.is_grad_enabled():
            with torch.no_grad():
                self.update_threshold(f.detach())
        return out

    # The pieces of the newer architectures, as methods so that a subclass can put its own in (notebook 04 trains
    # with the learner's): the activations in training, JumpReLU's L0 penalty, Matryoshka's inner prefixes' errors
    # and BatchTopK's inference threshold.
    def train_acts(self, pre: Float[Tensor, "batch d_sae"]) -> Float[Tensor, "batch d_sae"]:
        """The activations in training: BatchTopK over the whole batch (batchtopk, matryoshka), else ``activate``."""
        return arch.batch_topk(pre, self.cfg.k) if self.cfg.batch_topk else self.activate(pre)

    def l0_penalty(self, pre: Float[Tensor, "batch d_sae"]) -> Tensor:
        """JumpReLU's L0 penalty: latents firing per token, averaged, with the straight-through threshold gradient."""
        return arch.l0_ste(pre, self.threshold, self.cfg.bandwidth).mean()

    def prefix_losses(self, f: Float[Tensor, "batch d_sae"], y: Float[Tensor, "batch d_out"]) -> Tensor:
        """Matryoshka: the squared error of each inner prefix of the dictionary alone (the whole one not included)."""
        return arch.prefix_mses(f, self.W_dec, self.b_dec, y, self.cfg.prefixes[:-1])

    def update_threshold(self, f: Float[Tensor, "batch d_sae"]) -> None:
        """BatchTopK: one step of the running average that sets the inference threshold, in place."""
        arch.update_threshold_(self.threshold, f, self.cfg.threshold_lr)

    def _aux_loss(self, pre: Tensor, err: Tensor, dead: Tensor | None) -> Tensor:
        """AuxK (Gao et al.): the top ``aux_k`` dead latents try to reconstruct the live latents' error."""
        if dead is None or not dead.any():
            return torch.zeros((), device=pre.device)
        dead_pre = pre[:, dead]
        f_dead = topk_relu(dead_pre, min(self.cfg.aux_k, dead_pre.shape[1]))
        return (err.detach() - f_dead @ self.W_dec[dead]).pow(2).sum(-1).mean()

    @torch.no_grad()
    def init_from_data(self, x: Float[Tensor, "n d_in"], target: Tensor | None = None) -> None:
        """Scales so that the mean input and target norms are sqrt(d); b_dec at the data's geometric median."""
        y = x if target is None else target
        self.in_scale.fill_(x.norm(dim=-1).mean().item() / x.shape[-1] ** 0.5)
        self.out_scale.fill_(y.norm(dim=-1).mean().item() / y.shape[-1] ** 0.5)
        self.b_dec.copy_(geometric_median(y / self.out_scale))

    @torch.no_grad()
    def normalise_decoder_(self) -> None:
        self.W_dec.div_(self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8))

    @torch.no_grad()
    def remove_parallel_grads_(self) -> None:
        """Project out the gradient along each unit decoder row, so a step does not just rescale it."""
        if self.W_dec.grad is not None:
            unit = self.W_dec / self.W_dec.norm(dim=1, keepdim=True).clamp_min(1e-8)
            self.W_dec.grad -= (self.W_dec.grad * unit).sum(1, keepdim=True) * unit


def topk_relu(pre: Float[Tensor, "... n"], k: int) -> Float[Tensor, "... n"]:
    """The k largest values along the last dimension, through a ReLU; every other entry zero."""
    values, indices = pre.topk(k, dim=-1)
    return torch.zeros_like(pre).scatter(-1, indices, torch.relu(values))


def geometric_median(points: Float[Tensor, "n d"], iterations: int = 30) -> Float[Tensor, " d"]:
    """The point minimising the summed distance to ``points`` (Weiszfeld's algorithm); Bricken et al.'s b_dec start."""
    median = points.mean(0)
    for _ in range(iterations):
        weights = 1 / (points - median).norm(dim=-1).clamp_min(1e-6)
        median = (weights[:, None] * points).sum(0) / weights.sum()
    return median


# --- training (the loop itself: interp_utils.dictionaries.training) ---


Batch = Tensor  # [batch, d_in] for an autoencoder, [batch, 2, d] (input, target) for a transcoder


def tensor_batches(data: Tensor, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """Shuffled minibatches of a tensor of activations, epoch after epoch (in ``generator``'s order if given)."""
    if len(data) < batch_size:
        raise ValueError(f"{len(data)} activations are fewer than one batch of {batch_size}; collect more.")
    while True:
        order = torch.randperm(len(data), generator=generator)
        for i in range(0, len(data) - batch_size + 1, batch_size):
            yield data[order[i : i + batch_size]]


def _split(batch: Batch, sae: SAE) -> tuple[Tensor, Tensor | None]:
    if sae.is_transcoder:
        if batch.ndim != 3 or batch.shape[1] != 2:
            raise ValueError(f"A transcoder trains on [batch, 2, d] (input, target) pairs, got {tuple(batch.shape)}.")
        return batch[:, 0], batch[:, 1]
    if batch.ndim != 2:
        raise ValueError(f"An SAE trains on [batch, d_in] activations, got {tuple(batch.shape)}.")
    return batch, None


def sae_train_step(
    sae: SAE, opt: torch.optim.Optimizer, x: Tensor, dead: Tensor, l1_scale: float, y: Tensor | None = None
) -> dict[str, Tensor]:
    """One optimiser step on the SAE loss; with unit-norm decoder rows, the gradient along each row is removed
    before the step and the rows renormalised after it (and JumpReLU thresholds kept >= 0). Returns the loss parts
    (``SAE.losses``)."""
    out = sae.losses(x, y, dead=dead, l1_scale=l1_scale)
    opt.zero_grad(set_to_none=True)
    out["loss"].backward()
    if sae.cfg.normalise_decoder:
        sae.remove_parallel_grads_()
    opt.step()
    if sae.cfg.normalise_decoder:
        sae.normalise_decoder_()
    if sae.cfg.architecture == "jumprelu":
        with torch.no_grad():
            sae.threshold.clamp_(min=0.0)  # below 0 the step would count negative pre-activations as firing
    return out


def train_sae(
    sae: SAE,
    data: Tensor | Iterator[Batch],
    n_tokens: int,
    batch_size: int = 4096,
    lr: float = 4e-4,
    l1_warmup: float = 0.05,
    lr_decay: float = 0.2,
    resample_at: tuple[float, ...] = (0.25, 0.5),
    log_every: int = 10,
    progress: bool = True,
    desc: str | None = None,
    step_fn: Callable[..., dict[str, Tensor]] | None = None,
    max_grad_norm: float | None = None,
) -> TrainLog:
    """Adam on ``n_tokens`` activations (a tensor, shuffled, or an iterator of batches such as an ActivationBuffer),
    in the loop every dictionary shares (:func:`interp_utils.dictionaries.training.train_loop`).

    The L1 (or JumpReLU's L0) coefficient warms up over the first ``l1_warmup`` of training and the learning rate
    decays to 0 over the last ``lr_decay`` (Anthropic's April 2024 recipe). ReLU SAEs of the ``bricken2023`` recipe
    resample dead latents at the fractions in ``resample_at``; TopK, BatchTopK and Matryoshka SAEs train them with the
    AuxK loss; JumpReLU SAEs do neither (as Rajamanoharan et al.). Dead means not fired for
    ``min(cfg.dead_tokens, n_tokens // 4)`` tokens. ``step_fn(sae, opt, x, dead, l1_scale)`` replaces
    :func:`sae_train_step` (an autoencoder only: notebook 04's learner writes one). ``max_grad_norm`` clips the
    gradient's norm before every step as SAELens's trainer does, measured in the model's units
    (:func:`interp_utils.dictionaries.training.model_unit_weights`) once the gradient along unit-norm decoder rows is
    removed (SAELens's rows are free: it has no such part to remove).
    """
    if step_fn is not None and sae.is_transcoder:
        raise ValueError("step_fn takes an autoencoder's batch; train a transcoder with the built-in step.")
    sae.train()  # BatchTopK's inference threshold moves only in training mode: an SAE trained again after eval()
    batches = tensor_batches(data, batch_size) if isinstance(data, Tensor) else data
    first = next(batches)
    device = sae.W_dec.device
    x0, y0 = _split(first, sae)
    if sae.in_scale.item() == 1.0 and sae.out_scale.item() == 1.0:
        sae.init_from_data(x0.to(device), None if y0 is None else y0.to(device))
    steps = max(1, n_tokens // len(first))
    resamples = sae.cfg.architecture == "relu" and sae.cfg.recipe == "bricken2023"
    resample_steps = {int(steps * f) for f in resample_at} if resamples else set()

    def step(opt: torch.optim.Optimizer, batch: Tensor, dead: Tensor, l1_scale: float) -> dict[str, Tensor]:
        x, y = _split(batch, sae)
        if step_fn is not None:
            return step_fn(sae, opt, x, dead, l1_scale)
        return sae_train_step(sae, opt, x, dead, l1_scale, y)

    def resample(step: int, batch: Tensor, dead: Tensor, out: dict[str, Tensor], opt: torch.optim.Optimizer) -> int:
        if step not in resample_steps or not dead.any():
            return 0
        x, y = _split(batch, sae)
        return resample_dead_(sae, dead, x, y, out["err"].detach(), opt)

    def target(batch: Tensor) -> Tensor:
        x, y = _split(batch, sae)
        return (x if y is None else y) / sae.out_scale

    units = None if max_grad_norm is None else model_unit_weights(sae, sae.in_scale.item(), sae.out_scale.item())
    return train_loop(
        sae,
        batches,
        first,
        steps,
        step,
        target,
        torch.zeros(sae.cfg.d_sae, device=device),
        min(sae.cfg.dead_tokens, max(1, n_tokens // 4)),
        LoopConfig(
            lr, l1_warmup, lr_decay, log_every, progress, desc or f"training {sae.cfg.architecture} SAE", max_grad_norm
        ),
        after_step=resample,
        grad_weights=units,
    )


@torch.no_grad()
def resample_dead_(
    sae: SAE,
    dead: Tensor,
    x: Tensor,
    y: Tensor | None,
    err: Tensor,
    opt: torch.optim.Optimizer | None = None,
    generator: torch.Generator | None = None,
) -> int:
    """Bricken et al.'s resampling: point each dead latent at an input the SAE reconstructs badly (drawn with
    probability proportional to the squared error): its decoder row the input's unit direction, its encoder column
    the same direction at 0.2 times the live columns' mean norm, its bias 0; and reset its Adam state."""
    n = int(dead.sum())
    probs = err.pow(2).sum(-1)
    # distinct inputs where enough have an error; otherwise multinomial would draw error-free ones
    picks = torch.multinomial(probs / probs.sum(), n, replacement=n > int((probs > 0).sum()), generator=generator)
    x_in = x[picks] / sae.in_scale - (0 if sae.is_transcoder else sae.b_dec)
    target = (x if y is None else y)[picks] / sae.out_scale - sae.b_dec
    sae.W_dec[dead] = target / target.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    alive_norm = sae.W_enc[:, ~dead].norm(dim=0).mean() if (~dead).any() else torch.tensor(1.0)
    sae.W_enc[:, dead] = (x_in / x_in.norm(dim=-1, keepdim=True).clamp_min(1e-8)).T * 0.2 * alive_norm
    sae.b_enc[dead] = 0.0
    for param, index in ((sae.W_dec, (dead,)), (sae.W_enc, (slice(None), dead)), (sae.b_enc, (dead,))):
        for moment in (opt.state.get(param, {}) if opt is not None else {}).values():
            if torch.is_tensor(moment) and moment.shape == param.shape:
                moment[index] = 0.0
    return n
