"""The executive summary and the background slide, written from ``results.json``.

Every number on these slides is a figure a chapter recorded: the summary quotes, it never
computes. A chapter that did not run leaves its line out rather than inventing one.
"""

from __future__ import annotations

import html
import math
from typing import Any

from fupan.core import i18n
from fupan.core.params import Params
from fupan.report import glossary
from fupan.report.deck import Page, Section
from fupan.report.results import lookup


def _num(value: Any) -> float | None:
    """A recorded figure as a finite number, or None (missing, NaN, inf, not a number)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# Flags chapter 2 may set on a row of ``churn.driver_table`` to say the methods do not
# support the driver (read defensively: whichever the chapter records).
_UNSUPPORTED = {"supported": False, "unsupported": True, "noise": True, "ranks": False}


def supported_drivers(results: dict[str, Any]) -> list[str]:
    """``churn.top_drivers`` without those the driver table marks as unsupported."""
    top = [d for d in (lookup(results, "churn.top_drivers") or []) if isinstance(d, str) and d]
    table = lookup(results, "churn.driver_table") or []
    rows = table if isinstance(table, list) else []
    out = set()
    for row in rows:
        if not isinstance(row, dict):
            continue
        if any(k in row and row[k] is v for k, v in _UNSUPPORTED.items()):
            out.add(row.get("feature"))
    return [d for d in top if d not in out]


def estimable_scenarios(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Scenarios with a finite ROI and an effect: never a 0-effect or 'not estimable' one."""
    keep = []
    for s in lookup(results, "simulation.scenarios") or []:
        if not isinstance(s, dict) or _num(s.get("roi")) is None:
            continue
        if s.get("estimable") is False or s.get("effect_source") in ("none", "not_estimable"):
            continue
        if "churn_change" in s and not _num(s.get("churn_change")):
            continue  # no estimable effect on churn: nothing to rank
        keep.append(s)
    return keep


def _feature_label(name: str, lang: str) -> str:
    for key in (f"feat.{name}", f"feature.{name}"):
        if key in i18n.catalogue():
            return i18n.t(key, lang)
    return name


def summary_items(results: dict[str, Any], params: Params) -> dict[str, Any]:
    """The summary's content: headline, tiles and bullet lines, each from a recorded figure."""
    lang = params.lang
    f = i18n.Fmt.from_params(params)
    t = lambda key, **kw: i18n.t(key, lang, **kw)  # noqa: E731
    tiles: list[tuple[str, str, str | None]] = []
    bullets: list[str] = []
    headline = t("summary.title_plain", name=params.name)
    churn = _num(lookup(results, "diagnosis.churn_rate"))
    bench = _num(lookup(results, "diagnosis.benchmark_churn_rate"))
    if churn is not None and bench is not None:
        key = "summary.title_above" if churn > bench else "summary.title_below"
        shown, line = f.pct_apart(churn, bench)  # "18.04% above 18.00%", never "18.0% above 18.0%"
        headline = t(key, rate=shown, bench=line, gap=f.pts(churn - bench))
        tiles.append(
            (
                t("summary.tile.churn", bench=f.pct(bench)),
                f.pct(churn),
                "red" if churn > bench else "green",
            )
        )
    core = _num(lookup(results, "diagnosis.core_churn_rate"))
    if core is not None:
        cb = params.benchmarks.core_churn_rate
        tiles.append(
            (
                t("summary.tile.core_churn", bench=f.pct(cb)),
                f.pct(core),
                "red" if core > cb else "green",
            )
        )
    lost = _num(lookup(results, "ltv.lost_ltv"))
    lost_rate = _num(lookup(results, "ltv.lost_ltv_rate"))
    if lost is not None:
        tiles.append(
            (
                t("summary.tile.lost_ltv"),
                f.money(lost),
                "red" if (lost_rate or 0) > params.benchmarks.lost_ltv_rate else "amber",
            )
        )
    at_risk = _num(lookup(results, "ltv.at_risk_ltv"))
    if at_risk is not None:
        tiles.append((t("summary.tile.at_risk_ltv"), f.money(at_risk), "amber"))
    findings = lookup(results, "diagnosis.findings") or []
    for i, item in enumerate(findings[:3], 1):
        if isinstance(item, dict) and item.get("title"):
            bullets.append(t("summary.failure", i=i, text=item["title"]))
    drivers = supported_drivers(results)
    if drivers:
        names = [_feature_label(d, lang) for d in drivers[:3]]
        key = "summary.drivers" if len(names) > 1 else "summary.driver_one"
        bullets.append(t(key, n=len(names), drivers=("、" if lang == "zh" else ", ").join(names)))
    if lost is not None and lost_rate is not None:
        bullets.append(
            t(
                "summary.ltv",
                lost=f.money(lost),
                rate=f.pct(lost_rate),
                bench=f.pct(params.benchmarks.lost_ltv_rate),
            )
        )
    scenarios = estimable_scenarios(results)
    if scenarios:
        ranked = sorted(scenarios, key=lambda s: _num(s["roi"]), reverse=True)
        best = ranked[0]
        # "best" needs a second option it beats; one option is named as what it is
        if len(ranked) > 1 and _num(best["roi"]) > _num(ranked[1]["roi"]):
            key = "summary.scenario"
        elif len(ranked) == 1:
            key = "summary.scenario_one"
        else:
            key = "summary.scenario_tie"
        low, high = _num(best.get("roi_low")), _num(best.get("roi_high"))
        if low is None or high is None:
            key += "_point"
        bullets.append(
            t(
                key,
                name=best.get("label") or best["name"],
                roi=f.pct(_num(best["roi"]), 0),
                low=f.pct(low, 0) if low is not None else "",
                high=f.pct(high, 0) if high is not None else "",
            )
        )
    if results.get("followup"):
        from fupan.chapters import followup  # the chapter's models load only when it ran

        line = followup.summary_line(results, lang, f)
        if line:
            bullets.append(line)
    status = lookup(results, "kpi.status") or {}
    if status:
        counts = {s: sum(1 for v in status.values() if v == s) for s in ("red", "amber", "green")}
        bullets.append(
            t("summary.kpi", red=counts["red"], amber=counts["amber"], green=counts["green"])
        )
    return {"headline": headline, "tiles": tiles, "bullets": bullets}


