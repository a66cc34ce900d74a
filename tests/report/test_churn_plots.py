"""fupan.report.plots.churn: each chart draws the chapter's frames on the axes it is given
(or a new titled figure), with the locale's words and error bars that never go negative."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fupan.chapters import signals  # noqa: E402
from fupan.core import i18n  # noqa: E402
from fupan.core.chapter_params import WarningRule  # noqa: E402
from fupan.report.plots import churn as plots  # noqa: E402


@pytest.fixture(autouse=True)
def _close():
    yield
    plt.close("all")


def _errbar_lengths(ax):
    """The (lower, upper) lengths of every error bar drawn on ``ax``."""
    out = []
    for c in ax.containers:
        if hasattr(c, "has_xerr") and (c.has_xerr or c.has_yerr):
            for seg in c.lines[2][0].get_segments():
                out.append(np.abs(np.diff(np.asarray(seg), axis=0)).sum())
    return out


def test_bars_never_negative():
    lo, hi = plots._bars([0.2, 0.0], [0.25, 0.0], [0.3, 0.1])
    assert (lo >= 0).all() and (hi >= 0).all()
    assert lo.tolist() == [0.0, 0.0] and hi.tolist() == pytest.approx([0.1, 0.1])


def test_rule_lift_draws_on_given_axes_sorted_with_rule_names():
    rules = pd.DataFrame(
        {"rule": ["a", "b"], "lift": [2.5, 0.8], "lift_low": [1.4, 0.5], "lift_high": [3.0, 1.2]}
    )
    defs = {
        "a": WarningRule(feature="spend_change_qoq", op="<=", threshold=-0.4),
        "b": WarningRule(feature="tickets_90d", op=">=", threshold=3),
    }
    fig, ax = plt.subplots()
    got = plots.plot_rule_lift(rules, defs, "en", ax=ax)
    assert got is ax and ax.get_title() == i18n.t("churn.lift.chart", "en")
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [signals.rule_label(r, defs[r], "en") for r in ("b", "a")]  # by lift
    widths = [p.get_width() for p in ax.patches]
    assert widths == [0.8, 2.5]
    assert all(x >= 0 for x in _errbar_lengths(ax))


def test_new_figure_when_no_axes_and_titles_from_the_locale():
    cal = pd.DataFrame(
        {
            "predicted": [0.01, 0.05],
            "observed": [0.0, 0.06],
            "low": [0.0, 0.03],
            "high": [0.02, 0.1],
        }
    )
    ax = plots.plot_calibration(cal, "zh")
    assert ax.get_title() == i18n.t("churn.calibration.chart", "zh")
    assert ax.get_xlabel() == i18n.t("churn.calibration.x", "zh")


def test_bands_labels_carry_each_bands_share():
    rb = pd.DataFrame(
        {
            "band": ["red", "amber", "green"],
            "share": [0.1, 0.2, 0.7],
            "rate": [0.2, 0.05, 0.01],
            "low": [0.15, 0.03, 0.005],
            "high": [0.25, 0.08, 0.02],
        }
    )
    fmt = i18n.Fmt("en")
    ax = plots.plot_bands(rb, 90, "en", fmt)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[0] == f"{i18n.t('churn.band.red', 'en')}\n{fmt.pct(0.1, 0)}"
    assert [p.get_height() for p in ax.patches] == [0.2, 0.05, 0.01]


def test_two_panel_charts_use_the_given_axes():
    tb = pd.DataFrame(
        {
            "group": ["promoter", "detractor"],
            "rate": [0.02, 0.1],
            "low": [0.01, 0.05],
            "high": [0.04, 0.2],
        }
    )
    csat = tb.assign(group=["5", "none"])
    fig, axes = plt.subplots(1, 2)
    got = plots.plot_satisfaction(tb, csat, "en", axes=axes)
    assert got[0] is axes[0] and got[1] is axes[1]
    assert [t.get_text() for t in axes[1].get_xticklabels()] == [
        "5",
        i18n.t("churn.nps.none", "en"),
    ]
    pareto = pd.DataFrame(
        {"reason": ["price", "x_custom"], "share": [0.6, 0.4], "cum_share": [0.6, 1.0]}
    )
    left, right = plots.plot_reason_pareto(pareto, pareto, "en")
    # a reason outside the vocabulary keeps its own name
    assert [t.get_text() for t in left.get_xticklabels()] == [
        i18n.t("churn.reason.price", "en"),
        "x_custom",
    ]
    assert left.figure is right.figure


def test_survival_steps_one_curve_per_group_in_order():
    curve = pd.DataFrame(
        {
            "time": [0, 100, 400],
            "surv": [1, 0.9, 0.8],
            "low": [1, 0.85, 0.7],
            "high": [1, 0.95, 0.9],
        }
    )
    km = signals.Survival(
        pd.Timestamp("2025-01-01"), {"b": curve, "a": curve * 1}, 0.01, {}, ["a", "b"]
    )
    ax = plots.plot_survival(km, "title", str.upper, "en")
    assert [ln.get_label() for ln in ax.get_lines()] == ["A", "B"]
    assert ax.get_title() == "title"


def test_forest_log_scale_and_tier_levels_in_words():
    forest = pd.DataFrame(
        {"odds_ratio": [1.5, 0.7], "or_low": [1.2, 0.5], "or_high": [1.9, 0.9]},
        index=["recency_days", "tier=gold"],
    )
    ax = plots.plot_forest(forest, "en", lambda t: t.title())
    assert ax.get_xscale() == "log"
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == [f"{i18n.t('feat.tier', 'en')}: Gold", i18n.t("feat.recency_days", "en")]


def test_reasons_by_tier_stacks_to_the_shares():
    shares = pd.DataFrame({"gold": [0.75, 0.25], "silver": [0.5, 0.5]}, index=["price", "service"])
    ax = plots.plot_reasons_by_tier(shares, "en", str.upper)
    tops = sorted({round(p.get_y() + p.get_height(), 9) for p in ax.patches})
    assert tops == [0.5, 0.75, 1.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["GOLD", "SILVER"]


def test_health_weights_only_positive_weights_coloured_by_direction():
    learned = pd.DataFrame(
        {
            "group": ["recency_days", "spend_90d", "tickets_90d"],
            "weight": [0.6, 0.4, 0.0],
            "direction": [1, -1, 1],
        }
    )
    left, right = plots.plot_health_weights(learned, {"need_fit": 0.5, "engagement": 0.5}, "en")
    assert len(left.patches) == 2  # the zero weight is not drawn
    assert [t.get_text() for t in right.get_yticklabels()] == [
        i18n.t("churn.hand.need_fit", "en"),
        i18n.t("churn.hand.engagement", "en"),
    ]


def test_roc_and_trend_lines_with_their_labels():
    pts = {
        "learned": (np.array([0, 0.5, 1]), np.array([0, 0.8, 1])),
        "hand": (np.array([0, 1]), np.array([0, 1])),
    }
    ax = plots.plot_roc(pts, "en")
    assert [ln.get_label() for ln in ax.get_lines()[:2]] == [
        i18n.t("churn.roc.learned", "en"),
        i18n.t("churn.roc.hand", "en"),
    ]
    trend = pd.DataFrame(
        {
            "snapshot_date": pd.to_datetime(["2026-01-01", "2026-02-01"]),
            "churn_rate": [0.05, 0.04],
            "low": [0.03, 0.02],
            "high": [0.07, 0.06],
            "nps": [10.0, 20.0],
        }
    )
    ax = plots.plot_trend(trend, 90, "en")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        i18n.t("churn.trend.churn", "en"),
        i18n.t("churn.trend.nps", "en"),
    ]
