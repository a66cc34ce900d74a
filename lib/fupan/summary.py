"""The executive summary and the background slide, written from ``results.json``.

Every number on these slides is a figure a chapter recorded: the summary quotes, it never
computes. A chapter that did not run leaves its line out rather than inventing one.
"""

from __future__ import annotations

import html
from typing import Any

from fupan import i18n
from fupan.deck import Section, Slide
from fupan.params import Params


def _get(results: dict[str, Any], key: str) -> Any:
    node: Any = results
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


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
    churn, bench = (
        _get(results, "diagnosis.churn_rate"),
        _get(results, "diagnosis.benchmark_churn_rate"),
    )
    if churn is not None and bench is not None:
        key = "summary.title_above" if churn > bench else "summary.title_below"
        headline = t(key, rate=f.pct(churn), bench=f.pct(bench), gap=f.pts(churn - bench))
        tiles.append(
            (
                t("summary.tile.churn", bench=f.pct(bench)),
                f.pct(churn),
                "red" if churn > bench else "green",
            )
        )
    core = _get(results, "diagnosis.core_churn_rate")
    if core is not None:
        cb = params.benchmarks.core_churn_rate
        tiles.append(
            (
                t("summary.tile.core_churn", bench=f.pct(cb)),
                f.pct(core),
                "red" if core > cb else "green",
            )
        )
    lost, lost_rate = _get(results, "ltv.lost_ltv"), _get(results, "ltv.lost_ltv_rate")
    if lost is not None:
        tiles.append(
            (
                t("summary.tile.lost_ltv"),
                f.money(lost),
                "red" if (lost_rate or 0) > params.benchmarks.lost_ltv_rate else "amber",
            )
        )
    at_risk = _get(results, "ltv.at_risk_ltv")
    if at_risk is not None:
        tiles.append((t("summary.tile.at_risk_ltv"), f.money(at_risk), "amber"))
    findings = _get(results, "diagnosis.findings") or []
    for i, item in enumerate(findings[:3], 1):
        if isinstance(item, dict) and item.get("title"):
            bullets.append(t("summary.failure", i=i, text=item["title"]))
    drivers = _get(results, "churn.top_drivers") or []
    if drivers:
        names = [_feature_label(d, lang) for d in drivers[:3]]
        bullets.append(t("summary.drivers", drivers=("、" if lang == "zh" else ", ").join(names)))
    if lost is not None and lost_rate is not None:
        bullets.append(
            t(
                "summary.ltv",
                lost=f.money(lost),
                rate=f.pct(lost_rate),
                bench=f.pct(params.benchmarks.lost_ltv_rate),
            )
        )
    scenarios = [
        s
        for s in (_get(results, "simulation.scenarios") or [])
        if isinstance(s, dict) and s.get("roi") is not None
    ]
    if scenarios:
        best = max(scenarios, key=lambda s: s["roi"])
        bullets.append(
            t(
                "summary.scenario",
                name=best.get("label") or best["name"],
                roi=f.pct(best["roi"], 0),
                low=f.pct(best.get("roi_low"), 0),
                high=f.pct(best.get("roi_high"), 0),
            )
        )
    status = _get(results, "kpi.status") or {}
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
    summary = Slide(
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
    customers, orders = _get(results, "data_check.customers"), _get(results, "data_check.orders")
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
    background = Slide(
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
            slides=[summary, background],
            divider=False,
        )
    ]
