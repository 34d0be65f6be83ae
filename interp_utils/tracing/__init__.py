"""Tracing: the local replacement model, attribution, and attribution graphs with pruning and scores (lesson 05)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp_utils.core.lazy import lazy_names

# what the lessons import from this subpackage -> the module that defines it
NAMES = {
    "LocalReplacement": "attribution",
    "Pruned": "attribution_graph",
    "attribute": "attribution",
    "collapse": "attribution_graph",
    "graph_scores": "attribution_graph",
    "normalise_rows": "attribution_graph",
    "path_length": "attribution_graph",
    "permuted_edges": "attribution_graph",
    "plot_collapsed": "attribution_graph",
    "plot_graph": "attribution_graph",
    "prune": "attribution_graph",
}

if TYPE_CHECKING:  # for type checkers and editors; at run time each name is imported on first use
    from interp_utils.tracing.attribution import LocalReplacement, attribute
    from interp_utils.tracing.attribution_graph import (
        Pruned,
        collapse,
        graph_scores,
        normalise_rows,
        path_length,
        permuted_edges,
        plot_collapsed,
        plot_graph,
        prune,
    )

__getattr__, __dir__ = lazy_names(__name__, NAMES)
