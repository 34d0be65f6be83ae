"""Checks for notebook 07's core exercises (probes and steering): collecting the residual stream, the mass-mean probe
with its covariance-corrected form, Marks & Tegmark's scaled intervention and ActAdd with padding. Each works in
stages (shape, a case worked out by hand, the suite's reference on random cases, the usual mistakes named);
:mod:`interp_utils.course.checks.probes_steering` re-exports them with the lesson's other checks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils.core import hooks
from interp_utils.course.checks import answered
from interp_utils.probing import probes, steering


def planted(n: int = 400, d: int = 6, seed: int = 0, offset: float = 3.0) -> tuple[Tensor, Tensor]:
    """Two Gaussian classes apart along a random direction, centred away from the origin (a bias is needed)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.rand(n, generator=g) < 0.5
    x = torch.randn(n, d, generator=g) + offset + (y.float()[:, None] - 0.5) * 2 * torch.randn(d, generator=g)
    return x, y


def pair(got: object, d: int) -> tuple[Tensor, float]:
    if not (isinstance(got, tuple) and len(got) == 2 and isinstance(got[0], Tensor) and got[0].shape == (d,)):
        raise AssertionError(f"Return (direction, bias): a [{d}] tensor and a float, got {got!r}.")
    return got[0].detach().float(), float(got[1])


def tiny_model() -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=2, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_vocab=11, act_fn="gelu",
                                  seed=0)  # fmt: skip
    return HookedTransformer(cfg)


@answered
def check_residuals_at(fn: Callable[..., Tensor]) -> None:
    """``fn(model, tokens, positions, batch_size)``: the stream after every layer at one position per row."""
    model = tiny_model()
    # five prompts of different lengths, right-padded with 0; each is read at its last real token
    tokens = torch.tensor([[0, 3, 4, 5, 6, 7], [0, 8, 9, 0, 0, 0], [0, 2, 0, 0, 0, 0], [0, 5, 5, 5, 1, 0],
                           [0, 6, 7, 8, 0, 0]])  # fmt: skip
    at = torch.tensor([5, 2, 1, 4, 3])
    got = fn(model, tokens, at, batch_size=2)
    want = probes.residuals_at(model, tokens, at)
    if not isinstance(got, Tensor) or got.shape != want.shape:
        shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"Expected [n, layer, d_model] = {tuple(want.shape)} for 5 prompts read in batches of 2, "
                             f"got {shape}: is the last, shorter batch (one prompt) there too?")  # fmt: skip
    got = got.detach().float().cpu()
    if torch.allclose(got, want, atol=1e-5):
        return
    pre = probes.residuals_at(model, tokens, at, kind="resid_pre")
    last = probes.residuals_at(model, tokens, torch.full_like(at, tokens.shape[1] - 1))
    first_chunk = probes.residuals_at(model, tokens, at[:2].repeat(3)[:5])
    if torch.allclose(got, pre, atol=1e-5):
        raise AssertionError("These are the streams entering each layer (resid_pre): a probe 'after layer l' reads "
                             "resid_post, what the layer wrote included.")  # fmt: skip
    if torch.allclose(got, last, atol=1e-5):
        raise AssertionError("Every row was read at the last column: the shorter prompts are padding there. Read each "
                             f"row at its own position, here {at.tolist()}.")  # fmt: skip
    if torch.allclose(got, first_chunk, atol=1e-5):
        raise AssertionError("Each batch was read at the first batch's positions: slice the positions with the same "
                             "rows as the tokens.")  # fmt: skip
    rows = [i for i in range(len(at)) if not torch.allclose(got[i], want[i], atol=1e-5)]
    raise AssertionError(f"Prompts {rows} differ from the residual stream after each layer at positions "
                         f"{at.tolist()} (tokens {tokens.tolist()}).")  # fmt: skip


