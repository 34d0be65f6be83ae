"""Checks of notebook 01's core exercises: the training loops, the dimensionality measure end to end, the phase
diagram and the monosemanticity of the |x| model's neurons (re-exported by ``checks.superposition``)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from interp_utils.course.checks import answered
from interp_utils.toy_models import superposition as ref
from interp_utils.toy_models.superposition import AbsConfig, AbsModel, ToyConfig, ToyModel, train_toy_model


@answered
def check_train(fn: Callable[..., ToyModel]) -> None:
    """Tiny models trained from the same seed must end with the weights that ``train_toy_model`` gives them."""
    cfg = ToyConfig(n_features=4, n_hidden=2, n_instances=3)
    probability, importance = torch.tensor([[1.0], [0.3], [0.05]]), 0.8 ** torch.arange(4.0)

    def both(steps: int) -> tuple[ToyModel, ToyModel, Tensor]:
        torch.manual_seed(0)
        mine = fn(cfg, probability, importance, steps=steps, lr=0.05, batch=64, device="cpu")
        torch.manual_seed(0)
        want = ToyModel(cfg, probability, importance)
        start = want.W.detach().clone()
        train_toy_model(want, steps=steps, batch_size=64, lr=0.05, progress=False)
        return mine, want, start

    mine, want, start = both(1)
    if not isinstance(mine, ToyModel):
        raise AssertionError(f"Return the trained model (the ToyModel built from cfg), got {type(mine).__name__}.")
    if mine.W.shape != (3, 2, 4) or mine.cfg is not cfg:
        raise AssertionError(
            f"Build the model from the cfg passed in (W of shape (3, 2, 4)); got {tuple(mine.W.shape)}."
        )
    if not (
        torch.equal(mine.importance, want.importance)
        and torch.equal(mine.feature_probability, want.feature_probability)
    ):
        raise AssertionError(
            "The model must carry the feature probability and importance passed in: build it with them."
        )
    if torch.equal(mine.W.detach(), start):
        raise AssertionError(
            "With steps=1 the weights did not move: loop over all the steps, and in each call backward on the loss "
            "and then step the optimizer."
        )
    if not (torch.allclose(mine.W, want.W, atol=1e-5) and torch.allclose(mine.b_final, want.b_final, atol=1e-5)):
        raise AssertionError(
            "After one step the weights differ from one Adam step (learning rate lr) on the importance-weighted loss "
            "of a batch drawn with your generate_batch from model.feature_probability. Build the model first (the "
            "seed then gives the same initial weights), use Adam on model.parameters(), and the batch size asked for."
        )
    mine, want, _ = both(8)
    if not (torch.allclose(mine.W, want.W, atol=1e-5) and torch.allclose(mine.b_final, want.b_final, atol=1e-5)):
        raise AssertionError(
            "One step matches, but after 8 steps the weights differ: clear the gradients every step (they add up "
            "otherwise), draw a fresh batch every step, and take exactly `steps` steps."
        )
    print("train: correct (the same weights as train_toy_model after 1 and 8 steps).")


@answered
def check_sticky_share(fn: Callable[..., dict]) -> None:
    """A hand-worked case, then the reference on random dimensionalities (the uniform draws included)."""
    d_i = torch.tensor([[1.0, 0.5, 0.41, 0.2], [0.7, 1.1, 0.6, 0.0]])
    got = fn(d_i, [1.0, 0.5, 0.4], tolerance=0.02, low=0.3, high=1.05, draws=50, seed=0)
    if not isinstance(got, dict) or not {"observed", "uniform", "draws", "n"} <= set(got):
        raise AssertionError(f"Return a dict with the keys observed, uniform, draws and n; got {got!r}.")
    if int(got["n"]) != 5:
        raise AssertionError(
            f"Of D_i = {d_i.flatten().tolist()}, five lie in (0.3, 1.05) (not 0.2, 1.1, 0): n = 5, got {got['n']}."
        )
    if abs(float(got["observed"]) - 0.6) > 1e-6:
        raise AssertionError(
            "Of the five in range, 1.0, 0.5 and 0.41 lie within 0.02 of a sticky fraction (1, 1/2, 2/5) and 0.7 and "
            f"0.6 do not: observed = 3/5 = 0.6, got {float(got['observed']):.4f}. Measure the distance to the nearest "
            "fraction, in absolute value."
        )
    if abs(float(got["uniform"]) - 0.16) > 0.002:
        raise AssertionError(
            "Three fractions, each with a window of width 2 x 0.02 inside (0.3, 1.05): a uniform spread puts "
            f"0.12 / 0.75 = 0.16 of its values near one; got {float(got['uniform']):.4f}."
        )
    draws = torch.as_tensor(got["draws"])
    if draws.shape != (50,):
        raise AssertionError(f"draws: one share per draw, shape (50,); got {tuple(draws.shape)}.")
    torch.manual_seed(1)
    d_i = torch.rand(3, 40) * 1.2
    want = ref.sticky_share(d_i, [1.0, 0.75, 0.5, 0.4], draws=30, seed=3)
    got = fn(d_i, [1.0, 0.75, 0.5, 0.4], tolerance=0.02, low=0.3, high=1.05, draws=30, seed=3)
    if not torch.allclose(torch.as_tensor(got["draws"]), torch.as_tensor(want["draws"])):
        raise AssertionError(
            "The uniform draws differ from the reference's: draw a (draws, n) tensor from a torch.Generator seeded "
            "with seed (not the global random state), scaled from [0, 1) to [low, high)."
        )
    if abs(float(got["observed"]) - float(want["observed"])) > 1e-6 or int(got["n"]) != want["n"]:
        raise AssertionError(
            f"On random dimensionalities: observed {got['observed']} over n = {got['n']}, expected "
            f"{want['observed']} over {want['n']}."
        )
    print("sticky_share: correct.")


def _phase_cases() -> Tensor:
    return torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, -1.0], [0.05, 0.02], [0.9, 0.8], [-0.7, 0.9]])


@answered
def check_phase_diagram(fn: Callable[..., tuple[Tensor, Tensor]]) -> None:
    """A stand-in trainer records what it is asked to train and hands back known weights: the grid's layout, the
    labels of each cell, and the theory's phases."""
    densities, relative = torch.tensor([0.01, 1.0]), torch.tensor([0.5, 1.0, 2.0])
    calls: list[tuple[ToyConfig, Tensor, Tensor]] = []

    def trainer(cfg: ToyConfig, feature_probability: Tensor, importance: Tensor) -> ToyModel:
        calls.append((cfg, torch.as_tensor(feature_probability), torch.as_tensor(importance)))
        model = ToyModel(cfg, feature_probability, importance)
        if model.W.shape == (6, 1, 2):
            model.W.data = _phase_cases()[:, None, :]
        return model

    for relu in (True, False):
        calls.clear()
        got = fn(densities, relative, trainer, relu=relu)
        if len(calls) != 1:
            raise AssertionError(
                f"Train once, all cells at once as instances; the trainer was called {len(calls)} times."
            )
        cfg, p, imp = calls[0]
        if (cfg.n_features, cfg.n_hidden, cfg.n_instances, cfg.relu) != (2, 1, 6, relu):
            raise AssertionError(
                f"One instance per cell: 2 features in 1 hidden dimension, 3 x 2 = 6 instances, relu={relu}; the "
                f"config was {cfg}."
            )
        want_p = torch.tensor([0.01, 1.0] * 3)[:, None].expand(6, 2)
        want_imp = torch.stack([torch.ones(6), torch.tensor([0.5, 0.5, 1.0, 1.0, 2.0, 2.0])], 1)
        if not (torch.allclose(p.expand(6, 2), want_p) and torch.allclose(imp.expand(6, 2), want_imp)):
            raise AssertionError(
                "Instance k is the cell in row k // (number of densities), column k % (number of densities): density "
                "changes along a row (x), relative importance down the rows (y); both features share the density, "
                f"and the importances are (1, r). Expected densities {want_p[:, 0].tolist()} and r "
                f"{want_imp[:, 1].tolist()}; got {p.expand(6, 2)[:, 0].tolist()} and {imp.expand(6, 2)[:, 1].tolist()}."
            )
    phase, theory = got
    if phase.shape != (3, 2) or theory.shape != (3, 2):
        raise AssertionError(
            f"Return (phase, theory), both [relative, density] = (3, 2): {tuple(phase.shape)}, {tuple(theory.shape)}."
        )
    expected = torch.tensor([0, 1, 2, 0, 3, 2]).reshape(3, 2)
    if phase.tolist() != expected.tolist():
        raise AssertionError(
            f"For the cells' W = {_phase_cases().tolist()} expected labels {expected.flatten().tolist()} (feature 2 "
            "ignored, feature 2 alone, both antipodal, nothing represented, both on the same side: not "
            f"superposition, antipodal with feature 1 negative), got {phase.flatten().tolist()}."
        )
    dens_grid, rel_grid = torch.meshgrid(densities, relative, indexing="xy")
    want_theory = ref.configuration_losses(dens_grid, rel_grid).argmin(-1)
    if theory.tolist() != want_theory.tolist():
        raise AssertionError(
            f"The theory's phase of each cell is the configuration of least expected loss (labels 0, 1, 2 in the "
            f"order of configuration_losses): expected {want_theory.tolist()}, got {theory.tolist()}."
        )
    print("phase_diagram: correct (layout, labels, theory).")


