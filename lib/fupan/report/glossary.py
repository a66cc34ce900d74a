"""The glossary slides, generated from the metric catalogue (:mod:`fupan.measures.metrics`).

Reference slides for the executive summary: each headline metric's definition, who it
counts and over which window (with this run's dates), and where the deck quotes it; then
the customer groups different slides count (churned in the period vs churned by the as-of
date, active, the funnel's at-risk stage vs chapter 5's at-risk list), with their counts
in this run where a chapter recorded them. Words live in ``locale/metrics.yaml``.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

import pandas as pd

from fupan.core import i18n
from fupan.core.params import Params
from fupan.measures import metrics
from fupan.measures.segments import trailing_start
from fupan.report import gate
from fupan.report.deck import Page


def _head(title: str, finding: str) -> str:
    return (
        f'<div class="fupan-slide-head"><h2>{html.escape(title)}</h2>'
        f'<p class="finding">{html.escape(finding)}</p></div>'
    )


ROWS_PER_SLIDE = 5  # definitions are sentences: five rows fill a slide


def _table(df: pd.DataFrame) -> str:
    """A deck table whose cells wrap (the deck's tables keep numbers on one line)."""
    wrap = 'style="white-space: normal; vertical-align: top"'
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in df.columns)
    body = "".join(
        "<tr>" + "".join(f"<td {wrap}>{html.escape(str(v))}</td>" for v in row) + "</tr>"
        for row in df.itertuples(index=False)
    )
    return (
        f'<table class="fupan-table fupan-glossary"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _places(m: metrics.Metric, quotes: list[gate.Quote], lang: str) -> str:
    """The chapters that quote ``m`` in this run (the summary quotes the diagnosis's churn)."""
    present = {q.key for q in quotes if q.metric == m.id}
    where = []
    for key, _ in m.quotes:
        chapter = key.split(".", 1)[0]
        if key in present and chapter not in where:
            where.append(chapter)
    if m.id in ("annual_churn", "core_churn") and "diagnosis" in where:
        where.append("summary")
    return ("、" if lang == "zh" else ", ").join(i18n.t(f"metric.where.{c}", lang) for c in where)


def definitions_slides(results: dict[str, Any], params: Params) -> list[Page]:
    """Each catalogue metric this run quotes: name, formula, population, window, where
    (:data:`ROWS_PER_SLIDE` metrics a slide)."""
    lang = params.lang
    as_of = params.as_of
    t12 = (trailing_start(as_of), as_of)
    month_start = as_of.replace(day=1)
    days = params.diagnosis.coverage_days
    lo, hi = metrics.touch_window(as_of, days)
    windows = {
        "review": (params.period_start, as_of),
        "trailing_year": t12,
        "report_month": (month_start, as_of),
        "coverage": (lo + dt.timedelta(days=1), hi),
    }
    values = {
        "n": params.diagnosis.top_n,
        "days": days,
        "base": metrics.retention_base_start(as_of),
    }
    quotes = gate.quotes(results, params)
    quoted = {q.metric for q in quotes}
    rows = []
    for m in metrics.CATALOGUE.values():
        if m.id not in quoted:
            continue  # a metric no chapter quoted in this run needs no definition here
        kind = next(k for key, k in m.quotes if key in {q.key for q in quotes})
        start, end = windows[kind]
        words = dict(values, start=start, end=end)
        rows.append(
            {
                "name": i18n.t(f"metric.{m.id}.name", lang, **words),
                "formula": i18n.t(f"metric.{m.id}.formula", lang, **words),
                "population": i18n.t(f"metric.{m.id}.population", lang, **words),
                "window": i18n.t(f"metric.{m.id}.window", lang, **words),
                "where": _places(m, quotes, lang),
            }
        )
    df = pd.DataFrame(rows, columns=["name", "formula", "population", "window", "where"])
    df.columns = [i18n.t(f"metric.glossary.col.{c}", lang) for c in df.columns]
    title = i18n.t("metric.glossary.title", lang)
    finding = i18n.t("metric.glossary.finding", lang)
    pages = range(0, len(df), ROWS_PER_SLIDE)
    out = []
    for i, lo in enumerate(pages):
        head = _head(title + (f" ({i + 1}/{len(pages)})" if len(pages) > 1 else ""), finding)
        part = df.iloc[lo : lo + ROWS_PER_SLIDE]
        out.append(Page(head=head, body=[_table(part)], kinds=["table"]))
    return out


def _counts(results: dict[str, Any]) -> dict[str, int]:
    """This run's size of each group, from what the chapters recorded."""
    diag = results.get("diagnosis") or {}
    out = {k: int(v) for k, v in (diag.get("churn_counts") or {}).items()}
    stages = {r.get("stage"): r.get("customers") for r in diag.get("funnel") or []}
    if stages:
        out["active"] = int(sum(v for k, v in stages.items() if k != "churned" and v is not None))
        if stages.get("at_risk") is not None:
            out["funnel_at_risk"] = int(stages["at_risk"])
    kpi = results.get("kpi") or {}
    if kpi.get("at_risk_count") is not None:
        out["at_risk_list"] = int(kpi["at_risk_count"])
    cohorts = diag.get("revenue_retention_by_cohort") or []
    whole = [r for r in cohorts if isinstance(r, dict) and r.get("cohort") == "all"]
    if whole and whole[0].get("customers") is not None:
        out["retention_cohort"] = int(whole[0]["customers"])
    return out


GROUPS = (
    "at_start",
    "churned_in_period",
    "new_churned_in_period",
    "churned_before_period",
    "churned_by_as_of",
    "active",
    "funnel_at_risk",
    "at_risk_list",
    "retention_cohort",
)


def _not_counted(group: str, lang: str) -> str:
    """Why a group has no count: the chapter that counts it did not run."""
    chapter = "kpi" if group == "at_risk_list" else "diagnosis"
    return i18n.t(
        "metric.population.not_recorded", lang, chapter=i18n.t(f"metric.where.{chapter}", lang)
    )


def populations_slide(results: dict[str, Any], params: Params) -> Page:
    """The customer groups the slides count, their rules and this run's counts."""
    from fupan.chapters import funnel

    lang = params.lang
    f = i18n.Fmt.from_params(params)
    counts = _counts(results)
    words = {
        "start": params.period_start,
        "end": params.as_of,
        "base": metrics.retention_base_start(params.as_of),
        "days": funnel.at_risk_days(params)[0],
    }
    quoted = {q.metric for q in gate.quotes(results, params)}
    rows = []
    for g in GROUPS:
        n = counts.get(g)
        if g == "retention_cohort" and not {"nrr", "grr"} & quoted:
            continue
        rows.append(
            {
                "group": i18n.t(f"metric.population.{g}.name", lang),
                "rule": i18n.t(f"metric.population.{g}.rule", lang, **words),
                "count": f.int(n) if n is not None else _not_counted(g, lang),
            }
        )
    df = pd.DataFrame(rows, columns=["group", "rule", "count"])
    df.columns = [i18n.t(f"metric.populations.col.{c}", lang) for c in df.columns]
    slide = Page(
        head=_head(
            i18n.t("metric.populations.title", lang), i18n.t("metric.populations.finding", lang)
        )
    )
    slide.body.append(_table(df))
    slide.kinds.append("table")
    return slide


def slides(results: dict[str, Any], params: Params) -> list[Page]:
    """The glossary's slides (none when no catalogue metric was quoted)."""
    if not gate.quotes(results, params):
        return []
    return [*definitions_slides(results, params), populations_slide(results, params)]
