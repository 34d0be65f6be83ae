"""Lesson 01's core checks (training, dimensionality end to end, the phase diagram) pass the reference answers and
reject plausible wrong ones with the message meant for each; and every other lesson-01 check meets a third wrong
answer here (the first two are in test_checks.py)."""

import numpy as np
import pytest
import torch

from interp_utils.course.checks import superposition as checks
from interp_utils.toy_models import superposition as ref
from interp_utils.toy_models.superposition import ToyConfig, ToyModel


def _train(cfg, feature_probability, importance, steps, lr=1e-3, batch=1024, device="cpu", *, mistake=None):
    """The reference loop written out, with one optional mistake."""
    model = ToyModel(cfg, feature_probability, importance, device=device)
    if mistake == "sgd":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    features = ref.generate_batch(model.feature_probability, batch)
    for step in range(steps - 1 if mistake == "off_by_one" else steps):
        if mistake != "one_batch" and step > 0:
            features = ref.generate_batch(model.feature_probability, batch)
        out = ref.toy_forward(model.W, model.b_final, features, model.cfg.relu)
        if mistake == "no_importance":
            loss = ((out - features) ** 2).mean(dim=(0, 2)).sum()
        else:
            loss = ref.weighted_mse(out, features, model.importance)
        if mistake != "no_zero_grad":
            optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return None if mistake == "no_return" else model


def _wrong_train(mistake):
    return lambda *args, **kwargs: _train(*args, **kwargs, mistake=mistake)


