"""A TransformerLens model of GPT-2's architecture as a Hugging Face ``GPT2LMHeadModel``: the bridge that lets the
suite's models (the bundled model, the tests' GPT-2 stand-in) run under Hugging Face tools and nnsight.

The conversion is exact: the Hugging Face model computes the same residual stream and the same logits as the
TransformerLens model it came from (a test checks 1e-4 on the corpus). Two things of the bundled model have no place
in a plain ``GPT2LMHeadModel`` and are kept all the same:

- an **unembedding bias** ``b_U`` (the bundled model's is as large as 3.3): ``lm_head`` is made a biased
  ``nn.Linear``;
- **untied embeddings** (``W_U`` is not ``W_E``ᵀ): the config says ``tie_word_embeddings=False``.

``save_hf_gpt2`` writes a folder that Hugging Face tools open (weights, config, tokenizer). A plain
``GPT2LMHeadModel.from_pretrained(folder)`` builds an unbiased ``lm_head`` and drops ``lm_head.bias`` with a warning
about unused weights: every logit then lacks its token's ``b_U``, which changes the predictions (``b_U`` differs from
token to token). ``load_hf_gpt2(folder)`` loads the folder and puts the bias back.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformer_lens import HookedTransformer

ARCHITECTURE = "GPT2LMHeadModel"
BIAS_FILE = "lm_head_bias.safetensors"  # the unembedding bias, beside the weights (also inside them)


def _check_gpt2_shape(model: HookedTransformer) -> None:
    cfg = model.cfg
    wrong = []
    if cfg.positional_embedding_type != "standard":
        wrong.append(f"positional embeddings {cfg.positional_embedding_type!r} (GPT-2's are learned: 'standard')")
    if cfg.normalization_type not in ("LN", "LNPre"):
        wrong.append(f"normalisation {cfg.normalization_type!r} (GPT-2 uses LayerNorm)")
    if cfg.d_head * cfg.n_heads != cfg.d_model:
        wrong.append(f"d_head × n_heads = {cfg.d_head * cfg.n_heads} ≠ d_model {cfg.d_model}")
    if cfg.act_fn not in ("gelu_new", "gelu", "relu"):
        wrong.append(f"activation {cfg.act_fn!r}")
    if cfg.attn_only or cfg.parallel_attn_mlp or cfg.n_key_value_heads not in (None, cfg.n_heads):
        wrong.append("no MLP, parallel attention and MLP, or grouped keys and values")
    if cfg.use_attn_scale is False or cfg.attn_scale != cfg.d_head**0.5:
        wrong.append(f"attention scale {cfg.attn_scale} (GPT-2 divides by √d_head)")
    if cfg.gated_mlp:
        wrong.append("a gated MLP (W_gate; GPT-2's MLP is W_in, activation, W_out)")
    if getattr(cfg, "num_experts", None):
        wrong.append(f"a mixture of {cfg.num_experts} experts")
    flags = {  # settings with no counterpart in a GPT2LMHeadModel, each with what it means
        "use_local_attn": "local (windowed) attention",
        "use_qk_norm": "normalised queries and keys",
        "use_normalization_before_and_after": "a LayerNorm after each sublayer too",
        "post_embedding_ln": "a LayerNorm after the embeddings",
        "scale_attn_by_inverse_layer_idx": "attention scaled by the inverse layer index",
        "final_rms": "an RMSNorm at the end",
    }
    wrong += [what for flag, what in flags.items() if getattr(cfg, flag, False)]
    if getattr(cfg, "attention_dir", "causal") != "causal":
        wrong.append(f"{cfg.attention_dir} attention (GPT-2's is causal)")
    soft_caps = (getattr(cfg, "attn_scores_soft_cap", -1.0), getattr(cfg, "output_logits_soft_cap", -1.0))
    if any(cap > 0 for cap in soft_caps):
        wrong.append("soft-capped attention scores or logits")
    if wrong:
        raise ValueError(f"{cfg.model_name} does not have GPT-2's architecture: {'; '.join(wrong)}.")


def hf_config(model: HookedTransformer) -> Any:
    """The ``GPT2Config`` of a TransformerLens model with GPT-2's architecture (embeddings untied)."""
    from transformers import GPT2Config

    _check_gpt2_shape(model)
    cfg, tokenizer = model.cfg, model.tokenizer
    eos = tokenizer.eos_token_id if tokenizer is not None and tokenizer.eos_token_id is not None else 0
    bos = tokenizer.bos_token_id if tokenizer is not None and tokenizer.bos_token_id is not None else eos
    return GPT2Config(
        vocab_size=cfg.d_vocab,
        n_positions=cfg.n_ctx,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layers,
        n_head=cfg.n_heads,
        n_inner=cfg.d_mlp,
        activation_function=cfg.act_fn,
        layer_norm_epsilon=cfg.eps,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        tie_word_embeddings=False,
        bos_token_id=bos,
        eos_token_id=eos,
        architectures=[ARCHITECTURE],
    )


