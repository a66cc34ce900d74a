"""Chapter 5's charts (KPI tracking): ``plot_*(…, ax=None) -> Axes``.

:func:`plot_kpi_trend` draws one KPI's monthly line on ``ax`` (or on a new titled figure);
:func:`plot_kpi_trends` lays one such panel per KPI out as small multiples under one title
and returns the axes. Both draw the trend frame of :func:`fupan.chapters.kpi.month_report`
(``rep.trend``: ``kpi, month, value, status, target, alert``) as given.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib.dates as mdates
import numpy as np
import pandas as pd
from matplotlib.axes import Axes

from fupan.chapters.kpi.catalogue import CATALOGUE
from fupan.chapters.kpi.status import _isnan
from fupan.report import charts


def plot_kpi_trend(
    trend: pd.DataFrame,
    key: str,
    months: Sequence[str],
    name: str,
    labels: Mapping[str, str],
    fmt: Any,
    ax: Axes | None = None,
) -> Axes:
    """One KPI over ``months``, with its target and alert lines; the last point is coloured
    by the month's status.

    Months taken from the history and months computed now are drawn alike. A KPI with no
    value in any month says so (``labels["na"]``) in an empty panel.

    Parameters
    ----------
    trend : the month report's trend frame (every KPI; rows of ``key`` are drawn).
    key : the KPI (a :data:`fupan.chapters.kpi.CATALOGUE` key).
    months : the months of the x axis, ``YYYY-MM``.
    name : the panel's title (the KPI's name in the run's language).
    labels : words for ``target``, ``alert`` (the lines' legend) and ``na``.
    fmt : number formats (language and currency symbol of a money axis).
    ax : the axes to draw on; None: a new figure's.
    """
    if ax is None:
        ax = charts.new(name)[1]
    kpi = CATALOGUE[key]
    ax.set_title(name, fontsize=10.5)
    x = pd.PeriodIndex(months, freq="M").to_timestamp()
    s = trend[trend.kpi == key].set_index("month").reindex(months)
    y = pd.to_numeric(s.value, errors="coerce").to_numpy(dtype=float)
    if not np.isfinite(y).any():
        ax.text(
            0.5,
            0.5,
            labels["na"],
            ha="center",
            va="center",
            transform=ax.transAxes,
            color=charts.STATUS_COLORS["grey"],
            fontsize=11,
        )
        ax.set_xticks([])
        ax.set_yticks([])
        return ax
    scale = 1.0
    if kpi.unit == "money":
        scale = 1e4 if fmt.lang == "zh" else 1e3
        unit = "万" if fmt.lang == "zh" else "k"
        ax.set_ylabel(f"{fmt.symbol} {unit}", fontsize=8)
    ax.plot(x, y / scale, color=charts.PALETTE[0], marker="o", markersize=3, linewidth=1.6)
    last = np.where(np.isfinite(y))[0][-1]
    colour = charts.STATUS_COLORS.get(str(s.status.iloc[last]), charts.STATUS_COLORS["grey"])
    ax.plot([x[last]], [y[last] / scale], marker="o", markersize=8, color=colour, zorder=5)
    row = s.iloc[last]
    for which, style, colour_key in (("target", "--", "green"), ("alert", ":", "red")):
        level = row.get(which)
        if level is not None and not _isnan(level):
            ax.axhline(
                float(level) / scale,
                linestyle=style,
                linewidth=1.2,
                color=charts.STATUS_COLORS[colour_key],
                label=labels[which],
            )
    if kpi.unit == "pct":
        charts.percent_axis(ax, "y", decimals=0 if np.nanmax(np.abs(y)) >= 0.1 else 1)
    ax.xaxis.set_major_locator(mdates.MonthLocator(bymonth=(1, 4, 7, 10)))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%y-%m"))
    ax.tick_params(labelsize=8)
    ax.set_xlim(x[0] - pd.Timedelta(days=12), x[-1] + pd.Timedelta(days=12))
    return ax


def plot_kpi_trends(
    trend: pd.DataFrame,
    keys: Sequence[str],
    months: Sequence[str],
    names: Mapping[str, str],
    labels: Mapping[str, str],
    fmt: Any,
    title: str,
    axes: np.ndarray | None = None,
) -> np.ndarray:
    """Small multiples: one :func:`plot_kpi_trend` panel per KPI of ``keys``, under ``title``,
    with one legend for the target and alert lines.

    ``axes`` are the panels to draw on (at least ``len(keys)``; the rest are hidden); None:
    a new figure of up to three columns. Returns the axes, as a 2-D array.
    """
    if axes is None:
        n = len(keys)
        ncols = 1 if n == 1 else 3 if n > 4 or n == 3 else 2
        nrows = math.ceil(n / ncols)
        _, axes = charts.plt.subplots(
            nrows, ncols, figsize=(11.5, 2.45 * nrows + 0.7), squeeze=False
        )
    axes = np.atleast_2d(np.asarray(axes))
    fig = axes.flat[0].figure
    fig.suptitle(title, fontsize=13, fontweight="bold")
    for ax, key in zip(axes.flat, keys, strict=False):
        plot_kpi_trend(trend, key, months, names[key], labels, fmt, ax=ax)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(
            list(handles.values()),
            list(handles.keys()),
            loc="upper right",
            fontsize=9,
            frameon=False,
        )
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    return axes
