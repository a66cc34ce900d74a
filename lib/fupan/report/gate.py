"""The consistency gate: a metric quoted by two chapters at the same date shows one value.

Before the deck is written the runner hands the run's ``results.json`` to :func:`enforce`.
Every key the catalogue (:data:`fupan.measures.metrics.CATALOGUE`) lists as a quote of a metric is
read with the window it covers in this run; quotes of the same metric over the same window
must agree (to a relative 1e-6, see :data:`REL_TOL`). A mismatch is a bug,
not a warning: :func:`enforce` raises :class:`GateError` naming both places, and the run
fails (exit 1) without writing a deck.

One quote with a value and another of the same metric and window without one (a chapter
said it cannot be computed) is a mismatch too: the two chapters disagree on whether the
data allows the figure.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fupan.core.params import Params
from fupan.measures import metrics
from fupan.measures.segments import as_date, trailing_start
from fupan.report.results import lookup

# Chapters sum in different orders and precisions: the KPI chapter sums amounts exactly in
# units of 10^-4 (so a month computed again gives the same bits), the diagnosis in floats.
# Their ratios differ by ~1e-8 on amounts with six decimals; a tolerance of 1e-6 is far
# below what a slide shows (0.1 point) and far above that noise.
REL_TOL = 1e-6
ABS_TOL = 1e-9
# which chapter writes each results.json section (for the message)
CHAPTERS = {
    "diagnosis": "01_diagnosis",
    "kpi": "05_kpi_tracking",
    "simulation": "04_strategy_simulation",
}
_MISSING = object()


class GateError(RuntimeError):
    """Two chapters quote the same metric at the same date with different values."""

    def __init__(self, mismatches: list[Mismatch]):
        self.mismatches = mismatches
        lines = [m.message() for m in mismatches]
        super().__init__(
            "consistency gate: the same metric has different values in two places "
            "(a bug in one chapter's computation; no deck written):\n  " + "\n  ".join(lines)
        )


@dataclass(frozen=True)
class Quote:
    """One results.json key holding a catalogue metric over a window ``[start, end]``."""

    metric: str
    key: str
    start: dt.date
    end: dt.date
    value: float | None

    @property
    def place(self) -> str:
        chapter = CHAPTERS.get(self.key.split(".", 1)[0], "?")
        return f"{self.key} ({chapter})"


@dataclass(frozen=True)
class Mismatch:
    a: Quote
    b: Quote

    def message(self) -> str:
        def show(q: Quote) -> str:
            return f"{q.place} = {'no value' if q.value is None else repr(q.value)}"

        return (
            f"{self.a.metric} over {self.a.start}..{self.a.end}: {show(self.a)} but {show(self.b)}"
        )


def _lookup(results: dict[str, Any], key: str) -> Any:
    return lookup(results, key, _MISSING)  # absent differs from a recorded null here


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


def _end(key: str, results: dict[str, Any], params: Params) -> dt.date:
    """The date a quote is taken at: the KPI month's end (capped at as_of), else as_of."""
    as_of = as_date(params.as_of)
    if key.startswith("kpi."):
        month = _lookup(results, "kpi.month")
        if isinstance(month, str):
            last = pd.Period(month, freq="M").end_time.date()
            return min(last, as_of)
    return as_of


def _window(
    kind: str, key: str, results: dict[str, Any], params: Params
) -> tuple[dt.date, dt.date]:
    end = _end(key, results, params)
    if kind == "review":
        return as_date(params.period_start), end
    if kind == "trailing_year":
        return trailing_start(end), end
    if kind == "report_month":
        return end.replace(day=1), end
    if kind == "coverage":
        lo, hi = metrics.touch_window(end, params.diagnosis.coverage_days)
        return lo + dt.timedelta(days=1), hi
    raise ValueError(f"unknown window {kind!r}")


def _metric_of(metric: str, key: str, results: dict[str, Any]) -> str:
    """The diagnosis's top-N figure is renewal of contracts or, without them, repurchase."""
    if key == "diagnosis.top_n_renewal_rate":
        detail = _lookup(results, "diagnosis.top_n_renewal")
        basis = detail.get("basis") if isinstance(detail, dict) else None
        return "top_n_repurchase" if basis == "repurchase" else "top_n_renewal"
    return metric


def quotes(results: dict[str, Any], params: Params) -> list[Quote]:
    """Every catalogue quote present in ``results``, with the window it covers in this run."""
    out: dict[tuple[str, str], Quote] = {}
    for m in metrics.CATALOGUE.values():
        for key, kind in m.quotes:
            metric = _metric_of(m.id, key, results)
            if metric != m.id:
                continue  # the key is this run's quote of the other metric
            raw = _lookup(results, key)
            if raw is _MISSING:
                continue  # the chapter did not run or does not quote it in this run
            start, end = _window(kind, key, results, params)
            out[(metric, key)] = Quote(metric, key, start, end, _number(raw))
    return list(out.values())


def _agree(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def check(results: dict[str, Any], params: Params) -> list[Mismatch]:
    """The pairs of quotes of one metric over one window whose values differ."""
    groups: dict[tuple[str, dt.date, dt.date], list[Quote]] = {}
    for q in quotes(results, params):
        groups.setdefault((q.metric, q.start, q.end), []).append(q)
    bad = []
    for qs in groups.values():
        first = qs[0]
        bad += [Mismatch(first, q) for q in qs[1:] if not _agree(first.value, q.value)]
    return bad


def shared(results: dict[str, Any], params: Params) -> list[list[Quote]]:
    """The groups of two or more quotes the gate compares (for tests and the log)."""
    groups: dict[tuple[str, dt.date, dt.date], list[Quote]] = {}
    for q in quotes(results, params):
        groups.setdefault((q.metric, q.start, q.end), []).append(q)
    return [g for g in groups.values() if len(g) > 1]


def enforce(results: dict[str, Any] | str | Path, params: Params) -> None:
    """Raise :class:`GateError` when a metric shared by two chapters disagrees.

    ``results`` is the run's results dict or the path of its ``results.json`` (a missing
    file means no chapter recorded anything: nothing to compare).
    """
    if not isinstance(results, dict):
        path = Path(results)
        if not path.exists():
            return
        results = json.loads(path.read_text(encoding="utf-8"))
    bad = check(results, params)
    if bad:
        raise GateError(bad)
