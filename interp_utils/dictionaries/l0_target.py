"""Training at a target L0: a controller that scales the sparsity coefficient of a ReLU or JumpReLU SAE.

A TopK-family SAE is told its L0 (``k``); a ReLU + L1 or JumpReLU SAE only has a coefficient, and the L0 it lands on
moves steeply and unevenly with it. Comparisons "at equal L0" then need the coefficient steered during training, as
SynthSAEBench steers its L1 and JumpReLU runs (an integral controller on the coefficient; Chanin & Garriga-Alonso
2026). :class:`L0Target` is such a controller, written small: it is the ``step_fn`` of
:func:`interp_utils.dictionaries.sae.train_sae`, takes the usual step with the coefficient multiplied by
``scale``, smooths the batch's L0 and moves ``log(scale)`` by at most ``gain`` per step towards the target (a
``tanh`` of the relative error, so large errors do not overshoot). It steers only between the coefficient's warm-up
(its smoothed L0 starts afresh when the warm-up ends) and the learning rate's decay (once the rate falls the L0
hardly moves, and steering on would only wind the scale up), so ``scale`` is the coefficient the L0 settled under.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from interp_utils.dictionaries.sae import SAE, sae_train_step


class L0Target:
    """Steer a ReLU or JumpReLU SAE's sparsity coefficient so that its L0 in training settles at ``target``."""

    def __init__(self, target: float, gain: float = 2e-3, smoothing: float = 0.99, sharpness: float = 4.0) -> None:
        if target <= 0:
            raise ValueError(f"target must be a positive L0 (got {target})")
        if not 0 < gain < 1 or not 0 <= smoothing < 1:
            raise ValueError(f"need 0 < gain < 1 and 0 <= smoothing < 1 (got gain={gain}, smoothing={smoothing})")
        self.target, self.gain, self.smoothing, self.sharpness = target, gain, smoothing, sharpness
        self.log_scale = 0.0
        self.l0: float | None = None  # the smoothed L0 in training
        self.steps = 0
        self._lr0: float | None = None  # the learning rate before any decay
        self._warm = False

    @property
    def scale(self) -> float:
        """What the configured coefficient is multiplied by now."""
        return math.exp(self.log_scale)

    def __call__(
        self, sae: SAE, opt: torch.optim.Optimizer, x: Tensor, dead: Tensor, l1_scale: float
    ) -> dict[str, Tensor]:
        if sae.cfg.architecture not in ("relu", "jumprelu"):
            raise ValueError(f"L0Target steers an L1 or L0 coefficient; {sae.cfg.architecture} has none (set its k)")
        lr = opt.param_groups[0]["lr"]
        self._lr0 = lr if self._lr0 is None else max(self._lr0, lr)
        out = sae_train_step(sae, opt, x, dead, l1_scale * self.scale)
        l0 = (out["acts"] > 0).float().sum(-1).mean().item()
        if l1_scale >= 1.0 and not self._warm:  # the warm-up is over: forget the L0s measured during it
            self._warm, self.l0 = True, None
        self.l0 = l0 if self.l0 is None else self.smoothing * self.l0 + (1 - self.smoothing) * l0
        if self._warm and lr >= self._lr0:  # above the target, a larger coefficient
            self.log_scale += self.gain * math.tanh(self.sharpness * (self.l0 - self.target) / self.target)
        self.steps += 1
        return out
