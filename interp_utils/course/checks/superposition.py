"""Checks for notebook 01's exercises (toy models of superposition), each on cases with known answers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from jaxtyping import Float
from torch import Tensor

from interp_utils.course.checks import answered
from interp_utils.course.checks.superposition_core import check_monosemantic as check_monosemantic
from interp_utils.course.checks.superposition_core import check_phase_agreement as check_phase_agreement
from interp_utils.course.checks.superposition_core import check_phase_diagram as check_phase_diagram
from interp_utils.course.checks.superposition_core import check_sticky_share as check_sticky_share
from interp_utils.course.checks.superposition_core import check_train as check_train
from interp_utils.course.checks.superposition_core import check_train_abs as check_train_abs
from interp_utils.toy_models import superposition as ref
from interp_utils.toy_models.superposition import LossFn


def _polygon(k: int) -> Float[Tensor, "1 2 k"]:
    """k unit vectors evenly spaced around a circle, as one instance's W."""
    angles = torch.arange(k) * 2 * torch.pi / k
    return torch.stack([angles.cos(), angles.sin()])[None]


@answered
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


@answered
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


@answered
def check_generate_batch(fn: Callable[[Tensor, int], Tensor]) -> None:
    """Shape, range, and each instance's share of present features on a large batch."""
    p = torch.tensor([[1.0, 1.0, 1.0], [0.3, 0.3, 0.3], [0.0, 0.0, 0.0]])
    torch.manual_seed(0)
    got = fn(p, 20_000)
    if got.shape != (20_000, 3, 3):
        raise AssertionError(f"Expected [batch, instance, feature] = (20000, 3, 3), got {tuple(got.shape)}.")
    if got.min() < 0 or got.max() > 1:
        raise AssertionError(f"Features lie in [0, 1]; got values from {got.min():.2f} to {got.max():.2f}.")
    share = (got > 0).float().mean(dim=(0, 2))
    if not torch.allclose(share, p[:, 0], atol=0.02):
        raise AssertionError(
            f"Each feature should be present (non-zero) with its instance's probability {p[:, 0].tolist()}; the "
            f"shares present were {[round(v, 3) for v in share.tolist()]}. Compare a uniform draw with the probability "
            "(present when rand < p), not with the sparsity 1 - p."
        )
    mean = got[:, 0].mean().item()
    if abs(mean - 0.5) > 0.02:
        raise AssertionError(
            f"Present features are uniform on [0, 1] (mean 1/2); the dense instance's mean is {mean:.3f}."
        )
    print("generate_batch: correct.")


@answered
def check_toy_forward(fn: Callable[..., Tensor]) -> None:
    """A hand-worked instance, then the reference on random weights, with and without the ReLU."""
    W = torch.tensor([[[1.0, -1.0]]])  # one instance, 2 features antipodal in 1 dimension
    b = torch.tensor([[-0.1, 0.0]])
    x = torch.tensor([[[0.5, 0.2]]])  # h = 0.3; W^T h = [0.3, -0.3]; + b = [0.2, -0.3]; ReLU -> [0.2, 0]
    got = fn(W, b, x, True)
    if got.shape != x.shape:
        raise AssertionError(f"The output has the input's shape [batch, instance, feature] = {tuple(x.shape)}.")
    if not torch.allclose(got, torch.tensor([[[0.2, 0.0]]]), atol=1e-6):
        raise AssertionError(
            f"W = [1, -1], b = [-0.1, 0], x = [0.5, 0.2]: h = Wx = 0.3, W^T h + b = [0.2, -0.3], after the ReLU "
            f"[0.2, 0]. Got {got.flatten().tolist()}."
        )
    torch.manual_seed(0)
    W, b, x = torch.randn(3, 4, 7), torch.randn(3, 7), torch.rand(5, 3, 7)
    for relu in (True, False):
        want = ref.toy_forward(W, b, x, relu)
        if not torch.allclose(fn(W, b, x, relu), want, atol=1e-5):
            kind = "the ReLU model" if relu else "the linear model (relu=False: no ReLU)"
            raise AssertionError(
                f"On random weights {kind} differs from x' = W^T W x + b" + (" then ReLU." if relu else ".")
            )
    print("toy_forward: correct, with and without the ReLU.")