@answered
def check_train_abs(fn: Callable[..., None]) -> None:
    """Tiny |x| models trained from the same seed must end with the weights that ``train_toy_model`` gives them."""
    cfg = AbsConfig(n_features=5, n_neurons=3, n_instances=2)

    def fresh() -> AbsModel:
        torch.manual_seed(0)
        return AbsModel(cfg, torch.tensor([[1.0], [0.2]]), 0.8 ** torch.arange(5.0))

    def same(a: AbsModel, b: AbsModel) -> bool:
        return all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a.parameters(), b.parameters(), strict=True))

    def both(steps: int) -> tuple[AbsModel, AbsModel]:
        mine, want = fresh(), fresh()
        torch.manual_seed(1)
        fn(mine, steps=steps, lr=0.05, batch=64)
        torch.manual_seed(1)
        train_toy_model(want, steps=steps, batch_size=64, lr=0.05, progress=False)
        return mine, want

    mine, want = both(1)
    start = fresh()
    if same(mine, start):
        raise AssertionError(
            "With steps=1 the weights did not move: loop over all the steps, and in each call backward on the loss "
            "and then step the optimizer."
        )
    if not same(mine, want):
        raise AssertionError(
            "After one step the weights differ from one Adam step (learning rate lr) on the paper's loss. The features "
            "are uniform on [-1, 1] (not [0, 1]) where present; the target is |x|, not x; the loss is your "
            "importance-weighted one; and Adam runs on model.parameters() (all four tensors)."
        )
    mine, want = both(8)
    if not same(mine, want):
        raise AssertionError(
            "One step matches, but after 8 steps the weights differ: clear the gradients every step (they add up "
            "otherwise), draw a fresh batch every step, and take exactly `steps` steps."
        )
    print("train_abs: correct (the same weights as train_toy_model after 1 and 8 steps).")


