"""What a notebook reports: markdown tables, the suite's own source, and the reproduction table that closes it.

The reproduction table has three kinds of row:

- **findings**, judged with a control: the measured value must fall inside a band *and* a control (what the same
  measurement gives when the mechanism is absent: random scores, shuffled labels, an untrained model, ...), computed
  in the same run, must fall outside it. A finding whose control would also pass cannot fail, so it does not agree;
- **sanity checks**: rows true by definition or by construction (a search keeping every edge at τ = 0). Checked in
  strict mode, but listed apart and not counted as reproductions;
- **notes**: rows not judged on this model (no reference for it, or a matter of judgement), shown with the reason.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from interp_utils.core.runtime import device_name, fast_mode, peak_gpu_memory, strict_mode

Kind = Literal["finding", "sanity", "note"]
COUNT_KEYS = ("findings", "findings_agree", "sanity", "sanity_hold", "not_judged")  # ReproductionTable.counts


def escape_cell(cell: object) -> str:
    """A table cell's text: ``|`` escaped (so ``|x|`` stays in its cell) and newlines turned into spaces."""
    return str(cell).replace("\\|", "|").replace("|", "\\|").replace("\n", " ")


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table: one header row, then one row per item (cells turned into text with ``str``, ``|`` escaped)."""
    rows = [list(row) for row in rows]
    wrong = [row for row in rows if len(row) != len(header)]
    if wrong:
        raise ValueError(f"Every row needs {len(header)} cells (one per header), got {len(wrong[0])}: {wrong[0]}.")
    lines = ["| " + " | ".join(escape_cell(h) for h in header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(escape_cell(cell) for cell in row) + " |" for row in rows])


def show_markdown(text: str) -> None:
    """Render markdown in the notebook's output."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def show_source(*functions: Callable | type) -> None:
    """Display the code of ``interp_utils`` functions or classes: the lesson reads the code the suite runs."""
    show_markdown("\n".join(f"```python\n{inspect.getsource(f)}```" for f in functions))


class ReproductionMismatch(AssertionError):
    """Raised by ``ReproductionTable.show`` in strict mode when a finding or a sanity check does not hold."""


@dataclass(frozen=True)
class Band:
    """The values a finding accepts: ``low <= value <= high`` (either end open). Build with ``Band.at_least(0.8)``,
    ``Band.at_most(0.01)``, ``Band.between(0.2, 0.6)`` or ``Band.near(0.869, 0.1)``."""

    low: float | None = None
    high: float | None = None

    def __post_init__(self) -> None:
        if self.low is None and self.high is None:
            raise ValueError("A band needs a low end, a high end or both (Band.at_least(x), Band.at_most(x), ...).")
        for end in (self.low, self.high):
            if end is not None and (not isinstance(end, int | float) or math.isnan(end)):
                raise ValueError(f"A band's ends must be numbers, got {end!r}.")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise ValueError(f"A band's low end ({self.low}) must not be above its high end ({self.high}).")

    @classmethod
    def at_least(cls, low: float) -> Band:
        return cls(low=float(low))

    @classmethod
    def at_most(cls, high: float) -> Band:
        return cls(high=float(high))

    @classmethod
    def between(cls, low: float, high: float) -> Band:
        return cls(float(low), float(high))

    @classmethod
    def near(cls, centre: float, tolerance: float) -> Band:
        if tolerance < 0:
            raise ValueError(f"tolerance must be at least 0, got {tolerance}.")
        return cls(float(centre - tolerance), float(centre + tolerance))

    def __contains__(self, value: object) -> bool:
        if not isinstance(value, int | float) or math.isnan(value):
            return False  # a missing or undefined value is never inside a band
        return (self.low is None or value >= self.low) and (self.high is None or value <= self.high)

    def __str__(self) -> str:
        if self.high is None:
            return f"≥ {self.low:.4g}"
        if self.low is None:
            return f"≤ {self.high:.4g}"
        return f"{self.low:.4g} to {self.high:.4g}"


@dataclass
class Row:
    finding: str
    paper: str
    measured: str
    agrees: bool | None  # None: not judged on this model (a note)
    kind: Kind = "finding"
    value: float | None = None  # findings: the number the band judges
    low: float | None = None  # findings: the band's ends
    high: float | None = None
    control: float | None = None  # findings: the same measurement with the mechanism absent
    null: str | None = None  # findings: what the control is
    why: str | None = None  # notes: why the row is not judged

    @property
    def band(self) -> Band | None:
        if self.kind != "finding" or (self.low is None and self.high is None):
            return None
        return Band(self.low, self.high)

    def control_text(self) -> str:
        if self.kind != "finding":
            return "—"
        return f"{_number(self.control)} ({self.null})"


def _number(x: float | None) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1e4 else f"{x:.3e}"


