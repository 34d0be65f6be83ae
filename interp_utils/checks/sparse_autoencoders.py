"""Checks for notebook 04's exercises (sparse autoencoders), each on cases with known answers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from interp_utils.checks import answered


@answered
def check_topk(fn: Callable[[Tensor, int], Tensor]) -> None:
    """TopK on a hand-worked example: keep the k largest, ReLU them, zero the rest."""
    pre = torch.tensor([[3.0, -1.0, 2.0, 0.5], [-2.0, -1.0, -3.0, 4.0]])
    expected = torch.tensor([[3.0, 0.0, 2.0, 0.0], [0.0, 0.0, 0.0, 4.0]])
    got = fn(pre, 2)
    if got.shape != pre.shape:
        raise AssertionError(f"TopK must keep the shape {tuple(pre.shape)}, got {tuple(got.shape)}.")
    if not torch.allclose(got, expected):
        raise AssertionError(
            f"For pre-activations {pre.tolist()} and k=2 expected {expected.tolist()} (row 2: the second-largest, "
            f"-1, is negative, so the ReLU zeroes it), got {got.tolist()}."
        )
    print("topk: correct.")


@answered
def check_mmcs(fn: Callable[[Tensor, Tensor], float]) -> None:
    """Mean max cosine similarity on known cases: the true features themselves, rescaled and shuffled; a
    dictionary missing one of two features; and one whose rows are only sign-flipped."""
    true = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    cases = {
        "the true features, rescaled and shuffled, plus an extra row": (
            torch.tensor([[0, 3.0, 0], [2.0, 0, 0], [0, 0, 1.0]]),
            1.0,
        ),
        "a dictionary that has only the first feature": (torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]), 0.5),
        "sign-flipped features (cosine -1 is no match)": (-true, 0.0),
    }
    for name, (decoder, expected) in cases.items():
        got = float(fn(decoder, true))
        if abs(got - expected) > 1e-4:
            raise AssertionError(
                f"For {name} expected {expected} (per true feature, the largest cosine similarity with any decoder "
                f"row; then the mean over true features), got {got:.4f}."
            )
    print("mmcs: correct.")


@answered
def check_explained_variance(fn: Callable[[Tensor, Tensor], float]) -> None:
    """Explained variance is 1 for a perfect reconstruction, 0 for predicting the mean, and can go negative."""
    x = torch.tensor([[1.0, 2.0], [3.0, 2.0], [2.0, 5.0]])
    mean = x.mean(0, keepdim=True).expand_as(x)
    cases = {"a perfect reconstruction": (x, 1.0), "the mean": (mean, 0.0), "all zeros": (torch.zeros_like(x), -4.875)}
    for name, (x_hat, expected) in cases.items():
        got = float(fn(x, x_hat))
        if abs(got - expected) > 1e-4:
            raise AssertionError(
                f"For {name} expected {expected} (1 - squared error / squared deviation from the mean), got {got:.4f}."
            )
    print("explained_variance: correct.")
