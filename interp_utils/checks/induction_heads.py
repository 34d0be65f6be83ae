"""Checks for notebook 02's exercises (induction heads), each on cases with known answers."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils import hooks
from interp_utils.heads import head_ablation_hooks, head_masks, repeated_segment_batch


def check_induction_mask(fn: Callable[[Tensor], Tensor]) -> None:
    """An induction mask on a hand-worked sequence (A B C A B), then on random repeats."""
    tokens = torch.tensor([[7, 1, 2, 3, 1, 2]])  # BOS=7, then A B C A B
    expected = torch.zeros(1, 6, 6, dtype=torch.bool)
    expected[0, 4, 2] = True  # the second A attends to the B after the first A
    expected[0, 5, 3] = True  # the second B attends to the C after the first B
    got = fn(tokens)
    if got.shape != expected.shape:
        raise AssertionError(
            f"Expected a [batch, dest, src] mask of shape {tuple(expected.shape)}, got {tuple(got.shape)}."
        )
    if not torch.equal(got.bool(), expected):
        wrong = (got.bool() != expected).nonzero().tolist()
        raise AssertionError(f"For tokens {tokens.tolist()} the mask is wrong at [batch, dest, src] = {wrong}.")
    tokens, _ = repeated_segment_batch(8, 40, 20, 4, 12, torch.Generator().manual_seed(1))
    if not torch.equal(fn(tokens).bool(), head_masks(tokens)["induction"]):
        raise AssertionError("Correct on A B C A B but not on random sequences with repeated tokens: check src < dest.")
    print("induction mask: correct.")


def check_composition_score(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    """The composition score of two full matrices: identity, orthogonal subspaces and a random case."""
    eye, g = torch.eye(4), torch.Generator().manual_seed(0)
    half = torch.diag(torch.tensor([1.0, 1.0, 0.0, 0.0]))
    other = torch.diag(torch.tensor([0.0, 0.0, 1.0, 1.0]))
    a, b = torch.randn(6, 6, generator=g), torch.randn(6, 6, generator=g)
    cases = [
        ("identity with itself", eye, eye, 0.5),
        ("orthogonal subspaces", half, other, 0.0),
        ("random matrices", a, b, ((a @ b).norm() / a.norm() / b.norm()).item()),
    ]
    for name, left, right, expected in cases:
        got = float(fn(left, right))
        if abs(got - expected) > 1e-4:
            raise AssertionError(f"For {name} expected {expected:.4f}, got {got:.4f}.")
    print("composition score: correct.")


def check_zero_ablation_hook(fn: Callable[..., Tensor]) -> None:
    """``fn(z, hook, head)`` must zero one head's ``z`` and leave the others alone."""
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=32, n_heads=4, d_head=8, n_ctx=16, d_vocab=30, attn_only=True, seed=0
    )
    model = HookedTransformer(cfg)
    tokens = torch.randint(0, 30, (3, 16), generator=torch.Generator().manual_seed(0))
    for layer, head in [(0, 1), (1, 3)]:
        got = model.run_with_hooks(tokens, fwd_hooks=[(hooks.name("z", layer), partial(fn, head=head))])
        want = model.run_with_hooks(tokens, fwd_hooks=head_ablation_hooks([(layer, head)]))
        if got is None or not torch.allclose(got, want, atol=1e-5):
            raise AssertionError(
                f"Ablating head {layer}.{head} gave different logits from zeroing z[:, :, {head}]: "
                "check which axis is the head axis ([batch, pos, head, d_head]) and that the hook returns z."
            )
    print("zero-ablation hook: correct.")
