"""The KPI scorecard shows status as colour, shape and word, with a legend (issue 19)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest
from fupan.chapters import kpi
from fupan.core import i18n

ROOT = Path(__file__).resolve().parents[2]


def _table() -> pd.DataFrame:
    rows = [
        ("churn_rate_t12", 0.1804, "red", 0.12, 0.18, None, None),
        ("nps", 42.0, "amber", 45.0, 40.0, None, None),
        ("grr", 0.93, "green", 0.90, 0.80, None, None),
        ("avg_clv", 17400.0, "amber", None, None, 0.0, -0.10),
        ("csat", None, "grey", 4.2, 3.8, None, None),
    ]
    return pd.DataFrame(
        [
            {
                "kpi": k,
                "value": v,
                "status": s,
                "target": t,
                "alert": a,
                "target_yoy": ty,
                "alert_yoy": ay,
                "mom": 0.01 if k != "csat" else None,
                "yoy": None,
                "reason": "missing:surveys" if k == "csat" else None,
                "n": 10,
            }
            for k, v, s, t, a, ty, ay in rows
        ]
    )


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_status_cells_carry_colour_shape_and_word(lang):
    page = kpi.scorecard_html(_table(), {k: k for k in kpi.CATALOGUE}, i18n.Fmt(lang), lang)
    cells = re.findall(r'<td class="status-cell">(.*?)</td>', page)
    assert len(cells) == 5
    for cell, status in zip(cells, ["red", "amber", "green", "amber", "grey"], strict=True):
        assert f"status-{status}" in cell  # colour (CSS class)
        assert kpi.STATUS_MARKS[status] in cell  # shape
        assert i18n.t(f"kpi.status.{status}", lang) in cell  # word
    # the shapes differ, so black-and-white print tells the statuses apart
    assert len(set(kpi.STATUS_MARKS.values())) == len(kpi.STATUS_MARKS)
    legend = re.search(r'<ul class="fupan-status-legend".*?</ul>', page, re.S).group(0)
    for status in ("red", "amber", "green", "grey"):
        assert i18n.t(f"kpi.legend.{status}", lang) in legend


def test_css_colours_every_status():
    css = (ROOT / "lib/fupan/report/templates/deck.css").read_text(encoding="utf-8")
    for status in kpi.STATUS_MARKS:
        assert f".fupan-status.status-{status}" in css


def test_scorecard_value_never_reads_equal_to_its_threshold():
    rows = kpi.scorecard_rows(_table(), {k: k for k in kpi.CATALOGUE}, i18n.Fmt("en"), "en")
    churn = rows[0]
    assert churn["value"] == "18.04%" and churn["alert"] == "18.00%", churn
    assert rows[2]["value"] == "93.0%" and rows[2]["target"] == "90.0%"
    assert rows[3]["target"] == "YoY 0%" and rows[3]["alert"] == "YoY -10%"
    assert rows[4]["value"] == i18n.t("kpi.value.na", "en")  # a missing value in words
    assert "surveys" in rows[4]["note"]


def test_monthly_and_annual_decks_share_the_scorecard_function():
    nb = json.loads((ROOT / "notebooks/05_kpi_tracking.ipynb").read_text(encoding="utf-8"))
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "kpi.show_scorecard(" in code
    assert "kpi.status.{s}" not in code  # no second rendering of status words
    for params in ("monthly.yaml", "annual_review.yaml"):
        text = (ROOT / "params" / params).read_text(encoding="utf-8")
        assert "05_kpi_tracking" in text


def test_a_trend_with_fewer_than_six_months_is_a_small_table():
    months = kpi.month_range("2026-06", "2026-10")
    trend = pd.DataFrame(
        [{"month": m, "kpi": "nps", "value": 10.0 + i} for i, m in enumerate(months)]
        + [{"month": m, "kpi": "grr", "value": 0.7} for m in kpi.month_range("2025-11", "2026-10")]
    )
    table = pd.DataFrame({"kpi": ["nps", "grr", "csat"], "reason": [None, None, "missing:surveys"]})
    plan = kpi.trend_plan(trend, table, ["nps", "grr", "csat"], "2026-10")
    assert kpi.MIN_TREND_POINTS == 6
    assert plan.draw == ["grr"]  # 12 months: a line
    assert plan.starts == {"nps": "2026-11"}  # 5 months: the line starts with the next one
    assert plan.missing == {"csat": "missing:surveys"}
    small = kpi.short_series(trend, plan.starts, {"nps": "NPS"}, i18n.Fmt("en"))
    assert list(small.columns) == ["kpi", *months]
    assert small.iloc[0].tolist() == ["NPS", "10.0", "11.0", "12.0", "13.0", "14.0"]