@answered
def check_monosemantic(fn: Callable[[Tensor], list[float]]) -> None:
    """A hand-worked instance (a dead neuron among them), then the reference on random weights."""
    W1 = torch.tensor([[[0.0, -2.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 0.05], [0.3, 0.05, 0.0]]])
    got = fn(W1)
    if not isinstance(got, list) or len(got) != 1:
        raise AssertionError(f"Return a list with one share per instance (here 1), got {got!r}.")
    if abs(float(got[0]) - 2 / 3) > 1e-5:
        raise AssertionError(
            "Neuron rows (0, -2, 0), (1, 1, 0), (0, 0, 0.05), (0.3, 0.05, 0): the third is dead (norm 0.05 <= 0.1) "
            "and left out; of the three live ones, the first and the last hold over 90% of their squared weights in "
            f"one feature (1 and 0.09 / 0.0925): 2/3. Got {float(got[0]):.4f}."
        )
    torch.manual_seed(0)
    W1 = torch.randn(4, 6, 5) * (torch.rand(4, 6, 1) > 0.3) * torch.rand(4, 6, 5).pow(4)
    W1[1] = 0  # an instance with no live neuron: 0, not a division by zero
    want, got = ref.monosemantic_share(W1), fn(W1)
    if not torch.allclose(torch.tensor(got, dtype=torch.float), torch.tensor(want), atol=1e-5):
        raise AssertionError(
            f"On random weights the shares should be {[round(v, 3) for v in want]}, got "
            f"{[round(float(v), 3) for v in got]} (an instance with no live neuron counts as 0)."
        )
    print("monosemantic: correct.")


