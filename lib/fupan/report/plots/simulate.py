"""Chapter 4's charts (strategy simulation): ``plot_*(frame, ..., ax=None) -> Axes``.

Each takes a frame :mod:`fupan.chapters.simulate` computed (the ranked scenario table, the
sensitivity, a win-back's customers, the roadmap, the model's effects) and only draws it;
words come from the locale (``simulation.yaml``), numbers through the run's
:class:`fupan.core.i18n.Fmt`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter, NullFormatter

from fupan.core import i18n
from fupan.report import charts

__all__ = [
    "plot_roi",
    "plot_churn",
    "plot_sensitivity",
    "plot_winback",
    "plot_roadmap",
    "plot_effects",
]

#: Where a scenario's effect comes from -> its colour on the ROI chart.
SOURCE_COLORS = {"model": charts.PALETTE[0], "pilot": charts.PALETTE[2], "prior": charts.PALETTE[3]}


def _pct0(fmt: i18n.Fmt) -> FuncFormatter:
    return FuncFormatter(lambda v, _: fmt.pct(v, 0))


def plot_roi(
    table: pd.DataFrame,
    labels: Mapping[str, str],
    lang: str,
    fmt: i18n.Fmt,
    level: str,
    ax: Axes | None = None,
) -> Axes:
    """Each scenario's ROI with its interval, coloured by where the effect comes from.

    Parameters
    ----------
    table : ``SimulationResult.table`` (ranked; ``name, roi, roi_low, roi_high,
        effect_source``).
    labels : scenario name -> display name.
    level : the interval's coverage as shown (e.g. "90%").
    """
    t = i18n.t
    ax = charts.axes(
        ax, t("sim.roi.chart", lang, level=level), t("sim.roi.axis", lang),
        figsize=(10, 1.2 + 0.8 * len(table)),
    )  # fmt: skip
    yy = np.arange(len(table))[::-1]
    for y, r in zip(yy, table.itertuples(), strict=True):
        c = SOURCE_COLORS[r.effect_source]
        ax.plot([r.roi_low, r.roi_high], [y, y], color=c, linewidth=3, solid_capstyle="round")
        ax.plot([r.roi], [y], "o", color=c, markersize=9)
        ax.annotate(
            fmt.pct(r.roi, 0), (r.roi, y), textcoords="offset points", xytext=(0, 8),
            ha="center", fontsize=9,
        )  # fmt: skip
    for src, c in SOURCE_COLORS.items():
        if (table.effect_source == src).any():
            ax.plot([], [], "o-", color=c, label=t(f"sim.source.{src}", lang))
    ax.axvline(0, color="black", linewidth=1, linestyle="--")
    ax.set_yticks(yy, [labels.get(n, n) for n in table.name])
    ax.xaxis.set_major_formatter(_pct0(fmt))
    ax.legend(loc="lower right", fontsize=9)
    return ax


def plot_churn(
    retention: pd.DataFrame,
    labels: Mapping[str, str],
    lang: str,
    level: str,
    ax: Axes | None = None,
) -> Axes:
    """The targeted customers' annual churn today and with the change (with its interval).

    Parameters
    ----------
    retention : the retention rows of ``SimulationResult.table`` (``churn_before,
        churn_after, churn_after_low, churn_after_high``).
    """
    t = i18n.t
    ax = charts.axes(
        ax, t("sim.churn.chart", lang, level=level), t("sim.churn.axis", lang),
        figsize=(10, 1.2 + 0.8 * len(retention)),
    )  # fmt: skip
    before, after = charts.PALETTE[1], charts.PALETTE[0]
    yy = np.arange(len(retention))[::-1]
    for y, r in zip(yy, retention.itertuples(), strict=True):
        ax.plot([r.churn_before, r.churn_after], [y, y], color=charts.PALETTE[5], linewidth=1)
        ax.plot(
            [r.churn_after_low, r.churn_after_high], [y, y], color=after, linewidth=3, alpha=0.5
        )
        ax.plot([r.churn_before], [y], "o", color=before, markersize=8)
        ax.plot([r.churn_after], [y], "o", color=after, markersize=8)
    ax.plot([], [], "o", color=before, label=t("sim.churn.before", lang))
    ax.plot([], [], "o", color=after, label=t("sim.churn.after", lang))
    ax.set_yticks(yy, [labels.get(n, n) for n in retention.name])
    charts.percent_axis(ax, "x")
    ax.set_xlim(left=0)
    ax.legend(loc="lower right", fontsize=9)
    return ax


def plot_sensitivity(
    sens: pd.DataFrame,
    labels: Mapping[str, str],
    lang: str,
    fmt: i18n.Fmt,
    effect_range: tuple[float, float],
    ax: Axes | None = None,
) -> Axes:
    """A tornado: each scenario's ROI over the effect-size range, and its base ROI.

    Parameters
    ----------
    sens : ``SimulationResult.sensitivity`` in the order to draw, bottom up
        (:meth:`fupan.chapters.simulate.slides.ScenarioSlides.sensitivity` orders it).
    effect_range : the effect multipliers (``simulation.sensitivity``).
    """
    t = i18n.t
    lo, hi = effect_range
    ax = charts.axes(
        ax, t("sim.sens.chart", lang), t("sim.sens.axis", lang), figsize=(10, 1.2 + 0.8 * len(sens))
    )
    yy = np.arange(len(sens))
    left = np.minimum(sens.roi_effect_low, sens.roi_effect_high)
    width = (sens.roi_effect_high - sens.roi_effect_low).abs()
    ax.barh(
        yy, width, left=left, color=charts.PALETTE[0], alpha=0.75,
        label=t("sim.sens.range", lang, low=fmt.num(lo, 1), high=fmt.num(hi, 1)),
    )  # fmt: skip
    ax.plot(sens.roi, yy, "D", color=charts.PALETTE[1], label=t("sim.sens.base", lang))
    ax.axvline(0, color="black", linewidth=1, linestyle="--")
    ax.set_yticks(yy, [labels.get(n, n) for n in sens.name])
    ax.xaxis.set_major_formatter(_pct0(fmt))
    ax.legend(loc="lower right", fontsize=9)
    return ax


def plot_winback(frame: pd.DataFrame, lang: str, fmt: i18n.Fmt, ax: Axes | None = None) -> Axes:
    """A win-back's lost customers by expected value (contacted or not) against the cost.

    Parameters
    ----------
    frame : ``SimulationResult.winback[name]`` sorted by expected value, highest first
        (``expected_value, contacted, cost``).
    """
    t = i18n.t
    ax = charts.axes(ax, t("sim.wb.chart", lang), t("sim.wb.x", lang), t("sim.wb.y", lang))
    xs = np.arange(1, len(frame) + 1)
    c = frame.contacted.to_numpy()
    ev = frame.expected_value.to_numpy()
    cost = float(frame.cost.iloc[0])
    ax.fill_between(
        xs, 0, np.where(c, ev, 0), step="mid", color=charts.PALETTE[0],
        label=t("sim.wb.contacted", lang),
    )  # fmt: skip
    ax.fill_between(
        xs, 0, np.where(c, 0, ev), step="mid", color=charts.STATUS_COLORS["grey"],
        label=t("sim.wb.excluded", lang),
    )  # fmt: skip
    ax.axhline(
        frame.cost.iloc[0], color=charts.STATUS_COLORS["red"], linestyle="--",
        label=t("sim.wb.cost", lang),
    )  # fmt: skip
    ax.set_yscale("symlog", linthresh=max(cost / 10, 1.0))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: fmt.money(v)))
    ax.legend(fontsize=9)
    return ax


#: The roadmap's steps: (start column, end column, phase whose colour it takes).
_STEPS = (("pilot_start", "pilot_end", "pilot"), ("rollout_start", "standardise_start", "rollout"))
_PHASE_COLORS = {
    "pilot": charts.PALETTE[3],
    "rollout": charts.PALETTE[0],
    "standardise": charts.PALETTE[2],
}


def plot_roadmap(
    rm: pd.DataFrame, labels: Mapping[str, str], lang: str, ax: Axes | None = None
) -> Axes:
    """A Gantt chart of the roadmap: pilot, rollout, then standardise; held scenarios named.

    Parameters
    ----------
    rm : ``SimulationResult.roadmap`` (months from the programme's start).
    """
    t = i18n.t
    ax = charts.axes(
        ax, t("sim.road.chart", lang), t("sim.road.x", lang), figsize=(10, 1.4 + 0.7 * len(rm))
    )
    # the standardise bars run six months past the last start, to show they go on
    end = float(np.nanmax(rm[["standardise_start"]].to_numpy(dtype=float), initial=0.0)) + 6
    yy = np.arange(len(rm))[::-1]
    for y, r in zip(yy, rm.itertuples(), strict=True):
        if r.phase == "hold":
            ax.text(
                0.2, y, t("sim.phase.hold", lang), va="center", color=charts.STATUS_COLORS["grey"]
            )
            continue
        for a, b, phase in _STEPS:
            s0, s1 = getattr(r, a), getattr(r, b)
            if s0 == s0 and s1 == s1 and s1 > s0:
                ax.barh(y, s1 - s0, left=s0, color=_PHASE_COLORS[phase], height=0.5)
        ax.barh(
            y, end - r.standardise_start, left=r.standardise_start,
            color=_PHASE_COLORS["standardise"], height=0.5,
        )  # fmt: skip
    handles = [Patch(color=c, label=t(f"sim.phase.{k}", lang)) for k, c in _PHASE_COLORS.items()]
    ax.set_yticks(
        yy,
        [
            f"{labels.get(n, n)} · {t('sim.phase.' + p, lang)}"
            for n, p in zip(rm.name, rm.phase, strict=True)
        ],
    )
    ax.set_xlim(0, end)
    ax.legend(handles=handles, loc="lower right", fontsize=9)
    return ax


def plot_effects(
    effects: pd.DataFrame, lang: str, fmt: i18n.Fmt, level: str, ax: Axes | None = None
) -> Axes:
    """The churn model's hazard ratio per unit of each feature, with its interval (log axis).

    Parameters
    ----------
    effects : ``label, hr, low, high`` in the order to draw, bottom up
        (:meth:`fupan.chapters.simulate.slides.ScenarioSlides.method`).
    """
    t = i18n.t
    ax = charts.axes(
        ax, t("sim.method.chart", lang, level=level), t("sim.method.axis", lang),
        figsize=(9, 1.2 + 0.45 * len(effects)),
    )  # fmt: skip
    yy = np.arange(len(effects))
    hr, lo, hi = effects.hr, effects.low, effects.high
    ax.errorbar(
        hr, yy, xerr=[hr - lo, hi - hr], fmt="o", color=charts.PALETTE[0],
        ecolor=charts.PALETTE[0], capsize=3,
    )  # fmt: skip
    ax.axvline(1, color="black", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ticks = [x for x in (0.25, 0.5, 0.75, 1, 1.5, 2, 3, 4) if lo.min() / 1.2 <= x <= hi.max() * 1.2]
    ax.set_xticks(ticks, [fmt.num(x, 2) for x in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yticks(yy, list(effects.label))
    return ax
