"""Run-time switches shared by every notebook: fast mode, parameters, device and seeds."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _flag(name: str, meaning: str) -> bool:
    value = os.environ.get(name, "0").strip().lower()
    if value not in _TRUE | _FALSE:
        raise ValueError(f"{name}={value!r}: use 1 ({meaning}) or 0.")
    return value in _TRUE


def fast_mode() -> bool:
    """True when ``INTERP_FAST`` is set (tests and CI): notebooks shrink their step counts."""
    return _flag("INTERP_FAST", "fast mode, for tests")


def strict_mode() -> bool:
    """True when ``INTERP_STRICT`` is set (tests and CI): a reproduction row that disagrees is an error."""
    return _flag("INTERP_STRICT", "fail on a reproduction row that disagrees with the paper")


def param(name: str, default):
    """A notebook parameter: the environment variable ``INTERP_<NAME>`` if set, else ``default``.

    The value is converted to the type of ``default`` (bool, int, float or str).
    """
    raw = os.environ.get(f"INTERP_{name.upper()}")
    if raw is None:
        return default
    try:
        if isinstance(default, bool):
            if raw.strip().lower() not in _TRUE | _FALSE:
                raise ValueError
            return raw.strip().lower() in _TRUE
        return type(default)(raw) if default is not None else raw
    except ValueError:
        raise ValueError(
            f"INTERP_{name.upper()}={raw!r} cannot be read as {type(default).__name__} (the default is {default!r})."
        ) from None


def get_device(prefer: str | None = None) -> torch.device:
    """The device to use: ``prefer`` (or ``INTERP_DEVICE``) if given, else CUDA, then MPS, then CPU."""
    prefer = prefer or os.environ.get("INTERP_DEVICE")
    if prefer:
        device = torch.device(prefer)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(f"Device {prefer!r} was asked for but CUDA is not available; use 'cpu'.")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


class Clock:
    """A stopwatch for work on ``device``: started when made, read with :meth:`seconds`. On CUDA it waits for the
    queued work before each reading (CUDA runs asynchronously, so a clock read without waiting would time only the
    launches), and before starting, so earlier work is not counted."""

    def __init__(self, device: str | torch.device) -> None:
        self.device = torch.device(device)
        self._wait()
        self.start = time.perf_counter()

    def _wait(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def seconds(self) -> float:
        """Seconds since the clock was made, the work queued on its device included."""
        self._wait()
        return time.perf_counter() - self.start


def timed(fn: Callable[[], T], device: str | torch.device) -> tuple[T, float]:
    """``fn()`` and the seconds it took on ``device`` (see :class:`Clock`)."""
    clock = Clock(device)
    result = fn()
    return result, clock.seconds()


def copies_per_pass(numbers_per_copy: int, max_elements: float) -> int:
    """How many copies of a batch one batched pass may hold, when each copy holds ``numbers_per_copy`` numbers and a
    pass at most ``max_elements`` (at least one: a single copy always runs)."""
    if numbers_per_copy <= 0:
        raise ValueError(f"A copy must hold some numbers, got {numbers_per_copy}.")
    return max(1, int(max_elements // numbers_per_copy))


def benchmark_device(device: str | torch.device) -> str:
    """What a benchmark ran on, in words: the GPU's name, or the number of CPU threads."""
    if torch.device(device).type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"{torch.get_num_threads()} CPU threads"


def peak_gpu_memory() -> int | None:
    """Bytes of CUDA memory this process has held at most (PyTorch's allocator), or None where CUDA is unused."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.max_memory_allocated())


def device_name() -> str:
    """What the notebook ran on, in words: "cpu" or the GPU's name."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return f"cuda ({torch.cuda.get_device_name()})"
    return "cpu"


def set_seed(seed: int = 0) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so a run can be repeated."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def quiet_progress() -> None:
    """Turn off tqdm's monitor thread, which refreshes bars from a background thread: in Jupyter kernels
    (ipykernel 7) it left notebook runs waiting forever for a finished cell. Bars still refresh from the loops.
    Every notebook calls this once; importing :mod:`interp_utils` changes no library's settings."""
    import tqdm

    tqdm.tqdm.monitor_interval = 0
