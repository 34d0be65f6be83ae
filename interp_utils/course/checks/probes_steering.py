"""Checks for notebook 07's exercises (probes and steering): cases worked out by hand, then the suite's reference
implementations in :mod:`interp_utils.probing.probes` and :mod:`interp_utils.probing.steering`, with the usual
wrong answers recognised and named."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from interp_utils.course.checks import answered
from interp_utils.course.checks.probes_steering_core import check_actadd as check_actadd
from interp_utils.course.checks.probes_steering_core import check_mass_mean as check_mass_mean
from interp_utils.course.checks.probes_steering_core import check_mt_effect as check_mt_effect
from interp_utils.course.checks.probes_steering_core import check_residuals_at as check_residuals_at
from interp_utils.course.checks.probes_steering_core import pair, planted
from interp_utils.dictionaries.sae import SAE, SAEConfig
from interp_utils.probing import probes, steering


@answered
def check_probe_accuracy(fn: Callable[[Tensor, float, Tensor, Tensor], float]) -> None:
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    y = torch.tensor([False, False, True, True])
    got = fn(torch.tensor([1.0]), -2.5, x, y)
    if not isinstance(got, float):
        raise AssertionError(f"Return the accuracy as a Python float, got {type(got).__name__}.")
    if got == 4.0:
        raise AssertionError("That is the number of right answers: return the fraction (between 0 and 1).")
    if got == 0.5 and fn(torch.tensor([1.0]), 2.5, x, y) == 1.0:
        raise AssertionError("The bias is subtracted: the probe's score is x · direction + bias.")
    if got != 1.0:
        raise AssertionError(f"Scores x − 2.5 = [−1.5, −0.5, 0.5, 1.5] against labels [F, F, T, T]: expected 1.0, "
                             f"got {got}.")  # fmt: skip
    x, y = planted()
    probe = probes.logistic_probe(x, y)
    if abs(fn(probe.direction, probe.bias, x, y) - probe.accuracy(x, y)) > 1e-6:
        raise AssertionError("On random data your accuracy differs from the reference's: a row is right when its score "
                             "is above 0 and its label True, or not above 0 and its label False.")  # fmt: skip


def _objective(x: Tensor, y: Tensor, direction: Tensor, bias: float, l2: float) -> float:
    logits = x @ direction + bias
    return float(torch.nn.functional.binary_cross_entropy_with_logits(logits, y.float()) + l2 * direction.pow(2).sum())


@answered
def check_train_logistic(fn: Callable[..., tuple[Tensor, float]]) -> None:
    for l2 in (1e-3, 0.3):
        x, y = planted(seed=1)
        direction, bias = pair(fn(x, y, l2=l2, steps=100), x.shape[1])
        ref = probes.logistic_probe(x, y, l2=l2)
        got, best = _objective(x, y, direction, bias, l2), _objective(x, y, ref.direction, ref.bias, l2)
        if probes.Probe(direction, bias).accuracy(x, y) < 0.5:
            raise AssertionError("The probe is right on fewer than half the rows: the labels are reversed somewhere "
                                 "(the target of the cross-entropy is y, 1 for True).")  # fmt: skip
        if abs(bias) < 1e-6 and abs(ref.bias) > 0.1:
            raise AssertionError("The bias stayed 0: train it with the weights. The data here are far from the origin, "
                                 "so a boundary through the origin cannot separate them.")  # fmt: skip
        if got > best + 1e-3:
            hint = " Is the L2 penalty l2 · |w|² in the loss?" if l2 > 0.1 else ""
            raise AssertionError(
                f"With l2={l2}, your probe's loss (mean cross-entropy + l2 · |w|²) is {got:.4f}; its minimum is "
                f"{best:.4f}. Train longer, or check the loss.{hint}"
            )


@answered
def check_accuracy_by_layer(fn: Callable[..., list[float]]) -> None:
    g = torch.Generator().manual_seed(0)
    n, d = 200, 4
    y_train, y_test = torch.rand(n, generator=g) < 0.5, torch.rand(n, generator=g) < 0.5
    x_train, x_test = torch.randn(n, 3, d, generator=g), torch.randn(n, 3, d, generator=g)
    # layer 0: no signal; layer 1: signal along e0 in both sets; layer 2: signal in training only (memorised noise)
    x_train[:, 1, 0] += 4 * (y_train.float() - 0.5)
    x_test[:, 1, 0] += 4 * (y_test.float() - 0.5)
    x_train[:, 2, 1] += 4 * (y_train.float() - 0.5)
    got = fn(probes.mass_mean_probe, x_train, y_train, x_test, y_test)
    if not (isinstance(got, list) and len(got) == 3 and all(isinstance(a, float) for a in got)):
        raise AssertionError(f"Return a list of 3 floats, one accuracy per layer, got {got!r}.")
    if got[2] > 0.9:
        raise AssertionError("Layer 2 scores high: you measured accuracy on the training set. Fit on the training set, "
                             "score on the test set.")  # fmt: skip
    if got[1] < 0.9:
        raise AssertionError(f"Layer 1 separates the classes, but your accuracy there is {got[1]:.2f}: fit a probe on "
                             "each layer's activations, x_train[:, layer].")  # fmt: skip
    want = [probes.mass_mean_probe(x_train[:, i], y_train).accuracy(x_test[:, i], y_test) for i in range(3)]
    if any(abs(a - b) > 1e-6 for a, b in zip(got, want, strict=True)):
        raise AssertionError(f"Expected {[round(w, 3) for w in want]}, got {[round(a, 3) for a in got]}.")


@answered
def check_mention_counts(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    # row 0: token 5 at position 4, seen at 1 and 3 (and again at 5, after it); row 1: token 8 at 2, never before;
    # row 2: token 0 (the padding id) at 3, seen at 0
    tokens = torch.tensor([[0, 5, 6, 5, 5, 5], [0, 7, 8, 0, 0, 0], [0, 9, 9, 0, 0, 0]])
    at = torch.tensor([4, 2, 3])
    got = fn(tokens, at)
    if not isinstance(got, Tensor) or got.shape != (3,) or got.dtype.is_floating_point or got.dtype == torch.bool:
        raise AssertionError(f"Return one integer count per row, shape (3,), got {got!r}.")
    got_list = [int(v) for v in got]
    if got_list[0] == 3:
        raise AssertionError("Row 0 counts 3: you counted the completing token itself. Count positions before `at`.")
    if got_list[0] == 4:
        raise AssertionError("Row 0 counts 4: you counted the whole row. Only earlier positions count: a mention "
                             "after the statement's end is not part of it.")  # fmt: skip
    want = [2, 0, 1]
    if got_list != want:
        raise AssertionError(f"Tokens {tokens.tolist()} read at {at.tolist()}: expected {want} earlier mentions, got "
                             f"{got_list}.")  # fmt: skip
    g = torch.Generator().manual_seed(0)
    tokens, at = torch.randint(0, 6, (50, 12), generator=g), torch.randint(0, 12, (50,), generator=g)
    if not torch.equal(fn(tokens, at).long(), probes.earlier_mentions(tokens, at).long()):
        raise AssertionError("On random tokens your counts differ from the reference's.")


@answered
def check_cosine_matrix(fn: Callable[[Tensor], Tensor]) -> None:
    directions = torch.tensor([[3.0, 0.0], [1.0, 1.0], [0.0, -2.0]])
    got = fn(directions)
    if not isinstance(got, Tensor) or got.shape != (3, 3):
        raise AssertionError(f"Return a [3, 3] matrix, got {got!r}.")
    if abs(float(got[0, 0]) - 9.0) < 1e-4:
        raise AssertionError("The diagonal is |d|²: these are dot products. Divide each direction by its norm first.")
    want = probes.cosines(directions)
    if not torch.allclose(got.float(), want, atol=1e-5):
        raise AssertionError(f"Expected {want.round(decimals=3).tolist()}, got {got.round(decimals=3).tolist()}: "
                             "normalise each row (each direction), not each column.")  # fmt: skip


@answered
def check_top_k_latents(fn: Callable[[Tensor, Tensor, int], Tensor]) -> None:
    acts = torch.zeros(6, 5)
    y = torch.tensor([True, True, True, False, False, False])
    acts[:, 0] = 5.0  # fires everywhere: frequent, but says nothing about the class
    acts[:3, 2], acts[3:, 4], acts[:3, 1] = 1.0, 2.0, 0.5
    got = fn(acts, y, 2)
    if not isinstance(got, Tensor) or got.shape != (2,):
        raise AssertionError(f"Return the indices of the k latents as a [k] tensor, got {got!r}.")
    if got.dtype.is_floating_point:
        raise AssertionError(f"Got {got.tolist()}: these are the largest differences themselves. Return the latents' "
                             "indices, the positions of the largest differences.")  # fmt: skip
    chosen = set(got.tolist())
    if 0 in chosen:
        raise AssertionError("You chose latent 0, which fires equally in both classes: rank the latents by the "
                             "difference of their class means, not by how much they fire.")  # fmt: skip
    if chosen == {2, 1}:
        raise AssertionError("Latent 4 fires only in the False class and was left out: rank by the size of the "
                             "difference, |mean(True) − mean(False)|.")  # fmt: skip
    if chosen != {2, 4}:
        raise AssertionError(f"Expected latents {{2, 4}}, got {sorted(chosen)}.")
    g = torch.Generator().manual_seed(0)
    acts, y = torch.rand(50, 30, generator=g), torch.rand(50, generator=g) < 0.5
    if set(fn(acts, y, 5).tolist()) != set(probes.top_latents(acts, y, 5).tolist()):
        raise AssertionError("On random activations your 5 latents differ from the reference's.")


@answered
def check_noisy_labels(fn: Callable[[Tensor, float, int], Tensor]) -> None:
    y = torch.arange(200) % 2 == 0
    before = y.clone()
    got = fn(y, 0.2, 0)
    if not isinstance(got, Tensor) or got.shape != y.shape or got.dtype != torch.bool:
        raise AssertionError(f"Return bool labels shaped like y, got {got!r}.")
    if not torch.equal(y, before):
        raise AssertionError("Your function changed y itself: flip a copy (y.clone()), the clean labels are reused.")
    flipped = int((got != y).sum())
    if flipped != 40:
        raise AssertionError(
            f"With fraction 0.2 of 200 labels, exactly 40 should be flipped; {flipped} were. Choose "
            "round(fraction · n) rows at random and flip them (drawing new random labels leaves about half of the "
            "chosen rows unchanged)."
        )
    if torch.equal(got, fn(y, 0.2, 1)):
        raise AssertionError("Seeds 0 and 1 flipped the same rows: draw them from a generator seeded with `seed`.")
    if not torch.equal(fn(y, 0.0, 0), y):
        raise AssertionError("With fraction 0 no label should change.")


@answered
def check_logit_gap(fn: Callable[[Tensor, Tensor, Tensor, Tensor], Tensor]) -> None:
    logits = torch.zeros(2, 3, 4)
    logits[0, 1] = torch.tensor([2.0, 0.0, 1.0, 1.0])
    logits[1, 1] = torch.tensor([0.0, 3.0, 0.0, 0.0])
    at, plus, minus = torch.tensor([1, 1]), torch.tensor([0, 1]), torch.tensor([2, 3])
    got = fn(logits, at, plus, minus)
    if not isinstance(got, Tensor) or got.shape != (2,):
        raise AssertionError(f"Return one value per row, shape (2,), got {got!r}.")
    want = steering.logit_gap(logits, at, plus, minus)
    if torch.allclose(got, -want, atol=1e-5):
        raise AssertionError("The sign is reversed: the plus tokens' logsumexp minus the minus tokens'.")
    if torch.allclose(got, torch.zeros(2)):
        raise AssertionError("Zero for every row: read each row's logits at its own position `at`, not the last one.")
    if torch.allclose(got, torch.tensor([0.0, 1.5])):
        raise AssertionError("You averaged the logits of each class: use logsumexp, the log of the total probability "
                             "the class gets (up to the shared normaliser, which cancels).")  # fmt: skip
    if not torch.allclose(got, want, atol=1e-5):
        raise AssertionError(f"Expected {want.tolist()}, got {got.tolist()}: logsumexp over the plus tokens minus "
                             "logsumexp over the minus tokens.")  # fmt: skip


@answered
def check_paired(fn: Callable[[Tensor, Tensor], tuple[float, float, float]]) -> None:
    a, b = torch.tensor([3.0, 5.0, 4.0, 6.0]), torch.tensor([1.0, 2.0, 2.0, 3.0])  # differences 2, 3, 2, 3
    got = fn(a, b)
    if not (isinstance(got, tuple) and len(got) == 3 and all(isinstance(v, float) for v in got)):
        raise AssertionError(f"Return (mean, se, z) as three Python floats, got {got!r}.")
    mean, se, z = got
    want_se = float(torch.tensor([2.0, 3.0, 2.0, 3.0]).std() / 2)  # sample std √(1/3) over √4
    if abs(mean - 2.5) > 1e-6:
        raise AssertionError(f"The differences are 2, 3, 2, 3: their mean is 2.5, got {mean:g}.")
    if abs(se - want_se * 2 / 4) < 1e-6:
        raise AssertionError("The standard error divides the standard deviation by √n (here 2), not by n.")
    if abs(se - float(torch.tensor([2.0, 3.0, 2.0, 3.0]).std(unbiased=False) / 2)) < 1e-6:
        raise AssertionError("That standard deviation divides by n: use the sample one (n − 1), PyTorch's default.")
    if abs(se - want_se) > 1e-6:
        unpaired = float((a.var() / 4 + b.var() / 4).sqrt())
        if abs(se - unpaired) < 1e-6:
            raise AssertionError("That is the unpaired standard error, from the spreads of a and b: take the spread of "
                                 "the per-prompt differences a − b, which cancels what the prompts share.")  # fmt: skip
        raise AssertionError(f"Differences 2, 3, 2, 3: expected the standard error {want_se:.4f}, got {se:.4f}.")
    if abs(z - 2.5 / want_se) > 1e-4:
        raise AssertionError(f"z is the mean in standard errors, mean / se = {2.5 / want_se:.3f}; got {z:.3f}.")
    try:
        same = fn(a, a.clone())
    except ZeroDivisionError:
        raise AssertionError("Two identical interventions have se 0: return z = 0 then instead of dividing.") from None
    if same[2] != 0.0:
        raise AssertionError(f"Two identical interventions: expected (0, 0, 0), got {same}.")


@answered
def check_steer_hook(fn: Callable[[Tensor, float], Callable]) -> None:
    v = torch.tensor([1.0, -2.0, 0.5])
    act = torch.zeros(2, 4, 3)
    hook = fn(v, 2.0)
    out = hook(act.clone(), None)
    if not isinstance(out, Tensor) or out.shape != act.shape:
        raise AssertionError(f"The hook must return the activation, shape {tuple(act.shape)}, got {out!r}.")
    if out[:, 0].abs().max() > 0:
        raise AssertionError(
            "BOS (position 0) was changed: steer every position after it. BOS is the attention sink and has a norm "
            "far from the others'; adding there changes every later position."
        )
    if torch.allclose(out[:, 1:], v.expand(2, 3, 3)):
        raise AssertionError("You added the vector once: add alpha · vector.")
    if not torch.allclose(out[:, 1:], 2.0 * v.expand(2, 3, 3)):
        raise AssertionError(f"Expected every position after BOS to move by 2 · {v.tolist()}, got {out[0].tolist()}.")


@answered
def check_slope(fn: Callable[[list[float], list[float]], float]) -> None:
    got = fn([1.0, 2.0], [5.0, 6.0])
    if not isinstance(got, float):
        raise AssertionError(f"Return the slope as a Python float, got {type(got).__name__}.")
    if abs(got - 1.0) > 1e-6:
        raise AssertionError("Values 5, 6 at α = 1, 2 have slope 1: centre the α and the values before the ratio "
                             "Σ(α − ᾱ)(v − v̄) / Σ(α − ᾱ)².")  # fmt: skip
    got = fn([0.0, 1.0, 2.0], [1.0, 3.0, 5.0])
    if not isinstance(got, float) or abs(got - 2.0) > 1e-6:
        raise AssertionError(f"Values 1, 3, 5 at α = 0, 1, 2: expected the slope 2.0, got {got!r}.")
    alphas, values = [0.0, 1.0, 2.0, 3.0], [0.0, 3.0, 3.0, 3.0]
    want = steering.slope(alphas, values)
    got = fn(alphas, values)
    if abs(got - 1.0) < 1e-6:
        raise AssertionError("That is the slope between the two end points: fit a least-squares line through every "
                             "point, which a curve that saturates early would otherwise hide.")  # fmt: skip
    if abs(got - want) > 1e-6:
        raise AssertionError(f"Expected the least-squares slope {want:.4f}, got {got:.4f}.")


@answered
def check_next_token_loss(fn: Callable[[Tensor, Tensor], Tensor]) -> None:
    g = torch.Generator().manual_seed(0)
    logits, tokens = torch.randn(3, 5, 7, generator=g), torch.randint(0, 7, (3, 5), generator=g)
    got = fn(logits, tokens)
    if not isinstance(got, Tensor) or got.ndim != 0:
        raise AssertionError(f"Return the mean loss as a 0-d tensor, got {got!r}.")
    want = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, 7), tokens[:, 1:].reshape(-1))
    same = torch.nn.functional.cross_entropy(logits[:, 1:].reshape(-1, 7), tokens[:, 1:].reshape(-1))
    if torch.allclose(got, same, atol=1e-5):
        raise AssertionError("The logits at position p predict the token at p + 1: compare logits[:, :-1] with "
                             "tokens[:, 1:].")  # fmt: skip
    if torch.allclose(got, want * 12, atol=1e-4):
        raise AssertionError("That is the sum over the 12 predictions: return the mean.")
    if not torch.allclose(got, want, atol=1e-5):
        raise AssertionError(f"Expected {want.item():.4f}, got {got.item():.4f}.")


@answered
def check_pin_hook(fn: Callable[[SAE, list[int], float], Callable]) -> None:
    torch.manual_seed(0)
    sae = SAE(SAEConfig(d_in=8, d_sae=32, architecture="relu"))
    with torch.no_grad():
        sae.b_enc.fill_(0.1)
    act = torch.randn(2, 5, 8)
    out = fn(sae, [3, 7], 4.0)(act.clone(), None)
    if not isinstance(out, Tensor) or out.shape != act.shape:
        raise AssertionError(f"The hook must return the activation, shape {tuple(act.shape)}, got {out!r}.")
    want = steering.pin_hooks(sae, "any", [3, 7], 4.0)[0][1](act.clone(), None)
    if not torch.allclose(out[:, 0], act[:, 0]):
        raise AssertionError("BOS (position 0) changed: pin the latents after BOS only, as the SAE was trained.")
    with torch.no_grad():
        x = act[:, 1:]
        f = sae.encode(x)
        pinned = f.clone()
        pinned[..., [3, 7]] = 4.0
        if torch.allclose(out[:, 1:], sae.decode(pinned), atol=1e-5):
            raise AssertionError(
                "You replaced the activation by the SAE's reconstruction and lost its error term: return "
                "x + decode(f pinned) − decode(f), so that only the pinned latents change anything."
            )
    if torch.allclose(out, act, atol=1e-6):
        raise AssertionError("Nothing changed: pin a copy of the latents (f.clone()), then decode both.")
    if not torch.allclose(out, want, atol=1e-5):
        raise AssertionError("Expected x + decode(f with latents 3 and 7 set to 4) − decode(f) at every position after "
                             "BOS.")  # fmt: skip
