"""Chapter 5's chart functions (fupan.report.plots.kpi): one KPI's trend on the axes it is
given, and the small multiples of a KPI group, drawn from the trend frame as given."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fupan.chapters import kpi  # noqa: E402
from fupan.core import i18n  # noqa: E402
from fupan.report import charts  # noqa: E402
from fupan.report.plots import kpi as plots  # noqa: E402

MONTHS = kpi.month_range("2025-11", "2026-10")
LABELS = {"target": "Target", "alert": "Alert", "na": "no value"}


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _trend(key: str, values: list[float], status: str = "red") -> pd.DataFrame:
    return pd.DataFrame(
        {
            "kpi": key,
            "month": MONTHS,
            "value": values,
            "status": status,
            "target": 0.02,
            "alert": 0.05,
        }
    )


def test_one_kpi_is_drawn_on_the_given_axes_with_its_levels_and_status():
    values = list(np.linspace(0.01, 0.06, len(MONTHS)))
    _, ax = plt.subplots()
    out = plots.plot_kpi_trend(
        _trend("churn_rate_monthly", values), "churn_rate_monthly", MONTHS, "Churn", LABELS,
        i18n.Fmt("en", "$"), ax=ax,
    )  # fmt: skip
    assert out is ax and ax.get_title() == "Churn"
    line, last = ax.lines[0], ax.lines[1]
    assert list(line.get_ydata()) == pytest.approx(values)
    assert last.get_color() == charts.STATUS_COLORS["red"]
    assert [t.get_label() for t in ax.lines[2:]] == ["Target", "Alert"]
    assert [t.get_ydata()[0] for t in ax.lines[2:]] == [0.02, 0.05]


def test_money_is_drawn_in_thousands_and_a_kpi_without_values_says_so():
    key = next(k for k, v in kpi.CATALOGUE.items() if v.unit == "money")
    trend = _trend(key, [2000.0] * len(MONTHS)).assign(target=None, alert=None)
    ax = plots.plot_kpi_trend(trend, key, MONTHS, "Value", LABELS, i18n.Fmt("en", "$"))
    assert ax.get_title() == "Value" and ax.get_ylabel() == "$ k"
    assert list(ax.lines[0].get_ydata()) == [2.0] * len(MONTHS)
    empty = plots.plot_kpi_trend(
        _trend(key, [np.nan] * len(MONTHS)), key, MONTHS, "Value", LABELS, i18n.Fmt("en", "$")
    )
    assert not empty.lines and [t.get_text() for t in empty.texts] == ["no value"]


def test_small_multiples_one_panel_per_kpi_under_one_title_and_legend():
    keys = ["churn_rate_monthly", "churn_rate_t12", "grr"]
    trend = pd.concat([_trend(k, [0.03] * len(MONTHS)) for k in keys])
    names = {k: k.upper() for k in keys}
    axes = plots.plot_kpi_trends(trend, keys[:2], MONTHS, names, LABELS, i18n.Fmt("en", "$"), "T")
    fig = axes.flat[0].figure
    assert axes.shape == (1, 2) and fig._suptitle.get_text() == "T"
    assert [ax.get_title() for ax in axes.flat] == ["CHURN_RATE_MONTHLY", "CHURN_RATE_T12"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["Target", "Alert"]
    # axes of the caller's: the panels beyond the KPIs are hidden
    _, own = plt.subplots(2, 2, squeeze=False)
    plots.plot_kpi_trends(trend, keys, MONTHS, names, LABELS, i18n.Fmt("en", "$"), "T", axes=own)
    assert [ax.get_visible() for ax in own.flat] == [True, True, True, False]
