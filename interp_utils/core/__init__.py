"""Infrastructure every lesson uses: run-time switches, hook names, model loading, the footprint check, plots, the
reproduction table and the normalised metric."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp_utils.core.lazy import lazy_names

# what the lessons import from this subpackage -> the module that defines it
NAMES = {
    "BUNDLED_DIR": "loading",
    "hub_reachable": "loading",
}

if TYPE_CHECKING:  # for type checkers and editors; at run time each name is imported on first use
    from interp_utils.core.loading import BUNDLED_DIR, hub_reachable

__getattr__, __dir__ = lazy_names(__name__, NAMES)
