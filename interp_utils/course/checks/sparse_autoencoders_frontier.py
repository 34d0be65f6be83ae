"""Checks for notebook 04's exercises on the SAEs trained today: JumpReLU and its straight-through gradients
(Rajamanoharan et al. 2024), BatchTopK's selection over the batch and its inference threshold (Bussmann et al. 2024)
and the Matryoshka loss over nested prefixes (Bussmann et al. 2025). Each works in stages: a case worked out by hand
(shown in the message), then the suite's versions in :mod:`interp_utils.dictionaries.architectures` on random cases,
values and gradients; :mod:`interp_utils.course.checks.sparse_autoencoders` re-exports them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from interp_utils.course.checks import answered
from interp_utils.dictionaries import architectures as arch

# The hand-worked JumpReLU case: bandwidth 0.1; z - theta = [0.4, -0.02, -0.03, -0.3], so (z - theta) / eps =
# [4, -0.2, -0.3, -3] and the rectangle kernel is [0, 1, 1, 0]: only latents 1 and 2 sit within the bandwidth.
_Z = torch.tensor([[0.5, 0.08, 0.22, -0.3]])
_THETA = torch.tensor([0.1, 0.1, 0.25, 0.0])
_EPS = 0.1


def _apply(fn: Any, z: Tensor, theta: Tensor, eps: float, weighted: bool = False) -> tuple[Tensor, Tensor, Tensor]:
    """Run ``fn.apply`` (an autograd Function) and return its output and the gradients to z and theta of its sum,
    or (``weighted``) of a weighted sum, weights from 0.5 to 2, so that a backward ignoring the incoming gradient
    shows."""
    z, theta = z.clone().requires_grad_(True), theta.clone().requires_grad_(True)
    apply = getattr(fn, "apply", None)
    if apply is None:
        fn(z, theta, eps)  # a stub raises here: not answered yet
        raise AssertionError(f"Pass the class itself (a torch.autograd.Function subclass), got {type(fn).__name__}.")
    out = apply(z, theta, eps)
    if not torch.is_tensor(out) or out.shape != z.shape:
        raise AssertionError(f"forward returns one value per pre-activation, shape {tuple(z.shape)}; got {out!r}.")
    weights = torch.linspace(0.5, 2.0, out.numel()).reshape(out.shape) if weighted else torch.ones_like(out)
    (out * weights).sum().backward()
    zero = torch.zeros_like(z)
    return out.detach(), (z.grad if z.grad is not None else zero), (theta.grad if theta.grad is not None else theta * 0)


def _same(a: Tensor, b: Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and torch.allclose(a.float(), b.float(), atol=atol)


@answered
def check_jumprelu(jumprelu_fn: Any, step_fn: Any) -> None:
    """JumpReLU and the step H, each an autograd Function called as ``Fn.apply(z, threshold, bandwidth)``: the
    hand-worked case (values, the gradient to z, the straight-through gradient to the thresholds), then random
    batches of two batch dimensions against the suite's."""
    out, dz, dtheta = _apply(jumprelu_fn, _Z, _THETA, _EPS)
    if not _same(out, torch.tensor([[0.5, 0.0, 0.0, 0.0]])):
        raise AssertionError(
            f"JumpReLU of z = {_Z.tolist()} with thresholds {_THETA.tolist()} should be [[0.5, 0, 0, 0]] (z kept "
            f"where z > its threshold, else 0; -0.3 is not above 0), got {out.tolist()}."
        )
    if not _same(dz, torch.tensor([[1.0, 0.0, 0.0, 0.0]])):
        raise AssertionError(
            f"The gradient to z should be [[1, 0, 0, 0]] (1 where the latent fired, else 0: a latent below its "
            f"threshold passes no gradient back, unlike a ReLU's), got {dz.tolist()}."
        )
    want = torch.tensor([0.0, -1.0, -2.5, 0.0])
    if not _same(dtheta, want):
        hint = ""
        if _same(dtheta, torch.tensor([0.0, -10.0, -10.0, 0.0])):
            hint = " That is the step's gradient: JumpReLU's has the threshold itself in place of 1, -(theta/eps) K."
        elif _same(dtheta, torch.tensor([0.0, -0.1, -0.25, 0.0])):
            hint = " Divide by the bandwidth: the kernel estimate is -(theta/eps) K((z - theta)/eps)."
        raise AssertionError(
            f"The gradient to the thresholds should be {want.tolist()}: -(theta/eps) K((z - theta)/eps), where "
            f"(z - theta)/eps = [4, -0.2, -0.3, -3] and K (1 inside (-1/2, 1/2)) = [0, 1, 1, 0]; got "
            f"{dtheta.tolist()}.{hint}"
        )
    out, dz, dtheta = _apply(step_fn, _Z, _THETA, _EPS)
    if not _same(out, torch.tensor([[1.0, 0.0, 0.0, 0.0]])):
        raise AssertionError(f"The step H(z - theta) should be [[1, 0, 0, 0]] here, got {out.tolist()}.")
    if dz.abs().sum() > 0:
        raise AssertionError(
            f"The step passes no gradient to z (its true derivative is 0 almost everywhere; the L0 penalty trains "
            f"only the thresholds), got {dz.tolist()}: return None for z."
        )
    if not _same(dtheta, torch.tensor([0.0, -10.0, -10.0, 0.0])):
        raise AssertionError(
            f"The step's gradient to the thresholds should be [0, -10, -10, 0]: -(1/eps) K((z - theta)/eps), got "
            f"{dtheta.tolist()}."
        )
    torch.manual_seed(0)
    z, theta = torch.randn(3, 5, 16) * 0.5, torch.rand(16) * 0.5
    for name, fn, ours in (("JumpReLU", jumprelu_fn, arch._JumpReLU), ("the step", step_fn, arch._Step)):
        got, want_ = _apply(fn, z, theta, 0.2, True), _apply(ours, z, theta, 0.2, True)
        unit = _apply(ours, z, theta, 0.2)  # the suite's gradients for an incoming gradient of ones
        names = ("values", "gradient to z", "gradient to the thresholds")
        for what, a, b, c in zip(names, got, want_, unit, strict=True):
            if not _same(a, b, 1e-4):
                shape = " (sum it over every batch dimension, to the thresholds' shape)" if a.shape != b.shape else ""
                if not shape and what != "values" and _same(a, c, 1e-4) and not _same(b, c, 1e-4):
                    shape = " (multiply by the incoming gradient, backward's argument: here it is not all ones)"
                raise AssertionError(
                    f"{name}: on a random batch [3, 5, 16] its {what} differ from the suite's{shape}: largest "
                    f"difference {(a - b).abs().max().item() if a.shape == b.shape else 'n/a'}."
                )
    print("jumprelu: correct (values, the gradient to z, the straight-through gradients to the thresholds).")