def test_check_train_passes_the_reference_loop():
    checks.check_train(_train)


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("no_zero_grad", "clear the gradients every step"),
        ("one_batch", "draw a fresh batch every step"),
        ("sgd", "use Adam on model.parameters"),
        ("no_importance", "importance-weighted loss"),
        ("off_by_one", "the weights did not move"),
        ("no_return", "Return the trained model"),
    ],
)
def test_check_train_rejects(mistake, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_train(_wrong_train(mistake))


def test_check_train_rejects_a_model_that_ignores_the_probability_passed_in():
    def fixed_probability(cfg, feature_probability, importance, steps, **kwargs):
        return _train(cfg, 1.0, importance, steps, **kwargs)

    with pytest.raises(AssertionError, match="carry the feature probability and importance"):
        checks.check_train(fixed_probability)


def _sticky(d_i, fractions, tolerance=0.02, low=0.3, high=1.05, draws=200, seed=0, *, mistake=None):
    out = ref.sticky_share(d_i, fractions, tolerance, low, high, draws, seed)
    sticky = torch.as_tensor(fractions)
    if mistake == "whole_range":  # every value kept, not only those in (low, high)
        out["n"] = d_i.numel()
        out["observed"] = ((d_i.flatten()[:, None] - sticky).abs() < tolerance).any(-1).float().mean().item()
    elif mistake == "signed":  # the distance without its absolute value: everything below a fraction is "near"
        live = d_i[(d_i > low) & (d_i < high)]
        out["observed"] = ((live[:, None] - sticky) < tolerance).any(-1).float().mean().item()
    elif mistake == "half_window":  # the window one tolerance wide, not two
        grid = torch.linspace(low, high, 10_000)
        out["uniform"] = (((grid[:, None] - sticky) >= 0) & ((grid[:, None] - sticky) < tolerance)).any(-1)
        out["uniform"] = out["uniform"].float().mean().item()
    elif mistake == "global_rng":  # the draws from the global random state
        uniform_d = low + (high - low) * torch.rand(draws, out["n"])
        out["draws"] = ((uniform_d[..., None] - sticky).abs() < tolerance).any(-1).float().mean(1)
    elif mistake == "a_list":
        return [out["observed"], out["uniform"]]
    return out


def test_check_sticky_share_passes_the_reference():
    checks.check_sticky_share(ref.sticky_share)


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("whole_range", "five lie in"),
        ("signed", "in absolute value"),
        ("half_window", "a uniform spread puts"),
        ("global_rng", "from a torch.Generator seeded"),
        ("a_list", "Return a dict"),
    ],
)
def test_check_sticky_share_rejects(mistake, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_sticky_share(lambda *a, **k: _sticky(*a, **k, mistake=mistake))


def _phase(densities, relative, trainer, relu=True, *, mistake=None):
    indexing = "ij" if mistake == "ij" else "xy"
    dens_grid, rel_grid = torch.meshgrid(densities, relative, indexing=indexing)
    n = dens_grid.numel()
    importance = torch.stack([torch.ones(n), rel_grid.flatten()], dim=1)
    cfg = ToyConfig(n_features=2, n_hidden=1, n_instances=n, relu=True if mistake == "relu_dropped" else relu)
    model = trainer(cfg, dens_grid.flatten()[:, None].expand(-1, 2), importance)
    W = model.W.detach().cpu()
    if mistake == "signs_ignored":
        represented = W.norm(dim=1) > 0.5
        phase = torch.where(represented.all(-1), 2, torch.where(represented[:, 1], 1, 0))
    else:
        phase = ref.phase_labels(W)
    losses = ref.configuration_losses(dens_grid, rel_grid)
    theory = losses.argmax(-1) if mistake == "argmax" else losses.argmin(-1)
    return phase.reshape(dens_grid.shape), theory


def test_check_phase_diagram_passes_the_reference():
    checks.check_phase_diagram(ref.phase_diagram)
    checks.check_phase_diagram(_phase)


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("ij", "density changes along a row"),
        ("relu_dropped", "One instance per cell"),
        ("signs_ignored", "same side: not superposition"),
        ("argmax", "least expected loss"),
    ],
)
def test_check_phase_diagram_rejects(mistake, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_phase_diagram(lambda *a, **k: _phase(*a, **k, mistake=mistake))


def test_check_phase_diagram_rejects_a_run_per_cell():
    def per_cell(densities, relative, trainer, relu=True):
        for _ in range(2):
            trainer(ToyConfig(n_features=2, n_hidden=1, n_instances=1, relu=relu), 0.5, 1.0)
        return _phase(densities, relative, trainer, relu)

    with pytest.raises(AssertionError, match="Train once"):
        checks.check_phase_diagram(per_cell)


# a third wrong answer for each of the lesson's other checks


def _losses_with_e_x2_for_the_variance(p, r):
    p, r = torch.as_tensor(p), torch.as_tensor(r)
    return torch.stack([r * p / 3, p / 3, p**2 * (1 + r) / 6], -1)


def test_third_wrong_answers_of_the_other_checks():
    with pytest.raises(AssertionError, match="summed over instances"):  # summed over the batch, not averaged
        checks.check_weighted_mse(lambda out, x, imp: (imp * (out - x) ** 2).sum(dim=0).mean(-1).sum())
    with pytest.raises(AssertionError, match="every feature has dimensionality"):  # j = i left out
        checks.check_feature_dimensionality(
            lambda W: W.pow(2).sum(1) / ref.superposition_interference(W).clamp_min(1e-8)
        )
    with pytest.raises(AssertionError, match="hidden size"):  # upside down: features per dimension
        checks.check_dimensions_per_feature(lambda W: W.pow(2).sum(dim=(1, 2)) / W.shape[1])
    with pytest.raises(AssertionError, match="Features lie in"):  # values on [-1, 1]
        checks.check_generate_batch(lambda p, n: (2 * torch.rand(n, *p.shape) - 1) * (torch.rand(n, *p.shape) <= p))
    with pytest.raises(AssertionError, match="after the ReLU"):  # W x W^T: the hidden layer skipped
        checks.check_toy_forward(lambda W, b, x, relu=True: torch.relu(x + b) if relu else x + b)
    with pytest.raises(AssertionError, match="one norm per column"):  # one norm per instance
        checks.check_feature_norms(lambda W: W.norm(dim=(1, 2)))

    def both_normalised(W):  # W_j normalised too: a short W_j counts as much as a long one
        unit = W / W.norm(dim=1, keepdim=True).clamp_min(1e-8)
        overlaps = torch.einsum("ihf,ihg->ifg", unit, unit).pow(2)
        return overlaps.sum(-1) - overlaps.diagonal(dim1=-2, dim2=-1)

    with pytest.raises(AssertionError, match="full W_j"):
        checks.check_interference(both_normalised)
    with pytest.raises(AssertionError, match="1/12"):  # a dropped feature costs E[x^2], not Var(x)
        checks.check_configuration_losses(_losses_with_e_x2_for_the_variance)
    with pytest.raises(AssertionError, match="both biases"):  # the biases added after the ReLUs
        checks.check_abs_forward(
            lambda W1, b1, W2, b2, x: (
                torch.einsum("ifn,bin->bif", W2, torch.einsum("inf,bif->bin", W1, x).relu() + b1).relu() + b2
            )
        )
    with pytest.raises(AssertionError, match="shares 1, 1/2, 0"):  # the largest weight over the norm, not squared
        checks.check_neuron_share(lambda W: W.abs().max(-1).values / W.norm(dim=-1).clamp_min(1e-12))


def _train_abs(model, steps, lr=1e-3, batch=1024, *, mistake=None):
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    shape = (batch, *model.feature_probability.shape)
    for step in range(steps):
        if mistake != "one_batch" or step == 0:
            values = torch.rand(shape) if mistake == "positive" else torch.rand(shape) * 2 - 1
            features = values * (torch.rand(shape) <= model.feature_probability)
        out = ref.abs_forward(model.W1, model.b1, model.W2, model.b2, features)
        target = features if mistake == "target_x" else features.abs()
        loss = ref.weighted_mse(out, target, model.importance)
        if mistake != "no_zero_grad":
            optimizer.zero_grad()
        loss.backward()
        if mistake != "no_step":
            optimizer.step()


def test_check_train_abs_passes_the_reference_loop():
    checks.check_train_abs(_train_abs)
    checks.check_train_abs(lambda model, steps, lr, batch: ref.train_toy_model(model, steps, batch, lr, progress=False))


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("positive", "uniform on \\[-1, 1\\]"),
        ("target_x", "the target is \\|x\\|"),
        ("no_zero_grad", "clear the gradients every step"),
        ("one_batch", "draw a fresh batch every step"),
        ("no_step", "did not move"),
    ],
)
def test_check_train_abs_rejects(mistake, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_train_abs(lambda *a, **k: _train_abs(*a, **k, mistake=mistake))


def test_check_monosemantic():
    checks.check_monosemantic(ref.monosemantic_share)

    def dead_counted(W1):  # the denominator counts every neuron, dead ones too
        mono = (ref.neuron_share(W1) > 0.9) & (W1.norm(dim=-1) > 0.1)
        return [mono[k].sum().item() / W1.shape[1] for k in range(len(W1))]

    def signed_share(W1):  # the largest signed weight, squared: a strongly negative neuron is not monosemantic
        share = W1.max(-1).values.pow(2) / W1.pow(2).sum(-1).clamp_min(1e-12)
        alive = W1.norm(dim=-1) > 0.1
        return [((share[k] > 0.9) & alive[k]).sum().item() / max(1, int(alive[k].sum())) for k in range(len(W1))]

    def a_tensor(W1):
        return torch.tensor(ref.monosemantic_share(W1))

    for wrong in (dead_counted, signed_share):
        with pytest.raises(AssertionError, match="the third is dead"):
            checks.check_monosemantic(wrong)
    with pytest.raises(AssertionError, match="Return a list"):
        checks.check_monosemantic(a_tensor)


def _angles(W_2d, represented, *, mistake=None):
    vecs = W_2d if mistake == "all_features" else W_2d[:, represented]
    theta = torch.atan2(vecs[1], vecs[0])
    if mistake != "unsorted":
        theta = theta.sort().values
    if mistake == "no_wrap":
        gaps = torch.diff(theta)
    else:
        gaps = torch.diff(torch.cat([theta, theta[:1] + 2 * torch.pi]))
    return gaps if mistake == "radians" else torch.rad2deg(gaps)


def test_check_neighbour_angles():
    checks.check_neighbour_angles(ref.neighbour_angles)
    checks.check_neighbour_angles(_angles)
    for mistake, message in [
        ("no_wrap", "the last one back to the first"),
        ("radians", "in degrees"),
        ("unsorted", "once sorted by angle"),
        ("all_features", "only the represented three count"),
    ]:
        with pytest.raises(AssertionError, match=message):
            checks.check_neighbour_angles(lambda W, r, m=mistake: _angles(W, r, mistake=m))


def _agreement(phase, theory, phase_linear, relative, shuffles=1000, seed=0, *, mistake=None):
    """The notebook's answer written out, with one optional mistake."""
    n_cols = phase.shape[1]
    dense_col = phase[:, 0] if mistake == "first_column" else phase[:, -1]
    winner = (relative >= 1).long() if mistake == "r_at_least_1" else (relative > 1).long()
    generator = torch.Generator().manual_seed(seed)

    def perm(n):
        return torch.randperm(n) if mistake == "global_rng" else torch.randperm(n, generator=generator)

    def dense_control():
        draws = [(dense_col[perm(len(dense_col))] == winner).float().mean().item() for _ in range(shuffles)]
        return draws[0] if mistake == "one_shuffle" else sum(draws) / shuffles

    def grid_control():
        if mistake == "fresh_generator":
            generator.manual_seed(seed)
        flat, want = phase.flatten(), theory.flatten()
        return sum((flat[perm(flat.numel())] == want).float().mean().item() for _ in range(shuffles)) / shuffles

    if mistake == "grid_first":
        theory_shuffled, dense_shuffled = grid_control(), dense_control()
    else:
        dense_shuffled = dense_control()
        theory_shuffled = grid_control()
    if mistake == "transposed":
        agreement = (phase == theory.T).float().mean().item()
    elif mistake == "densest_column_only":
        agreement = (phase[:, -1] == theory[:, -1]).float().mean().item()
    else:
        agreement = (phase == theory).float().mean().item()
    third = slice(0, n_cols // 3)
    sparse = (
        (third, slice(None)) if mistake == "rows" else (slice(None), third)
    )  # rows: the least important, not sparse
    result = {
        "agreement": agreement,
        "agreement_shuffled": theory_shuffled,
        "dense_match": (dense_col == winner).float().mean().item(),
        "dense_shuffled": dense_shuffled,
        "dense_super": int((dense_col == 2).sum()),
        "same_side": int((phase == 3).sum()),
        "sparse_super": (phase[sparse] == 2).float().mean().item(),
        "linear_super": (phase_linear[sparse] == 2).float().mean().item(),
    }
    if mistake == "tensors":
        result["agreement"] = torch.tensor(agreement)
    return result


def test_check_phase_agreement_passes_the_reference():
    checks.check_phase_agreement(ref.phase_agreement)
    checks.check_phase_agreement(_agreement)


@pytest.mark.parametrize(
    ("mistake", "message"),
    [
        ("global_rng", "changed the global random state"),
        ("transposed", "agreement with the theory transposed"),
        ("densest_column_only", "the densest column's agreement only"),
        ("one_shuffle", "One shuffle is not the control"),
        ("first_column", "the densest column is the last one"),
        ("r_at_least_1", "at r = 1 neither is more important"),
        ("rows", "columns, not rows"),
        ("fresh_generator", "seed one generator once"),
        ("grid_first", "the densest column's come first"),
        ("tensors", "a Python number"),
    ],
)
def test_check_phase_agreement_rejects(mistake, message):
    with pytest.raises(AssertionError, match=message):
        checks.check_phase_agreement(lambda *a, **k: _agreement(*a, **k, mistake=mistake))


def test_the_reference_phase_agreement_gives_the_notebooks_numbers_of_before():
    """The reference answer computes what the notebook computed inline before it became an exercise."""
    torch.manual_seed(0)
    phase, theory, linear = torch.randint(0, 4, (8, 8)), torch.randint(0, 3, (8, 8)), torch.randint(0, 2, (8, 8))
    relative = torch.logspace(-1, 1, 8)
    got = ref.phase_agreement(phase, theory, linear, relative, shuffles=1000, seed=0)
    dense_col, winner = phase[:, -1], torch.where(relative > 1, 1, 0)
    shuffles = torch.Generator().manual_seed(0)
    dense = np.mean(
        [(dense_col[torch.randperm(8, generator=shuffles)] == winner).float().mean().item() for _ in range(1000)]
    )
    flat = phase.flatten()
    grid = np.mean(
        [(flat[torch.randperm(64, generator=shuffles)] == theory.flatten()).float().mean().item() for _ in range(1000)]
    )
    assert (got["dense_shuffled"], got["agreement_shuffled"]) == (dense, grid)
    assert got["sparse_super"] == (phase[:, :2] == 2).float().mean().item()
