"""Model loading: a real TransformerLens model when it can be downloaded, the bundled one otherwise."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file
from transformer_lens import HookedTransformer, HookedTransformerConfig

BUNDLED_NAME = "bundled"
GPT2_NAMES = ("gpt2", "gpt2-small")  # what MODEL may say for GPT-2 small
BUNDLED_DIR = Path(__file__).resolve().parents[2] / "data" / "bundled-gpt2"
HUB_HOST = "huggingface.co"
TextSource = Literal["corpus", "hub"]  # where a model's text comes from: the generated corpus, or a hub data set


class BundledModelMissing(FileNotFoundError):
    """The bundled model's files are not where they should be."""


def hub_reachable(host: str = HUB_HOST, timeout: float = 3.0) -> bool:
    """Whether a TCP connection to the model hub opens within ``timeout`` seconds."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", ""):
        return False
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def banner(lines: list[str]) -> str:
    """A boxed message that stands out in a notebook's output."""
    width = max(len(line) for line in lines) + 4
    return "\n".join(["#" * width, *(f"# {line.ljust(width - 4)} #" for line in lines), "#" * width])


def load_bundled(
    path: Path | str = BUNDLED_DIR, device: str | torch.device | None = None, process_weights: bool = True
) -> HookedTransformer:
    """The project's small GPT-2-architecture model, from ``config.json``, ``model.safetensors`` and its tokenizer.

    Like ``HookedTransformer.from_pretrained`` for GPT-2, it folds LayerNorm weights into the next layer and
    centres the weights that write to the residual stream (same outputs; ``process_weights=False`` skips it).
    """
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    needed = ["config.json", "model.safetensors", "tokenizer.json"]
    missing = [name for name in needed if not (path / name).exists()]
    if missing:
        raise BundledModelMissing(
            f"The bundled model is incomplete: {', '.join(missing)} missing in {path}. "
            "Restore data/ from the repository (git checkout -- data) or retrain it with "
            "`python -m interp_utils.models.bundled train`."
        )
    cfg = HookedTransformerConfig(**json.loads((path / "config.json").read_text())["hooked_transformer_config"])
    if device is not None:
        cfg.device = str(device)
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(path))
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    model.load_state_dict(load_file(path / "model.safetensors"), strict=True)
    if process_weights:
        model.process_weights_(fold_ln=True, center_writing_weights=True, center_unembed=True)
    model.to(model.W_E.device if cfg.device is None else cfg.device)
    model.eval()
    return model


def load_model(name: str = "gpt2", device: str | torch.device | None = None, verbose: bool = True) -> HookedTransformer:
    """A TransformerLens model for ``name`` (e.g. "gpt2"), or the bundled model if it cannot be downloaded.

    ``name="bundled"`` asks for the bundled model directly. Falling back always prints a banner.
    """
    from interp_utils.core.runtime import get_device

    device = device if device is not None else get_device()
    if name == BUNDLED_NAME:
        model = load_bundled(device=device)
        if verbose:
            print(banner([f"Loaded the bundled model ({model.cfg.model_name}), as asked: MODEL='bundled'."]))
        return model
    width = None
    if name in GPT2_NAMES:  # the tests ask for a GPT-2 stand-in (interp_utils.models.standin) through the environment
        from interp_utils.models import standin

        width = standin.requested()
    if width is not None:
        model = standin.gpt2_standin(width, device=device)
        model.interp_standin = True  # type: ignore[assignment]  # read by is_standin
        print(
            banner(
                [
                    f"TEST STAND-IN for {name}: GPT-2 small's shape (width {width}) and tokenizer, RANDOM weights.",
                    f"Only the test suite loads it ({standin.ENV} is set). Its numbers mean nothing.",
                ]
            )
        )
        return model
    from transformer_lens.loading_from_pretrained import get_official_model_name

    try:
        official = get_official_model_name(name)
    except ValueError:
        raise ValueError(
            f"Unknown model name {name!r}. Use a TransformerLens model name such as 'gpt2' "
            f"(GPT-2 small) or 'bundled' for the model shipped in data/."
        ) from None
    if not hub_reachable() and not _in_hf_cache(official):
        model = load_bundled(device=device)
        print(
            banner(
                [
                    f"{name} could NOT be loaded: the model hub ({HUB_HOST}) is unreachable",
                    "and the model is not in the local Hugging Face cache.",
                    f"FALLING BACK to the bundled model: {model.cfg.model_name}",
                    f"({model.cfg.n_layers} layers, d_model={model.cfg.d_model}, trained on a generated corpus).",
                    "Numbers below are for this model, not for the paper's model.",
                ]
            )
        )
        return model
    model = HookedTransformer.from_pretrained(official, device=str(device))
    if verbose:
        print(f"Loaded {official} on {device}.")
    return model


def _in_hf_cache(official_name: str) -> bool:
    """Whether a model's config is already in the local Hugging Face cache (so it loads offline)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(official_name, "config.json"), str)
    except Exception:
        return False


def is_bundled(model: HookedTransformer) -> bool:
    """Whether ``model`` is the bundled model rather than a downloaded one."""
    return model.cfg.model_name.startswith("interp-")


def is_standin(model: HookedTransformer) -> bool:
    """Whether ``model`` is the tests' GPT-2 stand-in (random weights) rather than a real model."""
    return bool(getattr(model, "interp_standin", False))


def text_source(model: HookedTransformer) -> TextSource:
    """Where ``model``'s text comes from: the generated corpus for the bundled model (and the tests' GPT-2 stand-in,
    which reads it in GPT-2's tokens), a hub data set for a downloaded model. Pass it to
    :func:`interp_utils.data.activations.token_batches`."""
    return "corpus" if is_bundled(model) or is_standin(model) else "hub"


def model_label(model: HookedTransformer, asked: str) -> str:
    """The model's name for a report, saying when it stands in for a model ``asked`` for that could not be loaded."""
    fell_back = is_bundled(model) and asked != BUNDLED_NAME
    return model.cfg.model_name + (f" ({asked} could not be loaded)" if fell_back else "")