def _check_mass_mean_plain(fn: Callable[[Tensor, Tensor], tuple[Tensor, float]]) -> None:
    x = torch.tensor([[3.0, 1.0], [5.0, 1.0], [0.0, 0.0], [0.0, 2.0]])
    y = torch.tensor([True, True, False, False])
    direction, bias = pair(fn(x, y), 2)
    if torch.allclose(direction, torch.tensor([-4.0, 0.0])):
        raise AssertionError(
            "The direction points from the True class to the False one: take mean(True) − mean(False)."
        )
    if torch.allclose(direction, torch.tensor([1.0, 0.0])):
        raise AssertionError("The direction is normalised: return the difference of the means itself (here [4, 0]); "
                             "its length is the distance between the classes, which later cells use.")  # fmt: skip
    if not torch.allclose(direction, torch.tensor([4.0, 0.0])):
        raise AssertionError(f"Means [4, 1] (True) and [0, 1] (False): expected the direction [4, 0], got "
                             f"{direction.tolist()}.")  # fmt: skip
    if abs(bias - (-8.0)) > 1e-4:
        raise AssertionError(
            f"The bias should put the threshold halfway between the means: −direction · (μ₊ + μ₋)/2 = −8 here, got "
            f"{bias:g}. With bias 0 the boundary passes through the origin, wherever the data are."
        )
    x, y = planted()
    want = probes.mass_mean_probe(x, y)
    direction, bias = pair(fn(x, y), x.shape[1])
    if not torch.allclose(direction, want.direction, atol=1e-4):
        raise AssertionError("On random data your direction differs from the difference of the class means.")
    if abs(bias - want.bias) > 1e-3:
        raise AssertionError(f"On random data the bias should be {want.bias:.4f}, got {bias:.4f}.")


def _name_iid_mistake(direction: Tensor, x: Tensor, y: Tensor) -> None:
    """Fail with the message for a covariance-corrected direction built the usual wrong ways, if it is one of them."""
    pos, neg = x[y].mean(0), x[~y].mean(0)
    diagonal = (pos - neg) / torch.cat([x[y] - pos, x[~y] - neg]).var(0)
    if float(torch.cosine_similarity(direction, diagonal, dim=0)) > 0.999:
        raise AssertionError("You divided θ by the variances alone (Σ's diagonal): invert the whole covariance "
                             "matrix, so that correlated dimensions are accounted for.")  # fmt: skip
    centred = x - x.mean(0)
    total = torch.linalg.pinv(centred.T @ centred / len(x), hermitian=True, atol=1e-3) @ (pos - neg)
    if float(torch.cosine_similarity(direction, total, dim=0)) > 0.999:
        raise AssertionError("You centred all the rows on the overall mean: centre each class on its own mean "
                             "(the within-class covariance); the classes' separation is not noise.")  # fmt: skip


def _check_mass_mean_iid(fn: Callable[[Tensor, Tensor], tuple[Tensor, float]]) -> None:
    # two classes with the same spread, [±2, 0] and [0, ±1] around their means [1, 1] (True) and [0, 0] (False):
    # within-class covariance diag(2, 0.5), θ = [1, 1], so Σ⁻¹θ = [0.5, 2] and the bias −(0.5 + 2) / 2 = −1.25
    spread = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    x = torch.cat([spread + 1.0, spread])
    y = torch.tensor([True] * 4 + [False] * 4)
    direction, bias = pair(fn(x, y), 2)
    if torch.allclose(direction, torch.tensor([1.0, 1.0])):
        raise AssertionError("With iid=True you returned the plain mass-mean direction θ: multiply it by the inverse "
                             "of the within-class covariance.")  # fmt: skip
    if torch.allclose(direction, torch.tensor([2.0, 0.5])):
        raise AssertionError("You multiplied θ by the covariance Σ; the probe uses its inverse, Σ⁻¹θ.")
    unit = direction / direction.norm().clamp_min(1e-12)
    if float(unit @ torch.tensor([0.5, 2.0]) / torch.tensor([0.5, 2.0]).norm()) < 0.999:
        raise AssertionError(f"Within-class covariance diag(2, 0.5) and θ = [1, 1]: expected a direction along "
                             f"[0.5, 2], got {direction.tolist()}.")  # fmt: skip
    midpoint = torch.tensor([0.5, 0.5])
    if abs(float(direction @ midpoint) + bias) > 1e-3 * float(direction.norm()):
        raise AssertionError(f"The bias should put the threshold halfway between the class means (score 0 at "
                             f"[0.5, 0.5]): expected {-float(direction @ midpoint):.3g}, got {bias:.3g}.")  # fmt: skip
    # fewer rows than dimensions: the covariance is singular, and only a pseudo-inverse gives a finite direction
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(6, 10, generator=g), torch.tensor([True, False] * 3)
    try:
        direction, bias = pair(fn(x, y), 10)
    except RuntimeError as error:
        raise AssertionError(f"With 6 rows in 10 dimensions the covariance is singular and inverting it fails "
                             f"({error}): drop its eigenvalues under atol and invert the rest.") from None  # fmt: skip
    want = probes.iid_mass_mean_probe(x, y)
    scale = float(direction.norm() / want.direction.norm())
    if not torch.isfinite(direction).all() or not torch.allclose(direction, scale * want.direction, atol=1e-3 * scale):
        _name_iid_mistake(direction, x, y)
        raise AssertionError("With 6 rows in 10 dimensions the covariance is singular: keep only its eigenvalues "
                             "above atol (a pseudo-inverse) instead of inverting all of them.")  # fmt: skip
    x, y = planted(seed=2)
    want = probes.iid_mass_mean_probe(x, y)
    direction, bias = pair(fn(x, y), x.shape[1])
    scale = float(direction.norm() / want.direction.norm())
    close = torch.allclose(direction, scale * want.direction, atol=1e-3 * scale)
    if not close or abs(bias - scale * want.bias) > 1e-2 * scale:
        _name_iid_mistake(direction, x, y)
        raise AssertionError("On random data your probe differs from the reference's Σ⁻¹θ (up to a positive scale).")


