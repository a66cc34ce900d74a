"""Chapter 1 (diagnosis) charts: ``plot_*(frame, ..., fmt=, ax=None) -> Axes``.

Each takes what a chapter function returned (:mod:`fupan.chapters.diagnosis`,
:mod:`~fupan.chapters.funnel`, :mod:`~fupan.chapters.touches`,
:mod:`~fupan.chapters.service`, :mod:`fupan.measures.segments`) and draws it; words come
from the locale in ``fmt.lang``, tier codes read as ``tier_label`` says (the params'
``tier_label``). Drawn on ``ax`` when given, else on a new figure from
:func:`fupan.report.charts.new` at the size the deck uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from fupan.chapters import funnel
from fupan.chapters.diagnosis import label
from fupan.core import i18n
from fupan.core.i18n import Fmt
from fupan.measures import segments
from fupan.report import charts

Label = Callable[[str], str]


def _words(fmt: Fmt | None) -> tuple[Fmt, Callable[..., str]]:
    fmt = fmt or Fmt()
    return fmt, lambda key, **values: i18n.t(key, fmt.lang, **values)


def plot_headline(
    bars: pd.DataFrame, top_n: int, *, fmt: Fmt | None = None, ax: Axes | None = None
) -> Axes:
    """Churn, core churn and top-N renewal against their benchmarks (one bar each).

    ``bars``: :func:`fupan.chapters.diagnosis.headline_bars` (``metric, value, benchmark,
    lower_is_better``); red where the value is on the wrong side of its benchmark.
    """
    f, t = _words(fmt)
    ax = charts.axes(ax, t("diag.headline.chart"), figsize=(10, 2.6))
    ys = np.arange(len(bars))
    worse = [
        (v > b) if lower else (v < b)
        for v, b, lower in zip(bars.value, bars.benchmark, bars.lower_is_better, strict=True)
    ]
    ax.barh(
        ys,
        list(bars.value),
        color=[charts.STATUS_COLORS["red"] if w else charts.STATUS_COLORS["green"] for w in worse],
        height=0.55,
    )
    ax.scatter(
        list(bars.benchmark),
        ys,
        marker="|",
        s=400,
        color="black",
        zorder=3,
        label=t("diag.legend.benchmark"),
    )
    for yi, v in zip(ys, bars.value, strict=True):
        ax.text(v, yi, f" {f.pct(v)}", va="center", fontsize=9)
    ax.set_yticks(ys, [t(f"diag.headline.metric.{k}", n=top_n) for k in bars.metric])
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    charts.percent_axis(ax, "x")
    ax.legend(fontsize=8, loc="lower right")
    return ax


def group_label(row: Any, lang: str, tier_label: Label = str) -> str:
    """A churn group's name: the tier's label, an industry's or region's, or the dimension."""
    if row.dimension == "tier":
        return tier_label(str(row.group))
    if row.dimension in ("industry", "region"):
        return label(f"diag.{row.dimension}", row.group, lang)
    return i18n.t(f"diag.dim.{row.dimension}", lang)


def plot_churn_groups(
    groups: pd.DataFrame,
    *,
    fmt: Fmt | None = None,
    tier_label: Label = str,
    ax: Axes | None = None,
) -> Axes:
    """Churn with its interval per group against the benchmark (red: interval above it).

    ``groups``: rows of :func:`fupan.chapters.diagnosis.headline_churn` (``dimension, group,
    rate, ci_low, ci_high, benchmark``).
    """
    f, t = _words(fmt)
    labels_y = [
        f"{t(f'diag.dim.{r.dimension}')} · {group_label(r, f.lang, tier_label)}"
        if r.dimension not in ("overall", "core")
        else t(f"diag.dim.{r.dimension}")
        for r in groups.itertuples()
    ]
    ax = charts.axes(
        ax, t("diag.groups.chart"), xlabel=t("diag.axis.churn_rate"), figsize=(10, 5.6)
    )
    y = np.arange(len(groups))
    colors = [
        charts.STATUS_COLORS["red"] if lo > b else charts.PALETTE[0]
        for lo, b in zip(groups.ci_low, groups.benchmark, strict=True)
    ]
    ax.hlines(y, groups.ci_low, groups.ci_high, color=colors, lw=2)
    ax.scatter(groups.rate, y, color=colors, zorder=3, s=28, label=t("diag.legend.rate_ci"))
    ax.scatter(
        groups.benchmark,
        y,
        marker="|",
        color="black",
        s=120,
        zorder=4,
        label=t("diag.legend.benchmark"),
    )
    ax.set_yticks(y, labels_y)
    ax.tick_params(axis="y", labelsize=8)
    ax.invert_yaxis()
    charts.percent_axis(ax, "x")
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_renewal_bands(
    by_band: pd.DataFrame,
    rate: float,
    target: float,
    n: int,
    *,
    fmt: Fmt | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Top-N renewal per rank band (:func:`~fupan.chapters.diagnosis.renewal_by_band`)
    against the target and the overall rate."""
    f, t = _words(fmt)
    ax = charts.axes(
        ax,
        t("diag.renewal.chart", n=n),
        xlabel=t("diag.axis.rank_band"),
        ylabel=t("diag.axis.renewal_rate"),
        figsize=(9, 4.4),
    )
    xl = [
        t("diag.renewal.band", first=int(r.first), last=int(r.last)) for r in by_band.itertuples()
    ]
    ax.bar(
        xl,
        by_band.rate,
        color=[
            charts.STATUS_COLORS["red"] if v < target else charts.PALETTE[2] for v in by_band.rate
        ],
    )
    ax.axhline(target, color="black", ls="--", lw=1, label=t("diag.legend.target"))
    ax.axhline(rate, color=charts.PALETTE[0], lw=1, label=t("diag.legend.overall"))
    charts.percent_axis(ax)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right", fontsize=8)
    return ax


