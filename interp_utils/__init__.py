"""Helpers shared by the interp-notebooks lessons: loading, run-time switches, metrics, plots, toy models."""

import tqdm as _tqdm

from interp_utils.loading import is_bundled, load_bundled, load_model
from interp_utils.runtime import fast_mode, get_device, param, set_seed

# tqdm's monitor thread refreshes bars from a background thread; in Jupyter kernels (ipykernel 7) that
# left notebook runs waiting forever for a finished cell. Bars still refresh from the training loops.
_tqdm.tqdm.monitor_interval = 0

__all__ = ["load_model", "load_bundled", "is_bundled", "fast_mode", "get_device", "param", "set_seed"]