@answered
def check_batch_topk(
    select: Callable[[Tensor, int], Tensor], update: Callable[[Tensor, Tensor, float], Tensor]
) -> None:
    """BatchTopK's selection on a hand-worked batch where one token keeps three latents and another one, its gradient,
    then the running average of the inference threshold (a batch with nothing firing leaves it alone)."""
    pre = torch.tensor([[3.0, 2.5, 2.0, 0.5], [-2.0, 1.0, -3.0, 4.0]])
    got = select(pre, 2)
    want = torch.tensor([[3.0, 2.5, 2.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    if not torch.is_tensor(got) or got.shape != pre.shape:
        raise AssertionError(f"Return activations of the batch's shape {tuple(pre.shape)}, got {got!r}.")
    if not _same(got, want):
        per_row = torch.tensor([[3.0, 2.5, 0.0, 0.0], [0.0, 1.0, 0.0, 4.0]])
        hint = " That is TopK row by row: BatchTopK ranks the whole batch at once." if _same(got, per_row) else ""
        raise AssertionError(
            f"With k = 2 and a batch of 2 tokens, the 4 largest activations of the whole batch survive: 4, 3, 2.5 "
            f"and 2, so the first token keeps three latents and the second one, {want.tolist()}; got "
            f"{got.tolist()}.{hint}"
        )
    mostly_negative = torch.tensor([[-1.0, -2.0], [-3.0, 0.5]], dtype=torch.float64)
    got = select(mostly_negative, 2)
    if got.dtype != torch.float64:
        raise AssertionError(f"Keep the pre-activations' dtype (float64 in, float64 out), got {got.dtype}.")
    if not _same(got, torch.tensor([[0.0, 0.0], [0.0, 0.5]], dtype=torch.float64)):
        raise AssertionError(
            f"In a batch [[-1, -2], [-3, 0.5]] with k = 2 only 0.5 is positive: expected [[0, 0], [0, 0.5]] (the "
            f"activations go through a ReLU, so a negative one is never kept), got {got.tolist()}."
        )
    torch.manual_seed(1)
    pre = torch.randn(8, 32, requires_grad=True)
    got = select(pre, 3)
    want = arch.batch_topk(pre.detach(), 3)
    if not _same(got.detach(), want):
        raise AssertionError("On a random batch [8, 32] with k = 3 the kept activations differ from the suite's.")
    if not got.requires_grad:
        raise AssertionError("The kept activations must carry the gradient back to the pre-activations: keep them.")
    (grad,) = torch.autograd.grad(got.sum(), pre)
    if not _same(grad, (want > 0).float()):
        raise AssertionError("The gradient should reach exactly the kept pre-activations (1 there, 0 elsewhere).")
    theta = torch.tensor(1.0)
    acts = torch.tensor([[0.0, 0.7, 2.0], [0.0, 0.0, 0.4]])
    new = update(theta.clone(), acts, 0.25)
    if not torch.is_tensor(new):
        raise AssertionError(f"Return the new threshold as a tensor (a 0-d one, like the threshold), got {new!r}.")
    if abs(float(new) - 0.85) > 1e-5:
        wrong = {
            0.75: " (the zeros are latents that did not fire: the minimum is over the positive ones)",
            1.25: " (the smallest, not the largest)",
            0.8875: " (the minimum of the whole batch, not the mean of each token's)",
            0.55: " (the weights are swapped: the old threshold keeps 1 - rate, the batch's minimum gets rate)",
        }
        hint = next((w for v, w in wrong.items() if abs(float(new) - v) < 1e-5), "")
        raise AssertionError(
            f"From threshold 1 at rate 0.25, a batch whose smallest positive activation is 0.4 should give "
            f"(1 - 0.25) x 1 + 0.25 x 0.4 = 0.85, got {float(new):.4f}{hint}."
        )
    same = update(theta.clone(), torch.zeros(2, 3), 0.25)
    if not torch.is_tensor(same) or abs(float(same) - 1.0) > 1e-6:
        raise AssertionError(f"A batch where nothing fired should leave the threshold at 1, got {same!r}.")
    print("batch_topk: correct (selection over the whole batch, its gradient, the inference threshold).")


@answered
def check_matryoshka(fn: Callable[[Tensor, Tensor, Tensor, Tensor, tuple[int, ...]], Tensor]) -> None:
    """The prefixes' errors on a hand-worked 3-latent dictionary, then random cases against the suite's (with a
    decoder bias, and prefixes that do not start at the first latent's end)."""
    W = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    f, y = torch.tensor([[1.0, 2.0, 1.0]]), torch.tensor([[2.0, 3.0]])
    got = fn(f, W, torch.zeros(2), y, (1, 2))
    want = torch.tensor([10.0, 2.0])
    if not torch.is_tensor(got) or got.shape != want.shape:
        raise AssertionError(f"Return one error per prefix, shape (2,) for prefixes (1, 2); got {got!r}.")
    if not _same(got, want):
        hints = {
            (10.0, 5.0): " Prefix 2 is latents 0 and 1 together, not latent 1 alone.",
            (5.0, 1.0): " Sum the squared error over dimensions (then average over tokens), as the SAE's loss does.",
        }
        hint = next((h for v, h in hints.items() if _same(got, torch.tensor(v))), "")
        raise AssertionError(
            f"Latents [0, 1) reconstruct [1, 0] (error [1, 3], squared and summed 10); latents [0, 2) reconstruct "
            f"[1, 2] (error [1, 1], 2): expected {want.tolist()}, got {got.tolist()}.{hint}"
        )
    torch.manual_seed(2)
    f, W, b, y = torch.rand(6, 12), torch.randn(12, 5), torch.randn(5), torch.randn(6, 5)
    for prefixes in ((3, 7), (2, 5, 9)):
        got, want = fn(f, W, b, y, prefixes), arch.prefix_mses(f, W, b, y, prefixes)
        if not _same(got, want, 1e-4):
            no_bias = arch.prefix_mses(f, W, torch.zeros(5), y, prefixes)
            hint = " Add the decoder bias b_dec to every prefix's reconstruction." if _same(got, no_bias, 1e-4) else ""
            raise AssertionError(
                f"For prefixes {prefixes} on a random case the errors differ from the suite's: expected "
                f"{[round(v, 4) for v in want.tolist()]}, got {[round(v, 4) for v in got.tolist()]}.{hint}"
            )
    print("matryoshka: correct (each nested prefix's reconstruction error).")
