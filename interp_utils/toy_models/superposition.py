"""Toy models of superposition (Elhage et al. 2022): x' = ReLU(W^T W x + b), many instances at once.

Each instance has its own feature probability (1 - sparsity) and importances, so one training run
sweeps sparsity. Used by notebook 01 and, as known ground truth for SAEs, by notebook 04. Also the paper's
measures (norms, interference, dimensionality), the 2-features-in-1-dimension phases with their closed-form
losses, and the model that computes |x| in superposition (a hidden ReLU layer).
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


def per_instance(
    cfg: ToyConfig | AbsConfig, *values: Float[Tensor, "inst feat"] | float, device: str | torch.device = "cpu"
) -> list[Float[Tensor, "inst feat"]]:
    """Each value (a number, or anything that broadcasts to ``[instance, feature]``) as an ``[instance, feature]``
    tensor on ``device``: feature probabilities and importances."""
    shape = (cfg.n_instances, cfg.n_features)
    return [torch.broadcast_to(torch.as_tensor(v, dtype=torch.float), shape).to(device) for v in values]


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
        self.feature_probability, self.importance = per_instance(cfg, feature_probability, importance, device=device)
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
        return toy_forward(self.W, self.b_final, features, self.cfg.relu)

    def target(self, features: Tensor) -> Tensor:
        """What the model should output: its input."""
        return features

    def generate_batch(self, batch: int) -> Float[Tensor, "batch inst feat"]:
        """Features uniform in [0, 1], each present (non-zero) with its instance's feature probability."""
        return generate_batch(self.feature_probability, batch)


def generate_batch(
    feature_probability: Float[Tensor, "inst feat"], batch: int, low: float = 0.0
) -> Float[Tensor, "batch inst feat"]:
    """``batch`` samples: each feature uniform in [``low``, 1] with its probability, else 0."""
    shape = (batch, *feature_probability.shape)
    values = torch.rand(shape, device=feature_probability.device)
    if low:
        values = values * (1 - low) + low
    present = torch.rand(shape, device=feature_probability.device) <= feature_probability
    return values * present


def toy_forward(
    W: Float[Tensor, "inst hidden feat"],
    b: Float[Tensor, "inst feat"],
    features: Float[Tensor, "batch inst feat"],
    relu: bool = True,
) -> Float[Tensor, "batch inst feat"]:
    """x' = ReLU(W^T W x + b) for every instance (no ReLU: the linear model)."""
    out = torch.einsum("bih,ihf->bif", torch.einsum("bif,ihf->bih", features, W), W) + b
    return torch.relu(out) if relu else out


def weighted_mse(out: Tensor, features: Tensor, importance: Tensor) -> Tensor:
    """The paper's loss: importance-weighted squared error, mean over batch, summed over instances."""
    return (importance * (out - features) ** 2).mean(dim=(0, 2)).sum()