def plot_revenue_retention(
    rr: pd.DataFrame, benchmark: float, *, fmt: Fmt | None = None, ax: Axes | None = None
) -> Axes:
    """Gross and net revenue retention per cohort year
    (:func:`~fupan.chapters.funnel.revenue_retention`, cohorts with base revenue)."""
    f, t = _words(fmt)
    ax = charts.axes(
        ax,
        t("diag.nrr.chart"),
        xlabel=t("diag.axis.cohort_year"),
        ylabel=t("diag.axis.retention"),
        figsize=(9, 4.4),
    )
    xs = np.arange(len(rr))
    names = [t("diag.nrr.all") if c == "all" else str(c) for c in rr.cohort]
    ax.bar(xs - 0.2, rr.grr, width=0.4, color=charts.PALETTE[0], label=t("diag.legend.grr"))
    ax.bar(xs + 0.2, rr.nrr, width=0.4, color=charts.PALETTE[2], label=t("diag.legend.nrr"))
    ax.axhline(benchmark, color="black", ls="--", lw=1, label=t("diag.legend.nrr_benchmark"))
    ax.set_xticks(xs, names)
    charts.percent_axis(ax)
    # outside, right of the plot: the bars fill it, so every place inside covers some and
    # charts.place_legends would draw the figure ten more times to find that out
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return ax


def plot_rfm(
    grid: pd.DataFrame, bins: int, *, fmt: Fmt | None = None, ax: Axes | None = None
) -> Axes:
    """Revenue share per R x F cell (:func:`fupan.measures.segments.rfm_grid`), R high on top."""
    f, t = _words(fmt)
    heat = (
        grid.pivot(index="r", columns="f", values="revenue_share")
        .reindex(index=range(bins, 0, -1), columns=range(1, bins + 1))
        .fillna(0.0)
    )
    ax = charts.axes(
        ax,
        t("diag.rfm.chart"),
        xlabel=t("diag.axis.f_score"),
        ylabel=t("diag.axis.r_score"),
        figsize=(7.5, 4.6),
    )
    ax.imshow(heat.to_numpy(), cmap="Blues", aspect="auto")
    ax.set_xticks(range(heat.shape[1]), heat.columns)
    ax.set_yticks(range(heat.shape[0]), heat.index)
    for (i, j), v in np.ndenumerate(heat.to_numpy()):
        ax.text(
            j,
            i,
            f.pct(v, 0),
            ha="center",
            va="center",
            fontsize=8,
            color="white" if v > heat.to_numpy().max() / 2 else "black",
        )
    ax.grid(False)
    return ax


