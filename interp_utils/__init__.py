"""Helpers shared by the interp-notebooks lessons, grouped as the course is:

- ``core``: run-time switches, hook names, model loading, footprint, plots, the reproduction table
- ``data``: IOI prompts and batches, the generated corpus, facts, token streams and activation buffers
- ``toy_models``: the toy models of superposition (lesson 01)
- ``circuits``: head scores, direct logit attribution, patching, the edge graph, ACDC and EAP, reference circuits
  (lessons 02, 03, 06)
- ``dictionaries``: SAEs, transcoders, cross-layer transcoders, their training, metrics and dashboards (04, 05)
- ``tracing``: the local replacement model, attribution and attribution graphs (05)
- ``probing``: probes and steering (07)
- ``models``: the bundled model's training script, the GPT-2 stand-in the tests run, the export to Hugging Face
  and the nnsight versions of the methods (lesson 08)
- ``course``: exercise checks, learner copies, the reproduce command, Colab set-up

Notebooks import modules by their short names (``from interp_utils import ioi, patching``), and the set-up and
report helpers every lesson uses by name (``from interp_utils import ReproductionTable, choose_model``): each is
loaded on first use. Importing the package loads only the model-loading and run-time helpers (and so torch and
TransformerLens), and changes no other library's settings.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp_utils.core.lazy import lazy_names
from interp_utils.core.loading import is_bundled, load_bundled, load_model
from interp_utils.core.runtime import fast_mode, get_device, param, set_seed

# short name -> the module it stands for
MODULES: dict[str, str] = {
    **{m: f"core.{m}" for m in ("runtime", "hooks", "loading", "metrics", "footprint", "plotting", "report")},
    **{m: f"data.{m}" for m in ("ioi", "corpus", "facts", "activations")},
    "superposition": "toy_models.superposition",
    **{
        m: f"circuits.{m}"
        for m in (
            "heads",
            "dla",
            "patching",
            "ioi_circuit",
            "edge_graph",
            "edge_attribution",
            "discovery",
            "evaluation",
        )
    },
    "reference_circuits": "circuits.reference_circuits",
    **{m: f"dictionaries.{m}" for m in ("sae", "sae_metrics", "training", "transcoders", "clt", "dashboards")},
    **{m: f"tracing.{m}" for m in ("attribution", "attribution_graph", "circuit_tracer_interop")},
    **{m: f"probing.{m}" for m in ("probes", "steering")},
    **{m: f"models.{m}" for m in ("bundled", "standin", "hf_export", "scaling")},
    **{m: f"course.{m}" for m in ("checks", "exercises", "reproduce", "colab")},
}

# what every lesson's set-up and closing table use, by name -> the module that defines it
NAMES: dict[str, str] = {
    "choose_model": "core.footprint",
    "shrink": "core.footprint",
    "model_label": "core.loading",
    "text_source": "core.loading",
    "Band": "core.report",
    "ReproductionTable": "core.report",
    "markdown_table": "core.report",
    "show_markdown": "core.report",
    "show_source": "core.report",
}

if TYPE_CHECKING:  # for type checkers and editors; at run time each is loaded on first use (core.lazy)
    from interp_utils.circuits import (
        discovery,
        dla,
        edge_attribution,
        edge_graph,
        evaluation,
        heads,
        ioi_circuit,
        patching,
        reference_circuits,
    )
    from interp_utils.core import footprint, hooks, loading, metrics, plotting, report, runtime
    from interp_utils.core.footprint import choose_model, shrink
    from interp_utils.core.loading import model_label, text_source
    from interp_utils.core.report import Band, ReproductionTable, markdown_table, show_markdown, show_source
    from interp_utils.data import activations, corpus, facts, ioi
    from interp_utils.dictionaries import clt, dashboards, sae, sae_metrics, training, transcoders
    from interp_utils.models import bundled, hf_export, scaling, standin
    from interp_utils.probing import probes, steering
    from interp_utils.toy_models import superposition
    from interp_utils.tracing import attribution, attribution_graph, circuit_tracer_interop


__getattr__, __dir__ = lazy_names(__name__, NAMES, MODULES)

__all__ = ["load_model", "load_bundled", "is_bundled", "fast_mode", "get_device", "param", "set_seed"]
