"""The shipped bundled model really shows what later notebooks study (measured here, not read from its card)."""

import pytest
import torch

from interp_utils import corpus
from interp_utils.ioi import make_ioi_prompts
from interp_utils.loading import load_bundled
from interp_utils.metrics import induction_scores, ioi_logit_diffs


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return load_bundled(device="cpu")


def test_has_induction_heads(model):
    scores, chance = induction_scores(model, seq_len=40, batch=16, seed=7)
    assert scores.max() > 0.4, f"best induction score {scores.max():.3f}"
    assert scores.max() > 10 * chance
    assert (scores > 0.2).sum() >= 1


def test_does_ioi_on_held_out_names_and_templates(model):
    prompts = make_ioi_prompts(200, corpus.HELD_OUT_NAMES, corpus.HELD_OUT_TEMPLATES, seed=11)
    diffs = ioi_logit_diffs(model, prompts)
    assert diffs.mean() > 1.0, f"mean logit diff {diffs.mean():.3f}"
    assert (diffs > 0).float().mean() > 0.8


def test_abc_prompts_carry_no_ioi_signal(model):
    """On the corrupted distribution neither name is repeated, so the preference for 'IO' should vanish."""
    prompts = make_ioi_prompts(200, corpus.HELD_OUT_NAMES, corpus.HELD_OUT_TEMPLATES, orders=("ABC",), seed=12)
    clean = make_ioi_prompts(200, corpus.HELD_OUT_NAMES, corpus.HELD_OUT_TEMPLATES, seed=12)
    assert ioi_logit_diffs(model, prompts).mean().abs() < 0.5 * ioi_logit_diffs(model, clean).mean()
