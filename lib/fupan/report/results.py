"""Headline figures of a run, recorded once and quoted everywhere.

Each notebook records its figures with :meth:`Recorder.record`; the deck's sentences quote
the value that ``record`` returned, and tests read ``results.json``. One home per number.

A figure a chapter cannot give has one form, in every chapter section: ``<section>.skipped``
maps the figure (and the slide that would show it) to the reason in words, in the run's
language (:meth:`Recorder.skip`). :data:`HEADLINE` lists each chapter's headline figures;
:func:`unexplained` names those that are neither a value nor explained.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the runner then executes one notebook at a time
    fcntl = None  # type: ignore[assignment]

import numpy as np
import pandas as pd

RESULTS_NAME = "results.json"


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN/inf to None, dates to ISO strings."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return to_jsonable(value.to_dict(orient="records"))
    if isinstance(value, pd.Series):
        return to_jsonable(value.to_dict())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (pd.Timestamp, dt.date, dt.datetime)):
        return value.isoformat()
    if value is pd.NaT or value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """Write JSON so a reader never sees half a file.

    ``indent=None`` writes one line with the C encoder, several times faster: the
    recorder rewrites results.json on every figure, and the runner indents it once at the end.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False, indent=indent, sort_keys=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def results_lock_available() -> bool:
    """Whether notebooks of one run may record figures at the same time (POSIX locks)."""
    return fcntl is not None


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    # every write replaces the file, so a new inode marks a change even within one mtime tick
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