def model_key(model: str) -> str:
    """A table's model, without the note that it stands in for one that could not be loaded (counts are per model)."""
    return re.sub(r" \([^()]* could not be loaded\)", "", model)


def recorded_counts_differ(notebook: str, model: str, mode: str, counts: dict[str, int]) -> str | None:
    """With ``INTERP_EXPECTED_COUNTS`` naming the recorded counts (data/reproduction_counts.json; the test run sets
    it), say how this run's counts differ from those recorded for the same notebook, model and mode; else None."""
    path = os.environ.get("INTERP_EXPECTED_COUNTS")
    if not path or not Path(path).exists():
        return None
    recorded = json.loads(Path(path).read_text())
    entry = recorded.get("notebooks", {}).get(notebook)
    if not entry or entry["model"] != model_key(model) or recorded.get("mode") != mode:
        return None
    keys = ("findings", "sanity", "not_judged")
    if all(entry[k] == counts[k] for k in keys):
        return None
    now, then = ", ".join(f"{k} {counts[k]}" for k in keys), ", ".join(f"{k} {entry[k]}" for k in keys)
    return (
        f"the table's counts ({now}) differ from those recorded in {path} ({then}): the README and the index quote "
        "that file; after running the lessons with INTERP_REPORT_DIR set, update it with "
        "python -m interp_utils.course.counts DIR"
    )


def counts_sentence(counts: dict[str, int], where: str) -> str:
    """The three counts of one table or of several (``ReproductionTable.counts``), as a sentence."""
    return (
        f"{counts['findings_agree']} of {counts['findings']} findings judged with a control agree; "
        f"{counts['sanity_hold']} of {counts['sanity']} sanity checks hold; "
        f"{counts['not_judged']} row(s) not judged {where}."
    )


def judge(value: float, band: Band, control: float) -> bool:
    """The rule every finding is judged by: the value inside the band, the control outside it."""
    return value in band and control not in band


