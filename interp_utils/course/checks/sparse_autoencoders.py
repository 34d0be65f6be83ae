"""Checks for notebook 04's exercises (sparse autoencoders), each on cases with known answers; the core exercises'
checks (the losses, resampling, the training loop, the metrics, the loss recovered) live in
:mod:`interp_utils.course.checks.sparse_autoencoders_core` and are re-exported here."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.course.checks import answered
from interp_utils.course.checks.sparse_autoencoders_core import (
    check_evaluate,
    check_loss_recovered,
    check_resample,
    check_sae_losses,
    check_train,
)
from interp_utils.course.checks.sparse_autoencoders_frontier import check_batch_topk, check_jumprelu, check_matryoshka
from interp_utils.dictionaries.sae import SAE, SAEConfig

__all__ = [
    "check_batch_topk",
    "check_decoder_constraint",
    "check_evaluate",
    "check_jumprelu",
    "check_logit_effects",
    "check_loss_recovered",
    "check_matryoshka",
    "check_mmcs",
    "check_resample",
    "check_sae_losses",
    "check_schedule",
    "check_topk",
    "check_train",
]


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
def check_decoder_constraint(remove: Callable[[Tensor, Tensor], Tensor], renorm: Callable[[Tensor], Tensor]) -> None:
    """The gradient along a row [3, 4] removed by hand; rows renormalised; then random cases against the SAE's own."""
    W, grad = torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 0.0]])
    want = torch.tensor([[0.64, -0.48]])  # minus (g . u) u with the unit row u = [0.6, 0.8]
    got = remove(W, grad.clone())
    if not torch.allclose(got, want, atol=1e-5):
        raise AssertionError(
            f"For the row [3, 4] and gradient [1, 0] expected {want.tolist()}, got {got.tolist()}: subtract the "
            "gradient's component along the *unit* row, (g . u) u with u = row / ||row||."
        )
    got = renorm(torch.tensor([[3.0, 4.0], [0.0, 2.0]]))
    if not torch.allclose(got, torch.tensor([[0.6, 0.8], [0.0, 1.0]])):
        raise AssertionError(f"Each decoder row (not column) should have norm 1, got {got.tolist()}.")
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=5, d_sae=7, k=2))
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(7, 1) + 0.5)
    sae.W_dec.grad = torch.randn(7, 5)
    mine = remove(sae.W_dec.detach().clone(), sae.W_dec.grad.clone())
    sae.remove_parallel_grads_()
    if not torch.allclose(mine, sae.W_dec.grad, atol=1e-5):
        raise AssertionError("Right for one row but not for several rows of other lengths: work row by row (dim=1).")
    print("unit-norm decoder rows: correct.")


@answered
def check_schedule(fn: Callable[[int, int, float, float], tuple[float, float]]) -> None:
    """The two ramps of a 100-step run with a 5% L1 warm-up and a 20% learning-rate decay, at hand-picked steps."""
    for step, want in {
        0: (1.0, 0.0),
        2: (1.0, 0.4),
        5: (1.0, 1.0),
        79: (1.0, 1.0),
        80: (1.0, 1.0),
        90: (0.5, 1.0),
        99: (0.05, 1.0),
    }.items():
        got = tuple(float(v) for v in fn(step, 100, 0.05, 0.2))
        if any(abs(a - b) > 1e-6 for a, b in zip(got, want, strict=True)):
            raise AssertionError(
                f"At step {step} of 100 expected (lr factor, L1 scale) = {want}, got {got}. The L1 scale is "
                "step / (0.05 x 100), capped at 1; the lr factor is 1 until step 80, then (100 - step) / 20."
            )
    print("schedule: correct.")


@answered
def check_logit_effects(fn: Callable[..., tuple[Tensor, Tensor]], model: HookedTransformer) -> None:
    """The tokens a latent's decoder row promotes most, against ``W_dec[latent] @ W_U``."""
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=model.cfg.d_model, d_sae=32, k=4), device=model.W_E.device)
    with torch.no_grad():
        sae.W_enc.normal_()  # encoder and decoder differ: reading the wrong one shows
        for latent in (0, 17):
            values, ids = fn(model, sae, latent, 5)
            want = (sae.W_dec[latent] @ model.W_U).topk(5)
            if not torch.equal(torch.as_tensor(ids).cpu(), want.indices.cpu()):
                raise AssertionError(
                    f"Latent {latent}: expected tokens {want.indices.tolist()}, got {torch.as_tensor(ids).tolist()}. "
                    "Read the latent's decoder row (what it writes) through the unembedding and take the top k."
                )
            if not torch.allclose(torch.as_tensor(values).cpu(), want.values.cpu(), atol=1e-4):
                raise AssertionError("Right tokens, wrong values: return the logits themselves, largest first.")
    print("logit effects: correct.")
