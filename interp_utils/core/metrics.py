"""The one rescaling every patching and faithfulness number shares."""

from __future__ import annotations

from typing import TypeVar

from torch import Tensor

Value = TypeVar("Value", float, Tensor)


def normalised_metric(value: Value, clean: float, corrupt: float) -> Value:
    """``value`` on the scale where the corrupted run is 0 and the clean run 1: ``(value - corrupt) / (clean -
    corrupt)`` (Wang et al.'s normalised logit difference; faithfulness in Conmy et al. and Hanna et al.)."""
    if clean == corrupt:
        raise ValueError(
            f"The clean and corrupted runs give the same metric ({clean}): nothing to normalise against. "
            "Check that the corruption changes the answer."
        )
    return (value - corrupt) / (clean - corrupt)