_AGREEMENT_KEYS = (
    "agreement",
    "agreement_shuffled",
    "dense_match",
    "dense_shuffled",
    "dense_super",
    "same_side",
    "sparse_super",
    "linear_super",
)


def _control_variants(phase: Tensor, theory: Tensor, relative: Tensor, shuffles: int, seed: int) -> dict[str, tuple]:
    """The two shuffled controls as two usual slips draw them: a generator seeded afresh for each, or the grid's
    shuffles drawn before the column's."""
    dense, winner, flat, flat_theory = phase[:, -1], (relative > 1).long(), phase.flatten(), theory.flatten()
    fresh = (
        ref.shuffled_agreement(flat, flat_theory, shuffles, torch.Generator().manual_seed(seed)),
        ref.shuffled_agreement(dense, winner, shuffles, torch.Generator().manual_seed(seed)),
    )
    generator = torch.Generator().manual_seed(seed)
    grid_first = ref.shuffled_agreement(flat, flat_theory, shuffles, generator)
    return {"fresh": fresh, "grid_first": (grid_first, ref.shuffled_agreement(dense, winner, shuffles, generator))}


@answered
def check_phase_agreement(fn: Callable[..., dict]) -> None:
    """The keys; a 3 x 3 grid worked out by hand (its shuffled controls against their expected values); the global
    random state left alone; then the reference on random grids, shuffles included."""
    phase = torch.tensor([[2, 0, 0], [2, 3, 0], [2, 1, 1]])
    theory = torch.tensor([[2, 0, 0], [2, 2, 0], [2, 1, 1]])
    linear, relative = torch.tensor([[0, 0, 0], [1, 1, 0], [1, 1, 1]]), torch.tensor([0.5, 1.0, 2.0])
    grid = (
        f"phase {phase.tolist()}, theory {theory.tolist()} (rows r = {relative.tolist()}, density rising along a row)"
    )
    got = fn(phase, theory, linear, relative, shuffles=2000, seed=0)
    if not isinstance(got, dict) or not set(_AGREEMENT_KEYS) <= set(got):
        raise AssertionError(f"Return a dict with the keys {', '.join(_AGREEMENT_KEYS)}; got {got!r}.")
    if not all(isinstance(got[k], int | float) and not isinstance(got[k], bool) for k in _AGREEMENT_KEYS):
        types = {k: type(got[k]).__name__ for k in _AGREEMENT_KEYS}
        raise AssertionError(f"Each value a Python number (.item() or int() of a tensor), got {types}.")
    agreement = float(got["agreement"])
    if abs(agreement - 8 / 9) > 1e-6:
        slip = {
            round(2 / 9, 4): " That is the agreement with the theory transposed: both are [relative, density] already.",
            1.0: " That is the densest column's agreement only: the share is over every cell of the grid.",
        }.get(round(agreement, 4), "")
        raise AssertionError(
            f"For {grid}: agreement is the share of cells where the trained phase is the theory's, cell by cell: 8 of "
            f"9 (only the centre differs); got {agreement:.4f}.{slip}"
        )
    if abs(float(got["dense_match"]) - 1.0) > 1e-6:
        raise AssertionError(
            f"For {grid}: the densest column is the last one, labels [0, 0, 1]; the more important feature alone "
            "takes the dimension where the label is 1 for r > 1 and 0 otherwise (at r = 1 neither is more important "
            f"and feature 1 keeps it): [0, 0, 1], all 3 match; dense_match = 1, got {float(got['dense_match']):.4f}."
        )
    if (got["dense_super"], got["same_side"]) != (0, 1):
        raise AssertionError(
            f"For {grid}: dense_super counts the superposed cells (label 2) of the densest column, 0 here, and "
            f"same_side the label-3 cells of the grid, 1; got {got['dense_super']} and {got['same_side']} (counts, "
            "not shares)."
        )
    sparse, lin = float(got["sparse_super"]), float(got["linear_super"])
    if abs(sparse - 1.0) > 1e-6 or abs(lin) > 1e-6:
        raise AssertionError(
            f"For {grid} and the linear model's {linear.tolist()}: the sparsest third is the first n_cols // 3 "
            "columns (columns, not rows; here the first, [2, 2, 2]), so sparse_super = 1, and the same share in the "
            f"linear model's phases linear_super = 0; got {sparse:.4f} and {lin:.4f}."
        )
    for key, expected, how in (
        (
            "dense_shuffled",
            5 / 9,
            "its column [0, 0, 1] matches [0, 0, 1] at each place with probability 2/3, 2/3, 1/3",
        ),
        ("agreement_shuffled", 25 / 81, "labels 0, 1, 2 fill 3, 2, 3 of its cells and 3, 2, 4 of the theory's"),
    ):
        if abs(float(got[key]) - expected) > 0.015:
            raise AssertionError(
                f"For {grid}: {key}, the mean over 2000 shuffles, should be near its expected value {expected:.3f}: "
                f"{how}. Got {float(got[key]):.4f}. One shuffle is not the control: average the match over all "
                "`shuffles` of them, each a fresh permutation of the cells."
            )
    torch.manual_seed(0)
    for shape, seed in (((5, 7), 3), ((6, 6), 5)):
        phase, theory = torch.randint(0, 4, shape), torch.randint(0, 3, shape)
        linear, relative = torch.randint(0, 3, shape), torch.logspace(-1, 1, shape[0])
        before = torch.get_rng_state()
        got = fn(phase, theory, linear, relative, shuffles=200, seed=seed)
        if not torch.equal(before, torch.get_rng_state()):
            raise AssertionError(
                "Your function changed the global random state: draw the shuffles from a torch.Generator of their "
                "own, seeded with seed (so that the models trained after it see the same random numbers)."
            )
        want = ref.phase_agreement(phase, theory, linear, relative, shuffles=200, seed=seed)
        for key in ("agreement", "dense_match", "dense_super", "same_side", "sparse_super", "linear_super"):
            if abs(float(got[key]) - float(want[key])) > 1e-6:
                raise AssertionError(f"On a random {shape} grid: {key} should be {want[key]:.4f}, got {got[key]:.4f}.")
        controls = (float(got["agreement_shuffled"]), float(got["dense_shuffled"]))
        wanted = (float(want["agreement_shuffled"]), float(want["dense_shuffled"]))
        if max(abs(a - b) for a, b in zip(controls, wanted, strict=True)) > 1e-6:
            variants = _control_variants(phase, theory, relative, 200, seed)
            close = [k for k, v in variants.items() if max(abs(a - b) for a, b in zip(controls, v, strict=True)) < 1e-6]
            slip = {
                "fresh": "You seeded a generator for each control: seed one generator once and draw both from it.",
                "grid_first": "You drew the grid's shuffles first: the densest column's come first, then the grid's.",
            }.get(close[0] if close else "", "")
            raise AssertionError(
                f"On a random {shape} grid with seed {seed}, the shuffled controls (agreement_shuffled, "
                f"dense_shuffled) = {controls} differ from the reference's {wanted}. "
                + (
                    slip
                    or "One generator seeded with seed draws every shuffle, one permutation of the cells per shuffle "
                    "(torch.randperm), the densest column's shuffles first."
                )
            )
    print("phase_agreement: correct (hand-worked grid, controls, random state left alone, reference on random grids).")
