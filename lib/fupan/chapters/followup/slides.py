"""What notebook 06's slides say: sentences, tables and figures from a :class:`Followup`."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd

from fupan.chapters.followup.cut import add_years


def summary_line(results: dict[str, Any], lang: str, fmt: Any) -> str | None:
    """The executive summary's line from results.json ``followup`` ("Of last year's 390 red
    customers, 27% left, 5.9x the base rate"), or ``None`` when the list was not graded."""
    from fupan.core import i18n

    fu = results.get("followup") or {}
    need = ("at_risk_then", "at_risk_precision", "at_risk_lift", "base_rate")
    if not all(isinstance(fu.get(k), (int, float)) for k in need) or not fu["at_risk_then"]:
        return None
    return i18n.t(
        f"fu.summary.{fu.get('source', 'backtest')}",
        lang,
        n=fmt.int(fu["at_risk_then"]),
        precision=fmt.pct(fu["at_risk_precision"], 0),
        lift=fmt.num(fu["at_risk_lift"], 1),
        base=fmt.pct(fu["base_rate"], 0),
        then=fu.get("as_of_then", ""),
    )


def calibration_figure(table: pd.DataFrame, labels: dict[str, str]) -> Any:
    """Predicted vs realised churn rate by decile, realised with its interval."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = table["bin"].to_numpy()
    ax.plot(x, table.predicted, "o-", label=labels["predicted"])
    err = [table.observed - table.low, table.high - table.observed]
    ax.errorbar(x, table.observed, yerr=err, fmt="s", capsize=3, label=labels["observed"])
    ax.set_xticks(x)
    ax.set_xlabel(labels["x"])
    ax.set_ylabel(labels["y"])
    ax.yaxis.set_major_formatter(lambda v, _: f"{100 * v:.0f}%")
    ax.set_title(labels["title"])
    ax.legend(frameon=False)
    return fig


def clv_figure(table: pd.DataFrame, labels: dict[str, str]) -> Any:
    """Mean predicted vs realised 12-month spend per decile of the prediction."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.6))
    x = table.decile.to_numpy()
    w = 0.4
    ax.bar(x - w / 2, table.predicted, w, label=labels["predicted"])
    ax.bar(x + w / 2, table.realised, w, label=labels["observed"])
    ax.set_xticks(x)
    ax.set_xlabel(labels["x"])
    ax.set_ylabel(labels["y"])
    ax.set_title(labels["title"])
    ax.legend(frameon=False)
    return fig


def red_table(red: dict[str, Any], lang: str, fmt: Any) -> pd.DataFrame:
    """The red list's grades as a slide table: measure, value, 95% interval, counts."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    rows = []
    for key, k, n in (
        ("precision", red["flagged_churned"], red["flagged"]),
        ("recall", red["flagged_churned"], red["churned"]),
        ("base_rate", red["churned"], red["graded"]),
    ):
        rows.append(
            [t(f"fu.red.{key}"), fmt.pct(red[key], 1),
             t("fu.range", lo=fmt.pct(red[f"{key}_low"], 1), hi=fmt.pct(red[f"{key}_high"], 1)),
             t(f"fu.red.count.{key}", k=fmt.int(k), n=fmt.int(n))]
        )  # fmt: skip
    if math.isfinite(red["lift"]):
        rows.append(
            [t("fu.red.lift"), f"{fmt.num(red['lift'], 2)}×",
             t("fu.range", lo=f"{fmt.num(red['lift_low'], 2)}×", hi=f"{fmt.num(red['lift_high'], 2)}×"),
             t("fu.red.count.precision", k=fmt.int(red["flagged_churned"]), n=fmt.int(red["flagged"]))]
        )  # fmt: skip
    if math.isfinite(red["median_lead_days"]):
        ci = ""
        if math.isfinite(red["median_lead_days_low"]):
            ci = t("fu.range", lo=fmt.num(red["median_lead_days_low"], 0),
                   hi=fmt.num(red["median_lead_days_high"], 0))  # fmt: skip
        rows.append(
            [t("fu.red.lead"), fmt.num(red["median_lead_days"], 0), ci,
             t("fu.red.count.lead", k=fmt.int(red["flagged_churned"]))]
        )  # fmt: skip
    cols = [t(f"fu.red.col.{c}") for c in ("measure", "value", "interval", "count")]
    return pd.DataFrame(rows, columns=cols)


def _metric_label(row: dict[str, Any], lang: str) -> str:
    from fupan.core import i18n

    if row["metric"] != "churn_rate":
        return i18n.t(f"fu.head.{row['metric']}", lang)
    if "months" in row:
        return i18n.t("fu.head.churn_rate_months", lang, months=row["months"])
    return i18n.t("fu.head.churn_rate_days", lang, days=row["days"])


def _show(row: dict[str, Any], x: float, fmt: Any) -> str:
    return fmt.money(x) if row["metric"] == "revenue_12m" else fmt.pct(x, 1)


def _off(row: dict[str, Any], fmt: Any) -> str:
    """How far the forecast missed: relative for money, percentage points for rates."""
    if row["metric"] == "revenue_12m" and row.get("off_relative") is not None:
        return fmt.pct(abs(row["off_relative"]), 0)
    return fmt.pts(abs(row["off"]), 1).lstrip("+")


def verdict_words(row: dict[str, Any], lang: str, fmt: Any) -> str:
    """``held`` or ``missed: 14% too low`` in words."""
    from fupan.core import i18n

    return i18n.t(f"fu.head.verdict.{row['verdict']}", lang, off=_off(row, fmt))


def headline_table(rows: list[dict[str, Any]], lang: str, fmt: Any) -> pd.DataFrame:
    """Headline forecasts vs actuals as a slide table: forecast, actual with its 95%
    interval, the base rate (the value a year before), the verdict in words."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    out = []
    for r in rows:
        base = _show(r, r["base"], fmt) if "base" in r else t("fu.head.no_base")
        out.append(
            [_metric_label(r, lang), _show(r, r["forecast"], fmt), _show(r, r["actual"], fmt),
             t("fu.range", lo=_show(r, r["low"], fmt), hi=_show(r, r["high"], fmt)), base,
             verdict_words(r, lang, fmt)]
        )  # fmt: skip
    cols = ("metric", "forecast", "actual", "interval", "base", "verdict")
    return pd.DataFrame(out, columns=[t(f"fu.head.col.{c}") for c in cols])


