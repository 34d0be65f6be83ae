"""interp_utils.dictionaries.synthetic: SAELens's synthetic ground truth, trained on by both trainers."""

import math

import pytest
import torch
from sae_lens.saes.sae import TrainStepInput

from interp_utils.dictionaries import synthetic
from interp_utils.dictionaries.l0_target import L0Target
from interp_utils.dictionaries.saelens_format import to_saelens
from interp_utils.dictionaries.training import clip_grad_norm_, model_unit_weights

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def synth():
    return synthetic.synthetic_model(features=128, dim=16, seed=0, ortho_steps=0)


def test_bad_settings_say_what_to_do(synth):
    with pytest.raises(ValueError, match="unknown architecture 'gated'"):
        synthetic.suite_sae("gated", 16, 128)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown architecture"):
        synthetic.saelens_sae("gated", 16, 128)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must exceed dim"):
        synthetic.synthetic_model(features=128, dim=128)
    with pytest.raises(ValueError, match="at least 128"):
        synthetic.synthetic_model(features=64, dim=8)
    with pytest.raises(ValueError, match="width must be between"):
        synthetic.width_l0(synth, 0)
    with pytest.raises(ValueError, match="samples >= batch"):
        next(synthetic.pool_batches(torch.zeros(10, 16), 64))
    with pytest.raises(ValueError, match="positive L0"):
        L0Target(0)
    with pytest.raises(ValueError, match="has none"):
        synthetic.train_suite(synthetic.suite_sae("topk", 16, 128, k=4), synth, 512, 256, control=L0Target(4))
    with pytest.raises(ValueError, match="BatchTopK"):
        synthetic.silent_latents(synthetic.suite_sae("topk", 16, 128, k=4), synth, samples=64)
    with pytest.raises(ValueError, match="samples >= batch"):
        synthetic.train_suite(synthetic.suite_sae("topk", 16, 128, k=4), synth, samples=100, batch=256)
    with pytest.raises(ValueError, match="positive"):
        synthetic.evaluate(to_saelens(synthetic.suite_sae("topk", 16, 128, k=4)), synth, samples=0)


@pytest.mark.parametrize("architecture", synthetic.ARCHITECTURES)
def test_saelens_like_has_the_same_loss_and_the_clip_sees_saelenss_gradient_norm(synth, architecture):
    """The same weights in both units (SAELens's b_enc, b_dec and JumpReLU threshold are in_scale times this suite's):
    SAELens's training loss is in_scale**2 times this suite's, and the gradient norm that train_sae's max_grad_norm
    clips (measured with model_unit_weights) is the norm SAELens's trainer clips."""
    torch.manual_seed(0)
    x = synth.sample(256) * 10  # in_scale far from 1, so that a wrong power of it shows
    sae = synthetic.suite_sae(architecture, 16, 128, k=4)
    sae.init_from_data(x)
    with torch.no_grad():  # away from the tied initialisation, so that every term has a gradient
        sae.b_enc.normal_(0, 0.1)
        sae.W_enc.add_(0.05 * torch.randn_like(sae.W_enc))
    s = sae.in_scale.item()
    lens = synthetic.saelens_like(sae, steps=100)
    with torch.no_grad():
        for name, weight in lens.named_parameters():
            weight.copy_(getattr(sae, name) * (1.0 if name.startswith("W_") else s))
    ours = sae.losses(x)["loss"]
    coefficients = {name: getattr(c, "value", c) for name, c in lens.get_coefficients().items()}
    theirs = lens.training_forward_pass(TrainStepInput(x, coefficients, None, 0, False)).loss
    assert theirs.item() == pytest.approx(s**2 * ours.item(), rel=1e-5)
    ours.backward()
    theirs.backward()
    norm = clip_grad_norm_(model_unit_weights(sae, s, sae.out_scale.item()), math.inf).item()
    assert norm == pytest.approx(torch.stack([w.grad.norm() for w in lens.parameters()]).norm().item(), rel=1e-5)
    unweighted = clip_grad_norm_([(w, 1.0) for w in sae.parameters()], math.inf).item()
    assert abs(unweighted * s**2 / norm - 1) > 1e-2  # s**2 for every gradient would fail the check above


