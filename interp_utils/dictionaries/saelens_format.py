"""An SAE of this suite in SAELens's on-disk format: ``cfg.json`` and ``sae_weights.safetensors`` as SAELens 6's
``SAE.save_model`` writes them, so that ``sae_lens.SAE.load_from_disk(path)`` loads it and reconstructs exactly as the
suite's SAE does.

Each architecture loads as the SAELens inference SAE that runs it: ``relu`` (either L1 recipe) as ``standard``
(``StandardSAE``), ``topk`` as ``topk`` (``TopKSAE``, decoder norms not rescaled), ``jumprelu`` as ``jumprelu``
(``JumpReLUSAE``, its learned thresholds); ``batchtopk`` and ``matryoshka`` also as ``jumprelu``, every latent's
threshold the one estimated in training. This is what SAELens itself does: it registers no inference class for
BatchTopK or Matryoshka and saves them as JumpReLU SAEs (``metadata.training_architecture`` keeps the name).

The suite's input scale is folded into the weights: the SAE encodes x / s and decodes in scaled units times s, which
is (x - s b_dec) @ (W_enc / s) + b_enc and f @ (s W_dec) + s b_dec, so the latents, and with them the TopK choice and
the thresholds, are unchanged. Transcoders (``d_out`` set) are not covered.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from interp_utils.dictionaries.sae import SAE

CFG_FILENAME = "cfg.json"  # sae_lens.constants.SAE_CFG_FILENAME
WEIGHTS_FILENAME = "sae_weights.safetensors"  # sae_lens.constants.SAE_WEIGHTS_FILENAME
SAELENS_ARCHITECTURE = {
    "relu": "standard",
    "topk": "topk",
    "jumprelu": "jumprelu",
    "batchtopk": "jumprelu",
    "matryoshka": "jumprelu",
}


def _check(sae: SAE) -> None:
    if sae.is_transcoder:
        raise ValueError("Only autoencoders (d_out unset) are written in SAELens's SAE format, not transcoders.")
    if sae.in_scale.item() != sae.out_scale.item():
        raise ValueError(f"The input and output scales differ ({sae.in_scale.item()} vs {sae.out_scale.item()}).")


def saelens_config(sae: SAE, metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``cfg.json`` SAELens 6 writes for the matching inference SAE; ``metadata`` (e.g. ``model_name``,
    ``hook_name``) is added to its metadata block."""
    import sae_lens

    _check(sae)
    cfg: dict[str, Any] = {
        "d_in": sae.cfg.d_in,
        "d_sae": sae.cfg.d_sae,
        "dtype": str(sae.W_dec.dtype).removeprefix("torch."),
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "none",
        "reshape_activations": "none",
        "metadata": {
            "sae_lens_version": sae_lens.__version__,  # without it SAELens reads the config as pre-6.0
            "training_architecture": sae.cfg.architecture,
            "trained_with": "interp_utils.dictionaries.sae",
            **(metadata or {}),
        },
    }
    if sae.cfg.architecture == "topk":
        cfg |= {"k": sae.cfg.k, "rescale_acts_by_decoder_norm": False}
    if sae.cfg.batch_topk:
        cfg["metadata"]["training_k"] = sae.cfg.k
    if sae.cfg.architecture == "matryoshka":
        cfg["metadata"]["matryoshka_widths"] = list(sae.cfg.prefixes)
    cfg["architecture"] = SAELENS_ARCHITECTURE[sae.cfg.architecture]
    return cfg


@torch.no_grad()
def saelens_state_dict(sae: SAE) -> dict[str, Tensor]:
    """SAELens's weights (W_enc [d_in, d_sae], W_dec [d_sae, d_in], b_enc, b_dec, and ``threshold`` [d_sae] for the
    JumpReLU-run architectures), with the input scale folded in."""
    _check(sae)
    s = sae.in_scale
    weights = {
        "W_enc": sae.W_enc / s,
        "b_enc": sae.b_enc.clone(),
        "W_dec": sae.W_dec * s,
        "b_dec": sae.b_dec * s,
    }
    if sae.cfg.architecture == "jumprelu":
        weights["threshold"] = sae.threshold.clone()
    elif sae.cfg.batch_topk:
        weights["threshold"] = sae.threshold.expand(sae.cfg.d_sae).clone()
    return {name: w.detach().cpu().contiguous() for name, w in weights.items()}


def save_saelens(sae: SAE, path: str | Path, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``sae`` to the folder ``path`` as SAELens does; load it with ``sae_lens.SAE.load_from_disk(path)``."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    save_file(saelens_state_dict(sae), path / WEIGHTS_FILENAME)
    (path / CFG_FILENAME).write_text(json.dumps(saelens_config(sae, metadata)))
    return path


def to_saelens(sae: SAE, device: str | torch.device = "cpu") -> Any:
    """The SAELens inference SAE (``sae_lens.SAE``) equivalent to ``sae``, built in memory from the same config and
    weights :func:`save_saelens` writes."""
    from sae_lens import SAE as LensSAE

    cfg = saelens_config(sae)
    lens = LensSAE.from_dict(cfg | {"device": str(device)})
    lens.load_state_dict({name: w.to(device) for name, w in saelens_state_dict(sae).items()})
    return lens
