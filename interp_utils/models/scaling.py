"""Lesson 08 (scaling up): the suite's methods written with nnsight, and the models they run on.

nnsight wraps a PyTorch model (here a Hugging Face one) and lets code inside ``with lm.trace(tokens):`` read and
overwrite any module's inputs and outputs; the same code runs on a model on this machine or, with ``remote=True``,
on NDIF's servers, which host models far too large for it. This module gives

- :func:`twins`: the lesson's pair of models, a TransformerLens model and the same weights as an nnsight
  ``LanguageModel`` (the bundled model converted by :mod:`interp_utils.models.hf_export`, GPT-2 small from the hub,
  the tests' stand-in converted), or an NDIF model alone;
- :func:`require_ndif_key`: the check that stops a remote run before any work when ``NDIF_API_KEY`` is unset;
- the reference nnsight versions of the lesson's exercises (final logits, the residual stream entering each layer,
  patching it, steering), which the checks and tests compare with the TransformerLens implementations.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from interp_utils.core.loading import GPT2_NAMES, banner, hub_reachable, load_bundled
from interp_utils.models.hf_export import hf_tokenizer, to_hf_gpt2

NDIF_KEY_ENV = "NDIF_API_KEY"
NDIF_LOGIN = "https://login.ndif.us"
GPT2_HUB = "openai-community/gpt2"  # GPT-2 small's name on the Hugging Face hub (nnsight loads it from there)


class NDIFKeyMissing(RuntimeError):
    """A remote run was asked for (``REMOTE = True``, ``INTERP_REMOTE=1``) but ``NDIF_API_KEY`` is not set."""


def require_ndif_key() -> str:
    """The NDIF API key: ``NDIF_API_KEY`` from the environment, or the key nnsight already holds
    (``nnsight.CONFIG.API.APIKEY``, which nnsight fills from ``NDIF_API_KEY`` or a Colab secret of that name when it
    is imported). It is handed to nnsight in memory only (``CONFIG.API.APIKEY = key``), never written to nnsight's
    ``config.yaml`` as ``CONFIG.set_default_api_key`` would do. Raises :class:`NDIFKeyMissing`, naming
    ``NDIF_API_KEY``, when there is none."""
    from nnsight import CONFIG

    key = os.environ.get(NDIF_KEY_ENV, "").strip() or str(CONFIG.API.APIKEY or "").strip()
    if not key:
        raise NDIFKeyMissing(
            f"REMOTE = True runs this notebook on NDIF's servers, which need an API key: set the environment variable "
            f"{NDIF_KEY_ENV} (get a key at {NDIF_LOGIN}) and restart, or set REMOTE = False (INTERP_REMOTE=0) to run "
            "on this machine. Nothing has run yet."
        )
    CONFIG.API.APIKEY = key  # in memory, for this process only
    return key


def nnsight_versions() -> dict[str, str]:
    """The nnsight and Python versions of this environment and of NDIF's servers, from nnsight's own environment
    report (``nnsight.ndif.get_local_env`` and ``get_remote_env``, what ``nnsight.compare()`` prints); needs the
    network. A value NDIF does not report is "unknown"."""
    from nnsight.ndif import get_local_env, get_remote_env

    try:
        remote = get_remote_env()
    except Exception as error:  # NDIF unreachable: say so, the remote run will tell the rest
        print(f"NDIF's environment could not be fetched ({error}).")
        remote = {}
    envs = {"local": get_local_env(), "NDIF": remote}

    def pick(env: dict, key: str) -> str:
        value = env.get("packages", {}).get(key) if key == "nnsight" else env.get(key)
        return str(value).split()[0] if value else "unknown"

    return {f"{side} {key}": pick(env, key) for side, env in envs.items() for key in ("nnsight", "python_version")}


@dataclass
class Twins:
    """The lesson's models: ``tl`` (TransformerLens; None for a remote model) and ``lm`` (nnsight) with the same
    weights, the tokeniser side ``tok`` that builds IOI batches (``tl`` itself, or a stand-in for a remote model),
    and ``label``, the model's name for the report."""

    tl: HookedTransformer | None
    lm: Any
    tok: Any
    label: str
    remote: bool = False