def _tiles_html(tiles: list[tuple[str, str, str | None]]) -> str:
    cells = "".join(
        f'<div class="tile{" status-" + s if s else ""}"><div class="value">{html.escape(v)}</div>'
        f'<div class="label">{html.escape(lab)}</div></div>'
        for lab, v, s in tiles
    )
    return f'<div class="fupan-tiles">{cells}</div>'


def _bullets_html(lines: list[str]) -> str:
    return (
        '<ul class="fupan-bullets">'
        + "".join(f"<li>{html.escape(x)}</li>" for x in lines)
        + "</ul>"
    )


def sections(results: dict[str, Any], params: Params) -> list[Section]:
    """The opening of the deck: executive summary, then background and goals."""
    lang = params.lang
    t = lambda key, **kw: i18n.t(key, lang, **kw)  # noqa: E731
    f = i18n.Fmt.from_params(params)
    items = summary_items(results, params)
    summary = Page(
        head=f'<div class="fupan-slide-head"><div class="kicker">{html.escape(t("summary.kicker"))}</div>'
        f"<h2>{html.escape(items['headline'])}</h2></div>"
    )
    if items["tiles"]:
        summary.body.append(_tiles_html(items["tiles"]))
    if items["bullets"]:
        summary.body.append(_bullets_html(items["bullets"]))
    if not items["tiles"] and not items["bullets"]:
        summary.body.append(f'<p class="fupan-note">{html.escape(t("summary.empty"))}</p>')
    goals = params.goals.get(lang) or []
    scope = []
    customers, orders = (
        lookup(results, "data_check.customers"),
        lookup(results, "data_check.orders"),
    )
    if customers is not None:
        scope.append(
            t(
                "summary.scope",
                customers=f.int(customers),
                orders=f.int(orders or 0),
                start=str(params.period_start),
                end=str(params.as_of),
            )
        )
    background = Page(
        head=f'<div class="fupan-slide-head"><h2>{html.escape(t("summary.background_title"))}</h2>'
        + (f'<p class="finding">{html.escape(scope[0])}</p>' if scope else "")
        + "</div>"
    )
    lines = goals or [t("summary.default_goal")]
    background.body.append(_bullets_html(lines))
    return [
        Section(
            key="summary",
            title=t("summary.section"),
            question=t("summary.question"),
            slides=[summary, background, *glossary.slides(results, params)],
            divider=False,
        )
    ]
