"""Circuits: head scores, direct logit attribution, activation and path patching, the IOI circuit's rules, the edge
graph with edge patching, EAP and EAP-IG, ACDC and reference circuits (lessons 02, 03, 06)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp_utils.core.lazy import lazy_names

# what the lessons import from this subpackage -> the module that defines it
NAMES = {
    "repeated_random_tokens": "heads",
    "EdgeGraph": "edge_graph",
}

if TYPE_CHECKING:  # for type checkers and editors; at run time each name is imported on first use
    from interp_utils.circuits.edge_graph import EdgeGraph
    from interp_utils.circuits.heads import repeated_random_tokens

__getattr__, __dir__ = lazy_names(__name__, NAMES)
