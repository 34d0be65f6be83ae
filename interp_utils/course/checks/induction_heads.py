"""Checks for notebook 02's exercises (induction heads), each on cases with known answers; the core exercises'
checks live in ``induction_core`` and are re-exported here."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils.circuits.heads import (
    attn_only_config,
    full_ov_circuit,
    head_masks,
    positional_qk,
    remove_from_keys,
    repeated_segment_batch,
)
from interp_utils.core import hooks
from interp_utils.course.checks import answered, induction_core

# the core exercises' checks (scoring every head, training, composition, OV copying, ablation), re-exported
check_score_heads = induction_core.check_score_heads
check_training = induction_core.check_training
check_composition_scores = induction_core.check_composition_scores
check_ov_copying = induction_core.check_ov_copying
check_ablation = induction_core.check_ablation
check_key_removal_scores = induction_core.check_key_removal_scores


@answered
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


@answered
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


def _mask_check(fn: Callable[[Tensor], Tensor], kind: str, hand: list[tuple[int, int]], hint: str) -> None:
    """A mask on the hand-worked sequence BOS A B C A B (``hand``: its True [dest, src] cells), then on repeats."""
    tokens = torch.tensor([[7, 1, 2, 3, 1, 2]])
    expected = torch.zeros(1, 6, 6, dtype=torch.bool)
    for dest, src in hand:
        expected[0, dest, src] = True
    got = fn(tokens)
    if got.shape != expected.shape:
        raise AssertionError(
            f"Expected a [batch, dest, src] mask of shape {tuple(expected.shape)}, got {tuple(got.shape)}."
        )
    if not torch.equal(got.bool(), expected):
        wrong = (got.bool() != expected).nonzero()[:, 1:].tolist()
        raise AssertionError(
            f"For tokens BOS A B C A B = {tokens.tolist()[0]} the {kind} mask is wrong at [dest, src] = {wrong}: {hint}"
        )
    tokens, _ = repeated_segment_batch(8, 40, 20, 4, 12, torch.Generator().manual_seed(1))
    if not torch.equal(fn(tokens).bool(), head_masks(tokens)[kind]):
        raise AssertionError(f"Correct on the short sequence but not on random sequences with repeats: {hint}")


@answered
def check_previous_token_mask(fn: Callable[[Tensor], Tensor]) -> None:
    """src = dest - 1 for every destination after the first."""
    _mask_check(fn, "previous_token", [(d, d - 1) for d in range(1, 6)], "exactly one source, src = dest - 1.")
    print("previous-token mask: correct.")


@answered
def check_duplicate_token_mask(fn: Callable[[Tensor], Tensor]) -> None:
    """An earlier position holding the same token (never the destination itself)."""
    _mask_check(fn, "duplicate_token", [(4, 1), (5, 2)], "same token, and src < dest (not the token itself).")
    print("duplicate-token mask: correct.")


@answered
def check_attn_only_config(fn: Callable[..., HookedTransformerConfig]) -> None:
    """The sizes the text asks for, and no MLPs."""
    cfg = fn(64, 128, 0, "cpu")
    want = attn_only_config(64, 128, 0, "cpu")
    fields = ["n_layers", "d_model", "n_heads", "d_head", "n_ctx", "d_vocab", "attn_only", "normalization_type"]
    wrong = [
        f"{f} = {getattr(cfg, f)!r} (want {getattr(want, f)!r})" for f in fields if getattr(cfg, f) != getattr(want, f)
    ]
    if wrong:
        raise AssertionError("The config differs from the text's model: " + "; ".join(wrong) + ".")
    print("attention-only config: correct.")


@answered
def check_icl_score(fn: Callable[[Tensor], float]) -> None:
    """Late minus early on a hand-made loss table whose first column would give the off-by-one away."""
    loss = torch.full((2, 63), 2.0)
    loss[:, 0] = 50.0  # predicting token 1 from BOS alone: excluded from the early window
    loss[:, 1:10] = 3.0
    loss[:, -10:] = 1.0
    got = fn(loss)
    if not isinstance(got, float):
        raise AssertionError(f"Return a Python float, got {type(got).__name__}.")
    if abs(got - (1.0 - 3.0)) > 1e-5:
        raise AssertionError(
            f"Early predictions 1-9 have loss 3, the last 10 have loss 1: the score is 1 - 3 = -2 (negative: the model "
            f"improves with context). Got {got:.3f}: check the sign and that the early window starts at 1, not 0."
        )
    print("in-context-learning score: correct.")


def _tiny_model(split: bool = False) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=16, n_heads=2, d_head=8, n_ctx=10, d_vocab=12, attn_only=True, seed=3, device="cpu"
    )
    model = HookedTransformer(cfg)
    model.set_use_split_qkv_input(split)
    return model


@answered
def check_full_ov_circuit(fn: Callable[[HookedTransformer, int, int], Tensor]) -> None:
    """Shape [vocab, vocab], then the reference product on a small random model."""
    model = _tiny_model()
    got = fn(model, 1, 0)
    if got.shape != (12, 12):
        raise AssertionError(f"The full OV circuit maps vocabulary to logits: shape (12, 12), got {tuple(got.shape)}.")
    if not torch.allclose(got, full_ov_circuit(model, 1, 0), atol=1e-4):
        raise AssertionError("Not W_E W_V W_O W_U of that head: check the order (values first, then the output).")
    print("full OV circuit: correct.")


@answered
def check_top1_copying(fn: Callable[[Tensor], float]) -> None:
    """A hand-made circuit: rows 0 and 2 rank their own token first, row 1 does not."""
    ov = torch.tensor([[3.0, 1.0, 0.0], [0.0, 1.0, 2.0], [5.0, 0.0, 6.0]])  # columns 0, 2, 2 win
    got = fn(ov)
    if abs(float(got) - 2 / 3) > 1e-6:
        raise AssertionError(
            f"Rows are the attended tokens and columns the logits: rows 0 and 2 rank themselves first, row 1 does not, "
            f"so 2/3. Got {float(got):.3f}: take the argmax along each row, not down the columns."
        )
    print("top-1 copying: correct.")


@answered
def check_positional_qk(fn: Callable[[HookedTransformer, int, int], Tensor]) -> None:
    """Shape [n_ctx, n_ctx], then the reference on a small random model."""
    model = _tiny_model()
    got = fn(model, 0, 1)
    if got.shape != (10, 10):
        raise AssertionError(f"Expected [dest, src] = (10, 10) (the context length), got {tuple(got.shape)}.")
    want = positional_qk(model, 0, 1)
    if torch.allclose(got, want.T, atol=1e-4) and not torch.allclose(got, want, atol=1e-4):
        raise AssertionError("Transposed: rows are destinations (queries), columns sources (keys).")
    if not torch.allclose(got, want, atol=1e-4):
        raise AssertionError("Not W_pos W_Q W_K^T W_pos^T / sqrt(d_head): check the scale and which side reads W_Q.")
    print("positional QK circuit: correct.")


@answered
def check_remove_from_keys(fn: Callable[..., Tensor]) -> None:
    """Only the receiver's keys change, by exactly the output taken away; queries and values are untouched."""
    model = _tiny_model(split=True)
    tokens = torch.randint(0, 12, (3, 10), generator=torch.Generator().manual_seed(0))
    output = torch.randn(3, 10, 16, generator=torch.Generator().manual_seed(1))
    for receiver in (0, 1):
        got = model.run_with_hooks(
            tokens, fwd_hooks=[(hooks.name("k_input", 1), partial(fn, output=output, receiver=receiver))]
        )
        want = model.run_with_hooks(
            tokens, fwd_hooks=[(hooks.name("k_input", 1), partial(remove_from_keys, output=output, receiver=receiver))]
        )
        if got is None or not torch.allclose(got, want, atol=1e-5):
            raise AssertionError(
                f"With receiver {receiver} logits differ from subtracting the output from k_input[:, :, {receiver}] "
                "alone: the third axis of k_input is the head, and the other heads' keys must not change."
            )
    print("remove_from_keys: correct.")
