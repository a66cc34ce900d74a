"""Chapter 4's slides and charts: fupan.chapters.simulate.slides and fupan.report.plots.simulate.

Built on hand-made results (no simulation runs here): what each slide says must quote the
table's numbers, the overview's tiles must equal the funded scenarios' sums, and every
chart draws on the axes it is given, with the locale's words and one mark per scenario.
"""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from fupan.chapters.simulate import slides
from fupan.chapters.simulate.result import ModelInfo, SimulationResult
from fupan.core import i18n
from fupan.core.chapter_params import SimulationParams
from fupan.report.plots import simulate as plots


class _Params:
    """What :class:`slides.ScenarioSlides` reads of the run's params."""

    def __init__(self, lang: str):
        self.lang = lang
        self.simulation = SimulationParams()

    def tier_label(self, tier: str) -> str:
        return {"gold": "Gold tier"}.get(tier, tier)


def _table() -> pd.DataFrame:
    """Three priced scenarios, ranked by ROI: two retention (model), one win-back (prior)."""
    return pd.DataFrame({
        "name": ["sla", "touch", "wb"],
        "kind": ["retention", "retention", "winback"],
        "effect_source": ["model", "model", "prior"],
        "target_customers": [100, 50, 40],
        "churn_before": [0.30, 0.20, 1.0],
        "churn_after": [0.24, 0.19, 0.9],
        "churn_after_low": [0.20, 0.17, 0.85],
        "churn_after_high": [0.28, 0.20, 0.95],
        "churn_change": [-0.06, -0.01, -0.10],
        "churn_change_low": [-0.10, -0.03, -0.15],
        "churn_change_high": [-0.02, 0.0, -0.05],
        "customers_kept": [6.0, 0.5, 4.0],
        "ltv_retained": [60_000.0, 2_000.0, 8_000.0],
        "cost": [20_000.0, 4_000.0, 5_000.0],
        "roi": [2.0, 0.6, -0.5],
        "roi_low": [0.5, -0.2, -0.9],
        "roi_high": [3.0, 1.0, -0.1],
        "payback_months": [4.0, float("nan"), 30.0],
        "phase": ["pilot", "evaluate", "hold"],
        "cost_basis": ["data", "file", "data"],
        "contacted": [np.nan, np.nan, 1.0],
        "excluded": [np.nan, np.nan, 2.0],
        "natural_return_rate": [np.nan, np.nan, 0.05],
        "natural_return_customers": [np.nan, np.nan, 80.0],
        "natural_return_basis": [None, None, "dormancy"],
        "reactivation_rate": [np.nan, np.nan, 0.15],
        "value_years": [np.nan, np.nan, 2.5],
    })  # fmt: skip


def _result(table: pd.DataFrame | None = None, model: ModelInfo | None = None) -> SimulationResult:
    table = _table() if table is None else table
    sens = pd.DataFrame({
        "name": table.name, "roi": table.roi, "effect_low": 0.5, "effect_high": 1.5,
        "roi_effect_low": table.roi - 1.0,
        "roi_effect_high": table.roi + np.array([1.0, 0.2, 0.5])[: len(table)],
        "roi_cost_high": table.roi - 0.3, "roi_cost_low": table.roi + 0.3,
        "roi_value_low": table.roi - 0.4, "roi_value_high": table.roi + 0.4,
        "break_even_effect": [0.4, float("nan"), float("nan")][: len(table)],
    })  # fmt: skip
    wb = pd.DataFrame({
        "customer_id": ["c1", "c2", "c3"], "tier": ["gold", None, "silver"],
        "expected_value": [50.0, 900.0, 10.0], "cost": 100.0,
        "contacted": [False, True, False],
    })  # fmt: skip
    return SimulationResult(
        table=table, draws={}, sensitivity=sens, pilots=pd.DataFrame(),
        roadmap=pd.DataFrame(), winback={"wb": wb}, per_customer={}, skipped=[], model=model,
        info={"bootstrap": 50, "reference_spend": 1000.0, "value_model": "bg/nbd"},
    )  # fmt: skip


def _chapter(res: SimulationResult | None, error: str | None = None) -> slides.Chapter:
    labels = {"sla": "Faster response", "touch": "More touches", "wb": "Win back"}
    return slides.Chapter(Path("/x/scenarios.yaml"), False, [], labels, res, error)


def _scenario_slides(res: SimulationResult | None, lang: str = "en", error: str | None = None):
    return slides.ScenarioSlides(_chapter(res, error), _Params(lang), i18n.Fmt(lang, "$"))


