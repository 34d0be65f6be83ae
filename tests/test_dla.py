import pytest
import torch

from interp_utils import corpus, dla
from interp_utils.data.ioi import ioi_batch, logit_diff, make_ioi_prompts, prompt_logit_diffs, single_token_names


def test_direct_effects_add_up_to_the_logit_difference(bundled_model):
    names = single_token_names(bundled_model, corpus.HELD_OUT_NAMES)
    batch = ioi_batch(bundled_model, make_ioi_prompts(16, names, corpus.TRAIN_TEMPLATES, seed=0))
    logits, cache = bundled_model.run_with_cache(batch.tokens)
    diff = logit_diff(logits, batch)
    assert torch.allclose(diff.cpu(), prompt_logit_diffs(bundled_model, batch.prompts), atol=1e-4)
    layers = dla.layer_direct_effects(bundled_model, cache, batch)
    bias = (bundled_model.b_U[batch.io] - bundled_model.b_U[batch.s]).mean().item()
    assert sum(layers.values()) + bias == pytest.approx(diff.mean().item(), abs=1e-3)
    per_head = dla.head_direct_effects(bundled_model, cache, batch)
    assert per_head.shape == (4, 4)
    # heads plus each layer's output bias make up the attention layer's effect
    rows, end = torch.arange(len(batch)), batch.positions["end"]
    scale = cache["ln_final.hook_scale"][rows, end]
    direction = (bundled_model.W_U[:, batch.io] - bundled_model.W_U[:, batch.s]).T
    b_o = ((bundled_model.b_O[0] / scale) * direction).sum(-1).mean().item()
    assert per_head[0].sum().item() + b_o == pytest.approx(layers["attn 0"], abs=1e-3)