class Recorder:
    """Records a run's headline figures into ``<run_dir>/results.json``.

    Parameters
    ----------
    run_dir : the run folder; when empty (a notebook opened on its own) figures go to the
        scratch folder ``$TMPDIR/fupan-scratch`` (``fupan.report.notebook.SCRATCH_DIR``; exports go
        there too).
    """

    def __init__(self, run_dir: str | Path | None = None):
        if not run_dir:
            run_dir = Path(tempfile.gettempdir()) / "fupan-scratch"
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RESULTS_NAME
        self._seen: tuple[int, int, int] | None = None
        self._data: dict[str, Any] = {}

    def _load(self) -> dict[str, Any]:
        """The file's content, parsed again only when the file changed (another notebook of
        the run, or the runner): a review records a few hundred figures."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._data = None, {}
            return {}
        stamp = _stamp(st)
        if stamp != self._seen:
            self._data = json.loads(self.path.read_text(encoding="utf-8"))
            self._seen = stamp
        return self._data

    def record(self, key: str, value: Any) -> Any:
        """Store ``value`` under a dotted key (``diagnosis.churn_rate``) and return it."""
        jsonable = to_jsonable(value)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Notebooks of one run execute at the same time: read, change and replace the file
        # under an exclusive lock, or one notebook's figures would overwrite another's.
        with _locked(self.run_dir / f".{RESULTS_NAME}.lock"):
            data = self._load()
            node = data
            parts = key.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    raise ValueError(f"results key '{key}' crosses a recorded value at '{p}'")
            node[parts[-1]] = jsonable
            write_json_atomic(self.path, data, indent=None)
            self._seen, self._data = _stamp(self.path.stat()), data
        return value

    def skip(self, section: str, key: str, reason: str) -> str:
        """Record why the chapter ``section`` cannot give ``key``, and return ``reason``.

        ``key`` is a headline figure (:data:`HEADLINE`), a slide of the section (every
        headline figure shown on it is then explained, unless it already has its own
        reason), a path under the section such as ``scenarios.sla_core``, or :data:`ALL`
        (every headline figure not explained yet). ``reason`` is a sentence in the run's
        language saying what would enable the figure. A code or an empty text warns (with
        ``FUPAN_STRICT_TEXT`` set, as in tests, raises ValueError): a chapter is not stopped
        for a badly worded reason, and the shape tests find it (:func:`unexplained`).
        """
        if not is_sentence(reason):
            from fupan.report.show import STRICT_ENV

            msg = f"{section}.skipped.{key}: {reason!r} is not a reason in words"
            if os.environ.get(STRICT_ENV):
                raise ValueError(msg)
            warnings.warn(msg, stacklevel=2)
            reason = str(reason or "")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with _locked(self.run_dir / f".{RESULTS_NAME}.lock"):
            data = self._load()
            body = data.setdefault(section, {})
            if not isinstance(body, dict):
                raise ValueError(f"results key '{section}' is a recorded value, not a section")
            skipped = body.get("skipped")
            if not isinstance(skipped, dict):
                skipped = body["skipped"] = {}
            for figure in _expand(section, key, skipped):
                skipped[figure] = reason
            write_json_atomic(self.path, data, indent=None)
            self._seen, self._data = _stamp(self.path.stat()), data
        return reason

    def get(self, key: str, default: Any = None) -> Any:
        # the parsed file is kept: callers get their own copy
        return copy.deepcopy(lookup(self._load(), key, default))

    def __getitem__(self, key: str) -> Any:
        sentinel = object()
        value = self.get(key, sentinel)
        if value is sentinel:
            raise KeyError(key)
        return value

    def all(self) -> dict[str, Any]:
        return copy.deepcopy(self._load())


# --------------------------------------------------------------------------------------
# Headline figures and why a chapter could not give one

#: Per chapter section of results.json: its headline figures (the keys the executive
#: summary, the follow-up, the KPI chapter and the tests quote), each with the slide that
#: shows it. A figure the chapter records as null or leaves out has its reason, in the
#: run's language, under ``<section>.skipped[<figure>]`` (:meth:`Recorder.skip`). The key
#: ``"values.*"`` stands for every key of the section's ``values`` dict (the KPIs).
HEADLINE: dict[str, dict[str, str]] = {
    "data_check": {
        "customers": "overview",
        "orders": "overview",
        "errors": "overview",
        "warnings": "overview",
        "orders_lag_days": "overview",
        "min_completeness": "min_completeness",
        "orders_months": "coverage",
    },
    "diagnosis": {
        "churn_rate": "churn_rate",
        "churn_gap": "churn_rate",
        "core_churn_rate": "churn_rate",
        "top_n_renewal_rate": "top_n_renewal",
        "net_revenue_retention": "net_revenue_retention",
        "gross_revenue_retention": "net_revenue_retention",
        "rfm_best_customer_share": "rfm",
        "tier_mismatch_share": "tier_matrix",
        "misclassified_customers": "tier_matrix",
        "value_potential": "value_potential",
        "segments": "segments",
        "touch_coverage": "touches",
        "median_first_response_days": "tickets",
        "sla_compliance": "tickets",
        "findings": "findings",
    },
    "churn": {
        "top_drivers": "drivers",
        "health_auc": "health",
        "health_precision_at_alert": "health",
        "median_lead_days": "health",
        "at_risk_count": "at_risk",
        "km_logrank_p_tier": "km_tier",
        "lost_reasons": "lost_reasons",
    },
    "ltv": {
        "total_clv": "model",
        "mean_clv": "model",
        "lost_ltv": "model",
        "lost_ltv_rate": "model",
        "at_risk_ltv": "model",
        "lost_by_tier": "lost_by_tier",
        "lost_by_industry": "lost_by_industry",
        "lost_by_cohort": "lost_by_cohort",
        "lost_by_reason": "lost_by_reason",
        "top_lost_share": "top_lost",
    },
    "simulation": {
        "scenarios": "overview",
        "best": "overview",
        "funded": "overview",
        "winback": "winback",
        "pilots": "pilots",
        "roadmap": "roadmap",
    },
    "kpi": {"values.*": "scorecard"},
    # the same keys as fupan.chapters.followup.HEADLINE_KEYS (a test holds them equal)
    "followup": dict.fromkeys(
        (
            "method",
            "at_risk_then",
            "at_risk_precision",
            "at_risk_recall",
            "at_risk_lift",
            "base_rate",
            "median_lead_days",
            "brier",
            "calibration",
            "clv_bias",
            "clv_mae",
            "clv",
            "pilots",
            "headline",
            "findings",
        ),
        "followup",
    ),
}

#: What :meth:`Recorder.skip` takes as ``key`` for "every headline figure of the section".
ALL = "*"


def is_sentence(text: Any) -> bool:
    """Whether ``text`` reads as a reason in words, not a code, a placeholder or None.

    A sentence has at least three words (or four CJK characters) and is not an identifier
    such as ``missing:surveys`` or ``one_group``.
    """
    if not isinstance(text, str):
        return False
    s = text.strip()
    cjk = sum("\u4e00" <= ch <= "\u9fff" for ch in s)
    if cjk >= 4:
        return True
    words = [w for w in s.split() if any(ch.isalpha() for ch in w)]
    return len(words) >= 3


def has_value(value: Any) -> bool:
    """A figure that holds something: a finite number, a bool, a non-empty text, list or
    dict. None, NaN, inf and empty containers are no value."""
    if value is None:
        return False
    if isinstance(value, bool):
        return True
    if isinstance(value, (int, float, np.integer, np.floating)):
        return math.isfinite(float(value))
    if isinstance(value, (str, list, tuple, dict)):
        return len(value) > 0
    return True


def lookup(node: Any, key: str, default: Any = None) -> Any:
    """The value at a dotted ``key`` ("diagnosis.churn_rate") of a results dict, or
    ``default`` when any part of the path is missing."""
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def headline_keys(results: dict[str, Any], section: str) -> list[str]:
    """The section's headline figures as paths under the section (``values.*`` expanded
    to the KPIs the section recorded)."""
    body = results.get(section) or {}
    out = []
    for key in HEADLINE.get(section, {}):
        if key.endswith(".*"):
            sub = lookup(body, key[:-2])
            out.extend(f"{key[:-2]}.{k}" for k in (sub if isinstance(sub, dict) else {}))
        else:
            out.append(key)
    return out


def unexplained(results: dict[str, Any]) -> list[str]:
    """``section.figure`` for each headline figure that is neither a value nor explained by
    a sentence in ``section.skipped``, and for each recorded reason that is no sentence.

    Only sections the run recorded are checked (a chapter that did not run has none).
    """
    out = []
    for section in HEADLINE:
        body = results.get(section)
        if not isinstance(body, dict):
            continue
        skipped = body.get("skipped")
        if skipped is not None and not isinstance(skipped, dict):
            out.append(f"{section}.skipped (a {type(skipped).__name__}, not a map)")
            skipped = {}
        skipped = skipped or {}
        for key, reason in skipped.items():
            if not is_sentence(reason):
                out.append(f"{section}.skipped.{key} = {reason!r} (not a sentence)")
        for key in headline_keys(results, section):
            if not has_value(lookup(body, key)) and not is_sentence(skipped.get(key)):
                out.append(f"{section}.{key}")
    return out


def _expand(section: str, key: str, skipped: dict[str, str]) -> list[str]:
    """The figures one reason explains: ``key`` itself, every headline figure shown on the
    slide ``key``, or (``ALL``) every headline figure not yet explained."""
    figures = HEADLINE.get(section, {})
    if key == ALL:
        return [f for f in figures if "*" not in f and f not in skipped]
    shown_on = [f for f, slide in figures.items() if slide == key and f != key]
    # a figure already explained keeps its own, more specific reason
    return [key, *(f for f in shown_on if f not in skipped)]