@pytest.mark.parametrize("lang", ["en", "zh"])
def test_overview_tiles_are_the_funded_scenarios_sums(lang):
    sl = _scenario_slides(_result(), lang)
    s = sl.overview()
    funded = _table()[_table().phase != "hold"]
    f = sl.fmt
    assert s.records["simulation.best"] == "sla"
    assert s.records["simulation.funded"]["n"] == 2
    values = [v for _, v, _ in s.tiles]
    assert values == [
        f.pct(2.0, 0),
        f.num(funded.customers_kept.sum(), 0),
        f.money(funded.ltv_retained.sum()),
        f.money(funded.cost.sum()),
    ]
    assert "Faster response" in s.title and f.pct(2.0, 0) in s.title
    # the table: one row per scenario, columns in the run's language, display names
    assert list(s.table.iloc[:, 0]) == ["Faster response", "More touches", "Win back"]
    assert set(s.formats) <= set(s.table.columns)
    # a payback never reached reads as such, not as nan
    assert i18n.t("sim.never", lang) in list(s.table.iloc[:, 7])
    assert s.skips == {}
    assert len(s.notes) == 2 and all(s.notes)  # costs and method notes


def test_overview_of_one_scenario_quotes_its_own_figures():
    one = _table().iloc[:1].reset_index(drop=True)
    s = _scenario_slides(_result(one)).overview()
    assert [t for t, _, _ in s.tiles][1:] == [
        i18n.t("sim.tile.kept", "en"), i18n.t("sim.tile.ltv", "en"), i18n.t("sim.tile.cost", "en")
    ]  # fmt: skip
    assert s.tiles[2][1] == i18n.Fmt("en", "$").money(60_000.0)


def test_overview_without_a_result_says_why_and_records_the_reason():
    s = _scenario_slides(None, error="only 3 churns").overview()
    assert s.title == i18n.t("sim.error.title", "en")
    assert s.notes == ["only 3 churns"]
    assert s.skips == {"*": f"{s.title}: only 3 churns"}
    assert s.table is None and s.tiles == []
    # nothing priced: the chapter's other slides are not made
    sl = _scenario_slides(None, error="x")
    assert sl.churn() is None and sl.winback() is None and sl.method() is None


def test_skipped_scenarios_become_notes_and_reasons():
    res = _result()
    res.skipped = [{"name": "touch", "reason": "zero_cost"}]
    s = _scenario_slides(res).overview()
    assert list(s.skips) == ["scenarios.touch"]
    assert s.skips["scenarios.touch"] in s.notes and "More touches" in s.skips["scenarios.touch"]


def test_churn_slide_quotes_the_largest_fall():
    s = _scenario_slides(_result()).churn()
    f = i18n.Fmt("en", "$")
    assert "Faster response" in s.title
    assert f.pct(0.30) in s.title and f.pct(0.24) in s.title
    assert list(s.chart.name) == ["sla", "touch"]  # retention rows only
    no_retention = _table().iloc[2:].reset_index(drop=True)
    assert _scenario_slides(_result(no_retention)).churn().chart is None


def test_sensitivity_orders_the_tornado_widest_on_top_and_records():
    s = _scenario_slides(_result()).sensitivity()
    width = (s.chart.roi_effect_high - s.chart.roi_effect_low).abs().to_numpy()
    assert np.all(np.diff(width) >= 0)
    assert s.records["simulation.sensitivity"].shape[0] == 3
    assert i18n.Fmt("en", "$").pct(0.4, 0) in s.title  # the break-even effect


def test_winback_slide_exports_tier_labels_and_sorts_by_value():
    s = _scenario_slides(_result()).winback()
    assert list(s.chart.expected_value) == [900.0, 50.0, 10.0]
    assert list(s.exports["winback"].tier) == ["", "Gold tier", "silver"] and s.table is None
    rec = s.records["simulation.winback"]["wb"]
    assert rec["targets"] == 40 and rec["contacted"] == 1
    f = i18n.Fmt("en", "$")
    assert f.pct(0.15 - 0.05) in s.finding and f.money(100.0) in s.finding
    assert s.notes and f.pct(0.05) in s.notes[0]  # a natural return measured on dormancy
    # no win-back asked for: one slide saying so, and the reason recorded
    no_wb = _scenario_slides(_result(_table().iloc[:2].reset_index(drop=True))).winback()
    assert no_wb.chart is None and no_wb.skips == {"winback": no_wb.title}


def _model(columns: list[str]) -> ModelInfo:
    eff = pd.DataFrame({
        "column": columns, "feature": columns,
        "log_hr_per_unit": np.linspace(-0.5, 0.5, len(columns)),
        "low": np.linspace(-0.7, 0.3, len(columns)), "high": np.linspace(-0.3, 0.7, len(columns)),
    })  # fmt: skip
    ts = pd.Timestamp
    return ModelInfo(
        fit_start=ts("2024-01-01"), fit_end=ts("2025-01-01"), known_until=ts("2025-02-01"),
        rows=1000, customers=100, events=40, slope_rows=900, inferred_left_out=3,
        features=columns, effects=eff, predicted_annual_churn=0.2, observed_annual_churn=0.22,
    )  # fmt: skip


