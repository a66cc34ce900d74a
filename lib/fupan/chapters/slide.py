"""What one slide of a chapter says and shows: :class:`Slide`, the same for every chapter.

A chapter function returns a :class:`Slide`; the notebook shows it with one call
(:meth:`fupan.report.notebook.Context.show`), which records its figures and reasons into
results.json and puts its parts on the slide in this order: title and finding, the missing
table, tiles, table, chart, notes; then writes its exports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass
class Slide:
    """One slide's content: its words, the figures it records, and what it shows.

    Parameters
    ----------
    title : the title, stating the finding.
    finding : the one-sentence takeaway (None: none).
    records : results.json entries, dotted key -> value.
    skips : reasons for what the slide cannot show, results key under the chapter's
        section -> the reason in words (``results.skip(section, key, why)``).
    missing : a table whose absence the slide states (``deck.missing_table``).
    skip : set when the whole slide cannot be made: its key under the chapter's section,
        recorded with :attr:`reason` (the title and finding, which then say what would
        enable it). Nothing but the words is shown then.
    tiles : big-number tiles, (label, value, status green/amber/red or None).
    table : the table shown (None: no table); ``columns`` maps its columns to the header
        words, ``formats`` its columns (as shown) to cell formatters, ``max_rows`` cuts it.
    chart : what the slide's chart draws (None: no chart).
    notes : lines under the chart.
    exports : frames written into the run's ``exports/``, name -> frame.
    """

    title: str
    finding: str | None = None
    records: dict[str, Any] = field(default_factory=dict)
    skips: dict[str, str] = field(default_factory=dict)
    missing: str | None = None
    skip: str | None = None
    tiles: list[tuple[str, str, str | None]] = field(default_factory=list)
    table: pd.DataFrame | None = None
    columns: dict[str, str] | None = None
    formats: dict[str, Any] | None = None
    max_rows: int = 12
    chart: Any = None
    notes: list[str] = field(default_factory=list)
    exports: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def reason(self) -> str:
        """Why a skipped slide cannot be made: its title and, when there is one, finding."""
        return f"{self.title}. {self.finding}".strip() if self.finding else self.title

    @property
    def made(self) -> bool:
        """Whether the slide shows more than the words saying why it cannot be made."""
        return self.skip is None

    def record(self, results: Any, section: str) -> None:
        """Write the slide's results.json entries, then its reasons for what it cannot show,
        into ``results`` (the run's :class:`fupan.report.results.Recorder`), under
        ``section`` (the chapter's key in ``skipped``: churn, ltv, simulation)."""
        for key, value in self.records.items():
            results.record(key, value)
        for key, why in self.skips.items():
            results.skip(section, key, why)
        if self.skip:
            results.skip(section, self.skip, self.reason)
