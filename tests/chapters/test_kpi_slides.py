"""The KPI chapter's slide tables (fupan.chapters.kpi.slides): what the notebook's cells show
once the analysis left the notebook (issue 22 item 4)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from fupan.chapters import kpi
from fupan.core import i18n
from fupan.core import params as fparams

EN = i18n.Fmt("en")


def _table(rows: list[tuple[str, str, float, float | None, float | None]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["kpi", "status", "value", "target", "alert"])


def test_furthest_from_target_is_relative_to_the_target_to_alert_gap():
    tab = _table(
        [
            # 1.5 gaps past the target: the furthest
            ("churn_rate_t12", "red", 0.25, 0.10, 0.20),
            # half-way from target to alert
            ("nrr", "amber", 0.85, 0.90, 0.80),
            # no alert threshold: a red KPI counts 1
            ("avg_clv", "red", 100.0, None, None),
            # green is never the worst, however far from target
            ("nps", "green", 90.0, 10.0, 0.0),
        ]
    )
    worst = kpi.furthest_from_target(tab)
    assert worst.kpi == "churn_rate_t12"
    assert worst.g == pytest.approx(1.5)
    # without the red one: the threshold-less red (1.0) beats the amber (0.5)
    assert kpi.furthest_from_target(tab.iloc[1:]).kpi == "avg_clv"
    # an amber KPI whose target equals its alert counts 0
    same = _table([("grr", "amber", 0.5, 0.9, 0.9), ("nrr", "amber", 0.85, 0.90, 0.80)])
    assert kpi.furthest_from_target(same).kpi == "nrr"


def test_furthest_from_target_is_none_when_nothing_is_red_or_amber():
    tab = _table([("nps", "green", 50.0, 40.0, 30.0), ("csat", "grey", None, 4.2, 3.8)])
    assert kpi.furthest_from_target(tab) is None
    assert kpi.furthest_from_target(tab.iloc[:0]) is None


def _risk() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["C2", "C1", "C3"],
            "account_manager": ["Li", "Wang", "Li"],
            "tier": ["gold", "silver", "gold"],
            "days_since_order": [40.0, np.nan, 1234.0],
            "spend_12m": [100.0, 500.0, 100.0],
            "reasons": ["overdue", "spend_drop;detractor", ""],
        }
    )


def test_at_risk_slide_table_orders_by_spend_and_words_the_cells():
    shown = kpi.at_risk_slide_table(_risk(), "rules", "en", EN, str.upper)
    assert list(shown.columns) == [
        "customer_id",
        "account_manager",
        "tier",
        "days_since_order",
        "spend_12m",
        "reasons",
    ]
    # largest 12-month spend first, ties by id
    assert shown.customer_id.tolist() == ["C1", "C2", "C3"]
    assert shown.tier.tolist() == ["SILVER", "GOLD", "GOLD"]
    # a missing number in words, never a placeholder sign
    assert shown.days_since_order.tolist() == ["not available", "40", "1,234"]
    assert shown.reasons.iloc[0] == ("spend down vs the 90 days before; latest NPS a detractor")
    assert shown.reasons.iloc[2] == ""


def test_at_risk_slide_table_leaves_out_unsupplied_and_manager_columns():
    shown = kpi.at_risk_slide_table(
        _risk(), "rules", "en", EN, str.upper, drop={"tier", "customer_name"}
    )
    assert "tier" not in shown.columns and "account_manager" in shown.columns
    mine = kpi.at_risk_slide_table(_risk(), "rules", "en", EN, str.upper, manager=False)
    assert "account_manager" not in mine.columns and "tier" in mine.columns
    # health reasons are already words: at most two of them are kept
    health = _risk().assign(reasons=["a; b; c", "d", None])
    got = kpi.at_risk_slide_table(health, "health", "en", EN, str)
    assert got.set_index("customer_id").reasons.to_dict() == {"C1": "d", "C2": "a; b", "C3": ""}


def test_completeness_table_says_missing_numbers_and_reasons_in_words():
    comp = pd.DataFrame(
        {
            "table": ["orders", "tickets"],
            "latest": [pd.Timestamp("2026-10-30").date(), None],
            "lag_days": [1, math.nan],
            "recent": [1200, 0],
            "expected": [1180.4, math.nan],
            "why": ["", "lag"],
        }
    )
    shown = kpi.completeness_table(comp, "en", EN)
    assert shown.to_dict(orient="list") == {
        "table": [i18n.t("table.orders", "en"), i18n.t("table.tickets", "en")],
        "latest": ["2026-10-30", "not available"],
        "lag_days": ["1", "not available"],
        "recent": ["1,200", "0"],
        "expected": ["1,180", "not available"],
        "why": ["complete", "data stops early"],
    }


def test_definitions_table_lists_every_kpi_with_its_direction_and_thresholds(tiny_params):
    p = fparams.load(tiny_params)
    defs = kpi.definitions_table(p, "en", EN)
    assert list(defs.columns) == ["kpi", "direction", "target", "alert", "formula"]
    assert len(defs) == len(kpi.CATALOGUE)
    row = defs.set_index("kpi").loc[i18n.t("kpi.name.churn_rate_t12", "en")]
    assert row.direction == "lower is better"
    assert row.formula == i18n.t("kpi.formula.churn_rate_t12", "en")
    tg = kpi.targets(p)["churn_rate_t12"]
    assert row.target == EN.pct(tg["target"]) and row.alert == EN.pct(tg["alert"])
    # money KPIs have relative default thresholds
    clv = defs.set_index("kpi").loc[i18n.t("kpi.name.avg_clv", "en")]
    assert clv.target.startswith("YoY ")


def _comp(why: str, complete: bool = False) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "table": ["orders", "tickets"],
            "latest": [pd.Timestamp("2026-10-31").date(), pd.Timestamp("2026-09-02").date()],
            "lag_days": [0, 59],
            "recent": [120, 3],
            "expected": [118.0, 40.2],
            "complete": [True, complete],
            "why": ["", why],
        }
    )


def test_incomplete_title_names_the_first_incomplete_table_and_why():
    end = pd.Timestamp("2026-10-20").date()
    tickets = i18n.t("table.tickets", "en")
    assert kpi.incomplete_title(_comp("lag"), "2026-10", end, "en", EN) == (
        f"2026-10 data is incomplete: {tickets} data stops at 2026-09-02, so its KPIs are held back"
    )
    assert kpi.incomplete_title(_comp("volume"), "2026-10", end, "en", EN) == (
        f"2026-10 data is incomplete: {tickets} has 3 rows in the last 14 days, about 40 expected"
    )
    assert kpi.incomplete_title(_comp("partial"), "2026-10", end, "en", EN) == (
        "2026-10 is not over: data to 2026-10-20, so this month's KPIs are provisional"
    )
    assert kpi.incomplete_title(_comp("", complete=True), "2026-10", end, "en", EN) is None
    assert kpi.incomplete_title(_comp("").iloc[:0], "2026-10", end, "en", EN) is None


def _month(value: float | None, yoy: float | None) -> pd.DataFrame:
    return pd.DataFrame({"kpi": ["nps", "csat"], "value": [value, 4.1], "yoy": [yoy, 0.1]})


def test_trend_title_quotes_the_headline_kpi_only_when_its_line_is_drawn():
    drawn = kpi.TrendPlan(draw=["nps"], starts={}, missing={})
    group = i18n.t("kpi.group.experience", "en")
    nps = i18n.t("kpi.name.nps", "en")
    assert kpi.trend_title("experience", _month(42.0, -3.5), drawn, 24, "en", EN) == (
        f"{group}: {nps} at 42.0, -3.5 on a year ago"
    )
    assert kpi.trend_title("experience", _month(42.0, None), drawn, 24, "en", EN) == (
        f"{group}: {nps} at 42.0 (no value a year earlier to compare with)"
    )
    # the headline KPI not drawn (too few months) or without a value: the group and months
    young = kpi.TrendPlan(draw=["csat"], starts={"nps": "2027-02"}, missing={})
    assert kpi.trend_title("experience", _month(42.0, -3.5), young, 7, "en", EN) == (
        f"{group}: the last 7 months"
    )
    assert kpi.trend_title("experience", _month(None, None), drawn, 7, "en", EN) == (
        f"{group}: the last 7 months"
    )


def test_trend_not_drawn_says_when_a_trend_starts_or_why_it_has_no_value():
    plan = kpi.TrendPlan(draw=[], starts={"nps": "2027-02"}, missing={"csat": "missing:csat"})
    assert kpi.trend_not_drawn(plan, "en") == [
        i18n.t("kpi.trend.starts", "en", kpi=i18n.t("kpi.name.nps", "en"), month="2027-02"),
        i18n.t(
            "kpi.trend.missing",
            "en",
            kpi=i18n.t("kpi.name.csat", "en"),
            why=kpi.reason_text("missing:csat", "en"),
        ),
    ]
    assert kpi.trend_not_drawn(kpi.TrendPlan(["nps"], {}, {}), "zh") == []
