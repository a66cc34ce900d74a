"""fupan.report.plots.diagnosis: every chapter-1 chart returns its Axes, draws on an axes it
is given, passes the deck's chart check and takes its words from the locale (zh and en)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fupan.chapters import diagnosis  # noqa: E402
from fupan.core import i18n  # noqa: E402
from fupan.core.i18n import Fmt  # noqa: E402
from fupan.report import charts  # noqa: E402
from fupan.report.plots import diagnosis as plots  # noqa: E402

TIERS = ["platinum", "gold", "silver"]
NAMES = {"platinum": "P-tier", "gold": "G-tier", "silver": "S-tier"}


def _groups() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dimension": ["overall", "core", "tier", "tier", "industry"],
            "group": ["all", "core", "gold", "silver", "retail"],
            "rate": [0.2, 0.1, 0.15, 0.3, 0.25],
            "ci_low": [0.15, 0.05, 0.1, 0.22, 0.2],
            "ci_high": [0.25, 0.16, 0.2, 0.38, 0.3],
            "benchmark": [0.12, 0.08, 0.12, 0.12, 0.12],
        }
    )


def _backlog() -> pd.DataFrame:
    dates = pd.date_range("2025-11-30", periods=12, freq="ME")
    return pd.DataFrame({"date": dates, "open": np.arange(12) + 5, "unanswered": np.arange(12) % 4})


def _retention() -> pd.DataFrame:
    rows = []
    for c, cohort in enumerate(pd.date_range("2024-01-01", periods=4, freq="QS")):
        for k in range(1, 6 - c):
            rows.append((cohort, k, 0.8 - 0.1 * k - 0.02 * c))
    return pd.DataFrame(rows, columns=["cohort", "k", "retention"])


def _value_potential() -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    rng = np.random.default_rng(0)
    value = np.exp(rng.normal(8, 1, 200))
    potential = rng.normal(0, 0.5, 200)
    cuts = {"value_cut": float(np.quantile(value, 0.8)), "potential_cut": 0.0}
    hi_v, hi_p = value >= cuts["value_cut"], potential >= 0
    quadrant = np.select(
        [hi_v & hi_p, hi_v & ~hi_p, ~hi_v & hi_p], ["star", "cash_cow", "potential"], "maintain"
    )
    vp = pd.DataFrame({"value": value, "potential": potential, "quadrant": quadrant})
    from fupan.measures import segments

    quad = pd.DataFrame(
        {
            "quadrant": list(segments.QUADRANTS),
            "customer_share": [0.1, 0.1, 0.3, 0.5],
            "revenue_share": [0.5, 0.2, 0.1, 0.2],
        }
    )
    return vp, quad, cuts


def _cases() -> dict[str, tuple]:
    """Per chart: (call drawing with keyword args, the title's locale key and values)."""
    vp, quad, cuts = _value_potential()
    rfm = pd.DataFrame(
        [(r, f, (r + f) / 100) for r in range(1, 6) for f in range(1, 6)],
        columns=["r", "f", "revenue_share"],
    )
    matrix = pd.DataFrame(
        [[20, 5, 1], [3, 40, 6], [0, 7, 80]], index=TIERS, columns=TIERS, dtype=float
    )
    effort = pd.DataFrame(
        {
            "tier": TIERS,
            "customers_share": [0.1, 0.3, 0.6],
            "revenue_share": [0.5, 0.3, 0.2],
            "touches_share": [0.2, 0.3, 0.5],
            "tickets_share": [np.nan] * 3,
        }
    )
    freq = pd.DataFrame(
        {"tier": TIERS, "per_quarter": [2.0, 1.5, 0.4], "policy": [3.0, 1.0, 0.5]}
    ).assign(ratio=lambda x: x.per_quarter / x.policy)
    cov = pd.DataFrame(
        {
            "tier": TIERS,
            "coverage": [0.9, 0.7, 0.4],
            "ci_low": [0.8, 0.6, 0.3],
            "ci_high": [0.95, 0.8, 0.5],
        }
    )
    mix = pd.DataFrame(
        {
            "channel": ["email", "phone", "visit"],
            "share": [0.6, 0.3, 0.1],
            "response_rate": [0.1, 0.3, 0.5],
            "ci_low": [0.08, 0.25, 0.4],
            "ci_high": [0.12, 0.35, 0.6],
        }
    )
    sla = pd.DataFrame(
        [(t, p, c) for t in TIERS for p, c in (("urgent", 0.6), ("high", 0.8), ("normal", 0.95))],
        columns=["tier", "priority", "sla_compliance"],
    )
    funnel_counts = pd.DataFrame(
        {
            "stage": ["first_deal", "repeat", "active", "declining", "at_risk", "churned"],
            "customers": [50, 80, 300, 60, 40, 120],
        }
    ).assign(share=lambda x: x.customers / x.customers.sum())
    bands = pd.DataFrame({"first": [1, 26, 51, 76], "last": [25, 50, 75, 100]}).assign(
        rate=[0.9, 0.85, 0.7, 0.6]
    )
    rr = pd.DataFrame(
        {"cohort": ["all", 2023, 2024], "grr": [0.8, 0.75, 0.85], "nrr": [1.02, 0.95, 1.1]}
    )
    bars = diagnosis.headline_bars((0.2, 0.12), (0.1, 0.08), (0.85, 0.9))
    return {
        "headline": (lambda **k: plots.plot_headline(bars, 100, **k), ("diag.headline.chart", {})),
        "groups": (lambda **k: plots.plot_churn_groups(_groups(), **k), ("diag.groups.chart", {})),
        "renewal": (
            lambda **k: plots.plot_renewal_bands(bands, 0.76, 0.9, 100, **k),
            ("diag.renewal.chart", {"n": 100}),
        ),
        "nrr": (lambda **k: plots.plot_revenue_retention(rr, 1.0, **k), ("diag.nrr.chart", {})),
        "rfm": (lambda **k: plots.plot_rfm(rfm, 5, **k), ("diag.rfm.chart", {})),
        "tiers": (lambda **k: plots.plot_tier_matrix(matrix, **k), ("diag.tiers.chart", {})),
        "vp": (
            lambda **k: plots.plot_value_potential(vp, quad, cuts, 3, **k),
            ("diag.vp.chart", {}),
        ),
        "effort": (lambda **k: plots.plot_tier_effort(effort, **k), ("diag.effort.chart", {})),
        "freq": (lambda **k: plots.plot_touch_frequency(freq, **k), ("diag.freq.chart", {})),
        "cov": (
            lambda **k: plots.plot_touch_coverage(cov, 0.6, 90, **k),
            ("diag.cov.chart", {"days": 90}),
        ),
        "channels": (lambda **k: plots.plot_channel_mix(mix, **k), ("diag.ch.chart", {})),
        "sla": (lambda **k: plots.plot_sla_heatmap(sla, TIERS, **k), ("diag.sla.chart", {})),
        "backlog": (lambda **k: plots.plot_backlog(_backlog(), **k), ("diag.backlog.chart", {})),
        "funnel": (lambda **k: plots.plot_funnel(funnel_counts, **k), ("diag.funnel.chart", {})),
        "retention": (
            lambda **k: plots.plot_retention_curves(_retention(), **k),
            ("diag.ret.chart", {}),
        ),
    }


CASES = _cases()
TIERED = {"groups", "tiers", "effort", "freq", "cov", "sla"}


@pytest.fixture(autouse=True)
def _close():
    charts.setup()
    yield
    plt.close("all")


def _kwargs(name: str, lang: str) -> dict:
    kw = {"fmt": Fmt(lang)}
    if name in TIERED:
        kw["tier_label"] = NAMES.get
    return kw


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("lang", ["zh", "en"])
def test_returns_axes_with_locale_title_and_no_problems(name, lang):
    draw, (key, values) = CASES[name]
    ax = draw(**_kwargs(name, lang))
    assert isinstance(ax, matplotlib.axes.Axes)
    assert ax.get_title() == i18n.t(key, lang, **values)
    assert ax.has_data()
    charts.place_legends(ax.figure)  # as show.figure does before it checks the chart
    assert charts.figure_problems(ax.figure) == []


@pytest.mark.parametrize("name", sorted(CASES))
def test_draws_on_the_axes_given(name):
    draw, (key, values) = CASES[name]
    fig, (left, right) = plt.subplots(1, 2, figsize=(14, 5))
    ax = draw(ax=right, **_kwargs(name, "en"))
    assert ax is right and ax.figure is fig
    assert right.has_data() and not left.has_data()
    assert right.get_title() == i18n.t(key, "en", **values)
    assert len(plt.get_fignums()) == 1  # no figure of its own


@pytest.mark.parametrize("name", sorted(TIERED - {"groups"}))
def test_tier_codes_read_as_their_labels(name):
    draw, _ = CASES[name]
    ax = draw(**_kwargs(name, "en"))
    ticks = [t.get_text() for t in ax.get_xticklabels() + ax.get_yticklabels()]
    assert {"G-tier", "S-tier"} <= set(ticks)
    assert "gold" not in ticks


def test_group_and_channel_labels_from_the_locale():
    ax = CASES["groups"][0](**_kwargs("groups", "zh"))
    ticks = [t.get_text() for t in ax.get_yticklabels()]
    assert ticks[0] == i18n.t("diag.dim.overall", "zh")
    assert ticks[2] == f"{i18n.t('diag.dim.tier', 'zh')} · G-tier"
    ax = CASES["channels"][0](fmt=Fmt("en"))
    first = ax.get_xticklabels()[0].get_text()
    assert first.startswith(diagnosis.label("diag.channel", "email", "en"))
    assert diagnosis.label("diag.channel", "no-such-channel", "en") == "no-such-channel"


def test_headline_bars_red_on_the_wrong_side():
    ax = CASES["headline"][0](fmt=Fmt("en"))
    colours = [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches]
    # churn 20% > 12% and core 10% > 8%: red; renewal 85% < 90% target: red as well
    assert colours == [charts.STATUS_COLORS["red"]] * 3
    good = diagnosis.headline_bars((0.1, 0.12), None, (0.95, 0.9))
    ax = plots.plot_headline(good, 100, fmt=Fmt("en"))
    colours = [matplotlib.colors.to_hex(p.get_facecolor()) for p in ax.patches]
    assert colours == [charts.STATUS_COLORS["green"]] * 2


@pytest.mark.parametrize("name", ["nrr", "vp"])
def test_dense_charts_put_their_legend_where_it_covers_no_data(name):
    # bars or points fill these plots: a legend inside covers data wherever it goes, and
    # place_legends would redraw the figure for every place it tries before moving it out
    draw, _ = CASES[name]
    ax = draw(**_kwargs(name, "en"))
    fig = ax.figure
    fig.canvas.draw()
    assert not charts._covered(fig, ax.get_legend(), fig.canvas.get_renderer())
    assert ax.get_legend().get_window_extent().x0 > ax.get_window_extent().x1
