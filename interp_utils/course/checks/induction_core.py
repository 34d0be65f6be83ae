"""Checks for notebook 02's core exercises (scoring every head, training, composition, OV copying, ablation);
re-exported by :mod:`interp_utils.course.checks.induction_heads`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig
from transformer_lens.utilities.lm_utils import lm_cross_entropy_loss

from interp_utils.circuits import heads
from interp_utils.core import hooks
from interp_utils.course.checks import answered, compare_training_steps

HAND_TOKENS = torch.tensor([[7, 1, 2, 3, 1, 2]])  # BOS A B C A B


def _model(n_layers: int = 2, n_heads: int = 3, d_vocab: int = 12, n_ctx: int = 10, seed: int = 3) -> HookedTransformer:
    cfg = HookedTransformerConfig(
        n_layers=n_layers,
        d_model=16,
        n_heads=n_heads,
        d_head=8,
        n_ctx=n_ctx,
        d_vocab=d_vocab,
        attn_only=True,
        normalization_type="LN",
        seed=seed,
        device="cpu",
    )
    return HookedTransformer(cfg)


def _attn(model: HookedTransformer, layer: int) -> Any:
    """Layer ``layer``'s attention module, whose weights a check may set."""
    return model.blocks[layer].attn


def _forced(pattern: Tensor, n_layers: int) -> list:
    """Hooks that make every head of every layer attend with ``pattern`` ([dest, src])."""

    def force(p: Tensor, hook) -> Tensor:
        return pattern.expand_as(p).clone()

    return [(hooks.name("pattern", layer), force) for layer in range(n_layers)]


def _hand_case(fn: Callable, model: HookedTransformer, pattern: Tensor, want: dict[str, float], what: str) -> None:
    with model.hooks(fwd_hooks=_forced(pattern, model.cfg.n_layers)):
        got = fn(model, HAND_TOKENS)
    for kind, value in want.items():
        score = got[kind]
        if not torch.allclose(score.float(), torch.full_like(score.float(), value), atol=1e-5):
            raise AssertionError(
                f"On BOS A B C A B with every head attending {what}, the {kind} score of every head is {value:g}, got "
                f"{score.flatten().tolist()}. Average over the destinations that have a {kind} source only "
                "(the others do not count), and check that each kind reads its own mask."
            )


@answered
def check_score_heads(fn: Callable[[HookedTransformer, Tensor], dict[str, Tensor]]) -> None:
    """Shapes, two hand-made attention patterns forced on every head, then heads.head_scores on a random model."""
    model = _model()
    got = fn(model, HAND_TOKENS)
    if not isinstance(got, dict) or set(got) != set(heads.HEAD_KINDS):
        raise AssertionError(f"Return a dict with the keys {list(heads.HEAD_KINDS)}, got {got!r:.80}.")
    for kind, score in got.items():
        if tuple(score.shape) != (2, 3):
            raise AssertionError(
                f"The {kind} scores should be [layer, head] = (2, 3) for this 2-layer model of 3 heads, got "
                f"{tuple(score.shape)}: one row per layer, in layer order."
            )
    n = HAND_TOKENS.shape[1]
    previous = torch.zeros(n, n)
    previous[0, 0], previous[torch.arange(1, n), torch.arange(n - 1)] = 1.0, 1.0
    _hand_case(fn, model, previous, {"previous_token": 1.0, "duplicate_token": 0.0, "induction": 0.0}, "dest - 1")
    # the induction pattern: destinations 4 and 5 attend to 2 and 3, the others to BOS
    induct = torch.zeros(n, n)
    induct[:, 0] = 1.0
    induct[4], induct[5] = torch.eye(n)[2], torch.eye(n)[3]
    # previous-token: only destination 1 (its previous token is BOS) of the five scores 1
    want = {"previous_token": 0.2, "duplicate_token": 0.0, "induction": 1.0}
    _hand_case(fn, model, induct, want, "to the token after the earlier copy (or BOS)")
    tokens, _ = heads.repeated_segment_batch(6, 10, 12, 3, 4, torch.Generator().manual_seed(4))
    got, expected = fn(model, tokens), heads.head_scores(model, tokens)
    for kind in heads.HEAD_KINDS:
        if not torch.allclose(got[kind].float().cpu(), expected[kind], atol=1e-5):
            raise AssertionError(
                f"Right on the hand-made patterns, but the {kind} scores of a random model on a batch of 6 differ from "
                "the reference: average over every (sequence, destination) pair with a source, the whole batch."
            )
    print("scores of every head: correct.")


