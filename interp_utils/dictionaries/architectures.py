"""The activation functions and losses of the SAE architectures beyond notebook 04's ReLU and TopK, which
:class:`interp_utils.dictionaries.sae.SAE` dispatches to (one module, one training loop, one set of metrics):

- ``jumprelu`` (Rajamanoharan et al. 2024, "Jumping Ahead"; Gemma Scope): f_i = z_i * H(z_i - theta_i) with a learned
  threshold theta_i per latent, trained with an L0 penalty lambda * sum_i H(z_i - theta_i). The step H has no useful
  gradient, so both the threshold's gradients come from a straight-through estimator with the rectangle kernel
  K(u) = 1{|u| < 1/2} of bandwidth eps: dH(z - theta)/dtheta := -K((z - theta)/eps)/eps, and
  dJumpReLU(z)/dtheta := -(theta/eps) K((z - theta)/eps). The pre-activation gets only the true gradient (H's is 0).
- ``batchtopk`` (Bussmann et al. 2024, "BatchTopK Sparse Autoencoders"): in training the k * batch largest
  activations of the whole batch survive, so a token may use more or fewer than k latents. Inference cannot depend
  on the batch, so it uses one threshold, a running average of the smallest activation that survived
  (theta <- (1 - r) theta + r * min), as SAELens does: a JumpReLU with the same threshold for every latent.
- ``matryoshka`` (Bussmann et al. 2025, "Learning Multi-Level Features with Matryoshka SAEs"): BatchTopK whose nested
  prefixes of the dictionary, latents [0, m_1), [0, m_2), ..., [0, d_sae), each reconstruct the input alone; the loss
  sums their reconstruction errors, so the early latents learn general features and later ones refine them.

Against SAELens's trainers (sae_lens 6.x), the same functions with two differences in training: SAELens leaves the
decoder's rows free (rescaling activations by their norms, or folding them in when saving) where the suite keeps them
at unit norm; and it keeps BatchTopK's threshold in float64, the suite in float32. Matryoshka's prefix losses are
summed at full weight in both, each prefix's reconstruction including b_dec, with AuxK on the whole dictionary's error.
"""

from __future__ import annotations

from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor


def rectangle(u: Tensor) -> Tensor:
    """The rectangle kernel K(u) = 1 where -1/2 < u < 1/2, else 0 (Rajamanoharan et al. 2024)."""
    return ((u > -0.5) & (u < 0.5)).to(u.dtype)


