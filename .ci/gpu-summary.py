"""Gather what .ci/gpu-check wrote (one or more of its output folders) into one JSON record, for data/gpu_check.json.

    python .ci/gpu-summary.py OUT [OUT ...] > data/gpu_check.json
    python .ci/gpu-summary.py --traceback DIR     # the failing cell's traceback in a reproduce folder

Each lesson run keeps its mode, exit status, time, peak GPU memory and findings, or where it stopped. The GPU's busy
share comes from nvidia-smi's samples: over the whole folder, and per lesson where a folder ran its lessons one at a
time (phases.log gives each one's window).
"""

from __future__ import annotations

import csv
import json
import re
import sys
from datetime import datetime
from pathlib import Path

HEADER = re.compile(r"^## (\d\d)(?: (fast|full))? \(exit (\d+)")
ROW = re.compile(r"^\| (\d\d_\w+) \| .* \| (.*) \| (\d+) s \| (.*) \| (.*) \| (.*) \|$")
FAILED = re.compile(r"^\*\*Failed\.\*\* \S+: (.*?) raised (\w+)")
PHASE = re.compile(r"^(\d+) s: (.*)$")  # phases.log: when each step began
LESSON = re.compile(r"^notebook (\d\d)")


def traceback(folder: Path) -> str:
    import nbformat

    for path in sorted((folder / "notebooks").glob("*.ipynb")):
        for cell in nbformat.read(path, as_version=4).cells:
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    return re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(out["traceback"]))[-2500:]
    return ""


def lessons(folder: Path) -> list[dict]:
    runs: list[dict] = []
    for path in sorted(folder.glob("*.md")):
        for line in path.read_text().splitlines():
            if m := HEADER.match(line):
                runs.append({"lesson": m[1], "mode": m[2] or "full", "exit": int(m[3]), "status": "did not finish"})
            elif runs and (m := ROW.match(line)):
                device, seconds, memory, agree, status = m[2], int(m[3]), m[4], m[5], m[6]
                runs[-1] |= {"notebook": m[1], "seconds": seconds, "device": device, "agree": agree}
                runs[-1]["peak_gpu_gib"] = float(memory.split()[0]) if memory.endswith("GiB") else None
                runs[-1]["status"] = "ran" if status == "ran" else runs[-1]["status"]
            elif runs and (m := FAILED.match(line)):
                interrupted = m[2] in ("KeyboardInterrupt", "AttributeError") and runs[-1]["exit"] == 124
                runs[-1]["status"] = "cut by the time limit" if interrupted else f"failed: {m[2]}"
                runs[-1]["reached"] = m[1]
    return runs


def samples(folder: Path) -> list[tuple[float, int, int]]:
    """(seconds since the first sample, GPU busy %, memory used MiB)."""
    rows = []
    path = folder / "smi.csv"
    for row in csv.reader(path.open() if path.exists() else []):
        if len(row) == 3 and row[1].strip().split()[0].isdigit():
            stamp = datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f").timestamp()
            rows.append((stamp, int(row[1].split()[0]), int(row[2].split()[0])))
    return [(t - rows[0][0], u, m) for t, u, m in rows]


def busy(rows: list[tuple[float, int, int]], start: float = 0, stop: float = float("inf")) -> float | None:
    inside = [u for t, u, _ in rows if start <= t < stop]
    return round(sum(inside) / len(inside) / 100, 3) if inside else None


def summary(folder: Path) -> dict:
    gpu = (folder / "gpu.txt").read_text().splitlines() if (folder / "gpu.txt").exists() else []
    rows = samples(folder)
    record: dict = {"folder": folder.name, "gpu_lines": gpu, "lessons": lessons(folder)}
    record["gpu_busy_share"] = busy(rows)
    record["gpu_memory_max_mib"] = max((m for *_, m in rows), default=None)
    phases = folder / "phases.log"
    lines = phases.read_text().splitlines() if phases.exists() else []
    marks = [(int(m[1]), m[2]) for m in map(PHASE.match, lines) if m]
    ends = [t for t, _ in marks[1:]] + [float("inf")]
    record["gpu_busy_share_alone"] = {
        m[1]: busy(rows, t, end) for (t, step), end in zip(marks, ends, strict=False) if (m := LESSON.match(step))
    }
    log = folder / "pytest.log"
    if log.exists():
        text = log.read_text().splitlines()
        record["tests"] = {
            "summary": next((ln.strip("= ") for ln in reversed(text) if " passed" in ln and " in " in ln), None),
            "failed": sorted({ln.split()[1] for ln in text if ln.startswith(("FAILED ", "ERROR "))}),
        }
    bench = folder / "bench.log"
    if bench.exists():
        table = [ln.split() for ln in bench.read_text().splitlines() if re.match(r"^\s+\d+\s+\d+\s+[\d.]+\s", ln)]
        record["attribution"] = [
            dict(
                tokens=int(t), features=int(f), ours_s=float(o), circuit_tracer_s=float(c), max_edge_difference=float(e)
            )
            for t, f, o, c, _, e in table
        ]
    return record


def main(argv: list[str]) -> None:
    if argv[:1] == ["--traceback"]:
        print(traceback(Path(argv[1])))
        return
    print(json.dumps([summary(Path(folder)) for folder in argv], indent=1))


if __name__ == "__main__":
    main(sys.argv[1:])
