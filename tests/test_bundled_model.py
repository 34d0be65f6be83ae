"""The shipped bundled model really shows what later notebooks study (measured here, not read from its card)."""

import json

import pytest

from interp_utils import bundled, corpus
from interp_utils.circuits.heads import induction_scores
from interp_utils.core.loading import BUNDLED_DIR
from interp_utils.data.ioi import make_ioi_prompts, prompt_logit_diffs


@pytest.fixture
def model(bundled_model):
    return bundled_model


def test_has_induction_heads(model):
    scores, chance = induction_scores(model, seq_len=40, batch=16, seed=7)
    assert scores.max() > 0.5, f"best induction score {scores.max():.3f}"
    assert scores.max() > 10 * chance
    assert (scores > 0.2).sum() >= 1


def test_does_ioi_on_held_out_names_and_templates(model):
    """Names and templates that never occur in the corpus's IOI stories: IO still clearly beats S."""
    diffs = prompt_logit_diffs(model, make_ioi_prompts(200, corpus.HELD_OUT_NAMES, corpus.HELD_OUT_TEMPLATES, seed=11))
    standard_error = diffs.std() / len(diffs) ** 0.5
    assert diffs.mean() > 3 * standard_error, f"mean {diffs.mean():.3f}, standard error {standard_error:.3f}"
    assert (diffs > 0).float().mean() > 0.6


def test_does_ioi_on_held_out_names_in_training_templates(model):
    diffs = prompt_logit_diffs(model, make_ioi_prompts(200, corpus.HELD_OUT_NAMES, corpus.TRAIN_TEMPLATES, seed=11))
    assert diffs.mean() > 3.0 and (diffs > 0).float().mean() > 0.9


def test_abc_prompts_carry_no_ioi_signal(model):
    """With no repeated name (the ABC corruption) the preference for the 'IO' name should vanish."""
    names, templates = corpus.HELD_OUT_NAMES, corpus.TRAIN_TEMPLATES
    abc = prompt_logit_diffs(model, make_ioi_prompts(200, names, templates, orders=("ABC",), seed=12))
    clean = prompt_logit_diffs(model, make_ioi_prompts(200, names, templates, seed=12))
    assert abc.mean().abs() < 0.2 * clean.mean()


def test_the_model_card_says_who_carries_the_ioi_answer(model):
    """The card's circuit figures (metrics.json, written by ``python -m interp_utils.models.bundled evaluate``) are
    what the shipped weights give."""
    stated = json.loads((BUNDLED_DIR / "metrics.json").read_text())["ioi_circuit"]
    measured = bundled.ioi_circuit(model)
    assert abs(measured["attention_share"] - stated["attention_share"]) < 0.01
    assert abs(measured["mlp_share"] - stated["mlp_share"]) < 0.01
    assert list(measured["carriers"]) == list(stated["carriers"]) and measured["name_movers"] == stated["name_movers"]
    assert stated["mlp_share"] > stated["attention_share"], "README and notebook 03 say the MLPs write the answer"