def headline_lines(
    rows: list[dict[str, Any]], then: Any, source: str, lang: str, fmt: Any
) -> dict[str, Any]:
    """The headline slide's title and finding (quoting the numbers) and the note that
    states each forecast's population in words."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    sep = "；" if lang == "zh" else "; "
    held = sum(r["verdict"] == "held" for r in rows)
    missed = [
        t(f"fu.head.off.{r['verdict']}", what=t(f"fu.head.short.{r['metric']}"), off=_off(r, fmt))
        for r in rows
        if r["verdict"] != "held"
    ]
    if missed:
        title = t("fu.head.title_some", held=held, n=len(rows), missed=sep.join(missed))
    else:
        title = t("fu.head.title_all", n=len(rows))
    pairs = sep.join(
        t("fu.head.pair", what=_metric_label(r, lang), f=_show(r, r["forecast"], fmt),
          a=_show(r, r["actual"], fmt))
        for r in rows
    )  # fmt: skip
    finding = t("fu.head.finding", pairs=pairs, then=str(then))
    pops = []
    for r in rows:
        # the churn forecast a previous run's simulation recorded is annual, over everyone live
        key = (
            "churn_rate.recorded" if "months" in r and r["metric"] == "churn_rate" else r["metric"]
        )
        pops.append(
            t(f"fu.head.pop.{key}", n=fmt.int(r["population"]), then=str(then),
              cohort=str(r.get("cohort_acquired_by", "")), days=r.get("days", ""),
              base=fmt.money(r.get("base_revenue")) if "base_revenue" in r else "")
        )  # fmt: skip
    note = t("fu.head.pop", pops=sep.join(pops))
    if any(r["basis"] == "recomputed" for r in rows):
        note += " " + t("fu.head.basis.recomputed", then=str(then))
    elif any(r["basis"] == "recorded" and r["metric"] != "churn_rate" for r in rows):
        note += " " + t("fu.head.basis.recorded", then=str(then))
    return {"title": title, "finding": finding, "note": note}


def next_year_lines(summary: dict[str, Any], lang: str, fmt: Any) -> tuple[str, str]:
    """The slide (title, finding) for this review's forecasts of the coming year, recorded
    for next year's follow-up; the finding quotes them or says why there are none."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    until = add_years(dt.date.fromisoformat(str(summary["as_of"])))
    items = []
    if "churn_rate" in summary:
        x, n = fmt.pct(summary["churn_rate"], 1), fmt.int(summary["customers_scored"])
        items.append(t("fu.next.churn", days=summary["horizon_days"], x=x, n=n))
    if "revenue_12m" in summary:
        items.append(t("fu.next.revenue", x=fmt.money(summary["revenue_12m"])))
    if "nrr" in summary:
        items.append(
            t("fu.next.nrr", x=fmt.pct(summary["nrr"], 1), n=fmt.int(summary["nrr_cohort"]))
        )
    sep = "；" if lang == "zh" else "; "
    if not items:
        return t("fu.next.title_none"), t("fu.next.none")
    text = sep.join(items)
    return t("fu.next.title", until=str(until)), t(
        "fu.next.finding", items=text[:1].upper() + text[1:]
    )