@dataclass
class ReproductionTable:
    """Rows added as a notebook measures; ``show()`` renders them and saves them if asked to.

    Create it at the top of a notebook: it times the run from then, and reads the mode (fast or full) itself.
    ``judge`` adds a finding (band and control), ``sanity`` a row true by construction, ``note`` a row not judged.
    """

    notebook: str
    model: str = "n/a"
    rows: list[Row] = field(default_factory=list)
    started: float = field(default_factory=time.time, repr=False)

    def judge(
        self, finding: str, paper: str, measured: str, value: float, band: Band, control: float, null: str
    ) -> bool:
        """A finding: ``value`` (the number ``measured`` describes) must be inside ``band`` and ``control`` (the same
        measurement with the mechanism absent, described by ``null``) outside it. Returns whether it agrees."""
        if not isinstance(band, Band):
            raise TypeError(f"band must be a Band (Band.at_least(x), Band.near(x, tol), ...), got {band!r}.")
        if not null:
            raise ValueError("Say what the control is (null=...), e.g. 'random edge scores' or 'shuffled labels'.")
        value, control = float(value), float(control)
        agrees = judge(value, band, control)
        self.rows.append(Row(finding, paper, measured, agrees, "finding", value, band.low, band.high, control, null))
        return agrees

    def sanity(self, check: str, expected: str, measured: str, holds: bool) -> None:
        """A row true by definition or by construction: checked in strict mode, listed apart from the findings."""
        self.rows.append(Row(check, expected, measured, bool(holds), "sanity"))

    def note(self, finding: str, paper: str, measured: str, why: str) -> None:
        """A row not judged on this model (no reference for it, or a matter of judgement); ``why`` says which."""
        if not why:
            raise ValueError("Say why the row is not judged (why=...), e.g. 'the bundled model has no reference'.")
        self.rows.append(Row(finding, paper, measured, None, "note", why=why))

    def add_heads(
        self,
        finding: str,
        reference: Sequence[str],
        found: Sequence[str],
        need: int | Literal["first"] | None,
        source: str | None = None,
        ranked: bool = False,
        overlap: bool = False,
        control: Sequence[str] | None = None,
        null: str | None = None,
        why: str | None = None,
    ) -> None:
        """A row comparing the heads found (labels such as "9.9") with a reference list: the paper's, or a model
        card's (``source`` names it). ``need``: how many of the reference must be among those found, ``"first"``
        that the top one found is the reference's first, or None (a note: ``why`` says why it is not judged).
        A judged row needs ``control``: the heads the same rule finds where the mechanism is absent (``null`` says
        how, e.g. an untrained model of the same shape). ``ranked`` says the heads found are the top ones by a
        score; ``overlap`` adds how many of the reference were found."""
        if isinstance(need, int) and not 0 < need <= len(reference):
            raise ValueError(f"need must be between 1 and the {len(reference)} reference heads, got {need}.")
        shared = len(set(found) & set(reference))
        paper = (", ".join(reference) or "n/a") + (f" ({source})" if source else "")
        measured = (f"top {len(found)} by score: " if ranked else "") + (", ".join(found) or "none")
        measured += f" ({shared} of {len(reference)} of the paper's)" if overlap else ""
        if need is None or not reference:  # nothing to compare with: not judged
            self.note(finding, paper, measured, why or "no reference heads for this model")
            return
        if control is None or not null:
            raise ValueError("A judged head row needs control= (the heads found with the mechanism absent) and null=.")

        def score(heads: Sequence[str]) -> float:
            if need == "first":
                return float(bool(heads) and heads[0] == reference[0])
            return float(len(set(heads) & set(reference)))

        band = Band.at_least(1 if need == "first" else need)
        null_text = f"{null}: {', '.join(control) or 'none'}"
        self.judge(finding, paper, measured, score(found), band, score(control), null_text)

    def counts(self) -> dict[str, int]:
        """How many rows of each kind: findings judged with a control, sanity checks, rows not judged."""
        return {
            "findings": sum(r.kind == "finding" for r in self.rows),
            "findings_agree": sum(r.kind == "finding" and bool(r.agrees) for r in self.rows),
            "sanity": sum(r.kind == "sanity" for r in self.rows),
            "sanity_hold": sum(r.kind == "sanity" and bool(r.agrees) for r in self.rows),
            "not_judged": sum(r.kind == "note" for r in self.rows),
        }

    def counts_text(self) -> str:
        return counts_sentence(self.counts(), "on this model")

    def markdown(self) -> str:
        mark = {True: "yes", False: "**no**", None: "not judged"}
        header = ["finding", "paper", "measured (this run)", "band", "control (null)", "agrees"]
        main = [r for r in self.rows if r.kind != "sanity"]
        cells = [
            (r.finding, r.paper, r.measured, str(r.band) if r.band else "—", r.control_text(), mark[r.agrees])
            if r.kind == "finding"
            else (r.finding, r.paper, r.measured, "—", "—", f"not judged: {r.why}")
            for r in main
        ]
        text = markdown_table(header, cells)
        sanity = [r for r in self.rows if r.kind == "sanity"]
        if sanity:
            text += "\n\n**Sanity checks** (true by definition or by construction; checked, not counted as findings):"
            text += "\n\n" + markdown_table(
                ["check", "expected", "measured (this run)", "holds"],
                [(r.finding, r.paper, r.measured, mark[r.agrees]) for r in sanity],
            )
        return text + "\n\n" + self.counts_text()

    def record(self, mode: str, seconds: float) -> dict:
        """What ``show`` writes as JSON: the run's settings, the rows and the counts."""
        device, peak = device_name(), peak_gpu_memory()
        record = {"notebook": self.notebook, "model": self.model, "mode": mode, "seconds": seconds}
        record |= {"device": device, "peak_gpu_bytes": peak, "counts": self.counts()}
        record["rows"] = [asdict(r) for r in self.rows]
        return record

    def show(self) -> None:
        """Display the table with the model, mode and run time; with ``INTERP_REPORT_DIR`` set, also write it there
        as JSON. In strict mode (``INTERP_STRICT=1``, as under pytest) a finding that disagrees, a finding whose
        control falls inside its band, or a sanity check that fails raises afterwards."""
        mode, seconds = "fast" if fast_mode() else "full", time.time() - self.started
        record = self.record(mode, seconds)
        peak = record["peak_gpu_bytes"]
        memory = f", peak GPU memory {peak / 2**30:.2f} GiB" if peak is not None else ""
        device = record["device"]
        footer = f"\n\nModel: {self.model}. Mode: {mode}. Device: {device}{memory}. Run time so far: {seconds:.0f} s."
        show_markdown(self.markdown() + footer)
        out_dir = os.environ.get("INTERP_REPORT_DIR")
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            (Path(out_dir) / f"{self.notebook}.json").write_text(json.dumps(record, indent=2))
        failed = [r.finding for r in self.rows if r.agrees is False]
        for r in self.rows:  # judge again from the stored numbers: the rule, not the flag, decides
            band = r.band
            if r.kind == "finding" and r.agrees and (band is None or not judge(r.value, band, r.control)):  # type: ignore[arg-type]
                failed.append(f"{r.finding} (its control is inside the band)")
        stale = recorded_counts_differ(self.notebook, self.model, mode, record["counts"])
        if stale:
            failed.append(stale)
        if failed and strict_mode():
            raise ReproductionMismatch(
                f"{self.notebook}: {len(failed)} row(s) did not hold: {'; '.join(failed)}. "
                "See the table above (INTERP_STRICT=0 shows the table without failing)."
            )
