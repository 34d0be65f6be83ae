"""The cases notebook 03's checks share: a small IOI batch run through the notebook's model, a hand-made batch,
and the helpers that turn a learner's return value into what the checks compare."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.circuits.ioi_circuit import IOIRuns, run_ioi
from interp_utils.data import ioi

_CASES: list[IOIRuns] = []


def case_for(model: HookedTransformer) -> IOIRuns:
    """Eight prompts of the notebook's distribution for ``model`` (built once per model)."""
    for case in _CASES:
        if case.model is model:
            return case
    batch = ioi.ioi_batch(model, ioi.default_prompts(model, 8, seed=11), seed=12)
    _CASES[:] = [run_ioi(model, batch)]  # keep one model's caches
    return _CASES[0]


def hand_batch() -> tuple[ioi.IOIBatch, Tensor]:
    """Two right-padded prompts over a 5-token vocabulary: the first ends at position 2, the second at 3."""
    logits = torch.arange(2 * 4 * 5, dtype=torch.float32).reshape(2, 4, 5) % 7
    positions = {k: torch.tensor([0, 0]) for k in ioi.POSITIONS} | {"end": torch.tensor([2, 3])}
    tokens = torch.zeros(2, 4, dtype=torch.long)
    batch = ioi.IOIBatch([None, None], tokens, tokens, torch.tensor([1, 3]), torch.tensor([4, 0]), positions)  # type: ignore[list-item]
    return batch, logits


def shaped(got: Any, shape: tuple[int, ...], what: str) -> Tensor:
    """``got`` as a float CPU tensor, once it is a tensor of ``shape``; else say what to return."""
    if not torch.is_tensor(got) or tuple(got.shape) != tuple(shape):
        raise AssertionError(f"Return {what}, shape {tuple(shape)}, got {getattr(got, 'shape', type(got).__name__)}.")
    return got.detach().float().cpu()


def as_float(got: Any, what: str) -> float:
    if torch.is_tensor(got) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, float):
        raise AssertionError(
            f"{what}: return the mean over prompts as a Python float (.item()), got {type(got).__name__}."
        )
    return got