def next_year_table(summary: dict[str, Any], lang: str, fmt: Any) -> pd.DataFrame | None:
    """The recorded forecasts next to this year's value of each (the base a reader would
    forecast without a model), or ``None`` when none was recorded."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    base = summary.get("base") or {}
    rows = []
    for key, label, show, b in (
        ("churn_rate", t("fu.head.churn_rate_days", days=summary.get("horizon_days")),
         lambda x: fmt.pct(x, 1), base.get("churn_rate_horizon")),
        ("revenue_12m", t("fu.head.revenue_12m"), fmt.money, summary.get("revenue_12m_base")),
        ("nrr", t("fu.head.nrr"), lambda x: fmt.pct(x, 1), base.get("nrr")),
    ):  # fmt: skip
        if key in summary:
            rows.append([label, show(summary[key]), t("fu.head.no_base") if b is None else show(b)])
    if not rows:
        return None
    until = add_years(dt.date.fromisoformat(str(summary["as_of"])))
    cols = [
        t("fu.head.col.metric"),
        t("fu.next.col.forecast", until=str(until)),
        t("fu.next.col.base"),
    ]
    return pd.DataFrame(rows, columns=cols)


def pilot_lines(pilots: pd.DataFrame, as_of: Any, lang: str, fmt: Any) -> list[tuple[str, ...]]:
    """Per pilot: a slide (title, finding) and a note comparing it with the prediction."""
    from fupan.core import i18n

    def t(key: str, **v: Any) -> str:
        return i18n.t(key, lang, **v)

    def pp(x: float) -> str:
        return fmt.pts(x, 1)  # "pts" / "个百分点", as every other slide writes a rate change

    out: list[tuple[str, ...]] = []
    for r in pilots.to_dict(orient="records"):
        if r.get("effect") is None or not math.isfinite(r.get("effect", float("nan"))):
            out.append(("slide", t("fu.pilot.one_arm", pilot=r["pilot"])))
            continue
        title = t("fu.pilot.title", pilot=r["pilot"], t=fmt.pct(r["treated_rate"], 1),
                  c=fmt.pct(r["control_rate"], 1), d=pp(r["effect"]), low=pp(r["effect_low"]),
                  high=pp(r["effect_high"]))  # fmt: skip
        finding = t("fu.pilot.finding", start=str(r["started_at"]), nt=fmt.int(r["treated"]),
                    nc=fmt.int(r["control"]), as_of=str(as_of),
                    decision=t(f"fu.decision.{r['decision']}"))  # fmt: skip
        out.append(("slide", title, finding))
        held = r.get("prediction_held")
        if held is None or (isinstance(held, float) and math.isnan(held)):
            out.append(("note", t("fu.pilot.no_prediction")))
        else:
            key = "fu.pilot.held" if held else "fu.pilot.missed"
            out.append(("note", t(key, p=pp(r["predicted_effect"]), low=pp(r["predicted_low"]),
                                  high=pp(r["predicted_high"]), d=pp(r["effect"]))))  # fmt: skip
    return out


def findings_lines(findings: pd.DataFrame, lang: str, fmt: Any) -> pd.DataFrame:
    """Last year's findings vs this year's values, as a slide table."""
    from fupan.core import i18n

    def value(metric: str, x: Any) -> str:
        if x is None or (isinstance(x, float) and not math.isfinite(x)):
            return i18n.t("fu.find.not_measured", lang)
        share = metric.endswith(("_rate", "_share")) or metric in ("sla_compliance",)
        return fmt.pct(float(x), 1) if share else fmt.num(float(x), 0)

    rows = [
        [r.finding_then, value(r.metric, r.value_then), value(r.metric, r.value_now)]
        for r in findings.itertuples()
    ]
    cols = [i18n.t(f"fu.find.col.{c}", lang) for c in ("finding", "then", "now")]
    return pd.DataFrame(rows, columns=cols)
