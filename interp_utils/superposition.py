"""Toy models of superposition (Elhage et al. 2022): x' = ReLU(W^T W x + b), many instances at once.

Each instance has its own feature probability (1 - sparsity) and importances, so one training run
sweeps sparsity. Used by notebook 01 and, as known ground truth for SAEs, by notebook 04.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor, nn
from tqdm.auto import tqdm

LossFn = Callable[[Tensor, Tensor, Tensor], Tensor]


@dataclass
class ToyConfig:
    """Sizes: ``n_features`` squeezed into ``n_hidden`` dimensions, ``n_instances`` trained in parallel."""

    n_features: int = 5
    n_hidden: int = 2
    n_instances: int = 8
    relu: bool = True  # the ReLU output model; False gives the linear model x' = W^T W x + b


class ToyModel(nn.Module):
    """``n_instances`` independent toy models with per-instance feature probability and importance."""

    def __init__(
        self,
        cfg: ToyConfig,
        feature_probability: Float[Tensor, "inst feat"] | float = 1.0,
        importance: Float[Tensor, "inst feat"] | float = 1.0,
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        self.cfg = cfg
        shape = (cfg.n_instances, cfg.n_features)
        self.feature_probability = torch.broadcast_to(torch.as_tensor(feature_probability, dtype=torch.float), shape)
        self.importance = torch.broadcast_to(torch.as_tensor(importance, dtype=torch.float), shape)
        self.feature_probability = self.feature_probability.to(device)
        self.importance = self.importance.to(device)
        self.W = nn.Parameter(nn.init.xavier_normal_(torch.empty(cfg.n_instances, cfg.n_hidden, cfg.n_features)))
        self.b_final = nn.Parameter(torch.zeros(cfg.n_instances, cfg.n_features))
        self.to(device)

    def hidden(self, features: Float[Tensor, "batch inst feat"]) -> Float[Tensor, "batch inst hidden"]:
        """The compressed representation h = W x."""
        return torch.einsum("bif,ihf->bih", features, self.W)

    def forward(self, features: Float[Tensor, "batch inst feat"]) -> Float[Tensor, "batch inst feat"]:
        """x' = ReLU(W^T W x + b) (or without the ReLU for the linear model)."""
        if features.shape[1:] != self.importance.shape:
            expected = f"[batch, {self.cfg.n_instances}, {self.cfg.n_features}]"
            raise ValueError(f"features must be {expected}, got {tuple(features.shape)}.")
        out = torch.einsum("bih,ihf->bif", self.hidden(features), self.W) + self.b_final
        return torch.relu(out) if self.cfg.relu else out

    def generate_batch(self, batch: int) -> Float[Tensor, "batch inst feat"]:
        """Features uniform in [0, 1], each present (non-zero) with its instance's feature probability."""
        shape = (batch, *self.importance.shape)
        values = torch.rand(shape, device=self.W.device)
        present = torch.rand(shape, device=self.W.device) <= self.feature_probability
        return values * present


def weighted_mse(out: Tensor, features: Tensor, importance: Tensor) -> Tensor:
    """The paper's loss: importance-weighted squared error, mean over batch, summed over instances."""
    return (importance * (out - features) ** 2).mean(dim=(0, 2)).sum()


def train_toy_model(
    model: ToyModel,
    steps: int = 5_000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    loss_fn: LossFn = weighted_mse,
    progress: bool = True,
) -> list[float]:
    """Adam on fresh batches with the paper's loss (or ``loss_fn``); returns the loss per step."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    bar = tqdm(range(steps), desc="training toy models", disable=not progress, mininterval=1.0)
    for step in bar:
        features = model.generate_batch(batch_size)
        loss = loss_fn(model(features), features, model.importance)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item() / model.cfg.n_instances:.4g}")
    return losses


def feature_norms(W: Float[Tensor, "inst hidden feat"]) -> Float[Tensor, "inst feat"]:
    """||W_i||: about 1 for a represented feature, about 0 for one the model ignores."""
    return W.norm(dim=1)


def superposition_interference(W: Float[Tensor, "inst hidden feat"]) -> Float[Tensor, "inst feat"]:
    """sum_{j != i} (W_i_hat . W_j)^2: how much of other features shares feature i's direction."""
    unit = W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)
    overlaps = torch.einsum("ihf,ihg->ifg", unit, W) ** 2
    return overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1)


def dimensions_per_feature(W: Float[Tensor, "inst hidden feat"]) -> Float[Tensor, " inst"]:
    """D* = m / ||W||_F^2: hidden dimensions per represented feature."""
    return W.shape[1] / W.pow(2).sum(dim=(1, 2))


@torch.no_grad()
def hidden_dataset(
    model: ToyModel, n: int, instance: int = 0
) -> tuple[Float[Tensor, "n hidden"], Float[Tensor, "feat hidden"]]:
    """Ground truth for sparse autoencoders: ``n`` hidden vectors h = W x of one instance, and the true
    feature directions (the columns of its W) that generated them."""
    if not 0 <= instance < model.cfg.n_instances:
        raise ValueError(f"instance must be in 0..{model.cfg.n_instances - 1}, got {instance}.")
    return model.hidden(model.generate_batch(n))[:, instance], model.W[instance].T.clone()


# --- Checks a learner calls on their exercise solutions (notebook 01). Each uses known answers. ---


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