@answered
def check_training(
    next_token_loss: Callable[[Tensor, Tensor], Tensor],
    train_step: Callable[..., float],
    train: Callable[..., tuple[list[dict], list[float]]],
) -> None:
    """The per-token loss (shape, a hand case, TransformerLens's), two steps against AdamW, then the loop."""
    logits = torch.zeros(1, 4, 5)
    tokens = torch.tensor([[0, 3, 1, 4]])
    logits[0, torch.arange(3), tokens[0, 1:]] = 10.0  # every position puts a large logit on the NEXT token
    got = next_token_loss(logits, tokens)
    if tuple(got.shape) != (1, 3):
        raise AssertionError(
            f"The per-token loss is [batch, pos - 1] = (1, 3): position p predicts token p + 1 and the last position "
            f"predicts nothing. Got {tuple(got.shape)}."
        )
    want = lm_cross_entropy_loss(logits, tokens, per_token=True)
    if not torch.allclose(got, want, atol=1e-4):
        raise AssertionError(
            f"Logits of 10 on the next token at every position: the loss should be small, {want[0].tolist()}, got "
            f"{got[0].tolist()}. Compare position p's logits with token p + 1 (not token p), and take minus the "
            "log-softmax (not the raw logit)."
        )
    g = torch.Generator().manual_seed(0)
    logits, tokens = torch.randn(3, 7, 9, generator=g), torch.randint(0, 9, (3, 7), generator=g)
    if not torch.allclose(next_token_loss(logits, tokens), lm_cross_entropy_loss(logits, tokens, per_token=True)):
        raise AssertionError("Right on the small case but not on random logits: normalise over the vocabulary axis.")

    def fresh() -> tuple[HookedTransformer, torch.optim.Optimizer]:
        model = _model(n_layers=1, n_heads=2, d_vocab=20, n_ctx=12, seed=0)
        return model, torch.optim.AdamW(model.parameters(), lr=1e-2)

    batch = torch.randint(0, 20, (4, 12), generator=torch.Generator().manual_seed(0))
    compare_training_steps(train_step, heads.attn_only_train_step, fresh, batch, lambda m: [m.W_Q], "AdamW")
    runs = []
    for loop in (train, heads.attn_only_train):
        model, optimizer = fresh()
        g = torch.Generator().manual_seed(1)
        seen: list[int] = []

        def measure(m: HookedTransformer, seen: list[int] = seen) -> dict:
            seen.append(len(seen))
            return {"W_Q": m.W_Q.detach().clone()}

        def make_batch(g: torch.Generator = g) -> Tensor:
            return torch.randint(0, 20, (4, 12), generator=g)

        history, losses = loop(model, optimizer, 6, make_batch, 2, measure)
        runs.append(([h["step"] for h in history], losses, history[-1]["W_Q"]))
    (steps, losses, last), (want_steps, want_losses, want_last) = runs
    if steps[:1] != [0]:
        raise AssertionError(
            f"6 steps measured every 2: the history should hold steps {want_steps}, got {steps}. Measure before the "
            "first step (step 0, the untrained model), and before each step's update, not after it."
        )
    if steps != want_steps:
        raise AssertionError(
            f"6 steps measured every 2: the history should hold steps {want_steps}, got {steps}: every eval_every "
            "steps, the last one after the final update (the loop runs steps + 1 times and stops after measuring)."
        )
    if len(losses) != len(want_losses) or not torch.allclose(torch.tensor(losses), torch.tensor(want_losses)):
        raise AssertionError(
            f"Expected one training loss per step, {len(want_losses)} of them ({want_losses[:2]}...), got "
            f"{len(losses)} ({losses[:2]}...): one new batch per step, and no step after the final measurement."
        )
    if not torch.allclose(last, want_last, atol=1e-5):
        raise AssertionError("The final measurement saw different weights: measure after the last step's update.")
    print("training: correct.")


