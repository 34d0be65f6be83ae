"""The checks a learner runs on their exercise answers, one module per lesson.

Each ``check_<name>(fn)`` tests the learner's function in stages (shape, a case worked out by hand, agreement with
the suite's reference, the edge cases behind the usual mistakes) and says what to look at when a stage fails;
``tests/test_checks.py`` shows that each one passes the reference answer and rejects plausible wrong ones.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, ParamSpec

import torch

P = ParamSpec("P")


class NotAnswered(Exception):
    """An exercise still holds its stub: its check stops the notebook there, with this message and no traceback."""


def answered(check: Callable[P, None]) -> Callable[P, None]:
    """Wrap a check so that an exercise still holding its stub stops the run with "not answered yet", and so that
    the check's own random numbers do not change the notebook's (results stay the same with or without exercises)."""

    @functools.wraps(check)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        try:
            with torch.random.fork_rng(devices=[]):  # a check's random cases leave the notebook's random stream alone
                check(*args, **kwargs)
        except NotImplementedError:
            name = getattr(args[0], "__name__", "your function") if args else "your function"
            raise NotAnswered(
                f"{name}: not answered yet. Replace the `raise NotImplementedError(...)` line in this cell with your "
                "answer and run the cell again."
            ) from None

    return run


def compare_training_steps(
    fn: Callable[..., float],
    reference: Callable[..., float],
    fresh: Callable[[], tuple[Any, torch.optim.Optimizer]],
    batch: torch.Tensor,
    weights: Callable[[Any], list[torch.Tensor]],
    optimiser: str,
) -> None:
    """Two steps of a learner's ``fn(model, optimizer, batch)`` against ``reference`` on twin models from ``fresh``:
    the loss (a float, before the step), that the first of ``weights`` moves, and that all of them match."""
    (mine, my_opt), (want, want_opt) = fresh(), fresh()
    for step in range(2):
        before = weights(mine)[0].detach().clone()
        loss = fn(mine, my_opt, batch)
        expected = reference(want, want_opt, batch)
        if not isinstance(loss, float):
            raise AssertionError(f"Return the loss as a Python float (loss.item()), got {type(loss).__name__}.")
        if abs(loss - expected) > 1e-5:
            raise AssertionError(f"Step {step + 1}: the loss before the step should be {expected:.5f}, got {loss:.5f}.")
        if torch.equal(before, weights(mine)[0].detach()):
            raise AssertionError("The weights did not change: call loss.backward() and then optimizer.step().")
        if not all(torch.allclose(a, b, atol=1e-5) for a, b in zip(weights(mine), weights(want), strict=True)):
            raise AssertionError(
                f"After step {step + 1} the weights differ from one {optimiser} step on the loss. Clear the gradients "
                "(optimizer.zero_grad()) every step: otherwise they add up across steps."
            )


def close(got: float, want: float, what: str, hint: str, tol: float = 1e-3) -> None:
    """Fail with "<what>: expected ..., got ... <hint>" unless ``got`` is within ``tol`` of ``want``
    (relative to ``want`` where it is larger than 1)."""
    if abs(got - want) > tol * max(1.0, abs(want)):
        raise AssertionError(f"{what}: expected {want:.5f}, got {got:.5f}. {hint}")


def _quiet_in_notebooks() -> None:
    """In IPython, show a NotAnswered as its message alone: it is an instruction, not a bug."""
    shell = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is None:
        return

    def show(shell, etype, value, tb, tb_offset=None):
        print(f"✏️  {value}", file=sys.stderr)
        return [f"{etype.__name__}: {value}"]

    shell.set_custom_exc((NotAnswered,), show)


_quiet_in_notebooks()
