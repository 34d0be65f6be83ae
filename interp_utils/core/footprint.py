"""What each notebook needs on GPT-2 small, as ``benchmarks/footprint.py`` measured it, and whether this machine has it.

The measurements live in ``data/footprint.json`` (the benchmark writes it); a notebook asks :func:`choose_model`
before loading GPT-2, and on a machine too small for it (Binder's 2 GB, for one) says so and runs on the bundled
model instead of failing ten minutes in.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from interp_utils.core.loading import GPT2_NAMES, banner

FOOTPRINT = Path(__file__).resolve().parents[2] / "data" / "footprint.json"
CHECK = "INTERP_MEMORY_CHECK"  # 0: load GPT-2 whatever this machine's memory
MIN_FRACTION = 0.05  # below this share of its full-mode budgets a notebook on GPT-2 shows nothing worth the wait


def measured(path: Path = FOOTPRINT) -> dict:
    """The footprint benchmark's results: machine, date, commit, and per notebook its full-mode needs."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run python benchmarks/footprint.py to measure the notebooks.")
    return json.loads(path.read_text())


def available_memory() -> int | None:
    """Bytes of RAM this process may use: the container's limit (cgroup v2 or v1) if lower than the machine's
    memory, else the machine's; None where neither can be read."""
    sizes = []
    if hasattr(os, "sysconf") and "SC_PHYS_PAGES" in os.sysconf_names:
        sizes.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    for limit in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            value = Path(limit).read_text().strip()
        except OSError:
            continue
        if value.isdigit() and int(value) < 2**60:  # "max", or v1's huge number: no limit
            sizes.append(int(value))
    return min(sizes) if sizes else None


def share_that_fits(peak_gb_fit: list[float], room_gb: float) -> float:
    """The largest fraction s (0 to 1) of the full-mode budgets whose peak memory a + b s (GB) fits in ``room_gb``."""
    a, b = peak_gb_fit
    if room_gb < a:
        return 0.0
    return 1.0 if b <= 0 else min(1.0, (room_gb - a) / b)


def _needs(result: dict, notebook: str) -> dict:
    needs = result["notebooks"]
    if notebook not in needs:
        known = ", ".join(sorted(needs))
        raise KeyError(f"No footprint measured for {notebook!r} (measured: {known}); run benchmarks/footprint.py.")
    return needs[notebook]


def _affordable(result: dict, notebook: str, device: str | torch.device) -> float:
    fit, load = _needs(result, notebook)["peak_gb_fit"], result["gpt2_load_bytes"] / 1e9
    ram, on_gpu = available_memory(), torch.device(device).type == "cuda"
    if ram is not None and ram / 1e9 < load:
        return 0.0
    if on_gpu:  # the tensors live in GPU memory: the kernel's peak less an idle kernel's
        idle = result["idle_kernel_bytes"] / 1e9
        gpu = torch.cuda.get_device_properties(torch.device(device)).total_memory / 1e9
        return share_that_fits([fit[0] - idle, fit[1]], gpu)
    return 1.0 if ram is None else share_that_fits(fit, ram / 1e9)


def affordable(notebook: str, device: str | torch.device = "cpu", path: Path = FOOTPRINT) -> float:
    """The largest fraction (0 to 1) of ``notebook``'s full-mode budgets that this machine holds on GPT-2, by its
    measured peak memory (a + b s at fraction s): in RAM on a CPU; on a GPU, the tensors in GPU memory and the
    loading peak in RAM. 1 where the memory cannot be read."""
    return _affordable(measured(path), notebook, device)


def _checked(model: str) -> bool:
    return model in GPT2_NAMES and os.environ.get(CHECK, "1").strip() != "0"


def choose_model(model: str, notebook: str, device: str | torch.device = "cpu", path: Path = FOOTPRINT) -> str:
    """``model``, unless it is GPT-2 and this machine cannot hold ``notebook`` on it even with cut budgets (below
    ``MIN_FRACTION`` of full mode): then ``"bundled"``, with a banner that gives the figures.
    ``INTERP_MEMORY_CHECK=0`` skips the check."""
    if not _checked(model):
        return model
    result = measured(path)
    need = _needs(result, notebook)
    if _affordable(result, notebook, device) >= MIN_FRACTION:
        print(
            f"{notebook} on GPT-2 small in full mode takes about {need['cpu_minutes']:.0f} minutes on a 2-core CPU and "
            f"about {need['t4_minutes']:.0f} on a Colab T4 (measured and estimated by benchmarks/footprint.py)."
        )
        return model
    ram = available_memory()
    here = f"{ram / 1e9:.1f} GB of memory here" if ram is not None else "this machine's memory"
    load = result["gpt2_load_bytes"] / 1e9
    lines = [
        f"GPT-2 small does not fit this machine for {notebook} ({here}; it needs {need['ram_gb']:.1f} GB in full mode,",
        f"and loading GPT-2 alone peaks at {load:.1f} GB: measured by benchmarks/footprint.py, see the index).",
        "Running on the BUNDLED model instead: its numbers are its own, not GPT-2's.",
        f"Set {CHECK}=0 to try GPT-2 anyway.",
    ]
    print(banner(lines))
    return "bundled"


def shrink(
    model: str, value: int, full: int, notebook: str, device: str | torch.device = "cpu", path: Path = FOOTPRINT
) -> int:
    """A budget (``value`` of a full-mode ``full``), cut to what this machine holds when ``model`` is GPT-2, with a
    banner when it is cut; unchanged otherwise."""
    if not _checked(model):
        return value
    most = int(affordable(notebook, device, path) * full)
    if value <= most:
        return value
    print(
        f"GPT-2 on this machine holds {notebook} with about {most} of the {full} that full mode uses (measured by "
        f"benchmarks/footprint.py, see the index): running with {max(most, 1)} instead of {value}. Set {CHECK}=0 to "
        f"keep {value}."
    )
    return max(most, 1)
