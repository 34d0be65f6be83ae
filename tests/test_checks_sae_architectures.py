"""Notebook 04's checks for JumpReLU, BatchTopK and Matryoshka: each passes the lesson's answer and rejects
plausible wrong answers with the message meant for each."""

from __future__ import annotations

import pytest
import torch

from interp_utils.course.checks.sparse_autoencoders_frontier import (
    check_batch_topk,
    check_jumprelu,
    check_matryoshka,
)
from interp_utils.dictionaries.architectures import batch_topk, prefix_mses, rectangle


def jumprelu_class(theta_grad=None, z_grad=None, ignore_grad=False, summed=True):
    """A JumpReLU autograd Function as the lesson writes it; the keyword arguments swap in a mistaken gradient."""

    class JumpReLU(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, threshold, bandwidth):
            ctx.save_for_backward(z, threshold)
            ctx.bandwidth = bandwidth
            return z * (z > threshold).to(z.dtype)

        @staticmethod
        def backward(ctx, grad):
            z, threshold = ctx.saved_tensors
            eps = ctx.bandwidth
            dz = (z > threshold).to(grad.dtype) * grad if z_grad is None else z_grad(z, threshold) * grad
            kernel = rectangle((z - threshold) / eps)
            dtheta = (
                -(threshold / eps) * kernel * grad if theta_grad is None else theta_grad(threshold, eps, kernel) * grad
            )
            if ignore_grad:  # the incoming gradient dropped: right only when it is all ones
                dz, dtheta = dz / grad, dtheta / grad
            if not summed:  # the threshold's gradient left per token: the wrong shape
                return dz, dtheta[0], None
            return dz, dtheta.reshape(-1, threshold.shape[-1]).sum(0), None

    return JumpReLU


def step_class(z_passes=False, scale=1.0):
    class Step(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, threshold, bandwidth):
            ctx.save_for_backward(z, threshold)
            ctx.bandwidth = bandwidth
            return (z > threshold).to(z.dtype)

        @staticmethod
        def backward(ctx, grad):
            z, threshold = ctx.saved_tensors
            eps = ctx.bandwidth
            dtheta = -(scale / eps) * rectangle((z - threshold) / eps) * grad
            return (grad if z_passes else None), dtheta.reshape(-1, threshold.shape[-1]).sum(0), None

    return Step


def test_jumprelu_check_passes_the_answer_and_rejects_mistakes():
    check_jumprelu(jumprelu_class(), step_class())
    mistakes = {
        "the step's gradient": (jumprelu_class(theta_grad=lambda t, eps, k: -(1 / eps) * k), step_class()),
        "not divided by the bandwidth": (jumprelu_class(theta_grad=lambda t, eps, k: -t * k), step_class()),
        "a ReLU's gradient to z": (jumprelu_class(z_grad=lambda z, t: (z > 0).float()), step_class()),
        "the step passing gradient to z": (jumprelu_class(), step_class(z_passes=True)),
        "the step's kernel times 2": (jumprelu_class(), step_class(scale=2.0)),
        "the incoming gradient ignored": (jumprelu_class(ignore_grad=True), step_class()),
    }
    messages = {
        "the step's gradient": "the threshold itself in place of 1",
        "not divided by the bandwidth": "Divide by the bandwidth",
        "a ReLU's gradient to z": "unlike a ReLU's",
        "the step passing gradient to z": "return None for z",
        "the step's kernel times 2": "-(1/eps) K",
        "the incoming gradient ignored": "multiply by the incoming gradient",
    }
    for name, (jumprelu, step) in mistakes.items():
        with pytest.raises(AssertionError, match=messages[name].replace("(", r"\(").replace(")", r"\)")):
            check_jumprelu(jumprelu, step)


def test_jumprelu_check_wants_the_class_and_the_thresholds_gradient_summed_over_the_batch():
    with pytest.raises(AssertionError, match="Pass the class itself"):
        check_jumprelu(lambda z, t, e: z, step_class())

    with pytest.raises((AssertionError, RuntimeError)):
        check_jumprelu(jumprelu_class(summed=False), step_class())


def test_batch_topk_check_passes_the_answer_and_rejects_mistakes():
    def update(theta, acts, rate):
        positive = acts[acts > 0]
        return theta if positive.numel() == 0 else (1 - rate) * theta + rate * positive.min()

    check_batch_topk(batch_topk, update)

    def per_row(pre, k):
        values, idx = torch.relu(pre).topk(k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, idx, values)

    with pytest.raises(AssertionError, match="TopK row by row"):
        check_batch_topk(per_row, update)

    def detached(pre, k):
        return batch_topk(pre.detach(), k)

    with pytest.raises(AssertionError, match="carry the gradient"):
        check_batch_topk(detached, update)

    def no_relu(pre, k):
        flat = pre.flatten()
        values, idx = flat.topk(k * pre.shape[0])
        return torch.zeros_like(flat).scatter(0, idx, values).reshape(pre.shape)

    with pytest.raises(AssertionError, match="never kept"):
        check_batch_topk(no_relu, update)

    def per_token_min(t, a, r):
        firing = [row[row > 0].min() for row in a if (row > 0).any()]
        return (1 - r) * t + r * torch.stack(firing).mean() if firing else t

    wrong_updates = {
        "the zeros are latents that did not fire": lambda t, a, r: (1 - r) * t + r * a.min(),
        "the smallest, not the largest": lambda t, a, r: (1 - r) * t + r * a.max(),
        "nothing fired should leave the threshold": lambda t, a, r: (
            (1 - r) * t + r * a[a > 0].min() if (a > 0).any() else t * 0
        ),
        "the weights are swapped": lambda t, a, r: r * t + (1 - r) * a[a > 0].min(),
        "not the mean of each token": per_token_min,
        "as a tensor": lambda t, a, r: float((1 - r) * t + r * a[a > 0].min()),
    }
    for message, wrong in wrong_updates.items():
        with pytest.raises(AssertionError, match=message):
            check_batch_topk(batch_topk, wrong)


def test_matryoshka_check_passes_the_answer_and_rejects_mistakes():
    check_matryoshka(prefix_mses)

    def slices_alone(f, W, b, y, prefixes):  # each block of latents on its own, not the nested prefix
        out, start = [], 0
        for end in prefixes:
            out.append((y - (f[:, start:end] @ W[start:end] + b)).pow(2).sum(-1).mean())
            start = end
        return torch.stack(out)

    def mean_over_dims(f, W, b, y, prefixes):
        return torch.stack([(y - (f[:, :m] @ W[:m] + b)).pow(2).mean() for m in prefixes])

    def no_bias(f, W, b, y, prefixes):
        return torch.stack([(y - f[:, :m] @ W[:m]).pow(2).sum(-1).mean() for m in prefixes])

    for wrong, message in (
        (slices_alone, "not latent 1 alone"),
        (mean_over_dims, "Sum the squared error over dimensions"),
        (no_bias, "Add the decoder bias"),
    ):
        with pytest.raises(AssertionError, match=message):
            check_matryoshka(wrong)
