"""The bundled model (and any TransformerLens model of GPT-2's architecture) as a Hugging Face GPT2LMHeadModel: the
same logits on the corpus, a folder Hugging Face tools open, and the unembedding bias that a plain from_pretrained
would drop, kept."""

import pytest
import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from interp_utils import activations, load_bundled
from interp_utils.models.hf_export import hf_tokenizer, load_hf_gpt2, save_hf_gpt2, to_hf_gpt2


@pytest.fixture(scope="module")
def unprocessed():
    return load_bundled(device="cpu", process_weights=False)


def _corpus(model, rows=16):
    return next(activations.token_batches(model, rows, model.cfg.n_ctx, seed=3, source="corpus"))


@torch.no_grad()
def test_logits_equal_transformerlens_on_the_corpus(unprocessed):
    assert unprocessed.b_U.abs().max() > 1  # the bias a plain GPT-2 head has no room for
    hf, tokens = to_hf_gpt2(unprocessed), _corpus(unprocessed)
    assert hf.lm_head.bias is not None and not hf.config.tie_word_embeddings
    assert (hf(tokens).logits - unprocessed(tokens)).abs().max() < 1e-4


@torch.no_grad()
def test_a_processed_model_converts_too(bundled_model):
    """LayerNorm folded into the next weights (LNPre) becomes a LayerNorm of weight 1 and bias 0."""
    tokens = _corpus(bundled_model, 4)
    assert (to_hf_gpt2(bundled_model)(tokens).logits - bundled_model(tokens)).abs().max() < 1e-4


@torch.no_grad()
def test_saved_folder_opens_with_hugging_face_tools_and_keeps_the_bias(unprocessed, tmp_path):
    from transformers import AutoTokenizer, GPT2LMHeadModel

    folder = save_hf_gpt2(unprocessed, tmp_path / "bundled-hf")
    tokens = _corpus(unprocessed, 4)
    want = unprocessed(tokens)
    assert (load_hf_gpt2(folder)(tokens).logits - want).abs().max() < 1e-4
    plain = GPT2LMHeadModel.from_pretrained(folder)  # what a plain load gives: the same, less b_U
    assert plain.lm_head.bias is None
    assert (plain(tokens).logits + unprocessed.b_U - want).abs().max() < 1e-4
    tokenizer = AutoTokenizer.from_pretrained(folder)
    text = "When Mary and John went to the store"
    assert tokenizer(text)["input_ids"] == hf_tokenizer(unprocessed)(text)["input_ids"]


def test_other_architectures_are_refused():
    cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_vocab=10, act_fn="gelu",
                                  positional_embedding_type="rotary")  # fmt: skip
    with pytest.raises(ValueError, match="GPT-2's architecture"):
        to_hf_gpt2(HookedTransformer(cfg))


@pytest.mark.parametrize(
    "setting, message",
    [({"gated_mlp": True}, "gated MLP"), ({"use_local_attn": True, "window_size": 4, "attn_types": ["local"]}, "local"),
     ({"use_qk_norm": True}, "normalised queries")],
)  # fmt: skip
def test_gpt2_incompatible_settings_are_refused_by_name(setting, message):
    """A gated MLP (W_gate) and other settings with no place in a GPT2LMHeadModel would be dropped without a word."""
    cfg = HookedTransformerConfig(n_layers=1, d_model=16, n_ctx=8, d_head=4, n_heads=4, d_vocab=10, act_fn="gelu",
                                  d_mlp=32, **setting)  # fmt: skip
    with pytest.raises(ValueError, match=f"GPT-2's architecture.*{message}"):
        to_hf_gpt2(HookedTransformer(cfg))


def test_hf_tokenizer_leaves_the_models_tokenizer_alone(unprocessed):
    import copy
    from types import SimpleNamespace

    tokenizer = copy.deepcopy(unprocessed.tokenizer)
    tokenizer.padding_side, tokenizer.pad_token = "left", None
    out = hf_tokenizer(SimpleNamespace(tokenizer=tokenizer, cfg=unprocessed.cfg))
    assert out is not tokenizer and out.padding_side == "right" and out.pad_token == out.eos_token
    assert tokenizer.padding_side == "left" and tokenizer.pad_token is None