def _layer_norm(target: Any, source: Any) -> None:
    """Copy a TransformerLens LayerNorm (``w``, ``b``), or set an LNPre's (folded: no weights) to the identity's."""
    if hasattr(source, "w"):
        target.weight.copy_(source.w)
        target.bias.copy_(source.b)
    else:
        target.weight.fill_(1.0)
        target.bias.zero_()


@torch.no_grad()
def to_hf_gpt2(model: HookedTransformer) -> Any:
    """A ``GPT2LMHeadModel`` computing what ``model`` computes: same residual stream, same logits (to float error).

    Works from any TransformerLens model with GPT-2's architecture, its weights processed or not (a folded LayerNorm
    becomes one with weight 1 and bias 0). Use the bundled model's unprocessed weights
    (``load_bundled(process_weights=False)``) to get its residual stream as trained, uncentred. ``lm_head`` carries
    the unembedding bias ``b_U`` (a plain GPT-2 head has none) and the embeddings are untied; see the module's
    docstring for what a plain ``from_pretrained`` of a saved copy loses.
    """
    from transformers import GPT2LMHeadModel

    hf: Any = GPT2LMHeadModel(hf_config(model))
    hf = hf.to(device=model.W_E.device, dtype=model.W_E.dtype)
    hf.lm_head = nn.Linear(model.cfg.d_model, model.cfg.d_vocab, bias=True).to(hf.transformer.wte.weight)
    d = model.cfg.d_model
    hf.transformer.wte.weight.copy_(model.W_E)
    hf.transformer.wpe.weight.copy_(model.W_pos)
    blocks: list[Any] = list(model.blocks)
    for block, hf_block in zip(blocks, hf.transformer.h, strict=True):
        attn = block.attn
        # TransformerLens keeps [head, d_model, d_head]; GPT-2's Conv1D keeps [d_model, 3 · d_model] (x @ W + b)
        qkv = [w.permute(1, 0, 2).reshape(d, d) for w in (attn.W_Q, attn.W_K, attn.W_V)]
        hf_block.attn.c_attn.weight.copy_(torch.cat(qkv, dim=1))
        hf_block.attn.c_attn.bias.copy_(torch.cat([b.reshape(d) for b in (attn.b_Q, attn.b_K, attn.b_V)]))
        hf_block.attn.c_proj.weight.copy_(attn.W_O.reshape(d, d))
        hf_block.attn.c_proj.bias.copy_(attn.b_O)
        hf_block.mlp.c_fc.weight.copy_(block.mlp.W_in)
        hf_block.mlp.c_fc.bias.copy_(block.mlp.b_in)
        hf_block.mlp.c_proj.weight.copy_(block.mlp.W_out)
        hf_block.mlp.c_proj.bias.copy_(block.mlp.b_out)
        _layer_norm(hf_block.ln_1, block.ln1)
        _layer_norm(hf_block.ln_2, block.ln2)
    _layer_norm(hf.transformer.ln_f, model.ln_final)
    hf.lm_head.weight.copy_(model.W_U.T)
    hf.lm_head.bias.copy_(model.b_U)
    hf.eval()
    return hf


def hf_tokenizer(model: HookedTransformer) -> Any:
    """A copy of ``model``'s tokenizer, set up for batches in Hugging Face tools (its end-of-text token pads, on the
    right); ``model.tokenizer`` itself is left as it was."""
    if model.tokenizer is None:
        raise ValueError(f"{model.cfg.model_name} has no tokenizer to export.")
    tokenizer = copy.deepcopy(model.tokenizer)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


def save_hf_gpt2(model: HookedTransformer, folder: Path | str) -> Path:
    """Write ``model`` as a Hugging Face model folder (config, safetensors weights, tokenizer), plus its unembedding
    bias on its own (``lm_head_bias.safetensors``). Open it with :func:`load_hf_gpt2`; a plain
    ``GPT2LMHeadModel.from_pretrained`` drops the bias (module docstring)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    hf = to_hf_gpt2(model)
    hf.save_pretrained(folder)
    hf_tokenizer(model).save_pretrained(folder)
    save_file({"bias": hf.lm_head.bias.detach().cpu().contiguous()}, str(folder / BIAS_FILE))
    return folder


@torch.no_grad()
def load_hf_gpt2(folder: Path | str, device: str | torch.device = "cpu") -> Any:
    """A folder written by :func:`save_hf_gpt2` as a ``GPT2LMHeadModel`` with its unembedding bias put back."""
    from safetensors.torch import load_file
    from transformers import GPT2LMHeadModel
    from transformers.utils import logging

    folder = Path(folder)
    level = logging.get_verbosity()
    logging.set_verbosity_error()  # the warning that lm_head.bias is unused: it is put back below
    try:
        hf = GPT2LMHeadModel.from_pretrained(folder)
    finally:
        logging.set_verbosity(level)
    bias = load_file(str(folder / BIAS_FILE))["bias"]
    head = nn.Linear(hf.config.n_embd, hf.config.vocab_size, bias=True).to(hf.lm_head.weight)
    head.weight.copy_(hf.lm_head.weight)
    head.bias.copy_(bias)
    hf.lm_head = head
    return hf.to(device).eval()