class TokenizerModel:
    """What :func:`interp_utils.data.ioi.ioi_batch` asks of a model (``to_tokens``, ``to_single_token``, its
    ``tokenizer`` and ``cfg``), from a Hugging Face tokenizer alone: IOI batches for a model that runs remotely."""

    def __init__(self, tokenizer: Any, name: str) -> None:
        tokenizer = copy.deepcopy(tokenizer)  # the caller's tokenizer is left as it was
        if tokenizer.pad_token is None:  # right padding with the end-of-text token, as TransformerLens sets it
            tokenizer.pad_token = tokenizer.eos_token
        self.tokenizer = tokenizer
        self.cfg = SimpleNamespace(model_name=name, device="cpu")

    def to_tokens(self, text: str, prepend_bos: bool = True) -> Tensor:
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        bos = self.tokenizer.bos_token_id
        return torch.tensor([([bos] if prepend_bos and bos is not None else []) + ids])

    def to_single_token(self, text: str) -> int:
        ids = self.to_tokens(text, prepend_bos=False)[0]
        if len(ids) != 1:
            raise ValueError(f"{text!r} is {len(ids)} tokens for {self.cfg.model_name}, not one.")
        return int(ids[0])


def _wrap(tl: HookedTransformer) -> Any:
    from nnsight import LanguageModel

    return LanguageModel(to_hf_gpt2(tl), tokenizer=hf_tokenizer(tl))


def twins(model: str, device: str | torch.device = "cpu", remote: bool = False, remote_model: str = "") -> Twins:
    """The models of lesson 08 for ``model`` ("gpt2" or "bundled"), or ``remote_model`` on NDIF when ``remote``.

    GPT-2 small (where the hub is reachable) is loaded twice, as TransformerLens's unprocessed model and as nnsight's
    ``LanguageModel`` of the hub's weights; the bundled model, with its unprocessed weights, and the tests' stand-in
    are converted (:func:`interp_utils.models.hf_export.to_hf_gpt2`). Offline, or when either download fails, GPT-2
    falls back to the bundled model with a banner, as :func:`interp_utils.core.loading.load_model` does."""
    from nnsight import LanguageModel

    if remote:
        require_ndif_key()
        lm = LanguageModel(remote_model)  # the weights stay on NDIF; only the config and tokenizer come here
        return Twins(None, lm, TokenizerModel(lm.tokenizer, remote_model), f"{remote_model} (NDIF)", remote=True)
    if model in GPT2_NAMES:
        from interp_utils.models import standin

        if standin.requested() is not None:  # the tests: the stand-in, converted like the bundled model
            from interp_utils.core.loading import load_model

            tl = load_model(model, device=device)
            return Twins(tl, _wrap(tl), tl, "gpt2")
        why = "the model hub is unreachable"
        if hub_reachable():
            try:  # both downloads: any failure (a partial download, a cache error, the hub refusing) falls back
                tl = HookedTransformer.from_pretrained_no_processing("gpt2", device=str(device))
                lm = LanguageModel(GPT2_HUB, device_map=str(device), dispatch=True)
                return Twins(tl, lm, tl, "gpt2")
            except Exception as error:  # any failed load falls back, with the reason in the banner
                why = f"{type(error).__name__}: {(str(error).splitlines() or ['no message'])[0][:160]}"
        lines = [f"{model} could NOT be loaded ({why}).",
                 "FALLING BACK to the bundled model (its unprocessed weights, converted for nnsight)."]  # fmt: skip
        print(banner(lines))
    elif model != "bundled":
        raise ValueError(f"MODEL={model!r}: use 'gpt2' or 'bundled' (or REMOTE = True with REMOTE_MODEL).")
    tl = load_bundled(device=device, process_weights=False)
    label = tl.cfg.model_name + ("" if model == "bundled" else f" ({model} could not be loaded)")
    return Twins(tl, _wrap(tl), tl, label)


def blocks(lm: Any) -> Any:
    """The list of transformer blocks of an nnsight ``LanguageModel``: ``transformer.h`` for GPT-2,
    ``model.layers`` for Llama, Mistral, Qwen, Gemma and most models NDIF hosts.

    Call it **before** ``with lm.trace(...)``, never inside: nnsight sends the body of a remote trace to NDIF with
    cloudpickle, which refers to a function of an installed package by its module's name, so a call to
    ``scaling.blocks`` inside the body would make the server ``import interp_utils`` (``ModuleNotFoundError``). The
    list it returns is part of the model, which the server has."""
    inner = lm._model if hasattr(lm, "_model") else lm
    if hasattr(inner, "transformer") and hasattr(inner.transformer, "h"):
        return lm.transformer.h
    if hasattr(inner, "model") and hasattr(inner.model, "layers"):
        return lm.model.layers
    raise ValueError(f"No list of blocks found in {type(inner).__name__}: give it to the functions yourself.")


