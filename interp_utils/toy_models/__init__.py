"""Toy models: the models of Toy Models of Superposition (lesson 01)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from interp_utils.core.lazy import lazy_names

# what the lessons import from this subpackage -> the module that defines it
NAMES = {
    "AbsConfig": "superposition",
    "AbsModel": "superposition",
    "ToyConfig": "superposition",
    "ToyModel": "superposition",
    "train_toy_model": "superposition",
}

if TYPE_CHECKING:  # for type checkers and editors; at run time each name is imported on first use
    from interp_utils.toy_models.superposition import AbsConfig, AbsModel, ToyConfig, ToyModel, train_toy_model

__getattr__, __dir__ = lazy_names(__name__, NAMES)
