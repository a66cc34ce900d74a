"""Chapter 3's chart functions (fupan.report.plots.ltv): they draw the frame they are given,
on the axes they are given, with the locale's words and nothing computed."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fupan.core import i18n  # noqa: E402
from fupan.report import charts  # noqa: E402
from fupan.report.plots import ltv as plots  # noqa: E402

F = i18n.Fmt("en", "$")


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _heights(ax) -> list[float]:
    return [p.get_height() for p in ax.patches]


def test_purchase_check_pairs_actual_and_predicted_and_marks_the_open_top_bin():
    chk = pd.DataFrame(
        {
            "frequency": [0, 1, 2, 3],
            "actual": [0.2, 0.9, 1.7, 3.1],
            "predicted": [0.3, 1.0, 1.6, 2.8],
        }
    )
    ax = plots.plot_model_check(chk, "en", max_freq=3)
    assert ax.get_title() == i18n.t("ltv.check.chart", "en")
    assert _heights(ax) == pytest.approx([0.2, 0.9, 1.7, 3.1, 0.3, 1.0, 1.6, 2.8])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "3+"]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [i18n.t("ltv.legend.actual", "en"), i18n.t("ltv.legend.predicted", "en")]


def test_renewal_check_is_a_rate_axis_and_draws_on_the_axes_given():
    chk = pd.DataFrame({"renewals": [0, 1, 2, 4], "actual": [0.7, 0.8, 0.85, 0.9],
                        "predicted": [0.72, 0.79, 0.86, 0.88]})  # fmt: skip
    fig, ax = plt.subplots()
    got = plots.plot_model_check(chk, "zh", ax=ax)
    assert got is ax and len(fig.axes) == 1
    assert ax.get_title() == i18n.t("ltv.check.chart_contracts", "zh")
    assert ax.get_ylim() == (0, 1.05)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["0", "1", "2", "4+"]


def test_clv_by_tier_leaves_out_empty_tiers_and_labels_each_box_with_its_mean():
    chart = pd.DataFrame(
        {
            "group": ["A", "B", "C"],
            "label": ["Key", "Growth", "Other"],
            "mean": [5000.0, 800.0, np.nan],
            "median": [4000.0, 600.0, np.nan],
            "values": [np.array([1000.0, 4000.0, 9000.0]), np.array([200.0, 600.0]), np.array([])],
            "p5": [1300.0, 240.0, np.nan],
        }
    )
    ax = plots.plot_clv_by_tier(chart, "en", F)
    assert [t.get_text() for t in ax.get_xticklabels()] == ["Key", "Growth"]
    assert [a.get_text() for a in ax.texts] == [F.money(5000.0), F.money(800.0)]
    assert ax.get_yscale() == "log"
    assert ax.get_ylim()[0] == pytest.approx(0.5 * 240.0)


def test_loss_rates_colour_the_groups_above_the_benchmark_and_draw_its_line():
    chart = pd.DataFrame({"label": ["2023", "2024", "2025"], "rate": [0.05, 0.2, 0.12],
                          "lost_ltv": [100.0, 900.0, 300.0]})  # fmt: skip
    ax = plots.plot_loss_rates(chart, 0.1, "en", F, by="cohort")
    red = matplotlib.colors.to_rgba(charts.STATUS_COLORS["red"])
    assert [p.get_facecolor() == red for p in ax.patches] == [False, True, True]
    assert _heights(ax) == pytest.approx([0.05, 0.2, 0.12])
    (line,) = ax.get_lines()
    assert line.get_ydata()[0] == pytest.approx(0.1)
    assert [a.get_text() for a in ax.texts] == [F.money(v) for v in (100.0, 900.0, 300.0)]
    assert ax.get_xlabel() == i18n.t("ltv.axis.cohort", "en")


def test_loss_shares_put_the_largest_on_top_and_say_the_rate_only_where_there_is_one():
    chart = pd.DataFrame({"label": ["Price", "Service"], "lost_ltv": [600.0, 400.0],
                          "share": [0.6, 0.4], "rate": [0.3, np.nan]})  # fmt: skip
    ax = plots.plot_loss_shares(chart, "en", F, by="reason")
    assert [t.get_text() for t in ax.get_yticklabels()] == ["Service", "Price"]
    rate = i18n.t("ltv.rate_short", "en")
    assert [a.get_text() for a in ax.texts] == [F.pct(0.4), f"{F.pct(0.6)} · {rate} {F.pct(0.3)}"]
    assert ax.get_xlim() == pytest.approx((0, 600.0 * 1.3))


def test_loss_shares_of_nothing_lost_keep_a_unit_axis():
    chart = pd.DataFrame({"label": ["Price"], "lost_ltv": [0.0], "share": [np.nan], "rate": [0.0]})
    ax = plots.plot_loss_shares(chart, "en", F, by="industry")
    assert ax.get_xlim() == (0, 1)
    assert ax.get_title() == i18n.t("ltv.industry.chart", "en")


def test_at_risk_bars_are_the_values_given_labelled_with_customers():
    chart = pd.DataFrame({"label": ["Key", "Growth"], "customers": [3, 12],
                          "ltv_at_risk": [5000.0, 2500.0]})  # fmt: skip
    ax = plots.plot_at_risk_by_tier(chart, "en", F)
    assert _heights(ax) == pytest.approx([5000.0, 2500.0])
    assert [a.get_text() for a in ax.texts] == [
        i18n.t("ltv.risk.bar_label", "en", n=F.int(n)) for n in (3, 12)
    ]