def n_layers(lm: Any) -> int:
    return len(blocks(lm))


# ------------------------------------------------------------------ the reference answers to the lesson's exercises


def final_logits(
    lm: Any, tokens: Int[Tensor, "batch pos"], end: Int[Tensor, " batch"], remote: bool = False
) -> Float[Tensor, "batch vocab"]:
    """The logits at each row's position ``end`` (its last real token), from one nnsight trace."""
    from nnsight import save  # the function, not .save(): circuit-tracer turns the method off (PYMOUNT)

    rows = torch.arange(len(tokens))
    with torch.no_grad(), lm.trace(tokens, remote=remote):
        out = save(lm.output.logits[rows, end])
    return out.detach().float().cpu()


def resid_pre(
    lm: Any, tokens: Int[Tensor, "batch pos"], at: Int[Tensor, " batch"], remote: bool = False
) -> Float[Tensor, "batch layer d_model"]:
    """The residual stream entering each block (its input: TransformerLens's ``resid_pre``) at one position per row."""
    from nnsight import save  # the function, not .save(): circuit-tracer turns the method off (PYMOUNT)

    rows, saved = torch.arange(len(tokens)), []
    layers = blocks(lm)  # before the trace: its body must not call into interp_utils (see ``blocks``)
    with torch.no_grad(), lm.trace(tokens, remote=remote):
        for block in layers:
            saved.append(save(block.input[rows, at]))
    return torch.stack([s.detach().float().cpu() for s in saved], 1)


def patch_resid(
    lm: Any,
    tokens: Int[Tensor, "batch pos"],
    clean: Float[Tensor, "batch d_model"],
    layer: int,
    at: Int[Tensor, " batch"],
    end: Int[Tensor, " batch"],
    remote: bool = False,
) -> Float[Tensor, "batch vocab"]:
    """Run ``tokens`` with the stream entering ``layer`` at each row's position ``at`` replaced by ``clean`` (that
    row's clean stream there); the logits at each row's ``end``."""
    from nnsight import save  # the function, not .save(): circuit-tracer turns the method off (PYMOUNT)

    rows, block = torch.arange(len(tokens)), blocks(lm)[layer]  # before the trace (see ``blocks``)
    with torch.no_grad(), lm.trace(tokens, remote=remote):
        stream = block.input
        stream[rows, at] = clean.to(stream.device, stream.dtype)
        out = save(lm.output.logits[rows, end])
    return out.detach().float().cpu()


def steer(
    lm: Any,
    tokens: Int[Tensor, "batch pos"],
    layer: int,
    vector: Float[Tensor, " d_model"],
    alpha: float,
    end: Int[Tensor, " batch"],
    remote: bool = False,
) -> Float[Tensor, "batch vocab"]:
    """Run ``tokens`` with ``alpha · vector`` added to the stream entering ``layer`` at every position after BOS
    (what :func:`interp_utils.probing.steering.add_hooks` does); the logits at each row's ``end``."""
    from nnsight import save  # the function, not .save(): circuit-tracer turns the method off (PYMOUNT)

    rows, block = torch.arange(len(tokens)), blocks(lm)[layer]  # before the trace (see ``blocks``)
    with torch.no_grad(), lm.trace(tokens, remote=remote):
        stream = block.input
        stream[:, 1:] += alpha * vector.to(stream.device, stream.dtype)
        out = save(lm.output.logits[rows, end])
    return out.detach().float().cpu()


# ------------------------------------------------------------------ the TransformerLens twins, for comparisons


@torch.inference_mode()
def tl_final_logits(
    model: HookedTransformer, tokens: Int[Tensor, "batch pos"], end: Int[Tensor, " batch"], fwd_hooks=()
) -> Float[Tensor, "batch vocab"]:
    """TransformerLens's logits at each row's ``end``, with hooks."""
    logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))
    return logits[torch.arange(len(tokens)), end].float().cpu()
