"""Chapter 3's charts (notebook 03): the model check, CLV by tier, the loss and the value at risk.

Each draws a frame a :class:`fupan.chapters.clv.slides.ValuationSlides` slide returned (``slide.chart``)
on ``ax`` when given, else on a new figure, and returns the axes. Groups arrive labelled
(column ``label``); words come from the locale, numbers are only formatted here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from fupan.core import i18n
from fupan.report import charts

FIGSIZE = (9, 4.2)


def _pair_bars(ax: Axes, check: pd.DataFrame, lang: str) -> np.ndarray:
    x = np.arange(len(check))
    ax.bar(x - 0.2, check.actual, width=0.4, color=charts.PALETTE[0],
           label=i18n.t("ltv.legend.actual", lang))  # fmt: skip
    ax.bar(x + 0.2, check.predicted, width=0.4, color=charts.PALETTE[3],
           label=i18n.t("ltv.legend.predicted", lang))  # fmt: skip
    return x


def plot_model_check(
    check: pd.DataFrame, lang: str, max_freq: int | None = None, ax: Axes | None = None
) -> Axes:
    """Actual against predicted, bar pairs: review-period purchases by calibration-period
    frequency (``check`` of :func:`fupan.chapters.clv.holdout_check`, the last bar
    ``max_freq+``), or the renewal rate by renewals made (:func:`~fupan.chapters.clv.renewal_check`).
    """
    t = lambda key: i18n.t(key, lang)  # noqa: E731
    if "frequency" in check.columns:
        ax = charts.axes(
            ax,
            t("ltv.check.chart"),
            t("ltv.axis.cal_frequency"),
            t("ltv.axis.holdout_purchases"),
            figsize=FIGSIZE,
        )
        x = _pair_bars(ax, check, lang)
        top = max_freq if max_freq is not None else int(check.frequency.max())
        ax.set_xticks(x, [f"{v}+" if v >= top else str(v) for v in check.frequency])
        ax.legend(fontsize=8, loc="upper left")
        return ax
    ax = charts.axes(
        ax,
        t("ltv.check.chart_contracts"),
        t("ltv.axis.renewals_made"),
        t("ltv.axis.renewal_rate"),
        figsize=FIGSIZE,
    )
    x = _pair_bars(ax, check, lang)
    top = check.renewals.max()
    ax.set_xticks(x, [f"{v}+" if v == top and v >= 4 else str(v) for v in check.renewals])
    charts.percent_axis(ax)
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def plot_clv_by_tier(chart: pd.DataFrame, lang: str, fmt: i18n.Fmt, ax: Axes | None = None) -> Axes:
    """Box plots of positive CLV by tier on a log axis, each labelled with the tier's mean.

    ``chart``: :func:`fupan.chapters.clv.clv_by_group` rows with ``label``, ``values`` (the
    tier's positive CLVs) and ``p5`` (their 5th percentile); tiers with no value are left out.
    """
    t = lambda key: i18n.t(key, lang)  # noqa: E731
    ax = charts.axes(
        ax, t("ltv.tiers.chart"), t("ltv.axis.tier"), t("ltv.axis.clv_log"), figsize=FIGSIZE
    )
    kept = chart[[len(v) > 0 for v in chart["values"]]]
    # whiskers at the 5th and 95th percentiles: a few customers the model sees as gone are worth
    # almost nothing and would stretch a log axis over many decades
    ax.boxplot(list(kept["values"]), tick_labels=list(kept.label), showfliers=False,
               whis=(5, 95), widths=0.45, patch_artist=True,
               boxprops={"facecolor": charts.PALETTE[0], "alpha": 0.35},
               medianprops={"color": charts.PALETTE[1]})  # fmt: skip
    ax.set_yscale("log")
    ax.set_ylim(bottom=0.5 * min(kept.p5))
    for j, r in enumerate(kept.itertuples()):
        ax.annotate(fmt.money(r.mean), (j + 1.25, r.median), xytext=(4, 0),
                    textcoords="offset points", fontsize=8, va="center")  # fmt: skip
    ax.yaxis.set_major_formatter(lambda v, _: fmt.money(v))
    return ax


def plot_loss_rates(
    chart: pd.DataFrame,
    benchmark: float,
    lang: str,
    fmt: i18n.Fmt,
    by: str = "tier",
    ax: Axes | None = None,
) -> Axes:
    """The LTV loss rate by group (``by``: ``tier`` or ``cohort``) against the benchmark line,
    bars above it in red, each labelled with the LTV lost (``label, rate, lost_ltv``)."""
    t = lambda key: i18n.t(key, lang)  # noqa: E731
    title = "ltv.lost_tier.chart" if by == "tier" else "ltv.cohort.chart_unit"
    ax = charts.axes(ax, t(title), t(f"ltv.axis.{by}"), t("ltv.axis.loss_rate"), figsize=FIGSIZE)
    x = np.arange(len(chart))
    base = charts.PALETTE[0] if by == "tier" else charts.PALETTE[2]
    ax.bar(x, chart.rate, color=[charts.STATUS_COLORS["red"] if r > benchmark else base
                                 for r in chart.rate])  # fmt: skip
    ax.axhline(benchmark, color="black", ls="--", lw=1, label=t("ltv.legend.benchmark"))
    for xi, r in zip(x, chart.itertuples(), strict=True):
        ax.annotate(fmt.money(r.lost_ltv), (xi, r.rate), xytext=(0, 3), textcoords="offset points",
                    ha="center", fontsize=8)  # fmt: skip
    ax.set_xticks(x, list(chart.label))
    charts.percent_axis(ax)
    ax.legend(fontsize=8, loc="upper right")
    return ax


def plot_loss_shares(
    chart: pd.DataFrame, lang: str, fmt: i18n.Fmt, by: str = "reason", ax: Axes | None = None
) -> Axes:
    """Horizontal bars of the LTV lost by group (``by``: ``reason`` or ``industry``), largest
    on top, labelled with the share of the loss (and the loss rate where there is one)."""
    t = lambda key: i18n.t(key, lang)  # noqa: E731
    ax = charts.axes(ax, t(f"ltv.{by}.chart"), t("ltv.axis.lost_ltv"), figsize=FIGSIZE)
    shown = chart.iloc[::-1]
    ax.barh(list(shown.label), shown.lost_ltv, color=charts.PALETTE[1])
    for yi, r in enumerate(shown.itertuples()):
        text = fmt.pct(r.share)
        if not np.isnan(r.rate):
            text = f"{text} · {t('ltv.rate_short')} {fmt.pct(r.rate)}"
        ax.annotate(text, (r.lost_ltv, yi), xytext=(4, 0), textcoords="offset points",
                    va="center", fontsize=8)  # fmt: skip
    ax.xaxis.set_major_formatter(lambda v, _: fmt.money(v))
    top = float(shown.lost_ltv.max()) if len(shown) else 0.0
    ax.set_xlim(0, top * 1.3 if top > 0 else 1)
    return ax


def plot_at_risk_by_tier(
    chart: pd.DataFrame, lang: str, fmt: i18n.Fmt, ax: Axes | None = None
) -> Axes:
    """The CLV at risk now by tier (``label, customers, ltv_at_risk``), each bar labelled with
    its number of customers."""
    t = lambda key: i18n.t(key, lang)  # noqa: E731
    ax = charts.axes(
        ax, t("ltv.risk.chart"), t("ltv.axis.tier"), t("ltv.axis.ltv_at_risk"), figsize=FIGSIZE
    )
    x = np.arange(len(chart))
    ax.bar(x, chart.ltv_at_risk, color=charts.PALETTE[1])
    for xi, r in zip(x, chart.itertuples(), strict=True):
        ax.annotate(i18n.t("ltv.risk.bar_label", lang, n=fmt.int(r.customers)), (xi, r.ltv_at_risk),
                    xytext=(0, 3), textcoords="offset points", ha="center", fontsize=8)  # fmt: skip
    ax.set_xticks(x, list(chart.label))
    ax.yaxis.set_major_formatter(lambda v, _: fmt.money(v))
    return ax
