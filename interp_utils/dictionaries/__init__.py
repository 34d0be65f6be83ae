"""Dictionaries: sparse autoencoders, per-layer and cross-layer transcoders, their metrics and dashboards (lessons 04,
05)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp_utils.core.lazy import lazy_names

# what the lessons import from this subpackage -> the module that defines it
NAMES = {
    "SAE": "sae",
    "SAEConfig": "sae",
    "train_sae": "sae",
    "ce_loss_recovered": "sae_metrics",
    "evaluate_sae": "sae_metrics",
    "feature_recovery": "sae_metrics",
    "latent_activations": "sae_metrics",
    "loss_baselines": "sae_metrics",
    "reinitialised_decoder": "sae_metrics",
    "RECONSTRUCTION_BAND": "sae_metrics",
    "top_contexts": "sae_metrics",
    "CLTConfig": "clt",
    "clt_hooks": "clt",
    "train_clt": "clt",
    "feature_dashboards": "dashboards",
    "replacement_losses": "transcoders",
    "train_transcoders": "transcoders",
    "save_saelens": "saelens_format",
    "to_saelens": "saelens_format",
}

if TYPE_CHECKING:  # for type checkers and editors; at run time each name is imported on first use
    from interp_utils.dictionaries.clt import CLTConfig, clt_hooks, train_clt
    from interp_utils.dictionaries.dashboards import feature_dashboards
    from interp_utils.dictionaries.sae import SAE, SAEConfig, train_sae
    from interp_utils.dictionaries.sae_metrics import (
        RECONSTRUCTION_BAND,
        ce_loss_recovered,
        evaluate_sae,
        feature_recovery,
        latent_activations,
        loss_baselines,
        reinitialised_decoder,
        top_contexts,
    )
    from interp_utils.dictionaries.saelens_format import save_saelens, to_saelens
    from interp_utils.dictionaries.transcoders import replacement_losses, train_transcoders

__getattr__, __dir__ = lazy_names(__name__, NAMES)
