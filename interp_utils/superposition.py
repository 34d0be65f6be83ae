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
