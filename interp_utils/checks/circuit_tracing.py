"""Checks for notebook 05's exercises (circuit tracing), each on cases with known answers."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from interp_utils.checks import answered


@answered
def check_influence(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """Influence on a hand-made chain emb -> f1 -> f2 -> logit (plus a direct emb -> logit edge), and on a random
    acyclic graph against the closed form w ((I - A)^-1 - I)."""
    A = torch.zeros(4, 4)  # nodes: 0 emb, 1 f1, 2 f2, 3 logit; rows are targets
    A[1, 0], A[2, 1], A[3, 2], A[3, 0] = 1.0, 1.0, 0.5, 0.5
    w = torch.tensor([0.0, 0.0, 0.0, 1.0])
    expected = torch.tensor([1.0, 0.5, 0.5, 0.0])  # emb: 0.5 direct + 0.5 through f1 and f2
    got = fn(A, w)
    if got.shape != w.shape or not torch.allclose(got, expected, atol=1e-5):
        raise AssertionError(
            f"On the chain emb->f1->f2->logit with a direct emb->logit edge expected {expected.tolist()}, got "
            f"{got.tolist() if torch.is_tensor(got) else got}. Sum w A^k over k >= 1: paths of every length."
        )
    torch.manual_seed(0)
    A = torch.rand(6, 6).tril(-1)
    A = A / A.sum(1, keepdim=True).clamp_min(1e-10)
    w = torch.rand(6)
    closed = w @ (torch.linalg.inv(torch.eye(6) - A) - torch.eye(6))
    if not torch.allclose(fn(A, w), closed, atol=1e-5):
        raise AssertionError("On a random acyclic graph the result differs from w ((I - A)^-1 - I).")
    print("influence: correct.")


@answered
def check_threshold(fn: Callable[[Tensor, float], Tensor]) -> None:
    """The pruning threshold: the smallest score among the largest scores that make up the fraction."""
    scores = torch.tensor([0.1, 0.4, 0.2, 0.3])
    cases = {0.5: 0.3, 0.7: 0.3, 0.8: 0.2, 1.0: 0.1, 0.0: 0.4}
    for fraction, expected in cases.items():
        got = float(fn(scores, fraction))
        if abs(got - expected) > 1e-6:
            raise AssertionError(
                f"For scores {scores.tolist()} and fraction {fraction} expected {expected} (sorted descending, "
                f"the cumulative shares are 0.4, 0.7, 0.9, 1.0: keep scores until the share reaches the fraction), "
                f"got {got}."
            )
    print("threshold: correct.")