def toy_train_step(
    model: ToyModel | AbsModel, optimizer: torch.optim.Optimizer, features: Tensor, loss_fn: LossFn = weighted_mse
) -> float:
    """One step of the paper's loss (or ``loss_fn``) on ``features``; returns the loss before the step."""
    loss = loss_fn(model(features), model.target(features), model.importance)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def train_toy_model(
    model: ToyModel | AbsModel,
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
        losses.append(toy_train_step(model, opt, model.generate_batch(batch_size), loss_fn))
        if step % 100 == 0:
            bar.set_postfix(loss=f"{losses[-1] / model.cfg.n_instances:.4g}")
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


def phase_labels(W: Float[Tensor, "inst 1 2"]) -> Float[Tensor, " inst"]:
    """2 features in 1 dimension: 0 feature 2 not represented, 1 feature 2 alone (a dedicated dimension),
    2 superposition (both represented, antipodal: W_1 W_2 < 0), 3 both represented on the same side."""
    represented = W.norm(dim=1) > 0.5
    both = represented.all(-1)
    antipodal = W[:, 0, 0] * W[:, 0, 1] < 0
    return torch.where(both, torch.where(antipodal, 2, 3), torch.where(represented[:, 1], 1, 0))


def configuration_losses(p: Tensor, r: Tensor) -> Float[Tensor, "... 3"]:
    """Expected loss of the three configurations of 2 features in 1 dimension, features present with probability
    ``p`` (uniform on [0, 1]), importances 1 and ``r``: feature 2 dropped (W = [1, 0]; the best constant for it),
    feature 1 dropped (W = [0, 1]), and the antipodal pair (W = [1, -1], zero bias: only when both features are
    present, with probability p^2, does each lose min(x_1, x_2)^2, whose mean is 1/6)."""
    p, r = torch.broadcast_tensors(torch.as_tensor(p, dtype=torch.float), torch.as_tensor(r, dtype=torch.float))
    variance = p / 3 - p**2 / 4  # Var(x_i): E[x^2] = p / 3, E[x] = p / 2
    return torch.stack([r * variance, variance, p**2 * (1 + r) / 6], dim=-1)


def sticky_share(
    d_i: Tensor,
    fractions: list[float],
    tolerance: float = 0.02,
    low: float = 0.3,
    high: float = 1.05,
    draws: int = 200,
    seed: int = 0,
) -> dict[str, Tensor | float | int]:
    """How strongly feature dimensionalities cluster at the sticky ``fractions``. Of the values of ``d_i`` in
    (``low``, ``high``): ``observed``, the share within ``tolerance`` of a fraction; ``uniform``, the share of that
    range within ``tolerance`` of one (a 10 000-point grid); ``draws``, the share near a fraction in each of
    ``draws`` sets of as many values drawn uniformly on the range (a generator seeded ``seed``); ``n``, how many."""
    live = d_i[(d_i > low) & (d_i < high)]
    sticky = torch.as_tensor(fractions, dtype=torch.float)
    grid = torch.linspace(low, high, 10_000)
    uniform_d = low + (high - low) * torch.rand(draws, len(live), generator=torch.Generator().manual_seed(seed))
    return {
        "observed": ((live[:, None] - sticky).abs() < tolerance).any(-1).float().mean().item(),
        "uniform": ((grid[:, None] - sticky).abs() < tolerance).any(-1).float().mean().item(),
        "draws": ((uniform_d[..., None] - sticky).abs() < tolerance).any(-1).float().mean(1),
        "n": len(live),
    }


def phase_diagram(
    densities: Tensor, relative: Tensor, trainer: Callable[..., ToyModel], relu: bool = True
) -> tuple[Tensor, Tensor]:
    """2 features in 1 dimension, one instance per cell of the grid (x: ``densities``, y: ``relative`` importance of
    feature 2), trained by ``trainer(cfg, feature_probability, importance)``: the trained phases (as
    ``phase_labels``) and the theory's (the configuration of least expected loss), both ``[relative, density]``."""
    dens_grid, rel_grid = torch.meshgrid(densities, relative, indexing="xy")
    n_cells = dens_grid.numel()
    importance = torch.stack([torch.ones(n_cells), rel_grid.flatten()], dim=1)
    cfg = ToyConfig(n_features=2, n_hidden=1, n_instances=n_cells, relu=relu)
    model = trainer(cfg, dens_grid.flatten()[:, None].expand(-1, 2), importance)
    phase = phase_labels(model.W.detach().cpu()).reshape(dens_grid.shape)
    return phase, configuration_losses(dens_grid, rel_grid).argmin(-1)


def shuffled_agreement(labels: Tensor, target: Tensor, shuffles: int, generator: torch.Generator) -> float:
    """The share of cells where ``labels`` equal ``target`` once ``labels`` are randomly permuted, averaged over
    ``shuffles`` permutations drawn from ``generator`` (all drawn first, in order)."""
    perms = [torch.randperm(len(labels), generator=generator) for _ in range(shuffles)]
    return sum((labels[p] == target).float().mean().item() for p in perms) / shuffles


def phase_agreement(
    phase: Tensor, theory: Tensor, phase_linear: Tensor, relative: Tensor, shuffles: int = 1000, seed: int = 0
) -> dict[str, float | int]:
    """How well a trained ``[relative, density]`` phase diagram (densities rising along a row) follows the theory,
    each measure with its control: ``agreement`` (share of cells where ``phase`` is ``theory``) and
    ``agreement_shuffled`` (the same with the cells shuffled, mean over ``shuffles``); ``dense_match`` (share of the
    densest, last column where the more important feature alone takes the dimension: 1 where r > 1, else 0) and
    ``dense_shuffled`` (that column shuffled); ``dense_super`` and ``same_side``, counts of superposed cells in that
    column and of label-3 cells; ``sparse_super`` and ``linear_super``, the superposed share of the sparsest third of
    the columns in ``phase`` and in ``phase_linear``. One generator seeded ``seed`` draws every shuffle: the
    column's first, then the grid's."""
    generator = torch.Generator().manual_seed(seed)
    dense_col, winner, sparse = phase[:, -1], (relative > 1).long(), slice(0, phase.shape[1] // 3)
    dense_shuffled = shuffled_agreement(dense_col, winner, shuffles, generator)
    return {
        "agreement": (phase == theory).float().mean().item(),
        "agreement_shuffled": shuffled_agreement(phase.flatten(), theory.flatten(), shuffles, generator),
        "dense_match": (dense_col == winner).float().mean().item(),
        "dense_shuffled": dense_shuffled,
        "dense_super": int((dense_col == 2).sum()),
        "same_side": int((phase == 3).sum()),
        "sparse_super": (phase[:, sparse] == 2).float().mean().item(),
        "linear_super": (phase_linear[:, sparse] == 2).float().mean().item(),
    }


@dataclass
class AbsConfig:
    """Computing |x| in superposition: ``n_features`` inputs in [-1, 1], ``n_neurons`` hidden ReLU neurons."""

    n_features: int = 10
    n_neurons: int = 5
    n_instances: int = 8


class AbsModel(nn.Module):
    """y = ReLU(W_2 ReLU(W_1 x + b_1) + b_2), trained to output |x|: computation, not just storage, in superposition."""

    def __init__(
        self,
        cfg: AbsConfig,
        feature_probability: Float[Tensor, "inst feat"] | float = 1.0,
        importance: Float[Tensor, "inst feat"] | float = 1.0,
        device: str | torch.device = "cpu",
    ):
        super().__init__()
        self.cfg = cfg
        self.feature_probability, self.importance = per_instance(cfg, feature_probability, importance, device=device)
        n, m, k = cfg.n_instances, cfg.n_neurons, cfg.n_features
        self.W1 = nn.Parameter(nn.init.xavier_normal_(torch.empty(n, m, k)))
        self.W2 = nn.Parameter(nn.init.xavier_normal_(torch.empty(n, k, m)))
        self.b1 = nn.Parameter(torch.zeros(n, m))
        self.b2 = nn.Parameter(torch.zeros(n, k))
        self.to(device)

    def forward(self, features: Float[Tensor, "batch inst feat"]) -> Float[Tensor, "batch inst feat"]:
        return abs_forward(self.W1, self.b1, self.W2, self.b2, features)

    def target(self, features: Tensor) -> Tensor:
        """What the model should output: |x|."""
        return features.abs()

    def generate_batch(self, batch: int) -> Float[Tensor, "batch inst feat"]:
        """Features uniform in [-1, 1], each present with its instance's feature probability."""
        return generate_batch(self.feature_probability, batch, low=-1.0)


def abs_forward(
    W1: Float[Tensor, "inst neuron feat"],
    b1: Float[Tensor, "inst neuron"],
    W2: Float[Tensor, "inst feat neuron"],
    b2: Float[Tensor, "inst feat"],
    features: Float[Tensor, "batch inst feat"],
) -> Float[Tensor, "batch inst feat"]:
    """y = ReLU(W_2 ReLU(W_1 x + b_1) + b_2), per instance."""
    hidden = torch.relu(torch.einsum("inf,bif->bin", W1, features) + b1)
    return torch.relu(torch.einsum("ifn,bin->bif", W2, hidden) + b2)


def neuron_share(W1: Float[Tensor, "inst neuron feat"]) -> Float[Tensor, "inst neuron"]:
    """The largest share of a neuron's squared input weights that one feature holds: 1 for a monosemantic neuron,
    about 1/k for one that reads k features equally; 0 for a neuron that reads nothing."""
    squared = W1.pow(2)
    return squared.max(-1).values / squared.sum(-1).clamp_min(1e-12)


@torch.no_grad()
def hidden_dataset(
    model: ToyModel, n: int, instance: int = 0
) -> tuple[Float[Tensor, "n hidden"], Float[Tensor, "feat hidden"]]:
    """Ground truth for sparse autoencoders: ``n`` hidden vectors h = W x of one instance, and the true
    feature directions (the columns of its W) that generated them."""
    if not 0 <= instance < model.cfg.n_instances:
        raise ValueError(f"instance must be in 0..{model.cfg.n_instances - 1}, got {instance}.")
    return model.hidden(model.generate_batch(n))[:, instance], model.W[instance].T.clone()


def monosemantic_share(W1: Float[Tensor, "inst neuron feat"], share: float = 0.9, live: float = 0.1) -> list[float]:
    """Per instance, the share of live neurons (input weights of norm above ``live``) in which one feature holds over
    ``share`` of the squared input weights (0 for an instance with no live neuron)."""
    alive = W1.norm(dim=-1) > live
    mono = (neuron_share(W1) > share) & alive
    return [mono[k].sum().item() / max(1, int(alive[k].sum())) for k in range(len(W1))]


def neighbour_angles(W_2d: Float[Tensor, "2 feat"], represented: Tensor) -> Float[Tensor, " rep"]:
    """Angles (degrees) between angularly adjacent represented directions in 2-D, going once around the circle:
    one gap per represented feature, summing to 360."""
    vecs = W_2d[:, represented]
    theta = torch.atan2(vecs[1], vecs[0]).sort().values
    return torch.rad2deg(torch.diff(torch.cat([theta, theta[:1] + 2 * torch.pi])))
