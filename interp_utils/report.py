"""The reproduction table that closes every notebook: the paper's finding beside this run's measurement."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from interp_utils.runtime import strict_mode


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
    """Rows added as a notebook measures; ``show()`` renders them and saves them if asked to."""

    notebook: str
    model: str = "n/a"
    rows: list[Row] = field(default_factory=list)

    def add(self, finding: str, paper: str, measured: str, agrees: bool | None = None) -> None:
        self.rows.append(Row(finding, paper, measured, None if agrees is None else bool(agrees)))

    def markdown(self) -> str:
        mark = {True: "yes", False: "**no**", None: "see text"}
        lines = ["| finding | paper | measured (this run) | agrees |", "|---|---|---|---|"]
        lines += [f"| {r.finding} | {r.paper} | {r.measured} | {mark[r.agrees]} |" for r in self.rows]
        return "\n".join(lines)

    def show(self, mode: str = "", seconds: float | None = None) -> None:
        """Display the table; with ``INTERP_REPORT_DIR`` set, also write it there as JSON.

        In strict mode (``INTERP_STRICT=1``, as under pytest) a row that disagrees raises afterwards.
        """
        from IPython.display import Markdown, display

        footer = f"\n\nModel: {self.model}. Mode: {mode or 'n/a'}." + (
            f" Notebook run time so far: {seconds:.0f} s." if seconds is not None else ""
        )
        display(Markdown(self.markdown() + footer))
        out_dir = os.environ.get("INTERP_REPORT_DIR")
        if out_dir:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            record = {"notebook": self.notebook, "model": self.model, "mode": mode, "seconds": seconds}
            record["rows"] = [asdict(r) for r in self.rows]
            (Path(out_dir) / f"{self.notebook}.json").write_text(json.dumps(record, indent=2))
        failed = [r.finding for r in self.rows if r.agrees is False]
        if failed and strict_mode():
            raise ReproductionMismatch(
                f"{self.notebook}: {len(failed)} finding(s) did not reproduce: {'; '.join(failed)}. "
                "See the table above (INTERP_STRICT=0 shows the table without failing)."
            )