@answered
def check_feature_norms(fn: Callable[[Tensor], Tensor]) -> None:
    """||W_i|| of each column, per instance."""
    W = torch.tensor([[[3.0, 0.0, 1.0], [4.0, 0.0, 0.0]]])  # columns (3, 4), (0, 0), (1, 0)
    got = fn(W)
    if got.shape != (1, 3):
        raise AssertionError(f"Expected [instance, feature] = (1, 3): one norm per column W_i. Got {tuple(got.shape)}.")
    if not torch.allclose(got, torch.tensor([[5.0, 0.0, 1.0]])):
        raise AssertionError(
            f"The columns (3, 4), (0, 0), (1, 0) have norms 5, 0, 1 (not squared); got {got.tolist()}."
        )
    print("feature_norms: correct.")


@answered
def check_interference(fn: Callable[[Tensor], Tensor]) -> None:
    """sum over j != i of (W_i_hat . W_j)^2 on orthogonal, antipodal and scaled cases, and an unused feature."""
    cases = {
        "two orthogonal features": (torch.eye(2)[None], [0.0, 0.0]),
        "an antipodal pair": (_polygon(2), [1.0, 1.0]),
        "feature 2 half as long, along feature 1": (torch.tensor([[[1.0, 0.5]]]), [0.25, 1.0]),
        "an unused feature": (torch.tensor([[[1.0, 0.0], [0.0, 0.0]]]), [0.0, 0.0]),
    }
    for name, (W, expected) in cases.items():
        got = fn(W)
        if got.shape != W.shape[::2]:
            raise AssertionError(f"Expected [instance, feature] = {tuple(W.shape[::2])}, got {tuple(got.shape)}.")
        if not torch.isfinite(got).all():
            raise AssertionError(f"For {name}, got {got.tolist()}: divide by ||W_i|| clamped away from 0.")
        if not torch.allclose(got[0], torch.tensor(expected), atol=1e-5):
            raise AssertionError(
                f"For {name} the interference is {expected}, got {got[0].tolist()}. Leave out j = i, and use the unit "
                "vector of W_i but the full W_j (a short W_j interferes less)."
            )
    print("interference: correct.")


@answered
def check_dimensions_per_feature(fn: Callable[[Tensor], Tensor]) -> None:
    """D* = m / ||W||_F^2 for a pentagon (2/5), a dense square (1) and a half-used model."""
    cases = {
        "a pentagon in 2-D": (_polygon(5), 0.4),
        "4 orthogonal features in 4-D": (torch.eye(4)[None], 1.0),
        "2 of 4 features used in 2-D": (torch.cat([torch.eye(2), torch.zeros(2, 2)], 1)[None], 1.0),
    }
    for name, (W, expected) in cases.items():
        got = fn(W)
        if got.shape != (1,):
            raise AssertionError(f"Expected one value per instance, shape (1,), got {tuple(got.shape)}.")
        if abs(got.item() - expected) > 1e-5:
            raise AssertionError(
                f"For {name}, D* = m / ||W||_F^2 = {expected:g}; got {got.item():.4f}. m is the hidden size "
                "(W.shape[1]), and the Frobenius norm is squared."
            )
    print("dimensions_per_feature: correct.")


