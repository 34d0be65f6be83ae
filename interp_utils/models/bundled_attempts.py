"""Issue 35's attempts at a bundled model whose IOI circuit has the paper's shape: one row per trained attempt.

``python -m interp_utils.models.bundled train --out FOLDER [levers]`` trains and measures an attempt;
``python -m interp_utils.models.bundled attempt FOLDER --lever "..."`` adds its row to ``attempts.json`` beside the
shipped model, and the model card shows the table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ATTEMPTS = "attempts.json"  # issue 35's attempts at a model whose IOI circuit has the paper's shape (next to the card)


def attempt_row(folder: Path, lever: str) -> dict[str, Any]:
    """One attempt's row for the card's table, from the folder ``train`` wrote (``lever``: what it changed)."""
    config = json.loads((folder / "config.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    record, arch, circuit = config["training"], config["hooked_transformer_config"], metrics["ioi_circuit"]
    held = metrics["ioi_heldout_names_heldout_templates"]
    own = bool(record.get("own_templates"))
    flags = [
        *(["--tied"] if record.get("tied") else []),
        *([f"--extra-names {record['extra_names']}"] if record.get("extra_names") else []),
        *(["--own-templates"] if own else []),
        *([f"--n-layers {arch['n_layers']}"] if arch["n_layers"] != 4 else []),
        *([f"--n-heads {arch['n_heads']}"] if arch["n_heads"] != 4 else []),
    ]
    return {
        "lever": lever,
        "flags": " ".join(flags) or "(none)",
        "measured_on": "held-out names; IOI on all 15 paper templates, circuit on all 15 (all held out)"
        if own
        else "held-out names; IOI on the 3 held-out paper templates, circuit on the 12 training ones",
        "settings": f"{arch['n_layers']} layers x {arch['n_heads']} heads, tied {bool(record.get('tied'))}, "
        f"{record.get('extra_names', 0)} extra names, "
        f"{'own templates' if own else 'paper templates'}, {record['steps']} steps, "
        f"seed {record['seed']}",
        "train_minutes": round(record["train_seconds"] / 60, 1),
        "heldout_loss": metrics["heldout_loss"],
        "ioi_heldout": f"{held['mean_logit_diff']} ({held['fraction_io_beats_s']:.1%})",
        "ioi_by_template": metrics["ioi_heldout_names_by_heldout_template"],
        "attention_share": circuit["attention_share"],
        "mlp_share": circuit["mlp_share"],
        "name_movers": ", ".join(circuit["name_movers"]) or "none",
        "induction": f"{metrics['induction_score_best_head']} (head {metrics['induction_best_head']}, chance "
        f"{metrics['induction_chance']})",
        "classes": circuit.get("classes", {}),
    }


def record_attempt(rows: list[dict[str, Any]], row: dict[str, Any]) -> list[dict[str, Any]]:
    """``rows`` with ``row`` added, replacing the row of the same lever (an attempt measured again) in its place."""
    levers = [r["lever"] for r in rows]
    if row["lever"] in levers:
        return [row if r["lever"] == row["lever"] else r for r in rows]
    return [*rows, row]


def attempts_table(folder: Path) -> str:
    """The attempts recorded in ``folder / ATTEMPTS`` as a markdown table ('' if none)."""
    if not (folder / ATTEMPTS).exists():
        return ""
    rows = json.loads((folder / ATTEMPTS).read_text())
    head = (
        "| # | lever | `train` flags | training (min) | held-out loss (own corpus) | measured on | IOI mean logit "
        "diff (IO beats S) | attention share | MLP share | name movers | best induction score (notebook 02) |\n"
        + "|---" * 11
        + "|\n"
    )

    def cell(row: dict[str, Any], key: str) -> str:
        share = key in ("attention_share", "mlp_share")
        return f"{row[key]:.1%}".replace("-0.0%", "0.0%") if share else str(row[key])

    keys = (
        "lever",
        "flags",
        "train_minutes",
        "heldout_loss",
        "measured_on",
        "ioi_heldout",
        "attention_share",
        "mlp_share",
    )
    return head + "\n".join(
        f"| {i} | " + " | ".join(cell(r, k) for k in (*keys, "name_movers", "induction")) + " |"
        for i, r in enumerate(rows)
    )


CLASSES = ("name mover", "negative name mover", "S-inhibition", "induction", "duplicate-token", "previous-token")


def classes_table(folder: Path) -> str:
    """Notebook 03's head classes (``ioi_circuit.head_classes``) of each recorded attempt, as a markdown table ('' if
    none was measured)."""
    if not (folder / ATTEMPTS).exists():
        return ""
    rows = [(i, r) for i, r in enumerate(json.loads((folder / ATTEMPTS).read_text())) if r.get("classes")]
    if not rows:
        return ""
    head = "| # | lever | " + " | ".join(f"{c}" for c in CLASSES) + " |\n|---|---|" + "---|" * len(CLASSES) + "\n"

    def cell(classes: dict[str, list[str]], c: str) -> str:
        stand_ins = classes.get("name mover stand-ins") if c == "name mover" else None
        return ", ".join(classes.get(c, [])) or (f"none (stand-ins: {', '.join(stand_ins)})" if stand_ins else "none")

    return head + "\n".join(
        f"| {i} | {r['lever']} | " + " | ".join(cell(r["classes"], c) for c in CLASSES) + " |" for i, r in rows
    )


def attention_writers(folder: Path, share: float = 0.5) -> list[str]:
    """The recorded attempts (their levers) whose attention layers write at least ``share`` of the direct logit
    difference."""
    if not (folder / ATTEMPTS).exists():
        return []
    return [r["lever"] for r in json.loads((folder / ATTEMPTS).read_text()) if r["attention_share"] >= share]