@answered
def check_composition_scores(
    fn: Callable[[HookedTransformer, str], Tensor], baseline: Callable[[int, int, int, int], tuple[float, float]]
) -> None:
    """Shape and the zeros of pairs that cannot compose, heads.composition_scores for Q, K and V, then the baseline."""
    model = _model(n_layers=3, n_heads=2)
    with torch.no_grad():
        got = {mode: fn(model, mode) for mode in "QKV"}
    for mode, scores in got.items():
        if tuple(scores.shape) != (3, 2, 3, 2):
            raise AssertionError(
                f"{mode}-composition of a 3-layer model of 2 heads: [layer1, head1, layer2, head2] = (3, 2, 3, 2), "
                f"got {tuple(scores.shape)}."
            )
        later = torch.arange(3)[:, None, None, None] < torch.arange(3)[None, None, :, None]
        if scores.masked_select(~later.expand(3, 2, 3, 2)).abs().max() > 0:
            raise AssertionError(
                f"{mode}-composition: a head reads only heads of earlier layers; pairs whose second head is not in a "
                "later layer must score 0."
            )
    for mode, scores in got.items():
        want = heads.composition_scores(model, mode)  # type: ignore[arg-type]
        if torch.allclose(scores.float(), want, atol=1e-4):
            continue
        swap = {"Q": "K", "K": "Q"}.get(mode)
        if swap and torch.allclose(scores.float(), heads.composition_scores(model, swap), atol=1e-4):  # type: ignore[arg-type]
            raise AssertionError(
                f"Your {mode}-composition equals the reference's {swap}-composition: Q reads W_QK = W_Q W_K^T, K its "
                "transpose (the earlier head's output enters through the keys)."
            )
        raise AssertionError(
            f"{mode}-composition differs from the reference on a random 3-layer model: the score is "
            "||W_OV A|| / (||W_OV|| ||A||) with W_OV = W_V W_O of the earlier head and A = W_QK (Q), W_QK^T (K) or "
            "W_OV (V) of the later one; Frobenius norms, each pair normalised."
        )
    mean, std = baseline(64, 16, 400, 0)
    want_mean, want_std = heads.composition_baseline(64, 16, 1500, 1)
    if not (abs(mean - want_mean) < 0.1 * want_mean and abs(std - want_std) < 0.3 * want_std):
        raise AssertionError(
            f"Random heads with d_model 64, d_head 16: the score's mean is about {want_mean:.3f} and its spread "
            f"{want_std:.3f}, got {mean:.3f} ± {std:.3f}. Each random head is the product of a [d_model, d_head] and "
            "a [d_head, d_model] Gaussian matrix (low rank, like a real head), and the score is normalised."
        )
    print("composition scores and random baseline: correct.")


@answered
def check_ov_copying(fn: Callable[[HookedTransformer], tuple[Tensor, Tensor]]) -> None:
    """A hand-made copying head and its negation, then the reference scores on a random model."""
    model = _model(n_layers=1, n_heads=2, d_vocab=16)
    with torch.no_grad():  # head 0 copies (W_E W_V W_O W_U = W_E P W_E^T D: eigenvalues >= 0), head 1 suppresses
        model.W_E.copy_(torch.randn(16, 16, generator=torch.Generator().manual_seed(0)))
        scale = torch.linspace(0.5, 2.0, 16)[torch.randperm(16, generator=torch.Generator().manual_seed(1))]
        model.W_U.copy_(model.W_E.T * scale)  # each token's logit scaled: rows and columns of the circuit differ
        _attn(model, 0).W_V[0].copy_(torch.eye(16)[:, :8])
        _attn(model, 0).W_O[0].copy_(torch.eye(16)[:8])
        _attn(model, 0).W_V[1].copy_(torch.eye(16)[:, :8])
        _attn(model, 0).W_O[1].copy_(-torch.eye(16)[:8])
        eigen, top1 = fn(model)
    for name, value in (("eigenvalue score", eigen), ("top-1 copying", top1)):
        if tuple(value.shape) != (1, 2):
            raise AssertionError(f"Return the {name} of every head, [layer, head] = (1, 2), got {tuple(value.shape)}.")
    if not (eigen[0, 0] > 0.99 and eigen[0, 1] < -0.99):
        raise AssertionError(
            f"Head 0's full OV circuit is W_E P W_E^T D (P a projection, D a positive diagonal: eigenvalues >= 0, "
            f"score +1), head 1's its negation (score -1); got {eigen[0].tolist()}. The score is sum(λ) / sum(|λ|), "
            "the real part."
        )
    want_top1 = heads.top1_copying(heads.full_ov_circuit(model, 0, 0))
    if abs(float(top1[0, 0]) - want_top1) > 1e-6 or float(top1[0, 1]) > 0.2:
        raise AssertionError(
            f"Top-1 copying of the copying head is {want_top1:.3f} and of its negation near 0, got "
            f"{top1[0].tolist()}: the share of rows of W_E W_V W_O W_U whose largest entry is on the diagonal "
            "(argmax along a row)."
        )
    model = _model(n_layers=2, n_heads=3, d_vocab=12)
    with torch.no_grad():
        _attn(model, 1).W_O[1].zero_()  # head 1.1 writes nothing: no nonzero eigenvalue
        eigen, top1 = fn(model)
        want_eigen = heads.ov_eigen_copying(model)
        want_top1s = torch.tensor(
            [[heads.top1_copying(heads.full_ov_circuit(model, lay, h)) for h in range(3)] for lay in range(2)]
        )
    if eigen.isnan().any():
        raise AssertionError(
            "A nan score: head 1.1 of this random model writes nothing (its W_O is zero), so all its eigenvalues are "
            "0 and sum(|λ|) is 0. Score such a head 0 (keep the denominator away from zero)."
        )
    if not torch.allclose(eigen.float().cpu(), want_eigen, atol=1e-4):
        raise AssertionError(
            "Right on the hand-made heads but not on a random model: the eigenvalues of W_E W_V W_O W_U (or of the "
            "small W_O W_U W_E W_V, which has the same nonzero ones), per layer and head, in that order."
        )
    if not torch.allclose(top1.float().cpu(), want_top1s, atol=1e-6):
        raise AssertionError("Top-1 copying differs on a random model: rows are attended tokens, argmax along a row.")
    print("OV copying scores: correct.")