def plot_tier_matrix(
    matrix: pd.DataFrame,
    *,
    fmt: Fmt | None = None,
    tier_label: Label = str,
    ax: Axes | None = None,
) -> Axes:
    """Customers per assigned x recommended tier (:func:`fupan.measures.segments.tier_matrix`)."""
    f, t = _words(fmt)
    ax = charts.axes(
        ax,
        t("diag.tiers.chart"),
        xlabel=t("diag.axis.recommended_tier"),
        ylabel=t("diag.axis.assigned_tier"),
        figsize=(7.5, 4.4),
    )
    shade = np.log1p(matrix.to_numpy())
    ax.imshow(shade, cmap="Blues", aspect="auto")
    ax.set_xticks(range(len(matrix.columns)), [tier_label(c) for c in matrix.columns])
    ax.set_yticks(range(len(matrix.index)), [tier_label(c) for c in matrix.index])
    for (i, j), v in np.ndenumerate(matrix.to_numpy()):
        ax.text(
            j,
            i,
            f.int(v),
            ha="center",
            va="center",
            fontsize=10,
            color="white" if shade[i, j] > 0.6 * shade.max() else "black",
        )
    ax.grid(False)
    return ax


def plot_value_potential(
    vp: pd.DataFrame,
    quadrants: pd.DataFrame,
    cuts: dict,
    seed: int,
    *,
    fmt: Fmt | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Customers by value (log) and potential, coloured by quadrant, with the two cuts
    (:func:`fupan.measures.segments.value_potential` and ``quadrant_summary``).

    ``seed`` jitters the potential a little so customers with identical trends separate.
    """
    f, t = _words(fmt)
    ax = charts.axes(
        ax,
        t("diag.vp.chart"),
        xlabel=t("diag.axis.value"),
        ylabel=t("diag.axis.potential"),
        figsize=(9, 4.6),
    )
    qcolors = dict(
        zip(
            segments.QUADRANTS,
            [charts.PALETTE[2], charts.PALETTE[3], charts.PALETTE[0], charts.PALETTE[5]],
            strict=True,
        )
    )
    pos = vp[vp.value > 0]
    jit = np.random.default_rng(seed).uniform(-0.02, 0.02, len(pos))
    for q in segments.QUADRANTS:
        m = pos.quadrant == q
        row = quadrants.set_index("quadrant").loc[q]
        ax.scatter(
            pos.value[m],
            pos.potential[m] + jit[m.to_numpy()],
            s=6,
            alpha=0.5,
            color=qcolors[q],
            label=t(
                "diag.vp.legend",
                q=t(f"diag.quadrant.{q}"),
                cs=f.pct(row.customer_share, 0),
                rs=f.pct(row.revenue_share, 0),
            ),
        )
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(lambda v, _: f.money(v))
    ax.axvline(cuts["value_cut"], color="black", lw=1, ls="--")
    ax.axhline(cuts["potential_cut"], color="black", lw=1, ls="--")
    # outside, right of the plot: the points cover every place inside, and charts.place_legends
    # would draw the figure (every point) ten more times to find that out
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), markerscale=3)
    return ax


def plot_tier_effort(
    effort: pd.DataFrame,
    *,
    fmt: Fmt | None = None,
    tier_label: Label = str,
    ax: Axes | None = None,
) -> Axes:
    """Customers, revenue, touches and tickets shares per tier
    (:func:`fupan.measures.segments.tier_effort`); a share the data lacks is left out."""
    f, t = _words(fmt)
    ax = charts.axes(ax, t("diag.effort.chart"), ylabel=t("diag.axis.share"), figsize=(9, 4.4))
    series = [
        ("customers_share", "diag.legend.customers"),
        ("revenue_share", "diag.legend.revenue"),
        ("touches_share", "diag.legend.touches"),
        ("tickets_share", "diag.legend.tickets"),
    ]
    series = [s for s in series if effort[s[0]].notna().any()]
    w = 0.8 / len(series)
    xs = np.arange(len(effort))
    for i, (col, key) in enumerate(series):
        ax.bar(
            xs + (i - (len(series) - 1) / 2) * w,
            effort[col],
            width=w,
            color=charts.PALETTE[i],
            label=t(key),
        )
    ax.set_xticks(xs, [tier_label(x) for x in effort.tier])
    charts.percent_axis(ax)
    ax.legend(fontsize=8)
    return ax


def plot_touch_frequency(
    freq: pd.DataFrame,
    *,
    fmt: Fmt | None = None,
    tier_label: Label = str,
    ax: Axes | None = None,
) -> Axes:
    """Touches per quarter per tier against the policy (:func:`~fupan.chapters.touches.touch_frequency`)."""
    f, t = _words(fmt)
    ax = charts.axes(
        ax, t("diag.freq.chart"), ylabel=t("diag.axis.touches_per_quarter"), figsize=(9, 4.4)
    )
    xs = np.arange(len(freq))
    ax.bar(
        xs,
        freq.per_quarter,
        color=[charts.STATUS_COLORS["red"] if r < 1 else charts.PALETTE[2] for r in freq.ratio],
        label=t("diag.legend.actual"),
    )
    ax.scatter(
        xs,
        freq.policy,
        marker="_",
        s=900,
        color="black",
        zorder=3,
        label=t("diag.legend.policy"),
    )
    ax.set_xticks(xs, [tier_label(x) for x in freq.tier])
    ax.legend(fontsize=8)
    return ax


def plot_touch_coverage(
    cov: pd.DataFrame,
    overall: float,
    days: int,
    *,
    fmt: Fmt | None = None,
    tier_label: Label = str,
    ax: Axes | None = None,
) -> Axes:
    """Touch coverage per tier with its interval (the tier rows of
    :func:`~fupan.chapters.touches.coverage`) and the overall coverage as a line."""
    f, t = _words(fmt)
    ax = charts.axes(
        ax, t("diag.cov.chart", days=days), ylabel=t("diag.axis.coverage"), figsize=(9, 4.4)
    )
    xs = np.arange(len(cov))
    ax.bar(xs, cov.coverage, color=charts.PALETTE[0])
    ax.errorbar(
        xs,
        cov.coverage,
        # clipped: a Wilson bound at a rate of 0 or 1 can miss it by a rounding error
        yerr=[
            (cov.coverage - cov.ci_low).clip(lower=0),
            (cov.ci_high - cov.coverage).clip(lower=0),
        ],
        fmt="none",
        color="black",
        capsize=4,
    )
    ax.axhline(
        overall, color=charts.STATUS_COLORS["red"], ls="--", lw=1, label=t("diag.legend.overall")
    )
    ax.set_xticks(xs, [tier_label(x) for x in cov.tier])
    ax.set_ylim(0, 1.05)
    charts.percent_axis(ax)
    ax.legend(fontsize=8)
    return ax


def plot_channel_mix(mix: pd.DataFrame, *, fmt: Fmt | None = None, ax: Axes | None = None) -> Axes:
    """Response rate per channel with its interval and share of touches
    (:func:`~fupan.chapters.touches.channel_mix`)."""
    f, t = _words(fmt)
    ax = charts.axes(ax, t("diag.ch.chart"), ylabel=t("diag.axis.response_rate"), figsize=(9, 4.4))
    xs = np.arange(len(mix))
    ax.bar(xs, mix.response_rate.fillna(0), color=charts.PALETTE[0])
    ax.errorbar(
        xs,
        mix.response_rate,
        yerr=[mix.response_rate - mix.ci_low, mix.ci_high - mix.response_rate],
        fmt="none",
        color="black",
        capsize=3,
    )
    ax.set_xticks(
        xs,
        [
            f"{label('diag.channel', c, f.lang)}\n{t('diag.ch.share', share=f.pct(s, 0))}"
            for c, s in zip(mix.channel, mix.share, strict=True)
        ],
        fontsize=8,
    )
    ax.set_ylim(0, 1.05)
    charts.percent_axis(ax)
    return ax


def plot_sla_heatmap(
    by_tier_priority: pd.DataFrame,
    order: list[str],
    *,
    fmt: Fmt | None = None,
    tier_label: Label = str,
    ax: Axes | None = None,
) -> Axes:
    """SLA compliance per tier x priority (:func:`~fupan.chapters.service.service_levels`
    by tier and priority), tiers in ``order``."""
    f, t = _words(fmt)
    heat = by_tier_priority.pivot(index="tier", columns="priority", values="sla_compliance")
    heat = heat.reindex(
        index=[x for x in order if x in heat.index],
        columns=[p for p in ["urgent", "high", "normal", "low"] if p in heat.columns],
    )
    ax = charts.axes(
        ax,
        t("diag.sla.chart"),
        xlabel=t("diag.axis.priority"),
        ylabel=t("diag.axis.tier"),
        figsize=(7.5, 4.2),
    )
    ax.imshow(heat.to_numpy(dtype=float), cmap="RdYlGn", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(heat.shape[1]), [label("diag.priority", p, f.lang) for p in heat.columns])
    ax.set_yticks(range(heat.shape[0]), [tier_label(x) for x in heat.index])
    for (i, j), v in np.ndenumerate(heat.to_numpy(dtype=float)):
        ax.text(j, i, f.pct(v, 0), ha="center", va="center", fontsize=10)
    ax.grid(False)
    return ax


def plot_backlog(backlog: pd.DataFrame, *, fmt: Fmt | None = None, ax: Axes | None = None) -> Axes:
    """Open and unanswered tickets at each month end (:func:`~fupan.chapters.service.backlog_trend`)."""
    f, t = _words(fmt)
    ax = charts.axes(ax, t("diag.backlog.chart"), ylabel=t("diag.axis.tickets"), figsize=(9, 4.4))
    ax.plot(
        backlog.date, backlog.open, marker="o", color=charts.PALETTE[0], label=t("diag.legend.open")
    )
    ax.plot(
        backlog.date,
        backlog.unanswered,
        marker="o",
        color=charts.PALETTE[1],
        label=t("diag.legend.unanswered"),
    )
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    ax.figure.autofmt_xdate()
    return ax


#: funnel bar colours by stage (first deal and repeat alike; churned grey)
_STAGE_COLORS = [
    charts.PALETTE[2],
    charts.PALETTE[2],
    charts.PALETTE[0],
    charts.PALETTE[3],
    charts.STATUS_COLORS["red"],
    charts.STATUS_COLORS["grey"],
]


def plot_funnel(counts: pd.DataFrame, *, fmt: Fmt | None = None, ax: Axes | None = None) -> Axes:
    """Customers per lifecycle stage with their share (:func:`~fupan.chapters.funnel.funnel_counts`)."""
    f, t = _words(fmt)
    ax = charts.axes(
        ax, t("diag.funnel.chart"), ylabel=t("diag.axis.customers"), figsize=(9.5, 4.4)
    )
    xs = np.arange(len(counts))
    ax.bar(xs, counts.customers, color=_STAGE_COLORS[: len(counts)])
    for xi, r in zip(xs, counts.itertuples(), strict=True):
        ax.text(
            xi,
            r.customers,
            f"{f.int(r.customers)}\n{f.pct(r.share, 0)}",
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(xs, [t(f"diag.stage.{s}") for s in counts.stage])
    ax.set_ylim(0, counts.customers.max() * 1.2 + 1)
    return ax


def plot_retention_curves(
    ret: pd.DataFrame, *, fmt: Fmt | None = None, ax: Axes | None = None
) -> Axes:
    """Share of each quarterly cohort ordering k quarters after its first order
    (:func:`~fupan.chapters.funnel.retention_curves`)."""
    f, t = _words(fmt)
    ax = charts.axes(
        ax,
        t("diag.ret.chart"),
        xlabel=t("diag.axis.quarters_since"),
        ylabel=t("diag.axis.ordering"),
        figsize=(9, 4.4),
    )
    for i, (coh, g) in enumerate(ret.groupby("cohort")):
        ax.plot(
            g.k,
            g.retention,
            marker="o",
            ms=3,
            color=charts.PALETTE[i % len(charts.PALETTE)],
            label=funnel.cohort_label(coh),
        )
    ax.set_ylim(0, 1.05)
    charts.percent_axis(ax)
    ax.legend(fontsize=7, ncol=2, title=t("diag.legend.cohort"), title_fontsize=8)
    return ax