@answered
def check_mass_mean(fn: Callable[..., tuple[Tensor, float]]) -> None:
    """``fn(x, y, iid=False)``: the plain mass-mean probe, then (iid=True) the covariance-corrected one."""
    _check_mass_mean_plain(lambda x, y: fn(x, y))
    _check_mass_mean_iid(lambda x, y: fn(x, y, iid=True))
    try:
        fn(torch.ones(3, 2), torch.tensor([True, True, True]))
    except ValueError:
        return
    raise AssertionError("With every label True there is no False class (its mean is the mean of no rows, nan): "
                         "raise a ValueError instead of returning a probe.")  # fmt: skip


@answered
def check_mt_effect(fn: Callable[..., Tensor]) -> None:
    """``fn(model, tokens, at, layer, direction, x_true, x_false, plus, minus, size=None)``: per-prompt change."""
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(1, 11, (5, 6), generator=g)
    tokens[:, 0] = 0
    at, plus, minus = torch.tensor([5, 3, 4, 5, 2]), torch.tensor([1, 2, 3]), torch.tensor([4, 5])
    direction = torch.randn(16, generator=g)
    x_true, x_false = torch.randn(20, 16, generator=g) + 2 * direction, torch.randn(30, 16, generator=g)
    args = (model, tokens, at, 0, direction, x_true, x_false, plus, minus)
    got = fn(*args)
    if not isinstance(got, Tensor) or got.shape != (5,) or not got.dtype.is_floating_point:
        raise AssertionError(f"Return one change per prompt, a float tensor of shape (5,), got {got!r}.")
    got = got.detach().float().cpu()
    same = fn(model, tokens, at, 0, direction, x_true, x_true + 0.0, plus, minus)
    if not torch.allclose(same.float().cpu(), torch.zeros(5), atol=1e-5):
        raise AssertionError("With the True and False rows equal, the classes' means are 0 apart along any direction: "
                             "the scale is 0, nothing is added, so return its change (steered minus unsteered): 0 for "
                             "every prompt.")  # fmt: skip
    if not torch.allclose(fn(*args[:4], 10 * direction, *args[5:]).float().cpu(), got, atol=1e-4):
        raise AssertionError("Multiplying the direction by 10 changed the result: Marks & Tegmark add the unit "
                             "direction times the means' separation along it, so its length cancels.")  # fmt: skip
    want = steering.mt_effect(*args)
    variants: list[tuple[dict[str, Any], str]] = [
        (dict(change=False), "That is the steered logit gap itself: return its change, steered minus unsteered."),
        (dict(sign=-1.0), "The push points from the True class to the False one: the scale is (μ₊ − μ₋) · unit."),
        (dict(kind="resid_pre"), "You added where the stream enters the layer: 'after layer l' is resid_post of l."),
        (dict(start=0), "BOS (position 0) was steered too: add at every position after it."),
    ]
    if not torch.allclose(got, want, atol=1e-4):
        for flags, message in variants:
            if torch.allclose(got, steering.mt_effect(*args, **flags), atol=1e-4):
                raise AssertionError(message)
        raise AssertionError(f"Expected the per-prompt changes {[round(v, 4) for v in want.tolist()]}, got "
                             f"{[round(v, 4) for v in got.tolist()]}.")  # fmt: skip
    sized = fn(*args, size=0.5).float().cpu()
    if not torch.allclose(sized, steering.mt_effect(*args, size=0.5), atol=1e-4):
        raise AssertionError("With size=0.5 given, add 0.5 × the unit direction (the separation is not used).")
    where = torch.tensor([1, 4, 2, 3, 5])
    if not torch.allclose(
        fn(*args, positions=where).float().cpu(), steering.mt_effect(*args, positions=where), atol=1e-4
    ):
        raise AssertionError(f"With positions={where.tolist()}, add the vector at that one position of each row "
                             "(row i at positions[i]) and nowhere else.")  # fmt: skip