def test_a_decoder_made_of_the_true_features_scores_mcc_one(synth):
    """The scoring is wired to the generator's own features: a dictionary equal to them has MCC 1, a random one not."""
    sae = synthetic.suite_sae("topk", 16, 128, k=4)
    with torch.no_grad():
        sae.W_dec.copy_(
            synth.feature_dict.feature_vectors / synth.feature_dict.feature_vectors.norm(dim=-1, keepdim=True)
        )
    assert synthetic.evaluate(to_saelens(sae), synth, samples=512)["mcc"] == pytest.approx(1.0, abs=1e-4)
    random = synthetic.evaluate(to_saelens(synthetic.suite_sae("topk", 16, 128, k=4)), synth, samples=512)
    assert random["mcc"] < 0.7


def test_evaluation_is_repeatable_and_leaves_the_random_state_alone(synth):
    lens = to_saelens(synthetic.suite_sae("topk", 16, 128, k=4))
    torch.manual_seed(7)
    first = synthetic.evaluate(lens, synth, samples=600, seed=3)
    after = torch.rand(1)
    torch.manual_seed(7)
    assert synthetic.evaluate(lens, synth, samples=600, seed=3) == first
    assert torch.equal(torch.rand(1), after)
    assert synthetic.true_l0(synth, 600, seed=3) == pytest.approx(first["true_l0"])


def test_silent_latents_counts_what_evaluate_calls_dead(synth):
    torch.manual_seed(0)
    sae = synthetic.suite_sae("batchtopk", 16, 128, k=4)
    lens = synthetic.train_suite(sae, synth, samples=2048, batch=256)
    at_inference, in_training = synthetic.silent_latents(sae, synth, samples=6000, seed=2)
    assert at_inference == synthetic.evaluate(lens, synth, samples=6000, seed=2)["dead"]
    assert 0 <= in_training <= 128


def test_the_saelens_settings_are_train_toy_saes(synth, monkeypatch):
    """The pre-drawn path configures SAELens's trainer as its own train_toy_sae does (caught if SAELens changes)."""
    import sae_lens.synthetic.training as toy

    seen = {}

    class Capture:
        def __class_getitem__(cls, item):  # SAELens annotates with SAETrainer[Any, Any]
            return cls

        def __init__(self, cfg, **kwargs):
            seen["cfg"] = cfg

        def fit(self):
            return None

    monkeypatch.setattr(toy, "SAETrainer", Capture)
    toy.train_toy_sae(
        synthetic.saelens_sae("topk", 16, 128, k=4), synth.feature_dict, synth.activation_generator, 4096, 256, 1e-3
    )
    ours = synthetic.saelens_trainer_config(4096, 256, 1e-3)
    theirs = seen["cfg"]
    decayed = synthetic.saelens_trainer_config(4096, 256, 1e-3, lr_decay=0.25, dead_window=7)
    assert (decayed.lr_decay_steps, decayed.dead_feature_window) == (4, 7)
    for field in (
        "total_training_samples",
        "lr",
        "lr_end",
        "lr_scheduler_name",
        "lr_warm_up_steps",
        "adam_beta1",
        "adam_beta2",
        "lr_decay_steps",
        "train_batch_size_samples",
        "dead_feature_window",
        "feature_sampling_window",
        "autocast",
    ):
        assert getattr(ours, field) == getattr(theirs, field), field


@pytest.mark.parametrize("architecture", synthetic.ARCHITECTURES)
def test_both_trainers_train_every_architecture_and_are_scored(synth, architecture):
    torch.manual_seed(0)
    suite = synthetic.suite_sae(architecture, 16, 128, k=4)
    before = suite.W_dec.detach().clone()
    ours = synthetic.train_suite(suite, synth, samples=1024, batch=256)
    assert not torch.equal(suite.W_dec.detach(), before)  # it trained
    theirs = synthetic.train_saelens(synthetic.saelens_sae(architecture, 16, 128, k=4), synth, 1024, batch=256)
    for trained in (ours, theirs):
        r = synthetic.evaluate(trained, synth, samples=512)
        assert set(synthetic.METRICS) <= set(r) and r["true_l0"] > 0
        assert 0 <= r["mcc"] <= 1 and 0 <= r["f1"] <= 1 and 0 <= r["dead"] <= 128
    if architecture == "topk":  # L0 = k exactly (BatchTopK's threshold needs more than four steps to settle)
        assert synthetic.evaluate(ours, synth, samples=512)["l0"] == pytest.approx(4, abs=0.05)


