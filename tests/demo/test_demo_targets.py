"""Targets a real team would set (issue 19): documented, and on the demo some month is all
green and `fupan monthly` exits 0."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from fupan.chapters import kpi
from fupan.core import params as fparams

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "params" / "benchmarks.yaml"


def test_every_benchmark_and_target_says_where_it_comes_from():
    text = BENCH.read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    for key in raw["kpi_targets"]:
        line = next(x for x in text.splitlines() if x.strip().startswith(f"{key}:"))
        assert "#" in line and len(line.split("#", 1)[1].strip()) > 5, f"{key}: no source"
    for key in ("churn_rate", "first_response_days", "lost_ltv_rate", "net_revenue_retention"):
        line = next(x for x in text.splitlines() if x.startswith(f"{key}:"))
        assert "#" in line, f"{key}: no source"
    assert "Where the shipped values come from" in text
    assert set(raw["kpi_targets"]) == set(kpi.CATALOGUE)


def test_shipped_targets_are_valid_and_monthly_exits_0_without_red(tmp_path):
    p = fparams.load(ROOT / "params" / "monthly.yaml", **{"data.source": str(tmp_path)})
    t = kpi.targets(p)  # the order of target and alert is checked here
    assert all(t[k]["target"] is not None or t[k]["target_yoy"] is not None for k in t)
    # exit code 3 is for KPIs past their alert line or data that has not arrived
    assert set(p.kpi.alert_on) == {"kpi", "incomplete"}


@pytest.fixture(scope="module")
def demo_months(tmp_path_factory, demo_small):
    """Every KPI without a chapter model, for the last 12 months of a 1,500-customer demo."""
    from fupan.io import data as fdata

    work = tmp_path_factory.mktemp("targets")
    (work / "data").symlink_to(demo_small, target_is_directory=True)  # the session's demo
    p = fparams.load(ROOT / "params" / "monthly.yaml", **{"data.source": str(work / "data")})
    ds = fdata.load(p)
    months = kpi.month_range("2025-11", "2026-10")
    values, comp = kpi.compute_series(ds, months, model_months=set(), health_months=set())
    ds.close()
    return work, p, kpi.evaluate(values, comp, p)


@pytest.mark.slow
def test_some_demo_month_is_all_green_and_none_is_red(demo_months):
    _, _, table = demo_months
    judged = table[~table.kpi.isin(["avg_clv", "ltv_at_risk", "red_band_share"])]
    by_month = judged.groupby("month").status.apply(set)
    assert not any("red" in s for s in by_month), by_month.to_dict()
    assert any(s == {"green"} for s in by_month), by_month.to_dict()


@pytest.mark.slow
def test_fupan_monthly_exits_0_on_an_all_green_demo_month(demo_months):
    from fupan.run import cli

    work, _, table = demo_months
    judged = table[~table.kpi.isin(["avg_clv", "ltv_at_risk", "red_band_share"])]
    green = [m for m, s in judged.groupby("month").status.apply(set).items() if s == {"green"}]
    month = green[-1]
    reports = work / "reports"
    argv = ["monthly", "--month", month, "--params", str(ROOT / "params" / "monthly.yaml")]
    argv += ["--data", str(work / "data"), "--out", str(reports), "--quiet"]
    assert cli.main(argv) == 0
    deck = (reports / f"monthly-{month}" / "deck.html").read_text(encoding="utf-8")
    assert re.search(r"status-green", deck) and 'status-red"' not in deck
