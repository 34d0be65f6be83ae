"""The training loop every dictionary shares (SAEs, per-layer transcoders, cross-layer transcoders): Adam, the
learning-rate and L1 schedule, the dead-latent window and the training log. Each dictionary supplies its step (its
loss, the optimiser step and any decoder constraint), the target its explained variance is measured against, and
optionally something to do after a step (resampling dead latents)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm


@dataclass
class TrainLog:
    """What a training run measured: one entry per logged step, and overall throughput."""

    history: dict[str, list[float]] = field(default_factory=dict)
    tokens: int = 0
    seconds: float = 0.0
    resampled: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / max(self.seconds, 1e-9)

    @torch.no_grad()
    def record(self, out: dict[str, Tensor], target: Tensor, dead: Tensor) -> dict[str, float]:
        """Log one step from its loss parts (``out``: loss, mse, err, acts) and its scaled target: tokens so far, the
        losses, explained variance, L0 (latents per token, per layer for a cross-layer transcoder), dead fraction."""
        row = {
            "tokens": self.tokens,
            "loss": out["loss"].item(),
            "mse": out["mse"].item(),
            "explained_variance": (1 - out["err"].pow(2).sum() / (target - target.mean(0)).pow(2).sum()).item(),
            "l0": (out["acts"] > 0).float().sum(-1).mean().item(),
            "dead_fraction": dead.float().mean().item(),
        }
        for key, value in row.items():
            self.history.setdefault(key, []).append(value)
        return row


def schedule(step: int, steps: int, l1_warmup: float = 0.05, lr_decay: float = 0.2) -> tuple[float, float]:
    """(learning-rate factor, L1 scale) at ``step`` of ``steps``: the L1 coefficient ramps up linearly over the first
    ``l1_warmup`` of training and the learning rate falls linearly to 0 over the last ``lr_decay``."""
    decay_from = int(steps * (1 - lr_decay))
    lr = 1.0 if step < decay_from else (steps - step) / max(1, steps - decay_from)
    return lr, min(1.0, step / max(1.0, l1_warmup * steps))


def update_since_fired(since_fired: Float[Tensor, "*layer d_sae"], acts: Float[Tensor, "batch *layer d_sae"]) -> Tensor:
    """Tokens since each latent last fired, after one batch: 0 where it fired in ``acts``, else one batch more
    (a cross-layer transcoder's counters are [layer, d_sae])."""
    return torch.where((acts > 0).any(0), 0.0, since_fired + len(acts))


def clip_grad_norm_(weighted: Sequence[tuple[Tensor, float]], max_norm: float) -> Tensor:
    """Scale every gradient by one factor so that the norm of all the (weight x gradient) together is at most
    ``max_norm``: torch's ``clip_grad_norm_``, with each parameter's gradient measured in other units (the weight
    converts it). Returns the weighted norm before clipping."""
    grads = [(p.grad, w) for p, w in weighted if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    norm = torch.stack([g.detach().norm() * w for g, w in grads]).norm()
    factor = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    for g, _ in grads:
        g.detach().mul_(factor)
    return norm


def model_unit_weights(module: torch.nn.Module, in_scale: float, out_scale: float) -> list[tuple[Tensor, float]]:
    """``grad_weights`` that measure a dictionary's gradient in the model's units, for a dictionary that divides its
    inputs by ``in_scale`` and its targets by ``out_scale`` (an SAE or transcoder: W_enc, W_dec, biases and thresholds).
    With unscaled inputs and targets and the decoder rows as they are, the loss is ``out_scale**2`` times larger, W_enc
    ``out_scale / in_scale`` times and the biases and thresholds ``out_scale`` times; so the gradients of W_enc, W_dec
    and the rest are ``in_scale * out_scale``, ``out_scale**2`` and ``out_scale`` times this module's."""
    weight = {"W_enc": in_scale * out_scale, "W_dec": out_scale**2}
    weight |= dict.fromkeys(("b_enc", "b_dec", "threshold"), out_scale)
    named = [(name, name.rsplit(".", 1)[-1], p) for name, p in module.named_parameters()]
    if unknown := [name for name, short, _ in named if short not in weight]:
        raise ValueError(f"no conversion to the model's units known for {unknown}: give train_loop its own weights")
    return [(p, weight[short]) for _, short, p in named]


Step = Callable[[torch.optim.Optimizer, Tensor, Tensor, float], dict[str, Tensor]]  # (opt, batch, dead, l1 scale)
AfterStep = Callable[[int, Tensor, Tensor, dict[str, Tensor], torch.optim.Optimizer], int]  # -> latents resampled


@dataclass(frozen=True)
class LoopConfig:
    """The optimiser and schedule of :func:`train_loop`, and how it reports."""

    lr: float = 4e-4
    l1_warmup: float = 0.05  # share of training over which the L1 coefficient ramps up
    lr_decay: float = 0.2  # share of training at the end over which the learning rate falls to 0
    log_every: int = 10
    progress: bool = True
    desc: str = "training"
    max_grad_norm: float | None = None  # clip the gradient's total norm to this before each step (None: no clipping)


def train_loop(
    module: torch.nn.Module,
    batches: Iterator[Tensor],
    first: Tensor,
    steps: int,
    step: Step,
    target: Callable[[Tensor], Tensor],
    since_fired: Float[Tensor, "*layer d_sae"],
    window: int,
    cfg: LoopConfig,
    after_step: AfterStep | None = None,
    grad_weights: Sequence[tuple[Tensor, float]] | None = None,
) -> TrainLog:
    """``steps`` steps of Adam on ``module``, starting with the batch ``first`` and drawing the rest from ``batches``.
    Each step: the latents not fired for ``window`` tokens are dead (``since_fired``, per latent, or per layer and
    latent); ``step(opt, batch, dead, l1_scale)`` takes the optimiser step (the gradient clipped first to
    ``cfg.max_grad_norm`` if set, its norm measured by :func:`clip_grad_norm_` with ``grad_weights``, every parameter
    at weight 1 by default) and returns the loss parts (loss, mse, err, acts); the schedule moves on; the counters
    are updated; ``after_step`` may resample dead latents (their counters restart). Every ``log_every`` steps the log
    records the losses against ``target(batch)``."""
    if steps < 1:
        raise ValueError(f"Train for at least one step, got {steps}.")
    if cfg.max_grad_norm is not None and not cfg.max_grad_norm > 0:
        raise ValueError(f"max_grad_norm must be positive, or None for no clipping (got {cfg.max_grad_norm}).")
    device = since_fired.device
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr, betas=(0.9, 0.999))
    if cfg.max_grad_norm is not None:  # a hook on the optimiser, so it holds for any step, a learner's included
        limit, weighted = cfg.max_grad_norm, grad_weights or [(p, 1.0) for p in module.parameters()]

        def clip(*_: object) -> None:
            clip_grad_norm_(weighted, limit)

        opt.register_step_pre_hook(clip)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: schedule(s, steps, cfg.l1_warmup, cfg.lr_decay)[0])
    log, batch = TrainLog(), first
    bar = tqdm(range(steps), desc=cfg.desc, disable=not cfg.progress, mininterval=1.0)
    start = time.perf_counter()
    for i in bar:
        batch = batch.to(device)
        dead = since_fired >= window
        out = step(opt, batch, dead, schedule(i, steps, cfg.l1_warmup, cfg.lr_decay)[1])
        sched.step()
        with torch.no_grad():
            since_fired = update_since_fired(since_fired, out["acts"])
        if after_step is not None and (resampled := after_step(i, batch, dead, out, opt)):
            log.resampled += resampled
            since_fired[dead] = 0
        log.tokens += len(batch)
        if i % cfg.log_every == 0 or i == steps - 1:
            row = log.record(out, target(batch), dead)
            rate = log.tokens / (time.perf_counter() - start)
            bar.set_postfix(
                L0=f"{row['l0']:.1f}", EV=f"{row['explained_variance']:.3f}", dead=f"{row['dead_fraction']:.1%}",
                tok_s=f"{rate:,.0f}",
            )  # fmt: skip
        if i < steps - 1:
            batch = next(batches)
    log.seconds = time.perf_counter() - start
    return log