def test_the_generator_keeps_synthsaebenchs_structure():
    """Trees of mutually exclusive children: with the hierarchy, siblings never fire together; without it, they do,
    and more features fire (nothing gates them). k for a width is the true L0 of its most frequent features."""
    tree = synthetic.synthetic_model(features=256, dim=16, seed=0, ortho_steps=0)
    flat = synthetic.synthetic_model(features=256, dim=16, seed=0, ortho_steps=0, hierarchy=False)
    assert synthetic.true_l0(flat, 4000) > synthetic.true_l0(tree, 4000)
    assert synthetic.width_l0(tree, 64, 4000) < synthetic.width_l0(tree, 256, 4000)
    assert synthetic.width_l0(tree, 256, 4000) == pytest.approx(synthetic.true_l0(tree, 4000), rel=1e-5)
    assert synthetic.matryoshka_prefixes(512) == [16, 64, 256, 512]


def test_the_pool_is_drawn_once_and_reshuffled_each_pass(synth):
    pool = synthetic.sample_pool(synth, 1000, seed=0)
    assert pool.shape == (1000, 16) and torch.equal(pool, synthetic.sample_pool(synth, 1000, seed=0))
    batches = synthetic.pool_batches(pool, 250, seed=0)
    first_pass = torch.cat([next(batches) for _ in range(4)])
    second_pass = torch.cat([next(batches) for _ in range(4)])
    rows = {tuple(r.tolist()) for r in pool}
    assert {tuple(r.tolist()) for r in first_pass} == rows  # every sample once per pass
    assert not torch.equal(first_pass, second_pass)


def test_l0_target_steers_the_coefficient_towards_its_target(synth):
    """A ReLU SAE whose L0 sits above the target gets a larger coefficient, one below it a smaller one; the
    steered SAE ends nearer the target than the same SAE left alone."""
    pool = synthetic.sample_pool(synth, 8192, seed=0)
    l0 = {}
    for target in (None, 2.0):
        torch.manual_seed(0)
        sae = synthetic.suite_sae("relu", 16, 128, l1=0.5)
        steer = None if target is None else L0Target(target, gain=0.05)
        lens = synthetic.train_suite(sae, synth, 8192 * 3, 256, 3e-3, synthetic.pool_batches(pool, 256), control=steer)
        l0[target] = synthetic.evaluate(lens, synth, 2000)["l0"]
        if steer is not None:
            assert steer.scale > 1 and steer.steps == 96
    assert l0[None] > 4 and abs(l0[2.0] - 2.0) < abs(l0[None] - 2.0) / 2
    low = L0Target(50.0)
    torch.manual_seed(0)
    synthetic.train_suite(synthetic.suite_sae("jumprelu", 16, 128), synth, 2048, 256, control=low)
    assert low.scale < 1


def test_saelens_like_converts_the_settings_to_raw_units(synth):
    """Inputs are divided by in_scale here and not in SAELens: its L1 coefficient is ours times the scale, its L0
    coefficient ours times the scale squared, thresholds and bandwidth times the scale; the TopK family keeps k."""
    torch.manual_seed(0)
    relu, jump = synthetic.suite_sae("relu", 16, 128, l1=2.0), synthetic.suite_sae("jumprelu", 16, 128, l0_coeff=3.0)
    for sae in (relu, jump):
        sae.in_scale.fill_(2.0)
    steer = L0Target(4)
    steer.log_scale = math.log(0.5)
    lens_relu = synthetic.saelens_like(relu, steps=100, control=steer)
    assert lens_relu.cfg.l1_coefficient == pytest.approx(2.0 * 0.5 * 2.0) and lens_relu.cfg.l1_warm_up_steps == 5
    lens_jump = synthetic.saelens_like(jump, steps=100)
    assert lens_jump.cfg.l0_coefficient == pytest.approx(3.0 * 4.0)
    assert lens_jump.cfg.jumprelu_init_threshold == pytest.approx(jump.cfg.init_threshold * 2.0)
    assert lens_jump.cfg.jumprelu_bandwidth == pytest.approx(jump.cfg.bandwidth * 2.0)
    mat = synthetic.saelens_like(synthetic.suite_sae("matryoshka", 16, 128, k=3), steps=100)
    assert mat.cfg.k == 3 and list(mat.cfg.matryoshka_widths) == synthetic.matryoshka_prefixes(128)
    # this suite: dead after ceil(window / batch) steps without firing; SAELens: after more than dead_window steps
    assert relu.cfg.dead_tokens == 200_000
    assert synthetic.dead_window(relu, samples=10**7, batch=500) == 399
    assert synthetic.dead_window(relu, samples=10**7, batch=512) == 390
    assert synthetic.dead_window(relu, samples=4000, batch=500) == 1
