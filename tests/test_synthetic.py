"""interp_utils.dictionaries.synthetic: SAELens's synthetic ground truth, trained on by both trainers."""

import pytest
import torch

from interp_utils.dictionaries import synthetic
from interp_utils.dictionaries.saelens_format import to_saelens

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
        synthetic.synthetic_model(features=64, dim=64)
    with pytest.raises(ValueError, match="at least 64"):
        synthetic.synthetic_model(features=32, dim=8)
    with pytest.raises(ValueError, match="BatchTopK"):
        synthetic.silent_latents(synthetic.suite_sae("topk", 16, 128, k=4), synth, samples=64)
    with pytest.raises(ValueError, match="samples >= batch"):
        synthetic.train_suite(synthetic.suite_sae("topk", 16, 128, k=4), synth, samples=100, batch=256)
    with pytest.raises(ValueError, match="positive"):
        synthetic.evaluate(to_saelens(synthetic.suite_sae("topk", 16, 128, k=4)), synth, samples=0)


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