@answered
def check_actadd(vector_fn: Callable[..., Tensor], hooks_fn: Callable[..., list]) -> None:
    """``vector_fn(model, plus, minus, layer, pad_id)`` and ``hooks_fn(layer, vector, coeff)``."""
    model = tiny_model()
    plus, minus = torch.tensor([[0, 3, 4, 5, 6]]), torch.tensor([[0, 7, 4]])
    got = vector_fn(model, plus, minus, 1, 9)
    a, b = steering.pad_pair(plus, minus, 9)
    name, after = hooks.name("resid_pre", 1), hooks.name("resid_post", 1)
    with torch.inference_mode():
        _, ca = model.run_with_cache(a, names_filter=[name, after])
        _, cb = model.run_with_cache(b, names_filter=[name, after])
    want = (ca[name] - cb[name])[0]
    if not isinstance(got, Tensor) or got.shape != want.shape:
        shape = tuple(got.shape) if isinstance(got, Tensor) else type(got).__name__
        raise AssertionError(f"Prompts of 5 and 3 tokens: pad the shorter to 5 and return [pos, d_model] = "
                             f"{tuple(want.shape)}, got {shape}.")  # fmt: skip
    got = got.detach().float().cpu()
    if torch.allclose(got, (ca[after] - cb[after])[0], atol=1e-5):
        raise AssertionError("You read the residual stream leaving the layer: ActAdd adds where the stream enters it "
                             "(resid_pre), so take the difference there.")  # fmt: skip
    if torch.allclose(got, -want, atol=1e-5):
        raise AssertionError("The sign is reversed: plus minus minus.")
    if not torch.allclose(got, want, atol=1e-5):
        left = torch.cat([torch.tensor([[0, 9, 9]]), minus[:, 1:]], 1)
        with torch.inference_mode():
            _, cl = model.run_with_cache(left, names_filter=name)
        if torch.allclose(got, (ca[name] - cl[name])[0], atol=1e-5):
            raise AssertionError("The padding went before the prompt: append it at the end, so that both prompts keep "
                                 "BOS and their first tokens at the same positions.")  # fmt: skip
        raise AssertionError(f"Expected resid_pre of layer 1 on {a.tolist()} minus on {b.tolist()} (the shorter "
                             "padded at the end with pad_id), position by position.")  # fmt: skip
    # the hooks: coeff · vector at positions 0, 1, ... of every row, on prompts longer and shorter than the vector
    g = torch.Generator().manual_seed(1)
    vector = torch.randn(3, 16, generator=g)
    for pos in (5, 2):
        act = torch.randn(2, pos, 16, generator=g)
        out = hooks_fn(1, vector, 2.0)
        if not (isinstance(out, list) and len(out) == 1 and out[0][0] == name):
            raise AssertionError(f"Return a list of one (hook name, hook) pair, the name {name!r}; got {out!r}.")
        try:
            result = out[0][1](act.clone(), None)
        except (RuntimeError, IndexError) as error:
            raise AssertionError(f"On a prompt of {pos} positions (the vector has 3) the hook failed ({error}): add "
                                 "only over the positions both have.") from None  # fmt: skip
        want_act = steering.add_hooks(1, vector, 2.0)[0][1](act.clone(), None)
        if not isinstance(result, Tensor) or result.shape != act.shape:
            raise AssertionError(f"The hook must return the activation, shape {tuple(act.shape)}, got {result!r}.")
        n = min(pos, 3)
        if torch.allclose(result[:, pos - n :], act[:, pos - n :] + 2.0 * vector[3 - n :], atol=1e-5) and pos > n:
            raise AssertionError("The vector was added at the prompt's last positions: ActAdd aligns it with the "
                                 "prompt's start, position 0 (BOS) on.")  # fmt: skip
        if torch.allclose(result, act + (want_act - act) / 2.0, atol=1e-5):
            raise AssertionError("The coefficient is missing: add coeff · vector.")
        if not torch.allclose(result, want_act, atol=1e-5):
            raise AssertionError(f"On a prompt of {pos} positions, expected 2 · vector[p] added at positions "
                                 f"0 … {n - 1} of every row and nothing elsewhere.")  # fmt: skip