def test_method_slide_shows_readable_effects_as_hazard_ratios():
    cols = ["median_first_response_days", "spend_365d", "touches_90d", "tier=gold"]
    s = _scenario_slides(_result(model=_model(cols))).method()
    eff = _model(cols).effects.set_index("column")
    # currency and dummy columns left out; bottom up (reversed)
    assert len(s.chart) == 2
    assert s.chart.hr.iloc[0] == pytest.approx(math.exp(eff.log_hr_per_unit["touches_90d"]))
    assert s.chart.low.iloc[1] == pytest.approx(math.exp(eff.low["median_first_response_days"]))
    assert i18n.Fmt("en", "$").num(math.exp(-0.5), 2) in s.title
    assert s.records["simulation.model"]["events"] == 40
    assert any("3" in n for n in s.notes)  # the inferred churners left out
    only_money = _scenario_slides(_result(model=_model(["spend_365d"]))).method()
    assert only_money.chart is None and i18n.t("sim.method.no_chart", "en") in only_money.notes


# ---- charts ----------------------------------------------------------------------------


LABELS = {"sla": "Faster response", "touch": "More touches", "wb": "Win back"}
FMT = i18n.Fmt("en", "$")


def _ticks(ax) -> list[str]:
    return [t.get_text() for t in ax.get_yticklabels()]


def test_plot_functions_draw_on_the_axes_given():
    res = _result(model=_model(["median_first_response_days", "touches_90d"]))
    rm = pd.DataFrame({
        "name": ["sla", "touch", "wb"], "phase": ["pilot", "evaluate", "hold"],
        "wave": [1.0, 2.0, np.nan], "pilot_start": [0.0, 6.0, np.nan],
        "pilot_end": [6.0, 12.0, np.nan], "rollout_start": [6.0, 12.0, np.nan],
        "standardise_start": [12.0, 18.0, np.nan],
    })  # fmt: skip
    sl = _scenario_slides(res)
    calls = [
        lambda ax: plots.plot_roi(res.table, LABELS, "en", FMT, "90%", ax=ax),
        lambda ax: plots.plot_churn(sl.churn().chart, LABELS, "en", "90%", ax=ax),
        lambda ax: plots.plot_sensitivity(
            sl.sensitivity().chart, LABELS, "en", FMT, (0.5, 1.5), ax=ax
        ),
        lambda ax: plots.plot_winback(sl.winback().chart, "en", FMT, ax=ax),
        lambda ax: plots.plot_roadmap(rm, LABELS, "en", ax=ax),
        lambda ax: plots.plot_effects(sl.method().chart, "en", FMT, "90%", ax=ax),
    ]  # fmt: skip
    for call in calls:
        fig, ax = plt.subplots()
        before = plt.get_fignums()
        assert call(ax) is ax
        assert plt.get_fignums() == before  # no figure of its own
        assert ax.get_title()  # a chart without a title fails the sl check
        plt.close(fig)


def test_plot_roi_marks_each_scenario_with_its_interval():
    ax = plots.plot_roi(_table(), LABELS, "en", FMT, "90%")
    assert ax.get_title() == i18n.t("sim.roi.chart", "en", level="90%")
    at = dict(zip(_ticks(ax), ax.get_yticks(), strict=True))
    assert sorted(at, key=at.get) == ["Win back", "More touches", "Faster response"]  # best on top
    lines = [ln for ln in ax.get_lines() if len(ln.get_xdata()) == 2 and ln.get_linewidth() == 3]
    assert sorted(tuple(ln.get_xdata()) for ln in lines) == [(-0.9, -0.1), (-0.2, 1.0), (0.5, 3.0)]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [i18n.t("sim.source.model", "en"), i18n.t("sim.source.prior", "en")]
    plt.close(ax.figure)


def test_plot_roadmap_draws_each_step_and_names_held_scenarios():
    rm = pd.DataFrame({
        "name": ["sla", "wb"], "phase": ["pilot", "hold"], "wave": [1.0, np.nan],
        "pilot_start": [0.0, np.nan], "pilot_end": [6.0, np.nan], "rollout_start": [6.0, np.nan],
        "standardise_start": [12.0, np.nan],
    })  # fmt: skip
    ax = plots.plot_roadmap(rm, LABELS, "en")
    widths = sorted(p.get_width() for p in ax.patches)
    assert widths == [6.0, 6.0, 6.0]  # pilot 0-6, rollout 6-12, standardise 12-18
    assert ax.get_xlim() == (0.0, 18.0)
    assert any(t.get_text() == i18n.t("sim.phase.hold", "en") for t in ax.texts)
    plt.close(ax.figure)


def test_plot_winback_splits_contacted_from_excluded():
    frame = pd.DataFrame({
        "expected_value": [900.0, 50.0, 10.0], "cost": 100.0, "contacted": [True, False, False]
    })  # fmt: skip
    ax = plots.plot_winback(frame, "en", FMT)
    assert ax.get_yscale() == "symlog"
    assert [ln.get_ydata()[0] for ln in ax.get_lines()] == [100.0]  # the cost line
    plt.close(ax.figure)