@answered
def check_ablation(
    mean_head_outputs: Callable[[HookedTransformer, Tensor], Tensor],
    ablated_loss: Callable[..., Tensor],
) -> None:
    """Mean outputs against the reference, then the loss with zero- and mean-ablated heads."""
    model = _model(n_layers=2, n_heads=3, d_vocab=12)
    tokens = torch.randint(0, 12, (4, 10), generator=torch.Generator().manual_seed(0))
    means = mean_head_outputs(model, tokens)
    want_means = heads.mean_head_outputs(model, tokens)
    if tuple(means.shape) != tuple(want_means.shape):
        raise AssertionError(
            f"One mean z per layer and head: [layer, head, d_head] = {tuple(want_means.shape)}, got "
            f"{tuple(means.shape)}."
        )
    if not torch.allclose(means, want_means, atol=1e-5):
        raise AssertionError("The mean of each head's z differs: average over the batch and the positions (axes 0, 1).")
    intact = ablated_loss(model, tokens, [], None)
    want_intact = model(tokens, return_type="loss", loss_per_token=True)
    if tuple(intact.shape) != (4, 9) or not torch.allclose(intact, want_intact, atol=1e-5):
        raise AssertionError(
            f"With nothing ablated: the model's per-token loss, [batch, pos - 1] = (4, 9), got {tuple(intact.shape)}."
        )
    for ablate in ([(0, 1)], [(1, 2), (0, 0)], [(1, 0), (1, 2)]):
        for label, m in (("zero", None), ("mean", means)):
            got = ablated_loss(model, tokens, ablate, m)
            with torch.inference_mode():
                want = model.run_with_hooks(
                    tokens, return_type="loss", loss_per_token=True, fwd_hooks=heads.head_ablation_hooks(ablate, m)
                )
            if not torch.allclose(got, want, atol=1e-5):
                raise AssertionError(
                    f"{label}-ablating heads {ablate}: the per-token loss differs. Replace z[:, :, head] (the head "
                    "axis is the third) of each listed head at its own layer, with 0 or with that head's mean, and "
                    "leave the other heads alone."
                )
    print("ablation: correct.")


@answered
def check_key_removal_scores(fn: Callable[[HookedTransformer, Tensor, tuple[int, int]], Tensor]) -> None:
    """Shape, the model left as it was, a head that writes nothing, then the reference on a random model."""
    model = _model(n_layers=2, n_heads=3, d_vocab=12)
    with torch.no_grad():
        _attn(model, 0).W_O[0].zero_()  # head 0.0 writes nothing
    tokens, _ = heads.repeated_segment_batch(6, 10, 12, 3, 4, torch.Generator().manual_seed(5))
    intact_logits = model(tokens)
    intact = heads.head_scores(model, tokens)["induction"][1, 2].item()
    with torch.no_grad():
        got = fn(model, tokens, (1, 2))
    if tuple(got.shape) != (3,):
        raise AssertionError(
            f"One score per head of the layer before the receiver: shape (3,), got {tuple(got.shape)}."
        )
    if model.cfg.use_split_qkv_input or not torch.allclose(model(tokens), intact_logits, atol=1e-5):
        raise AssertionError(
            "Leave the model as you found it: switch the split QKV input off again and remove your hooks (attach "
            "them with the model's hooks context manager, or run_with_hooks)."
        )
    if abs(float(got[0]) - intact) > 1e-5:
        raise AssertionError(
            f"Head 0.0 writes nothing (its W_O is zero): taking it out of the keys must leave the induction score "
            f"{intact:.4f} of head 1.2 as it is, got {float(got[0]):.4f}. Remove that one head's output (its z times "
            "its own W_O), not the whole layer's."
        )
    want = heads.key_removal_scores(model, tokens, (1, 2))
    if not torch.allclose(got.float().cpu(), want, atol=1e-5):
        raise AssertionError(
            f"Expected {[round(v, 4) for v in want.tolist()]}, got {[round(v, 4) for v in got.tolist()]}: take each "
            "head of the layer before out of the receiver's keys only (its key input, at the receiver's layer), one "
            "head per run, and score the receiver's induction with the intact queries and values."
        )
    print("key removal scores: correct.")
