"""What a notebook reports: markdown tables, the suite's own source, and the reproduction table that closes it."""

from __future__ import annotations

import inspect
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from interp_utils.core.runtime import device_name, fast_mode, peak_gpu_memory, strict_mode


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A markdown table: one header row, then one row per item (cells turned into text with ``str``)."""
    rows = [list(row) for row in rows]
    wrong = [row for row in rows if len(row) != len(header)]
    if wrong:
        raise ValueError(f"Every row needs {len(header)} cells (one per header), got {len(wrong[0])}: {wrong[0]}.")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows])


def show_markdown(text: str) -> None:
    """Render markdown in the notebook's output."""
    from IPython.display import Markdown, display

    display(Markdown(text))


def show_source(*functions: Callable | type) -> None:
    """Display the code of ``interp_utils`` functions or classes: the lesson reads the code the suite runs."""
    show_markdown("\n".join(f"```python\n{inspect.getsource(f)}```" for f in functions))


class ReproductionMismatch(AssertionError):
    """Raised by ``ReproductionTable.show`` in strict mode when a row disagrees with the paper."""


@dataclass
class Row:
    finding: str
    paper: str
    measured: str
    agrees: bool | None  # None where agreement is a matter of judgement, not a test


@dataclass
class ReproductionTable:
    """Rows added as a notebook measures; ``show()`` renders them and saves them if asked to.

    Create it at the top of a notebook: it times the run from then, and reads the mode (fast or full) itself.
    """

    notebook: str
    model: str = "n/a"
    rows: list[Row] = field(default_factory=list)
    started: float = field(default_factory=time.time, repr=False)

    def add(self, finding: str, paper: str, measured: str, agrees: bool | None = None) -> None:
        self.rows.append(Row(finding, paper, measured, None if agrees is None else bool(agrees)))

    def add_heads(
        self,
        finding: str,
        reference: Sequence[str],
        found: Sequence[str],
        need: int | Literal["first"] | None,
        source: str | None = None,
        ranked: bool = False,
        overlap: bool = False,
    ) -> None:
        """A row comparing the heads found (labels such as "9.9") with a reference list: the paper's, or a model
        card's (``source`` names it). ``need``: how many of the reference must be among those found, ``"first"``
        that the top one found is the reference's first, or None (not judged: no reference, or a model the reference
        is not about). ``ranked`` says the heads found are the top ones by a score; ``overlap`` adds how many of the
        reference were found."""
        if isinstance(need, int) and not 0 <= need <= len(reference):
            raise ValueError(f"need must be between 0 and the {len(reference)} reference heads, got {need}.")
        shared = len(set(found) & set(reference))
        paper = (", ".join(reference) or "n/a") + (f" ({source})" if source else "")
        measured = (f"top {len(found)} by score: " if ranked else "") + (", ".join(found) or "none")
        measured += f" ({shared} of {len(reference)} of the paper's)" if overlap else ""
        if need is None or not reference:  # nothing to compare with: not judged
            agrees = None
        elif need == "first":
            agrees = bool(found) and found[0] == reference[0]
        else:
            agrees = shared >= need
        self.add(finding, paper, measured, agrees)

    def markdown(self) -> str:
        mark = {True: "yes", False: "**no**", None: "see text"}
        header = ["finding", "paper", "measured (this run)", "agrees"]
        return markdown_table(header, [(r.finding, r.paper, r.measured, mark[r.agrees]) for r in self.rows])

    def show(self) -> None:
        """Display the table with the model, mode and run time; with ``INTERP_REPORT_DIR`` set, also write it there
        as JSON. In strict mode (``INTERP_STRICT=1``, as under pytest) a row that disagrees raises afterwards."""
        mode, seconds = "fast" if fast_mode() else "full", time.time() - self.started
        device, peak = device_name(), peak_gpu_memory()
        memory = f", peak GPU memory {peak / 2**30:.2f} GiB" if peak is not None else ""
        footer = f"\n\nModel: {self.model}. Mode: {mode}. Device: {device}{memory}. Run time so far: {seconds:.0f} s."
        show_markdown(self.markdown() + footer)
        out_dir = os.environ.get("INTERP_REPORT_DIR")
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            record = {"notebook": self.notebook, "model": self.model, "mode": mode, "seconds": seconds}
            record |= {"device": device, "peak_gpu_bytes": peak}
            record["rows"] = [asdict(r) for r in self.rows]
            (Path(out_dir) / f"{self.notebook}.json").write_text(json.dumps(record, indent=2))
        failed = [r.finding for r in self.rows if r.agrees is False]
        if failed and strict_mode():
            raise ReproductionMismatch(
                f"{self.notebook}: {len(failed)} finding(s) did not reproduce: {'; '.join(failed)}. "
                "See the table above (INTERP_STRICT=0 shows the table without failing)."
            )