@answered
def check_configuration_losses(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Dense, equal importance by hand; then a Monte Carlo estimate of each configuration at random (p, r)."""
    got = fn(torch.tensor(1.0), torch.tensor(1.0))
    if got.shape != (3,):
        raise AssertionError(
            f"Return the three losses (dropped, dedicated, antipodal) on a last axis of 3; got {tuple(got.shape)}."
        )
    hand = torch.tensor([1 / 12, 1 / 12, 1 / 3])
    if not torch.allclose(got, hand, atol=1e-5):
        raise AssertionError(
            f"At p = 1, r = 1: a dropped feature costs Var(x) = 1/3 - 1/4 = 1/12; the antipodal pair loses "
            f"E[min(x1, x2)^2] = 1/6 for each of two features = 1/3. Expected {hand.tolist()}, got {got.tolist()}."
        )
    torch.manual_seed(0)
    p, r = torch.tensor([0.05, 0.3, 0.8]), torch.tensor([0.5, 2.0, 1.0])
    for k in range(3):
        x = ref.generate_batch(torch.full((1, 2), p[k].item()), 400_000)[:, 0]  # [n, 2]
        importance = torch.stack([torch.tensor(1.0), r[k]])
        dropped_2 = ((x[:, 1] - x[:, 1].mean()) ** 2 * importance[1]).mean()
        dropped_1 = ((x[:, 0] - x[:, 0].mean()) ** 2 * importance[0]).mean()
        h = x[:, 0] - x[:, 1]
        antipodal = (importance * (x - torch.stack([h.relu(), (-h).relu()], 1)) ** 2).sum(1).mean()
        estimate = torch.stack([dropped_2, dropped_1, antipodal])
        mine = fn(p[k], r[k])
        if not torch.allclose(mine, estimate, rtol=0.03, atol=1e-4):
            raise AssertionError(
                f"At p = {p[k]:.2f}, r = {r[k]:.1f} sampling gives about {[round(v, 5) for v in estimate.tolist()]}, "
                f"yours {[round(v, 5) for v in mine.tolist()]}. E[x_i] = p/2 and E[x_i^2] = p/3; the pair only errs "
                "when both features are present (probability p^2)."
            )
    print("configuration_losses: correct (by hand and against sampling).")


@answered
def check_abs_forward(fn: Callable[..., Tensor]) -> None:
    """Two neurons computing |x| = ReLU(x) + ReLU(-x) by hand, then the reference on random weights."""
    W1, b1 = torch.tensor([[[1.0], [-1.0]]]), torch.zeros(1, 2)
    W2, b2 = torch.tensor([[[1.0, 1.0]]]), torch.zeros(1, 1)
    x = torch.tensor([[[-0.7]], [[0.4]]])
    got = fn(W1, b1, W2, b2, x)
    if got.shape != x.shape:
        raise AssertionError(f"The output has the input's shape [batch, instance, feature] = {tuple(x.shape)}.")
    if not torch.allclose(got, x.abs(), atol=1e-6):
        raise AssertionError(
            f"With neurons ReLU(x) and ReLU(-x) summed, the model computes |x|: expected {x.abs().flatten().tolist()}, "
            f"got {got.flatten().tolist()}."
        )
    torch.manual_seed(0)
    args = (torch.randn(3, 4, 6), torch.randn(3, 4), torch.randn(3, 6, 4), torch.randn(3, 6), torch.randn(5, 3, 6))
    if not torch.allclose(fn(*args), ref.abs_forward(*args), atol=1e-5):
        raise AssertionError(
            "On random weights the output differs from ReLU(W2 ReLU(W1 x + b1) + b2): check both biases."
        )
    print("abs_forward: correct.")


@answered
def check_neuron_share(fn: Callable[[Tensor], Tensor]) -> None:
    """A monosemantic neuron (1), one reading two features equally (1/2), a silent one (0)."""
    W1 = torch.tensor([[[0.0, -2.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.0]]])
    got = fn(W1)
    if got.shape != (1, 3):
        raise AssertionError(f"Expected [instance, neuron] = (1, 3), got {tuple(got.shape)}.")
    if not torch.allclose(got, torch.tensor([[1.0, 0.5, 0.0]]), atol=1e-5):
        raise AssertionError(
            f"Neuron rows (0, -2, 0), (1, 1, 0), (0, 0, 0) hold shares 1, 1/2, 0 of their squared weights in their "
            f"largest feature (square before comparing: a large negative weight counts); got {got.tolist()}."
        )
    print("neuron_share: correct.")


@answered
def check_neighbour_angles(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """A square given out of order, three features with one left out, and agreement with the reference."""
    angles = torch.deg2rad(torch.tensor([180.0, 0.0, 270.0, 90.0]))
    square = torch.stack([angles.cos(), angles.sin()])
    got = fn(square, torch.ones(4, dtype=torch.bool))
    if got.shape != (4,):
        raise AssertionError(
            f"Four represented features make four gaps around the circle (the last one back to the first), shape "
            f"(4,); got {tuple(got.shape)}."
        )
    if not torch.allclose(got, torch.full((4,), 90.0), atol=1e-3):
        raise AssertionError(
            f"Features at 180°, 0°, 270°, 90° (given in that order) are 90° apart in degrees, once sorted by angle "
            f"around the circle; got {got.tolist()}."
        )
    angles = torch.deg2rad(torch.tensor([0.0, 45.0, 90.0, 225.0]))
    W = torch.stack([angles.cos(), angles.sin()])
    got = fn(W, torch.tensor([True, False, True, True]))
    if got.shape != (3,) or not torch.allclose(got.sort().values, torch.tensor([90.0, 135.0, 135.0]), atol=1e-3):
        raise AssertionError(
            "Features at 0°, 45° (not represented), 90° and 225°: only the represented three count, with gaps 90°, "
            f"135° and 135° (from 225° back round to 0°); got {got.tolist()}."
        )
    torch.manual_seed(0)
    W, keep = torch.randn(2, 7), torch.rand(7) > 0.3
    if not torch.allclose(fn(W, keep), ref.neighbour_angles(W, keep), atol=1e-3):
        raise AssertionError(
            "On random directions the gaps differ from the reference's (in angular order, from -180°)."
        )
    print("neighbour_angles: correct.")
