"""Chapter 2's charts (churn root cause): ``plot_*(…, ax=None) -> Axes``.

Each draws what a function of :mod:`fupan.chapters.churn`, :mod:`~fupan.chapters.signals`
or :mod:`~fupan.chapters.lost` returned, on ``ax`` when given, else on a new titled figure
(:func:`fupan.report.charts.new`). A two-panel chart takes ``axes`` (two axes) and returns
both. Words come from the locale; error bars are drawn from the intervals the chapter
computed, never widened or recomputed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from fupan.chapters.atrisk import feature_label
from fupan.chapters.lost import reason_label
from fupan.chapters.signals import rule_label
from fupan.core import i18n
from fupan.report import charts


def _bars(v: Any, lo: Any, hi: Any) -> list[np.ndarray]:
    """Error-bar lengths from an estimate and its interval (never negative)."""
    v, lo, hi = (np.asarray(x, dtype=float) for x in (v, lo, hi))
    return [np.clip(v - lo, 0, None), np.clip(hi - v, 0, None)]


def _pair(axes: Sequence[Axes] | None, **kwargs: Any) -> tuple[Sequence[Axes], bool]:
    """Two axes side by side: the caller's, or a new figure's (then laid out when drawn)."""
    if axes is not None:
        return axes, False
    _, made = charts.plt.subplots(1, 2, **kwargs)
    return made, True


def plot_rule_lift(
    rules: pd.DataFrame, definitions: Mapping[str, Any], lang: str, ax: Axes | None = None
) -> Axes:
    """Lift of each backtested rule with its 95% interval; red where the interval is above 1.

    ``rules`` is :attr:`fupan.chapters.churn.ChurnReview.backtested`; ``definitions`` the
    params' ``churn.rules`` (for the rules' names).
    """
    o = rules.sort_values("lift")
    ax = charts.axes(
        ax,
        i18n.t("churn.lift.chart", lang),
        xlabel=i18n.t("churn.lift.axis", lang),
        figsize=(9, 4.2),
    )
    y = np.arange(len(o))
    red, blue = charts.STATUS_COLORS["red"], charts.PALETTE[0]
    ax.barh(y, o.lift, color=[red if lo > 1 else blue for lo in o.lift_low])
    ax.errorbar(
        o.lift,
        y,
        xerr=_bars(o.lift, o.lift_low, o.lift_high),
        fmt="none",
        ecolor="black",
        capsize=3,
    )
    ax.axvline(1, color="black", linestyle="--", linewidth=1)
    ax.set_yticks(y, [rule_label(r, definitions[r], lang) for r in o.rule])
    return ax


def plot_health_weights(
    learned: pd.DataFrame, hand: Mapping[str, float], lang: str, axes: Sequence[Axes] | None = None
) -> Sequence[Axes]:
    """The learned score's ten heaviest metric groups (red: raises risk) beside the hand
    weights. ``learned`` is ``LearnedHealth.weights_``, ``hand`` ``HandHealth.weights_``."""
    (ax1, ax2), made = _pair(axes, figsize=(11, 4.6), gridspec_kw={"width_ratios": [3, 2]})
    w = learned[learned.weight > 0].head(10)
    ax1.set_title(i18n.t("churn.weights.learned", lang))
    yy = np.arange(len(w))
    colors = [
        charts.STATUS_COLORS["red"] if s > 0 else charts.STATUS_COLORS["green"] for s in w.direction
    ]
    ax1.barh(yy, w.weight, color=colors)
    ax1.set_yticks(yy, [feature_label(g, lang) for g in w.group])
    ax1.invert_yaxis()
    charts.percent_axis(ax1, "x")
    ax1.set_xlabel(i18n.t("churn.weights.axis", lang))
    hw = pd.Series(hand)
    ax2.set_title(i18n.t("churn.weights.hand", lang))
    ax2.barh(np.arange(len(hw)), hw.to_numpy(), color=charts.PALETTE[0])
    ax2.set_yticks(np.arange(len(hw)), [i18n.t(f"churn.hand.{k}", lang) for k in hw.index])
    ax2.invert_yaxis()
    charts.percent_axis(ax2, "x")
    ax2.set_xlabel(i18n.t("churn.weights.axis", lang))
    if made:
        ax1.figure.tight_layout()
    return (ax1, ax2)


def plot_roc(
    points: Mapping[str, tuple[np.ndarray, np.ndarray]], lang: str, ax: Axes | None = None
) -> Axes:
    """ROC curves of the learned and the hand-weighted score
    (:func:`fupan.chapters.churn.roc_points`), with the diagonal of a random score."""
    t = i18n.t
    ax = charts.axes(
        ax, t("churn.roc.chart", lang), t("churn.roc.x", lang), t("churn.roc.y", lang), (6.4, 5)
    )
    for (name, (fpr, tpr)), col in zip(points.items(), charts.PALETTE, strict=False):
        ax.plot(fpr, tpr, color=col, label=t(f"churn.roc.{name}", lang))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.legend(loc="lower right")
    return ax


def plot_calibration(cal: pd.DataFrame, lang: str, ax: Axes | None = None) -> Axes:
    """Observed churn (95% interval) against the predicted probability, by decile
    (:func:`fupan.models.health.calibration`), with the diagonal of a calibrated model."""
    t = i18n.t
    ax = charts.axes(
        ax,
        t("churn.calibration.chart", lang),
        t("churn.calibration.x", lang),
        t("churn.calibration.y", lang),
        (6.4, 5),
    )
    ax.errorbar(
        cal.predicted,
        cal.observed,
        yerr=_bars(cal.observed, cal.low, cal.high),
        fmt="o",
        color=charts.PALETTE[0],
        capsize=3,
    )
    lim = float(max(cal.predicted.max(), cal.high.max())) * 1.05
    ax.plot([0, lim], [0, lim], color="grey", linestyle=":")
    charts.percent_axis(ax, "x")
    charts.percent_axis(ax, "y")
    return ax


def plot_bands(
    rb: pd.DataFrame, horizon: int, lang: str, fmt: i18n.Fmt, ax: Axes | None = None
) -> Axes:
    """Churn rate (95% interval) per health band, each band's share of rows under its name
    (:func:`fupan.models.health.rate_by_band`)."""
    t = i18n.t
    ax = charts.axes(
        ax,
        t("churn.bands.chart", lang),
        ylabel=t("churn.bands.y", lang, horizon=horizon),
        figsize=(7, 4.4),
    )
    xs = np.arange(len(rb))
    ax.bar(xs, rb.rate, color=[charts.BAND_COLORS[b] for b in rb.band])
    ax.errorbar(
        xs, rb.rate, yerr=_bars(rb.rate, rb.low, rb.high), fmt="none", ecolor="black", capsize=4
    )
    names = [
        f"{t('churn.band.' + b, lang)}\n{fmt.pct(s, 0)}"
        for b, s in zip(rb.band, rb.share, strict=True)
    ]
    ax.set_xticks(xs, names)
    charts.percent_axis(ax, "y")
    return ax


def plot_forest(
    forest: pd.DataFrame, lang: str, tier_label: Callable[[str], str], ax: Axes | None = None
) -> Axes:
    """Odds ratio per SD with its 95% interval for the twelve largest effects of the driver
    logit (:attr:`fupan.models.drivers.DriverResult.forest`), on a log scale."""
    fo = forest.head(12).iloc[::-1]
    t = i18n.t
    ax = charts.axes(
        ax, t("churn.forest.chart", lang), xlabel=t("churn.forest.axis", lang), figsize=(9, 4.4)
    )
    yy = np.arange(len(fo))

    def col_label(c: str) -> str:
        feat, _, level = c.partition("=")
        if not level:
            return feature_label(feat, lang)
        return f"{feature_label(feat, lang)}: {tier_label(level) if feat == 'tier' else level}"

    ax.errorbar(
        fo.odds_ratio,
        yy,
        xerr=_bars(fo.odds_ratio, fo.or_low, fo.or_high),
        fmt="o",
        color=charts.PALETTE[0],
        ecolor=charts.PALETTE[0],
        capsize=3,
    )
    ax.axvline(1, color="black", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ticks = [
        x
        for x in (0.25, 0.33, 0.5, 0.67, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0)
        if fo.or_low.min() / 1.1 <= x <= fo.or_high.max() * 1.1
    ]
    ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
    ax.minorticks_off()
    ax.set_yticks(yy, [col_label(c) for c in fo.index])
    return ax


def plot_survival(
    km: Any, title: str, label: Callable[[Any], str], lang: str, ax: Axes | None = None
) -> Axes:
    """Kaplan-Meier curves with 95% bands per group (:class:`fupan.chapters.signals.Survival`),
    in ``km.order``; ``label`` names a group."""
    ax = charts.axes(
        ax, title, xlabel=i18n.t("churn.km.x", lang), ylabel=i18n.t("churn.km.y", lang)
    )
    for i, g in enumerate(km.order):
        c = km.curves[g]
        col = charts.PALETTE[i % len(charts.PALETTE)]
        ax.step(c.time, c.surv, where="post", color=col, label=label(g))
        ax.fill_between(c.time, c.low, c.high, step="post", color=col, alpha=0.15)
    ax.legend()
    charts.percent_axis(ax, "y")
    return ax


def plot_satisfaction(
    by_nps: pd.DataFrame, by_csat: pd.DataFrame, lang: str, axes: Sequence[Axes] | None = None
) -> Sequence[Axes]:
    """Churn rate (95% interval) by NPS group and by CSAT score
    (:class:`fupan.chapters.signals.Satisfaction`)."""
    (ax1, ax2), made = _pair(axes, figsize=(11, 4.4), sharey=True)
    panels = (
        (ax1, by_nps, "churn.sat.chart_nps", lambda x: i18n.t(f"churn.nps.{x}", lang)),
        (
            ax2,
            by_csat,
            "churn.sat.chart_csat",
            lambda x: i18n.t("churn.nps.none", lang) if x == "none" else x,
        ),
    )
    for ax, tb, title, lab in panels:
        xs = np.arange(len(tb))
        ax.bar(xs, tb.rate, color=charts.PALETTE[0])
        ax.errorbar(
            xs, tb.rate, yerr=_bars(tb.rate, tb.low, tb.high), fmt="none", ecolor="black", capsize=3
        )
        ax.set_xticks(xs, [lab(x) for x in tb.group])
        ax.set_title(i18n.t(title, lang))
        charts.percent_axis(ax, "y")
    ax1.set_ylabel(i18n.t("churn.sat.y", lang))
    if made:
        ax1.figure.tight_layout()
    return (ax1, ax2)


def plot_trend(trend: pd.DataFrame, horizon: int, lang: str, ax: Axes | None = None) -> Axes:
    """Churn rate within the horizon (95% band) and NPS per snapshot month, on two y-axes
    (:func:`fupan.chapters.signals.monthly_trend`)."""
    t = i18n.t
    ax = charts.axes(
        ax,
        t("churn.trend.chart", lang),
        ylabel=t("churn.trend.y_churn", lang, horizon=horizon),
        figsize=(10, 4.4),
    )
    ax.plot(
        trend.snapshot_date,
        trend.churn_rate,
        color=charts.PALETTE[1],
        marker="o",
        label=t("churn.trend.churn", lang),
    )
    ax.fill_between(trend.snapshot_date, trend.low, trend.high, color=charts.PALETTE[1], alpha=0.15)
    charts.percent_axis(ax, "y")
    ax2 = ax.twinx()
    ax2.plot(
        trend.snapshot_date,
        trend.nps,
        color=charts.PALETTE[0],
        marker="s",
        label=t("churn.trend.nps", lang),
    )
    ax2.set_ylabel(t("churn.trend.y_nps", lang))
    ax2.grid(False)
    lines = ax.get_lines()[:1] + ax2.get_lines()[:1]
    ax.legend(lines, [ln.get_label() for ln in lines], loc="upper left")
    return ax


def plot_reason_pareto(
    by_count: pd.DataFrame, by_value: pd.DataFrame, lang: str, axes: Sequence[Axes] | None = None
) -> Sequence[Axes]:
    """Each stated reason's share of lost customers and of lost value, with the cumulative
    share (:func:`fupan.chapters.lost.pareto`)."""
    pair, made = _pair(axes, figsize=(11, 4.6))
    for ax, tb, title in (
        (pair[0], by_count, "churn.pareto.chart_count"),
        (pair[1], by_value, "churn.pareto.chart_value"),
    ):
        xs = np.arange(len(tb))
        ax.bar(xs, tb.share, color=charts.PALETTE[0])
        ax.plot(xs, tb.cum_share, color=charts.PALETTE[1], marker="o")
        ax.set_xticks(xs, [reason_label(r, lang) for r in tb.reason], rotation=30, ha="right")
        ax.set_title(i18n.t(title, lang))
        charts.percent_axis(ax, "y")
        ax.set_ylim(0, 1.05)
    if made:
        pair[0].figure.tight_layout()
    return pair


def plot_reasons_by_tier(
    shares: pd.DataFrame, lang: str, tier_label: Callable[[str], str], ax: Axes | None = None
) -> Axes:
    """Each tier's lost customers by stated reason, stacked to 100%
    (:func:`fupan.chapters.lost.by_tier`: rows reasons, columns tiers)."""
    t = i18n.t
    ax = charts.axes(
        ax,
        t("churn.tier_reasons.chart", lang),
        ylabel=t("churn.tier_reasons.y", lang),
        figsize=(9, 4.6),
    )
    bottom = np.zeros(shares.shape[1])
    for i, r in enumerate(shares.index):
        ax.bar(
            np.arange(shares.shape[1]),
            shares.loc[r].to_numpy(),
            bottom=bottom,
            color=charts.PALETTE[i % len(charts.PALETTE)],
            label=reason_label(r, lang),
        )
        bottom += shares.loc[r].to_numpy()
    ax.set_xticks(np.arange(shares.shape[1]), [tier_label(x) for x in shares.columns])
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    charts.percent_axis(ax, "y")
    return ax
