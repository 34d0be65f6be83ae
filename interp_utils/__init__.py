"""Helpers shared by the interp-notebooks lessons: loading, run-time switches, metrics, plots, toy models."""

from interp_utils.loading import is_bundled, load_bundled, load_model
from interp_utils.runtime import fast_mode, get_device, param, set_seed

__all__ = ["load_model", "load_bundled", "is_bundled", "fast_mode", "get_device", "param", "set_seed"]
