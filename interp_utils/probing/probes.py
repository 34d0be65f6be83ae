"""Linear probes on activations and the directions they find: logistic regression, difference of means ("mass-mean",
Marks & Tegmark 2023) and its covariance-corrected form (Σ⁻¹θ), probes on a few SAE latents (Kantamneni et al. 2025),
and the controls a probe is judged against: shuffled labels, a control task (Hewitt & Liang 2019) such as token
identity or the count of earlier mentions, and selectivity."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.core import hooks
from interp_utils.core.report import Band

# The bands notebook 07 judges its lie detector by (and its mutation test checks): test accuracy in distribution, and
# on the two shifts of distribution (held-out templates, noun roles).
TRUTH_BAND = Band.at_least(0.9)
SHIFT_BAND = Band.at_least(0.75)


@dataclass
class Probe:
    """A linear classifier ``x · direction + bias > 0``; ``direction`` is what steering adds."""

    direction: Float[Tensor, " d"]
    bias: float

    def scores(self, x: Float[Tensor, "n d"]) -> Float[Tensor, " n"]:
        return x @ self.direction.to(x) + self.bias

    def accuracy(self, x: Float[Tensor, "n d"], y: Bool[Tensor, " n"]) -> float:
        return float(((self.scores(x) > 0) == y.to(x.device).bool()).float().mean())


def _check(x: Tensor, y: Tensor) -> None:
    if x.ndim != 2 or y.shape != x.shape[:1]:
        shapes = f"{tuple(x.shape)} and {tuple(y.shape)}"
        raise ValueError(f"Expected activations [n, d] and one label per row, got {shapes}.")
    y = y.bool()
    if y.all() or not y.any():
        raise ValueError("Both classes are needed to fit a probe: the labels are all one value.")


@torch.inference_mode()
def residuals_at(
    model: HookedTransformer,
    tokens: Int[Tensor, "n pos"],
    positions: Int[Tensor, " n"],
    batch_size: int = 64,
    kind: Literal["resid_post", "resid_pre"] = "resid_post",
) -> Float[Tensor, "n layer d_model"]:
    """The residual stream after each layer (``resid_post``; ``resid_pre``: entering it) at one position per row:
    what a probe at each layer reads."""
    if positions.shape != tokens.shape[:1]:
        raise ValueError(f"Give one position per row: {tuple(positions.shape)} positions for {len(tokens)} rows.")
    names = hooks.layer_names(kind, model.cfg.n_layers)
    out = []
    for start in range(0, len(tokens), batch_size):
        chunk, at = tokens[start : start + batch_size], positions[start : start + batch_size]
        _, cache = model.run_with_cache(chunk.to(model.cfg.device), names_filter=lambda name: name in names)
        rows = torch.arange(len(chunk))
        out.append(torch.stack([cache[name][rows, at.to(cache[name].device)] for name in names], 1).cpu())
    return torch.cat(out)


def mass_mean_probe(x: Float[Tensor, "n d"], y: Bool[Tensor, " n"]) -> Probe:
    """The difference of the class means as the direction (Marks & Tegmark's mass-mean probe), thresholded halfway
    between the two means."""
    _check(x, y)
    y = y.bool().to(x.device)
    pos, neg = x[y].mean(0), x[~y].mean(0)
    direction = pos - neg
    return Probe(direction, float(-direction @ (pos + neg) / 2))


def iid_mass_mean_probe(x: Float[Tensor, "n d"], y: Bool[Tensor, " n"], atol: float = 1e-3) -> Probe:
    """Marks & Tegmark's covariance-corrected mass-mean probe (their ``iid=True``): the direction Σ⁻¹θ, with θ the
    difference of the class means and Σ the covariance of the data with each class centred on its own mean
    (pseudo-inverted, eigenvalues under ``atol`` dropped, as in their probes.py), thresholded halfway between the
    two means."""
    _check(x, y)
    y = y.bool().to(x.device)
    pos, neg = x[y].mean(0), x[~y].mean(0)
    centred = torch.cat([x[y] - pos, x[~y] - neg])
    covariance = centred.T @ centred / len(x)
    direction = torch.linalg.pinv(covariance, hermitian=True, atol=atol) @ (pos - neg)
    return Probe(direction, float(-direction @ (pos + neg) / 2))


def logistic_probe(x: Float[Tensor, "n d"], y: Bool[Tensor, " n"], l2: float = 1e-3, steps: int = 100) -> Probe:
    """Logistic regression (full batch, L-BFGS) with an L2 penalty ``l2 · |w|²`` on the weights."""
    _check(x, y)
    x, target = x.detach().float().clone(), y.float().to(x.device)  # a clone: x may come from inference mode
    w = torch.zeros(x.shape[1], device=x.device, requires_grad=True)
    b = torch.zeros((), device=x.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(x @ w + b, target) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return Probe(w.detach(), float(b.detach()))


def top_latents(acts: Float[Tensor, "n latent"], y: Bool[Tensor, " n"], k: int) -> Int[Tensor, " k"]:
    """The ``k`` SAE latents whose mean activation differs most between the classes (Kantamneni et al.'s choice of
    latents to probe on)."""
    _check(acts, y)
    if not 1 <= k <= acts.shape[1]:
        raise ValueError(f"k must be between 1 and the number of latents ({acts.shape[1]}), got {k}.")
    y = y.bool().to(acts.device)
    return (acts[y].mean(0) - acts[~y].mean(0)).abs().topk(k).indices


def control_labels(token_ids: Int[Tensor, " n"], seed: int = 0) -> Bool[Tensor, " n"]:
    """Hewitt & Liang's control task: each token type gets a random label, the same wherever it occurs. A probe that
    does well here reads token identity, not the property."""
    types, inverse = torch.unique(token_ids.cpu(), return_inverse=True)
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(len(types), generator=g) < 0.5)[inverse]


def earlier_mentions(tokens: Int[Tensor, "n pos"], at: Int[Tensor, " n"]) -> Int[Tensor, " n"]:
    """How many times the token at ``at`` occurred earlier in its row (before ``at``): for a statement completed with a
    name, how often the story had named it. A lie detector could read this count instead of truth."""
    if at.shape != tokens.shape[:1]:
        raise ValueError(f"Give one position per row: {tuple(at.shape)} positions for {len(tokens)} rows.")
    at = at.to(tokens.device)
    target = tokens[torch.arange(len(tokens), device=tokens.device), at]
    before = torch.arange(tokens.shape[1], device=tokens.device)[None] < at[:, None]
    return ((tokens == target[:, None]) & before).sum(1)


def shuffled(y: Bool[Tensor, " n"], seed: int = 0) -> Bool[Tensor, " n"]:
    """The labels in a random order: a probe trained on them learns nothing about the property (the null a probe's
    accuracy is judged against)."""
    g = torch.Generator().manual_seed(seed)
    return y[torch.randperm(len(y), generator=g).to(y.device)]


def flip_labels(y: Bool[Tensor, " n"], fraction: float, seed: int = 0) -> Bool[Tensor, " n"]:
    """Label noise: exactly ``round(fraction · n)`` labels, chosen at random, flipped."""
    if not 0 <= fraction <= 1:
        raise ValueError(f"fraction must be between 0 and 1, got {fraction}.")
    g = torch.Generator().manual_seed(seed)
    flip = torch.randperm(len(y), generator=g)[: round(fraction * len(y))]
    out = y.clone().bool()
    out[flip.to(out.device)] ^= True
    return out


def cosines(directions: Float[Tensor, "n d"]) -> Float[Tensor, "n n"]:
    """The cosine similarity of every pair of directions (e.g. one probe per layer)."""
    unit = directions / directions.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return unit @ unit.T


def selectivity(task_accuracy: float, control_accuracy: float) -> float:
    """Hewitt & Liang's selectivity: accuracy on the task minus accuracy on the control task."""
    return task_accuracy - control_accuracy
