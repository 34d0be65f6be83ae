"""Checks for notebook 01's exercises (toy models of superposition), each on cases with known answers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from interp_utils.superposition import LossFn


def _polygon(k: int) -> Float[Tensor, "1 2 k"]:
    """k unit vectors evenly spaced around a circle, as one instance's W."""
    angles = torch.arange(k) * 2 * torch.pi / k
    return torch.stack([angles.cos(), angles.sin()])[None]


def check_weighted_mse(fn: LossFn) -> None:
    """The loss on a hand-worked example and its reduction over instances."""
    out = torch.zeros(2, 2, 2)
    features = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, 0.0]]])
    importance = torch.tensor([[1.0, 0.5], [1.0, 1.0]])
    # instance 0: (1*1 + 0 + 0 + 0.5*1) / 4 = 0.375; instance 1: (1 + 1 + 0 + 0) / 4 = 0.5
    got = fn(out, features, importance)
    if not torch.is_tensor(got) or got.numel() != 1:
        raise AssertionError(f"The loss must be a scalar tensor, got {got!r}.")
    if not torch.isclose(got, torch.tensor(0.875)):
        raise AssertionError(
            f"Expected 0.375 + 0.5 = 0.875 (mean over batch and features, summed over instances), got {got.item():.4f}."
        )
    print("weighted_mse: correct.")


def check_feature_dimensionality(fn: Callable[[Tensor], Tensor]) -> None:
    """Dimensionality of known geometries: orthogonal 1, antipodal 1/2, pentagon 2/5, tetrahedron 3/4, unused 0."""
    tetrahedron = torch.tensor([[1.0, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]).T[None] / 3**0.5
    cases = {
        "two orthogonal features": (torch.eye(2)[None], 1.0),
        "an antipodal pair": (_polygon(2), 0.5),
        "a pentagon": (_polygon(5), 0.4),
        "a tetrahedron in 3-D": (tetrahedron, 0.75),
    }
    for name, (W, expected) in cases.items():
        got = fn(W)
        if got.shape != W.shape[::2]:
            expected_shape = tuple(W.shape[::2])
            raise AssertionError(f"Expected shape [instances, features] = {expected_shape}, got {tuple(got.shape)}.")
        if not torch.allclose(got, torch.full_like(got, expected), atol=1e-4):
            raise AssertionError(f"For {name} every feature has dimensionality {expected}; got {got.tolist()}.")
    unused = fn(torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]))
    if not (torch.isfinite(unused).all() and abs(unused[0, 1].item()) < 1e-4):
        raise AssertionError(f"A feature with W_i = 0 should get dimensionality 0 (not nan); got {unused.tolist()}.")
    print("feature_dimensionality: correct on orthogonal, antipodal, pentagon, tetrahedron and unused features.")


def check_classify_phase(fn: Callable[[Tensor], Tensor]) -> None:
    """Phase labels for 2 features in 1 dimension: 0 not represented, 1 dedicated, 2 superposition."""
    W = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, -1.0]], [[0.05, 0.02]]])
    expected = torch.tensor([0, 1, 2, 0])
    got = fn(W)
    if got.tolist() != expected.tolist():
        raise AssertionError(
            f"For W = {W.squeeze(1).tolist()} expected labels {expected.tolist()} "
            f"(feature 2 ignored, feature 2 alone, both antipodal, nothing represented), got {got.tolist()}."
        )
    print("classify_phase: correct.")