class _JumpReLU(torch.autograd.Function):
    """z * H(z - theta); the gradient to theta is the kernel estimate -(theta/eps) K((z - theta)/eps)."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return torch.relu(z) * (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, Tensor, None]:
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        z_grad = ((z > threshold) & (z > 0)).to(grad.dtype) * grad
        theta_grad = -(threshold / eps) * rectangle((z - threshold) / eps) * grad
        return z_grad, theta_grad.reshape(-1, threshold.shape[-1]).sum(0), None


class _Step(torch.autograd.Function):
    """H(z - theta); the gradient to theta is the kernel estimate -(1/eps) K((z - theta)/eps), to z nothing."""

    @staticmethod
    def forward(ctx: Any, z: Tensor, threshold: Tensor, bandwidth: float) -> Tensor:
        ctx.save_for_backward(z, threshold)
        ctx.bandwidth = bandwidth
        return (z > threshold).to(z.dtype)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[None, Tensor, None]:
        z, threshold = ctx.saved_tensors
        eps = ctx.bandwidth
        theta_grad = -(1 / eps) * rectangle((z - threshold) / eps) * grad
        return None, theta_grad.reshape(-1, threshold.shape[-1]).sum(0), None


def jumprelu(
    pre: Float[Tensor, "... d_sae"], threshold: Float[Tensor, " d_sae"], bandwidth: float
) -> Float[Tensor, "... d_sae"]:
    """JumpReLU: each pre-activation kept where it exceeds its latent's threshold (and 0), else 0; differentiable
    in the threshold through the straight-through estimator of bandwidth ``bandwidth``."""
    out: Tensor = _JumpReLU.apply(pre, threshold, bandwidth)
    return out


def l0_ste(
    pre: Float[Tensor, "*batch d_sae"], threshold: Float[Tensor, " d_sae"], bandwidth: float
) -> Float[Tensor, " *batch"]:
    """Latents firing per token, sum_i H(z_i - theta_i), with the straight-through gradient to the thresholds: the
    L0 penalty of JumpReLU SAEs."""
    out: Tensor = _Step.apply(pre, threshold, bandwidth)
    return out.sum(-1)


def threshold_relu(pre: Float[Tensor, "... d_sae"], threshold: Tensor) -> Float[Tensor, "... d_sae"]:
    """A BatchTopK SAE at inference: ReLU, with every activation at or below the shared threshold set to 0."""
    return torch.relu(pre) * (pre > threshold).to(pre.dtype)


def batch_topk(pre: Float[Tensor, "batch d_sae"], k: int) -> Float[Tensor, "batch d_sae"]:
    """BatchTopK: the k * batch largest activations (through a ReLU) of the whole batch kept, all others 0."""
    flat = torch.relu(pre).flatten()
    values, indices = flat.topk(min(k * pre.shape[0], flat.numel()))
    return torch.zeros_like(flat).scatter(0, indices, values).reshape(pre.shape)


@torch.no_grad()
def update_threshold_(threshold: Tensor, acts: Float[Tensor, "batch d_sae"], rate: float) -> None:
    """The running estimate of BatchTopK's inference threshold, in place: theta <- (1 - rate) theta + rate * (the
    smallest positive activation of the batch); unchanged by a batch where nothing fired."""
    positive = acts[acts > 0]
    if positive.numel():
        threshold.mul_(1 - rate).add_(rate * positive.min())


def prefix_mses(
    f: Float[Tensor, "batch d_sae"],
    W_dec: Float[Tensor, "d_sae d_out"],
    b_dec: Float[Tensor, " d_out"],
    y: Float[Tensor, "batch d_out"],
    prefixes: tuple[int, ...],
) -> Float[Tensor, " n_prefix"]:
    """Matryoshka's reconstruction losses: for each prefix size m, the squared error (summed over dimensions,
    averaged over the batch) of the reconstruction from latents [0, m) alone, b_dec included."""
    recon, start, losses = b_dec.expand_as(y), 0, []
    for end in prefixes:
        recon = recon + f[:, start:end] @ W_dec[start:end]
        losses.append((y - recon).pow(2).sum(-1).mean())
        start = end
    return torch.stack(losses)


def matryoshka_prefixes(prefixes: tuple[int, ...], d_sae: int) -> tuple[int, ...]:
    """The nested dictionary sizes, checked and ending at d_sae (added if missing); by default d_sae/16, d_sae/4."""
    prefixes = tuple(int(m) for m in prefixes) or tuple(m for m in (d_sae // 16, d_sae // 4) if m > 0)
    if prefixes and prefixes[-1] != d_sae:
        prefixes = (*prefixes, d_sae)
    increasing = all(a < b for a, b in zip(prefixes, prefixes[1:], strict=False))
    if not increasing or prefixes[0] <= 0 or prefixes[-1] > d_sae:
        raise ValueError(
            f"prefixes must be strictly increasing sizes between 1 and d_sae={d_sae} (the last is d_sae), "
            f"got {prefixes}."
        )
    return prefixes


def check_config(architecture: str, d_sae: int, k: int, bandwidth: float, init_threshold: float, l0_coeff: float,
                 threshold_lr: float) -> None:  # fmt: skip
    """Clear errors for the new architectures' settings (SAEConfig calls it)."""
    if architecture in ("topk", "batchtopk", "matryoshka") and not 0 < k <= d_sae:
        raise ValueError(f"k must be between 1 and d_sae={d_sae}, got {k}.")
    if architecture == "jumprelu":
        if not bandwidth > 0:
            raise ValueError(f"bandwidth (the straight-through estimator's kernel width) must be > 0, got {bandwidth}.")
        if not init_threshold >= 0:
            raise ValueError(f"init_threshold must be >= 0, got {init_threshold}.")
        if not l0_coeff >= 0:
            raise ValueError(f"l0_coeff must be >= 0, got {l0_coeff}.")
    if architecture in ("batchtopk", "matryoshka") and not 0 < threshold_lr <= 1:
        raise ValueError(f"threshold_lr (the threshold's running-average rate) must be in (0, 1], got {threshold_lr}.")
