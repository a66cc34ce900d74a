"""KPI formulas, status, completeness, at-risk list and history on a hand-computed fixture.

The fixture (``FIXTURE``) is small enough that every expected number below is worked out by
hand in the comments; the month under test is 2026-10 (end 10-31, previous end 09-30,
twelve months back 2025-10-31, twenty-four 2024-10-31), non-contractual churn with 365 days
of dormancy, 60 days of contract grace, three-month survey and touch windows, top-N = 2.
"""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

import numpy as np
import pandas as pd
import paramfile
import pytest
import yaml
from fupan.chapters import kpi
from fupan.chapters.kpi import arrival, context, formulas, months, slides
from fupan.chapters.kpi import value as kpi_value
from fupan.core import i18n
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io.dataset import Dataset

AS_OF = "2026-10-31"
REAL_CLV = kpi.customer_clv  # module fixtures below stub it


def frames() -> dict[str, pd.DataFrame]:
    c = [  # id, acquired, tier, manager
        ("A", "2024-01-01", "platinum", "AM-1"),
        ("B", "2024-01-01", "gold", "AM-1"),
        ("C", "2024-01-01", "silver", "AM-2"),
        ("D", "2024-01-01", "silver", "AM-2"),
        ("E", "2025-12-01", "attention", "AM-2"),
        ("G", "2024-01-01", "silver", "AM-1"),
        ("H", "2024-01-01", "gold", "AM-2"),
        ("L", "2024-01-01", "attention", "AM-2"),
        ("N", "2026-10-15", "attention", "AM-1"),
    ]
    customers = pd.DataFrame(
        {
            "customer_id": [x[0] for x in c],
            "acquired_at": [x[1] for x in c],
            "customer_name": [f"客户{x[0]}" for x in c],
            "industry": "retail",
            "region": "华东",
            "tier": [x[2] for x in c],
            "account_manager": [x[3] for x in c],
        }
    )
    o = [
        ("A", "2024-01-01", 10),
        ("A", "2025-03-01", 100),
        ("A", "2026-02-01", 100),
        ("A", "2026-09-15", 50),
        ("B", "2024-01-01", 10),
        ("B", "2025-05-01", 200),
        ("B", "2026-01-10", 50),
        ("C", "2024-01-01", 10),
        ("C", "2025-06-01", 100),
        ("D", "2024-02-01", 10),
        ("D", "2026-10-20", 80),
        ("D", "2026-10-25", -20),
        ("E", "2025-12-01", 30),
        ("E", "2026-10-05", 40),
        ("G", "2026-03-31", 25),
        ("G", "2026-04-30", 25),
        ("G", "2026-05-31", 25),
        ("G", "2026-06-30", 25),
        ("H", "2024-01-01", 10),
        ("H", "2025-09-01", 20),
        ("H", "2026-09-01", 20),
        ("H", "2026-10-01", 20),
        ("L", "2024-01-01", 10),
        ("N", "2026-10-15", 5),
    ]
    orders = pd.DataFrame(
        {
            "order_id": [f"O{i}" for i in range(len(o))],
            "customer_id": [x[0] for x in o],
            "order_date": [x[1] for x in o],
            "amount": [float(x[2]) for x in o],
        }
    )
    k = [  # id, customer, start, end, renewal_of
        ("K1", "A", "2025-01-01", "2025-12-31", None),
        ("K2", "A", "2026-01-01", "2026-12-31", "K1"),
        ("K3", "B", "2025-03-01", "2026-02-28", None),
        ("K4", "C", "2025-06-01", "2026-05-31", None),
        ("K5", "C", "2026-08-15", "2027-08-14", "K4"),
        ("K6", "D", "2024-06-01", "2025-05-31", None),
        ("K7", "E", "2025-12-01", "2026-08-31", None),
        ("K8", "E", "2026-09-10", "2027-09-09", None),
        ("K9", "E", "2026-01-15", "2026-06-30", None),
    ]
    contracts = pd.DataFrame(
        {
            "contract_id": [x[0] for x in k],
            "customer_id": [x[1] for x in k],
            "start_date": [x[2] for x in k],
            "end_date": [x[3] for x in k],
            "annual_value": 1000.0,
            "renewal_of": [x[4] for x in k],
        }
    )
    s = [  # id, customer, date, nps, csat
        ("V1", "A", "2026-08-10", 10, 5),
        ("V2", "B", "2026-09-05", 3, 2),
        ("V3", "D", "2026-10-21", 9, 4),
        ("V4", "E", "2026-10-30", 9, None),
        ("V5", "A", "2026-05-01", 0, 1),
        ("V6", "H", "2026-09-15", 2, 3),
    ]
    surveys = pd.DataFrame(
        {
            "survey_id": [x[0] for x in s],
            "customer_id": [x[1] for x in s],
            "surveyed_at": [x[2] for x in s],
            "nps": [x[3] for x in s],
            "csat": pd.array([x[4] for x in s], dtype="Int64"),
        }
    )
    t = [  # id, customer, opened, first response
        ("T1", "A", "2026-10-01 08:00:00", "2026-10-01 20:00:00"),
        ("T2", "B", "2026-09-29 12:00:00", "2026-10-02 12:00:00"),
        ("T3", "D", "2026-10-10 00:00:00", "2026-10-11 00:00:00"),
        ("T4", "E", "2026-10-28 00:00:00", ""),
        ("T5", "C", "2026-09-20 00:00:00", ""),
        (
            "T6",
            "A",
            "2026-09-30 06:00:00",
            "2026-11-02 10:00:00",
        ),  # answered after as_of: open at as_of
        ("T7", "H", "2026-10-20 00:00:00", ""),
        ("T8", "G", "2026-08-01 00:00:00", "2026-08-03 00:00:00"),
    ]
    tickets = pd.DataFrame(
        {
            "ticket_id": [x[0] for x in t],
            "customer_id": [x[1] for x in t],
            "opened_at": [x[2] for x in t],
            "first_response_at": [x[3] for x in t],
            "resolved_at": "",
            "priority": "normal",
        }
    )
    h = [
        ("W1", "A", "2026-08-01 10:00:00"),
        ("W2", "D", "2026-05-01 10:00:00"),
        ("W3", "E", "2026-10-31 23:00:00"),
        ("W4", "B", "2026-10-01 10:00:00"),
        ("W5", "G", "2026-07-31 09:00:00"),
        ("W6", "H", "2026-10-15 10:00:00"),
    ]
    touches = pd.DataFrame(
        {
            "touch_id": [x[0] for x in h],
            "customer_id": [x[1] for x in h],
            "touched_at": [x[2] for x in h],
            "channel": "visit",
        }
    )
    churn_events = pd.DataFrame(
        {
            "customer_id": ["B"],
            "churned_at": ["2026-10-10"],
            "reason": ["price"],
            "competitor": [None],
            "lost_value": [500.0],
        }
    )
    return {
        "customers": customers,
        "orders": orders,
        "contracts": contracts,
        "surveys": surveys,
        "tickets": tickets,
        "touches": touches,
        "churn_events": churn_events,
    }


def write_fixture(folder: Path, drop: tuple[str, ...] = (), **replace: pd.DataFrame) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in {**frames(), **replace}.items():
        if name not in drop:
            df.to_csv(folder / f"{name}.csv", index=False)
    return folder


def params_file(
    folder: Path, data: Path, as_of: str = AS_OF, extra: str = "", kpi_extra: str = ""
) -> Path:
    """Params for the fixture. The at-risk list uses the interim rules (hand-checkable; the
    churn chapter's health score is stubbed where a test needs it)."""
    return paramfile.write(
        folder,
        data,
        f"diagnosis:\n  top_n: 2\n{extra}kpi:\n  at_risk_source: rules\n{kpi_extra}",
        filename=f"params-{as_of}.yaml",
        notebooks=("00_data_check", "05_kpi_tracking"),
        name="kpi fixture",
        kind="monthly",
        as_of=as_of,
    )


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory) -> Path:
    return write_fixture(tmp_path_factory.mktemp("kfix") / "data")


@pytest.fixture(scope="module")
def ds(fixture_dir):
    p = fparams.load(params_file(fixture_dir.parent, fixture_dir))
    d = fdata.load(p)
    yield d
    d.close()


@pytest.fixture(scope="module")
def october(ds):
    values, comp = kpi.compute_series(ds, ["2026-10"])
    return {r.kpi: r for r in values.itertuples()}, comp


CLV = pd.Series(
    {"A": 100.0, "B": 1000.0, "D": 200.0, "E": 300.0, "G": 400.0, "H": 500.0, "N": 600.0}
)


@pytest.fixture(scope="module")
def fast_clv():
    """A fixed CLV per customer instead of refitting BG/NBD per month (tested on its own)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(kpi_value, "customer_clv", lambda ds, day: CLV)
        yield CLV


@pytest.fixture(scope="module")
def report(ds, fast_clv):
    return kpi.month_report(ds, "2026-10", trend_months=3)


def value(october, key):
    return october[0][key].value


# --------------------------------------------------------------------------------------
# Formulas, each against the hand computation


def test_churn_monthly_and_trailing_12(october):
    # Active at 09-30: A, B, D, E, G, H (C churned 06-01 by dormancy, L in 2024, N acquired 10-15).
    # Churned in October: B (recorded 10-10) -> 1/6.
    assert value(october, "churn_rate_monthly") == pytest.approx(1 / 6)
    assert october[0]["churn_rate_monthly"].n == 6
    # Acquired by 2025-10-31 and not churned then: A, B, C, D, G, H (L lost in 2024; D and G
    # ordered again, so the shared definition no longer dates a churn for them).
    # Churned since: B, C -> 2/6.
    assert value(october, "churn_rate_t12") == pytest.approx(2 / 6)


def test_revenue_retention_and_repurchase(october):
    # Cohort with prior-year revenue: A 100, B 200, C 100, H 20 (sum 420).
    # Trailing 12 months: A 150, B 50, C 0, H 40.
    # GRR = (100 + 50 + 0 + 20) / 420; NRR = (150 + 50 + 0 + 40) / 420.
    assert value(october, "grr") == pytest.approx(170 / 420)
    assert value(october, "nrr") == pytest.approx(240 / 420)
    assert october[0]["grr"].n == 4
    # Purchase days in 12 months: A 2, B 1, D 1 (the refund-only day does not count), E 2,
    # G 4, H 2, N 1 -> 4 of 7 bought on two or more days.
    assert value(october, "repurchase_rate") == pytest.approx(4 / 7)
    assert october[0]["repurchase_rate"].n == 7


def test_winback(october):
    # Lost as of 2025-10-31: D (dormant since 2025-01-31), G and L (never ordered / since
    # 2024-01-01). Ordered again since: D, G -> 2/3.
    assert value(october, "winback_rate") == pytest.approx(2 / 3)
    assert october[0]["winback_rate"].n == 3


def test_renewal_rates(october):
    # Decided (end + 60 days) between 2025-11-01 and 2026-10-31: K1, K3, K4, K7, K9.
    # K1 renewed by K2 (renewal_of); K7 by K8 (same customer, started within grace); K4's
    # renewal K5 started after the grace; K3 and K9 not renewed -> 2/5.
    assert value(october, "renewal_rate") == pytest.approx(2 / 5)
    # Top 2 by revenue in the year before: B (200), A (100, ahead of C on the tie) -> K1 yes,
    # K3 no -> 1/2.
    assert value(october, "renewal_rate_top_n") == pytest.approx(1 / 2)
    assert october[0]["renewal_rate_top_n"].n == 2


def test_nps_and_csat(october):
    # Responses 2026-08-01 .. 10-31: V1 10, V2 3, V3 9, V4 9, V6 2 (V5 is older).
    # Promoters 3, detractors 2 -> 100 * (3 - 2) / 5.
    assert value(october, "nps") == pytest.approx(20.0)
    # CSAT: 5, 2, 4, 3 (V4 gave none) -> 3.5.
    assert value(october, "csat") == pytest.approx(3.5)
    assert october[0]["csat"].n == 4


def test_first_response_and_sla(october):
    # First answered in October: T1 0.5 days, T2 3.0, T3 1.0 -> median 1.0.
    assert value(october, "first_response_median") == pytest.approx(1.0)
    # SLA deadline in October: T1 (platinum, 1 d, on time), T2 (gold, 2 d, late), T3 (silver,
    # 3.5 d, on time), T6 (platinum, answered after as_of: late), T7 (gold, open: late) -> 2/5.
    assert value(october, "sla_compliance") == pytest.approx(2 / 5)
    assert october[0]["sla_compliance"].n == 5


def test_touch_coverage(october):
    # Active at 10-31: A, D, E, G, H, N. Touched in the catalogue's 90 days (08-02, 10-31]:
    # E (10-31 23:00 counts), H; A's touch on 08-01 and G's on 07-31 are outside the window,
    # B is no longer active -> 2/6.
    assert value(october, "touch_coverage") == pytest.approx(2 / 6)


def test_at_risk_by_rules(ds):
    risk = kpi.at_risk_by_rules(ds, dt.date(2026, 10, 31))
    # G: usual interval (06-30 - 03-31) / 3 = 30.3 days, 123 days without an order (> 60)
    #    and spend in the last 90 days 0 against 50 before -> overdue, spend_drop.
    # H: latest NPS 2 and a gold ticket open since 10-20 (SLA 2 days) -> two signals.
    # A has one signal only (T6 past SLA); D, E, N none.
    assert risk.customer_id.tolist() == ["G", "H"]  # AM-1 before AM-2
    assert risk.reasons.tolist() == ["overdue;spend_drop", "detractor;sla_breach"]
    g = risk.iloc[0]
    assert g.days_since_order == 123
    assert g.usual_interval_days == pytest.approx(91 / 3)
    assert g.spend_12m == pytest.approx(100.0)
    assert risk.iloc[1].spend_12m == pytest.approx(40.0)
    # At 09-30 only G was at risk (H had one signal): H is new in October.
    assert kpi.at_risk_by_rules(ds, dt.date(2026, 9, 30)).customer_id.tolist() == ["G"]


def _valuation(p_alive: dict[str, float] | None = None):
    """A stand-in for chapter 3's valuation: CLV, P(alive) and P(churn) per customer."""
    from types import SimpleNamespace

    alive = pd.Series(p_alive or {}, dtype=float).reindex(CLV.index).fillna(0.9)
    values = pd.DataFrame({"clv": CLV, "p_alive": alive, "p_churn": 1 - alive}).rename_axis(
        "customer_id"
    )
    return SimpleNamespace(kind="transactions", values=values, info={"converged": True})


def _health_frames(day_bands: dict[str, str], prev_bands: dict[str, str]):
    prob = {"A": 0.1, "D": 0.6, "E": 0.3, "G": 0.7, "H": 0.8, "N": 0.05, "B": 0.9}

    def frame(bands):
        ids = list(bands)
        return pd.DataFrame(
            {
                "customer_id": ids,
                "customer_name": ids,
                "account_manager": "AM-1",
                "tier": "gold",
                "score": [10.0 * i for i in range(len(ids))],
                "band": list(bands.values()),
                "churn_probability": [prob[i] for i in ids],
                "reasons": "Days since last order: 30 days; Latest NPS: 2",
            }
        )

    def fake(ds, day, before=None):
        out = {day: frame(day_bands)}
        if before is not None:
            out[before] = frame(prev_bands)
        return out, None

    return fake


NOW_BANDS = {"A": "green", "D": "red", "E": "amber", "G": "red", "H": "red", "N": "green"}
PREV_BANDS = {"A": "green", "B": "amber", "E": "green", "G": "red", "H": "amber"}


def test_model_kpis_from_clv_and_health(ds, fast_clv, monkeypatch):
    monkeypatch.setattr(kpi_value, "clv_valuation", lambda ds, day: _valuation())
    monkeypatch.setattr(kpi_value, "health_bands", _health_frames(NOW_BANDS, PREV_BANDS))
    values, _ = kpi.compute_series(ds, ["2026-10"])
    v = values.set_index("kpi").value
    # Active: A, D, E, G, H, N -> mean CLV (100 + 200 + 300 + 400 + 500 + 600) / 6.
    assert v["avg_clv"] == pytest.approx(350.0)
    # Red: D, G, H of the 6 scored.
    assert v["red_band_share"] == pytest.approx(0.5)
    # Chapter 3's LTV at risk: churn probability x CLV over the red band:
    # 0.6 x 200 + 0.7 x 400 + 0.8 x 500.
    assert v["ltv_at_risk"] == pytest.approx(800.0)


def test_ltv_at_risk_without_health_uses_p_alive(ds, fast_clv, monkeypatch):
    monkeypatch.setattr(
        kpi_value, "clv_valuation", lambda ds, day: _valuation({"G": 0.2, "H": 0.4, "B": 0.1})
    )
    monkeypatch.setattr(
        kpi_value, "health_bands", lambda ds, day, before=None: (None, "model:health")
    )
    values, _ = kpi.compute_series(ds, ["2026-10"])
    r = values.set_index("kpi")
    # P(alive) below ltv.at_risk_p_alive (0.5) among active customers: G (0.8 x 400), H
    # (0.6 x 500); B has churned.
    assert r.loc["ltv_at_risk", "value"] == pytest.approx(620.0)
    assert r.loc["ltv_at_risk", "n"] == 2
    assert (
        math.isnan(r.loc["red_band_share", "value"])
        and r.loc["red_band_share", "reason"] == "model:health"
    )


def test_health_list_and_newly_red(ds, fast_clv, monkeypatch):
    monkeypatch.setattr(kpi_value, "health_bands", _health_frames(NOW_BANDS, PREV_BANDS))
    ctx = context._Ctx(ds)
    risk, fresh, source = kpi.health_at_risk(ctx, kpi.Window.of("2026-10", ds.params))
    assert source == "health"
    assert risk.customer_id.tolist() == ["D", "G", "H"]  # AM-1, healthiest score last
    # D was not scored at 09-30 (not live then), G was already red: H is newly red.
    assert fresh.customer_id.tolist() == ["H"]
    assert risk.set_index("customer_id").spend_12m.to_dict() == {"D": 60.0, "G": 100.0, "H": 40.0}
    frame = kpi.at_risk_export_frame(risk, {"H"}, "en", ds.params.tier_label, source)
    assert {"Health score", "Churn probability", "Why at risk", "New this month"} <= set(
        frame.columns
    )
    assert (
        kpi.reasons_for_slide(risk.reasons[0], source, "en", k=1)
        == "Days since last order: 30 days"
    )


def test_missing_tables_make_kpis_not_available(tmp_path):
    data = write_fixture(tmp_path / "data", drop=("surveys", "tickets", "touches", "contracts"))
    d = fdata.load(fparams.load(params_file(tmp_path, data)))
    try:
        values, _ = kpi.compute_series(d, ["2026-10"])
    finally:
        d.close()
    r = values.set_index("kpi")
    for key, table in [
        ("nps", "surveys"),
        ("csat", "surveys"),
        ("sla_compliance", "tickets"),
        ("first_response_median", "tickets"),
        ("touch_coverage", "touches"),
        ("renewal_rate", "contracts"),
        ("renewal_rate_top_n", "contracts"),
    ]:
        assert math.isnan(r.loc[key, "value"]), key
        assert r.loc[key, "reason"] == f"missing:{table}"
    assert r.loc["churn_rate_monthly", "value"] == pytest.approx(1 / 6)
    ev = kpi.evaluate(values, kpi.month_completeness(d, []), d.params)
    assert (ev.set_index("kpi").loc["nps", "status"]) == "grey"


def test_grr_needs_the_whole_prior_year(tmp_path):
    # With orders only from 2025-06 on, the prior-year base of 2026-10 is incomplete.
    o = frames()["orders"]
    data = write_fixture(tmp_path / "data", orders=o[o.order_date >= "2025-06-01"])
    d = fdata.load(fparams.load(params_file(tmp_path, data)))
    try:
        values, _ = kpi.compute_series(d, ["2026-10"])
    finally:
        d.close()
    r = values.set_index("kpi")
    assert math.isnan(r.loc["grr", "value"]) and r.loc["grr", "reason"] == "history"


# --------------------------------------------------------------------------------------
# As-of discipline


@pytest.mark.parametrize("month", ["2026-06", "2026-08", "2026-09"])
def test_a_month_computed_later_equals_the_month_computed_then(ds, fixture_dir, tmp_path, month):
    """Loaded at 2026-10-31, a past month uses only data up to its end: the same values as
    a load as of that month end (which never sees the later rows)."""
    then = fdata.load(
        fparams.load(params_file(tmp_path, fixture_dir, as_of=kpi.month_end(month).isoformat()))
    )
    try:
        a, ca = kpi.compute_series(ds, [month], model_months=set())
        b, cb = kpi.compute_series(then, [month], model_months=set())
        risk_now = kpi.at_risk_by_rules(ds, kpi.month_end(month))
        risk_then = kpi.at_risk_by_rules(then, kpi.month_end(month))
    finally:
        then.close()
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(ca.drop(columns=[]), cb)
    pd.testing.assert_frame_equal(risk_now, risk_then)


def test_future_only_rows_do_not_move_a_past_month(tmp_path):
    """Plant rows dated after the month end that would change every KPI if they leaked."""
    f = frames()
    late_orders = pd.DataFrame(
        {
            "order_id": ["X1", "X2"],
            "customer_id": ["C", "L"],
            "order_date": ["2026-09-01", "2026-09-02"],
            "amount": [1e6, 1e6],
        }
    )
    late_surveys = pd.DataFrame(
        {
            "survey_id": ["X3"],
            "customer_id": ["B"],
            "surveyed_at": ["2026-09-01"],
            "nps": [0],
            "csat": pd.array([1], dtype="Int64"),
        }
    )
    base = write_fixture(tmp_path / "base")
    planted = write_fixture(
        tmp_path / "planted",
        orders=pd.concat([f["orders"], late_orders]),
        surveys=pd.concat([f["surveys"], late_surveys]),
    )
    out = []
    for data in (base, planted):
        d = fdata.load(fparams.load(params_file(data.parent, data)))
        try:
            out.append(kpi.compute_series(d, ["2026-07", "2026-08"], model_months=set())[0])
        finally:
            d.close()
    pd.testing.assert_frame_equal(out[0], out[1])


# --------------------------------------------------------------------------------------
# Status, targets, months


@pytest.mark.parametrize(
    "value, direction, expected",
    [
        (46, "higher", "green"),
        (45, "higher", "green"),
        (42, "higher", "amber"),
        (40, "higher", "amber"),
        (39.9, "higher", "red"),
        (None, "higher", "grey"),
        (float("nan"), "higher", "grey"),
        (0.10, "lower", "green"),
        (0.15, "lower", "amber"),
        (0.20, "lower", "red"),
    ],
)
def test_status_of(value, direction, expected):
    target, alert = (45, 40) if direction == "higher" else (0.12, 0.18)
    assert kpi.status_of(value, target, alert, direction) == expected


def test_targets_defaults_overrides_and_errors(fixture_dir, tmp_path):
    p = fparams.load(params_file(tmp_path, fixture_dir))
    t = kpi.targets(p)
    assert set(t) == set(kpi.CATALOGUE)
    assert t["nps"]["target"] == 45 and t["nps"]["alert"] == 40  # from benchmarks.nps_*
    assert t["churn_rate_monthly"]["target"] == pytest.approx(1 - 0.88 ** (1 / 12), abs=1e-4)
    assert t["avg_clv"]["target"] is None and t["avg_clv"]["alert_yoy"] == -0.10
    p.benchmarks.kpi_targets = {"nps": {"target": 50, "alert": 30}}
    assert kpi.targets(p)["nps"] == {
        "target": 50.0,
        "alert": 30.0,
        "target_yoy": None,
        "alert_yoy": None,
    }
    p.benchmarks.kpi_targets = {"npss": {"target": 50}}
    with pytest.raises(ValueError, match="did you mean 'nps'"):
        kpi.targets(p)
    p.benchmarks.kpi_targets = {"churn_rate_t12": {"target": 0.2, "alert": 0.1}}
    with pytest.raises(ValueError, match="must be above"):
        kpi.targets(p)
    p.benchmarks.kpi_targets = {"nps": {"goal": 1}}
    with pytest.raises(ValueError, match="unknown field 'goal'"):
        kpi.targets(p)


def test_benchmarks_file_targets_are_valid():
    root = Path(__file__).parents[2]
    p = fparams.load(root / "params" / "monthly.yaml")
    t = kpi.targets(p)
    # the file's own targets are the ones used (they are the team's plan, not the defaults)
    shipped = yaml.safe_load((root / "params" / "benchmarks.yaml").read_text())["kpi_targets"]
    assert (
        t["nps"]["alert"]
        == shipped["nps"]["alert"]
        != kpi.default_targets(p.benchmarks)["nps"]["alert"]
    )
    assert t["ltv_at_risk"]["alert_yoy"] == shipped["ltv_at_risk"]["alert_yoy"] == 0.20


def test_evaluate_relative_target_changes_and_incomplete():
    p = fparams.Params.model_validate(
        {"as_of": AS_OF, "data": {"source": "x"}, "benchmarks_file": None}
    )
    rows = [
        {"month": "2025-10", "kpi": "avg_clv", "value": 100.0, "n": 5, "reason": None},
        {"month": "2026-09", "kpi": "avg_clv", "value": 95.0, "n": 5, "reason": None},
        {"month": "2026-10", "kpi": "avg_clv", "value": 85.0, "n": 5, "reason": None},
        {"month": "2026-09", "kpi": "nps", "value": 30.0, "n": 5, "reason": None},
        {"month": "2026-10", "kpi": "nps", "value": 35.0, "n": 5, "reason": None},
        {"month": "2026-10", "kpi": "churn_rate_monthly", "value": 0.5, "n": 5, "reason": None},
    ]
    comp = pd.DataFrame(
        [
            {"month": "2026-10", "table": "orders", "complete": False, "why": "lag"},
            {"month": "2026-10", "table": "surveys", "complete": True, "why": ""},
        ]
    )
    ev = kpi.evaluate(pd.DataFrame(rows), comp, p).set_index(["month", "kpi"])
    clv = ev.loc[("2026-10", "avg_clv")]
    assert clv.yoy == pytest.approx(-0.15) and clv.mom == pytest.approx(85 / 95 - 1)
    assert (
        clv.status == "grey" and clv.reason == "incomplete:orders"
    )  # orders incomplete in October
    nps = ev.loc[("2026-10", "nps")]
    assert nps.status == "red" and nps.mom == pytest.approx(5.0) and pd.isna(nps.yoy)
    churn = ev.loc[("2026-10", "churn_rate_monthly")]
    assert churn.status == "grey" and churn.value == 0.5  # kept for the record, not judged
    comp_ok = comp.assign(complete=True, why="")
    ev2 = kpi.evaluate(pd.DataFrame(rows), comp_ok, p).set_index(["month", "kpi"])
    assert ev2.loc[("2026-10", "avg_clv"), "status"] == "red"  # -15% past the -10% alert
    assert ev2.loc[("2026-09", "avg_clv"), "status"] == "grey"  # no value a year earlier
    assert ev2.loc[("2026-09", "avg_clv"), "reason"] == "no_baseline"


def test_months():
    assert kpi.parse_month("2026-10") == "2026-10"
    assert kpi.parse_month("2026-10-31") == "2026-10"
    assert kpi.parse_month(dt.date(2026, 2, 3)) == "2026-02"
    with pytest.raises(ValueError, match="not a month"):
        kpi.parse_month("2026-13")
    assert kpi.month_end("2028-02") == dt.date(2028, 2, 29)
    assert kpi.month_range("2025-11", "2026-02") == ["2025-11", "2025-12", "2026-01", "2026-02"]
    with pytest.raises(ValueError):
        kpi.month_range("2026-02", "2025-11")
    p = fparams.Params.model_validate(
        {"as_of": "2026-02-28", "data": {"source": "x"}, "benchmarks_file": None}
    )
    w = kpi.Window.of("2026-02", p)
    assert (w.end, w.prev_end, w.y1, w.y2) == (
        dt.date(2026, 2, 28),
        dt.date(2026, 1, 31),
        dt.date(2025, 2, 28),
        dt.date(2024, 2, 28),  # the catalogue's year: the same calendar day (segments.years_before)
    )
    assert not w.partial
    p2 = fparams.Params.model_validate(
        {"as_of": "2026-02-15", "data": {"source": "x"}, "benchmarks_file": None}
    )
    w2 = kpi.Window.of("2026-02", p2)
    assert w2.partial and w2.end == dt.date(2026, 2, 15) and w2.y1 == dt.date(2025, 2, 15)


# --------------------------------------------------------------------------------------
# Completeness: a month whose data has not arrived is flagged, not read as a churn spike


def _steady(
    tmp_path: Path, cut: str | None, as_of: str = AS_OF, thin_after: str | None = None
) -> Dataset:
    """60 customers ordering every other day; orders stop after ``cut``, or after
    ``thin_after`` only one customer keeps ordering."""
    n = 60
    customers = pd.DataFrame(
        {
            "customer_id": [f"S{i:02d}" for i in range(n)],
            "acquired_at": "2025-01-01",
            "industry": "retail",
            "region": "华东",
            "tier": "silver",
            "account_manager": "AM-1",
        }
    )
    days = pd.date_range("2025-01-01", as_of, freq="D")
    rows = [
        (f"S{i:02d}", d.date().isoformat())
        for i in range(n)
        for j, d in enumerate(days)
        if (j + i) % 2 == 0
    ]
    orders = pd.DataFrame(rows, columns=["customer_id", "order_date"])
    if cut:
        orders = orders[orders.order_date <= cut]
    if thin_after:
        orders = orders[(orders.order_date <= thin_after) | (orders.customer_id == "S00")]
    orders.insert(0, "order_id", [f"O{i}" for i in range(len(orders))])
    orders["amount"] = 10.0
    # one refund, as real order logs have (it also gives the data-check chapter a finding)
    orders = pd.concat(
        [
            orders,
            pd.DataFrame(
                [
                    {
                        "order_id": "R1",
                        "customer_id": "S00",
                        "order_date": "2025-06-01",
                        "amount": -5.0,
                    }
                ]
            ),
        ],
        ignore_index=True,
    )
    data = tmp_path / f"steady-{cut}-{as_of}-{thin_after}"
    data.mkdir()
    customers.to_csv(data / "customers.csv", index=False)
    orders.to_csv(data / "orders.csv", index=False)
    pf = params_file(data, data, as_of=as_of, extra="churn_definition:\n  dormancy_days: 10\n")
    return fdata.load(fparams.load(pf))


def test_incomplete_month_is_flagged_not_a_churn_spike(tmp_path, monkeypatch):
    monkeypatch.setattr(kpi_value, "customer_clv", lambda ds, day: pd.Series(dtype=float))
    d = _steady(tmp_path, cut="2026-10-14")
    try:
        rep = kpi.month_report(d, "2026-10", trend_months=2)
    finally:
        d.close()
    comp = rep.completeness.set_index("table")
    assert not comp.loc["orders", "complete"] and comp.loc["orders", "why"] == "lag"
    assert comp.loc["orders", "lag_days"] == 17
    row = rep.table.set_index("kpi").loc["churn_rate_monthly"]
    assert row.value > 0.9  # every customer looks dormant: the spike the check prevents
    assert row.status == "grey" and row.reason == "incomplete:orders"
    kinds = [a["kind"] for a in rep.alerts]
    assert "incomplete" in kinds
    assert not any(a["kind"] == "kpi" and a["kpi"].startswith("churn") for a in rep.alerts)
    assert not rep.complete
    assert not rep.history_rows().complete.any()


def test_complete_steady_month_has_no_spike_and_no_flag(tmp_path):
    d = _steady(tmp_path, cut=None)
    try:
        values, comp = kpi.compute_series(d, ["2026-09", "2026-10"], model_months=set())
    finally:
        d.close()
    assert comp.complete.all()
    churn = values[values.kpi == "churn_rate_monthly"].value
    assert (churn == 0).all()


def test_volume_rule_and_partial_month(tmp_path):
    # After 10-17 only one customer of 60 orders: the latest date is recent, but the month's
    # last two weeks hold far fewer rows than the weeks before predict.
    d = _steady(tmp_path, cut=None, thin_after="2026-10-17")
    try:
        comp = kpi.month_completeness(d, [kpi.Window.of("2026-10", d.params)]).set_index("table")
    finally:
        d.close()
    assert comp.loc["orders", "why"] == "volume" and comp.loc["orders", "lag_days"] <= 1
    # A month not over at as_of is provisional.
    p = _steady(tmp_path, cut=None, as_of="2026-10-20")
    try:
        comp = kpi.month_completeness(p, [kpi.Window.of("2026-10", p.params)])
    finally:
        p.close()
    assert comp.why.tolist() == ["partial"]


# --------------------------------------------------------------------------------------
# Month report, history


def test_month_report_records_and_new_at_risk(report):
    rep = report
    assert rep.month == "2026-10"
    assert list(rep.table.kpi) == list(kpi.CATALOGUE)
    assert rep.values()["nps"] == pytest.approx(20.0)
    assert rep.status()["nps"] == "red"  # 20 < 40
    assert rep.new_red.customer_id.tolist() == ["H"] and rep.red_source == "rules"
    assert any(a["kind"] == "new_red" and a["count"] == 1 for a in rep.alerts)
    assert rep.at_risk.customer_id.tolist() == ["G", "H"]
    assert sorted(rep.trend.month.unique()) == ["2026-08", "2026-09", "2026-10"]
    assert rep.complete
    msgs = kpi.alert_messages(rep.alerts, "en", i18n.Fmt("en"))
    assert any("NPS" in m and "below the alert threshold 40.0" in m for m in msgs)
    assert kpi.alert_messages(rep.alerts, "zh", i18n.Fmt("zh"))


def test_month_report_takes_recorded_months_from_history(ds, report, fast_clv):
    first = report
    hist = first.trend.assign(status="amber")  # as if reported differently at the time
    hist = kpi.history_rows(hist[hist.month != "2026-10"], first.completeness, "old", run="r")
    again = kpi.month_report(ds, "2026-10", history=hist, trend_months=3)
    assert again.from_history == ["2026-08", "2026-09"]
    t = again.trend.set_index(["month", "kpi"])
    assert (t.loc["2026-09"].status == "amber").all() and (
        t.loc["2026-09"].source == "history"
    ).all()
    pd.testing.assert_frame_equal(
        again.table.drop(columns="source"), first.table.drop(columns="source")
    )


def _rows(month: str, value: float) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "month": month,
                "kpi": k,
                "value": value,
                "n": 1.0,
                "status": "green",
                "reason": None,
                "target": 1.0,
                "alert": 0.5,
                "complete": True,
                "fingerprint": "f",
                "run": "r",
                "computed_at": "t",
            }
            for k in kpi.CATALOGUE
        ]
    )


def test_history_replaces_a_month_atomically(tmp_path):
    path = tmp_path / "reports" / "kpi_history.parquet"
    assert kpi.read_history(path).empty
    kpi.write_history(path, pd.concat([_rows("2026-08", 1.0), _rows("2026-09", 2.0)]))
    before = kpi.read_history(path)
    assert len(before) == 2 * len(kpi.CATALOGUE)
    kpi.write_history(path, _rows("2026-09", 3.0))
    after = kpi.read_history(path)
    assert len(after) == 2 * len(kpi.CATALOGUE)
    pd.testing.assert_frame_equal(
        after[after.month == "2026-08"].reset_index(drop=True),
        before[before.month == "2026-08"].reset_index(drop=True),
    )
    assert (after[after.month == "2026-09"].value == 3.0).all()
    assert list(after.kpi[: len(kpi.CATALOGUE)]) == list(kpi.CATALOGUE)
    assert not list(path.parent.glob(".kpi_history*"))  # no temp file left behind
    with pytest.raises(ValueError, match="repeat"):
        kpi.write_history(path, pd.concat([_rows("2026-10", 1.0), _rows("2026-10", 1.0)]))
    (tmp_path / "bad.parquet").write_bytes(pd.DataFrame({"x": [1]}).to_parquet())
    with pytest.raises(ValueError, match="not a KPI history"):
        kpi.read_history(tmp_path / "bad.parquet")


def test_history_path(fixture_dir, tmp_path):
    p = fparams.load(params_file(tmp_path, fixture_dir))
    assert kpi.history_path(p, reports_dir=tmp_path) == tmp_path / "kpi_history.parquet"
    assert kpi.history_path(p, run_dir=tmp_path / "r" / ".monthly.tmp") == (
        tmp_path / "r" / "kpi_history.parquet"
    )
    assert kpi.history_path(p) is None


def test_backfill_rows_equal_month_report(ds, report, fast_clv):
    rows = kpi.backfill_rows(ds, ["2026-09", "2026-10"], computed_at="t")
    rep = report
    a = rows[rows.month == "2026-10"].reset_index(drop=True)
    b = rep.history_rows(run="backfill", computed_at="t")
    cols = [
        "month",
        "kpi",
        "value",
        "n",
        "status",
        "reason",
        "target",
        "alert",
        "complete",
        "fingerprint",
    ]
    pd.testing.assert_frame_equal(a[cols], b[cols])


def test_export_many_managers_keeps_one_filterable_sheet(ds, report, tmp_path, monkeypatch):
    import openpyxl

    frame = kpi.at_risk_export_frame(report.at_risk, set(), "en", ds.params.tier_label)
    monkeypatch.setattr(slides, "MAX_MANAGER_SHEETS", 1)  # two managers: over the limit
    paths = kpi.export_at_risk(frame, tmp_path, "en")
    wb = openpyxl.load_workbook(paths[1])
    assert len(wb.sheetnames) == 1
    sheet = wb[wb.sheetnames[0]]
    assert sheet.auto_filter.ref == f"A1:{sheet.cell(1, frame.shape[1]).column_letter}3"
    assert sheet.max_row == len(frame) + 1 == 3


def test_export_and_formatting(ds, report, tmp_path):
    import openpyxl

    rep = report
    frame = kpi.at_risk_export_frame(
        rep.at_risk, set(rep.new_red.customer_id), "zh", ds.params.tier_label
    )
    paths = kpi.export_at_risk(frame, tmp_path, "zh")
    assert [p.name for p in paths] == ["at_risk.csv", "at_risk.xlsx"]
    assert paths[0].read_bytes().startswith(b"\xef\xbb\xbf")  # Excel reads the Chinese headers
    wb = openpyxl.load_workbook(paths[1])
    assert wb.sheetnames == ["全部", "AM-1", "AM-2"]
    assert wb["AM-2"]["B2"].value == "H"
    assert wb["全部"].auto_filter.ref == "A1:" + wb["全部"].auto_filter.ref.split(":")[1]
    assert rep.at_risk.clv.tolist() == [400.0, 500.0]
    assert "客户经理" in pd.read_csv(paths[0]).columns
    summary = kpi.manager_summary(rep.at_risk, {"H"})
    assert summary.to_dict("list")["customers"] == [1, 1] and summary.new.sum() == 1
    assert summary.clv.sum() == pytest.approx(900.0)
    f = i18n.Fmt("en")
    assert kpi.format_value("nps", 20.0, f) == "20.0"
    assert kpi.format_value("churn_rate_t12", 0.25, f) == "25.0%"
    assert kpi.format_change("churn_rate_t12", 0.012, f) == "+1.2 pts"
    assert kpi.format_change("avg_clv", -0.1, f) == "-10.0%"
    assert (
        kpi.format_threshold("avg_clv", {"target": None, "target_yoy": 0.0}, "target", f)
        == "YoY 0%"  # a zero has no sign (i18n.Fmt.fixed)
    )
    assert kpi.reason_text("missing:surveys", "en") == "table 'surveys' is missing"
    assert kpi.reason_text("incomplete:orders", "zh").startswith("数据不完整")


def test_every_kpi_has_labels_in_both_languages():
    for lang in i18n.LANGS:
        for key, k in kpi.CATALOGUE.items():
            assert i18n.t(f"kpi.name.{key}", lang)
            assert i18n.t(f"kpi.formula.{key}", lang)
            assert i18n.t(f"kpi.dir.{k.direction}", lang)
            assert i18n.t(f"kpi.group.{k.group}", lang)
        for s in kpi.STATUSES:
            assert i18n.t(f"kpi.status.{s}", lang)
        for c in kpi.REASON_CODES:
            assert i18n.t(f"kpi.risk.{c}", lang)


def test_customer_clv_on_generated_data(demo_small, tmp_path, monkeypatch):
    """The real BG/NBD x Gamma-Gamma CLV: one value per customer with an order, positive,
    and the average KPI over active customers only."""
    monkeypatch.setattr(kpi_value, "customer_clv", REAL_CLV)
    d = fdata.load(fparams.load(params_file(tmp_path, demo_small)))
    try:
        day = dt.date(2026, 10, 31)
        clv = kpi.customer_clv(d, day)
        values, _ = kpi.compute_series(d, ["2026-10"], model_months={"2026-10"})
        active = context._Ctx(d).active(day).customer_id
    finally:
        d.close()
    assert clv.index.is_unique and (clv >= 0).all() and clv.mean() > 0
    avg = values.set_index("kpi").loc["avg_clv", "value"]
    assert avg == pytest.approx(clv.reindex(active).dropna().mean())


# --------------------------------------------------------------------------------------
# Faster paths against the code they replaced (generated data)


def _random_orders(seed: int, n_customers: int = 80, scale: float = 1.0) -> dict[str, pd.DataFrame]:
    """Customers acquired over four years and orders over five (some before acquisition,
    several on one day, refunds, amounts with more than four decimals)."""
    rng = np.random.default_rng(seed)
    ids = [f"R{i:03d}" for i in range(n_customers)]
    start = pd.Timestamp("2022-01-01")
    acq = start + pd.to_timedelta(rng.integers(0, 4 * 365, n_customers), unit="D")
    customers = pd.DataFrame(
        {
            "customer_id": ids,
            "acquired_at": acq.strftime("%Y-%m-%d"),
            "industry": "retail",
            "region": "华东",
            "tier": rng.choice(["gold", "silver"], n_customers),
            "account_manager": rng.choice(["AM-1", "AM-2", "AM-3"], n_customers),
        }
    )
    n = 40 * n_customers
    who = rng.integers(0, n_customers, n)
    day = start + pd.to_timedelta(rng.integers(-60, 5 * 365 - 60, n), unit="D")
    day = day.where(rng.random(n) > 0.3, acq[who] + pd.to_timedelta(rng.integers(0, 20, n), "D"))
    amount = np.round(rng.gamma(2.0, 80.0, n) * np.where(rng.random(n) < 0.1, -1, 1), 6) * scale
    # customers stop ordering at some point; a few orders after it are win-backs
    stop = start + pd.to_timedelta(rng.integers(200, 5 * 365, n_customers), unit="D")
    keep = (day <= stop[who]) | (rng.random(n) < 0.03)
    who, day, amount, n = who[keep], day[keep], amount[keep], int(keep.sum())
    orders = pd.DataFrame(
        {
            "order_id": [f"Q{i}" for i in range(n)],
            "customer_id": np.asarray(ids)[who],
            "order_date": day.strftime("%Y-%m-%d"),
            "amount": amount,
        }
    )
    return {"customers": customers, "orders": orders}


@pytest.mark.parametrize(
    "seed, as_of, scale",
    [(1, "2026-10-31", 1.0), (2, "2026-10-17", 1.0), (3, "2026-02-28", 1.0), (4, AS_OF, 1e14)],
)
def test_revenue_by_segment_equals_the_per_month_query(tmp_path, seed, as_of, scale):
    """Segment sums give the per-month query's totals exactly (a month not over at as_of
    has bounds off the month ends; amounts of 10^16 overflow 64-bit units and fall back)."""
    drop = ("contracts", "surveys", "tickets", "touches", "churn_events")
    data = write_fixture(tmp_path / "data", drop=drop, **_random_orders(seed, scale=scale))
    d = fdata.load(fparams.load(params_file(tmp_path, data, as_of=as_of)))
    try:
        last = kpi.parse_month(as_of)
        months = kpi.month_range(kpi.shift_month(last, -25), last)
        windows = [kpi.Window.of(m, d.params) for m in months]
        ctx = context._Ctx(d)
        old = formulas._revenue_by_query(ctx, windows)
        new = formulas._revenue_by_segment(ctx, windows)
        rows = kpi.revenue_kpis(ctx, windows)
    finally:
        d.close()
    if scale > 1:
        assert new is None  # too large for exact 64-bit sums: revenue_kpis runs the query
        return
    assert old and set(old) <= set(new)
    for m, got in new.items():
        want = old.get(m, dict.fromkeys(got, 0))
        for k in ("buyers", "repeaters", "cohort", "prev", "kept", "net"):
            assert got[k] == want[k], (m, k)
    assert rows == _revenue_rows(old, windows, rows)


def _revenue_rows(got, windows, rows):
    # revenue_kpis' rows rebuilt from the query's totals (what the old code returned)
    ctx_rows = []
    by = {(r["month"], r["kpi"]): r for r in rows}
    for w in windows:
        r = got.get(w.month, {})
        buyers = r.get("buyers") or 0
        ctx_rows.append(
            context._val(
                w.month,
                "repurchase_rate",
                (r.get("repeaters") or 0) / buyers if buyers else None,
                buyers,
            )
        )
        prev = r.get("prev") or 0.0
        if by[(w.month, "grr")]["reason"] == "history":
            ctx_rows += [context._val(w.month, k, None, None, "history") for k in ("grr", "nrr")]
        else:
            n = r.get("cohort") or 0
            ctx_rows.append(context._val(w.month, "grr", r["kept"] / prev if prev > 0 else None, n))
            ctx_rows.append(context._val(w.month, "nrr", r["net"] / prev if prev > 0 else None, n))
    return ctx_rows


def _random_touches(seed: int, customers: pd.DataFrame, n: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    at = pd.Timestamp("2022-06-01") + pd.to_timedelta(rng.integers(0, 4 * 365 * 24, n), "h")
    return pd.DataFrame(
        {
            "touch_id": [f"W{i}" for i in range(n)],
            "customer_id": rng.choice(customers.customer_id.to_numpy(), n),
            "touched_at": at.strftime("%Y-%m-%d %H:%M:%S"),
            "channel": "visit",
        }
    )


def _touch_reference(ctx, windows):
    # the per-month query and pandas isin that touch_kpi replaced
    grid = months._grid(windows)
    t = ctx.events("touches")
    day = t.touched_at.date()
    j = t.join(grid, [day > grid.m_touch, day <= grid.m_end, t.acq <= grid.m_end, day >= t.acq])
    touched = j.select("m_month", "customer_id").distinct().to_pandas()
    by_month = touched.groupby("m_month").customer_id.apply(set).to_dict()
    rows = []
    for w in windows:
        active = ctx.active(w.end).customer_id
        hit = int(active.isin(by_month.get(w.month, set())).sum())
        rows.append(
            context._val(
                w.month, "touch_coverage", hit / len(active) if len(active) else None, len(active)
            )
        )
    return rows


def _winback_reference(ctx, windows):
    rows = []
    for w in windows:
        before = ctx.status(w.y1)
        lost = before.loc[before.churned, "customer_id"]
        now = ctx.status(w.end).set_index("customer_id")
        back = int((now.reindex(lost).last_order > pd.Timestamp(w.y1)).sum())
        rows.append(
            context._val(
                w.month, "winback_rate", back / len(lost) if len(lost) else None, len(lost)
            )
        )
    return rows


@pytest.mark.parametrize("seed, as_of", [(5, "2026-10-31"), (6, "2026-10-17")])
def test_touch_and_winback_equal_the_per_month_code(tmp_path, seed, as_of):
    gen = _random_orders(seed)
    gen["touches"] = _random_touches(seed, gen["customers"])
    drop = ("contracts", "surveys", "tickets", "churn_events")
    data = write_fixture(tmp_path / "data", drop=drop, **gen)
    d = fdata.load(fparams.load(params_file(tmp_path, data, as_of=as_of)))
    try:
        last = kpi.parse_month(as_of)
        windows = [kpi.Window.of(m, d.params) for m in kpi.month_range("2024-01", last)]
        ctx = context._Ctx(d)
        touch, touch_ref = kpi.touch_kpi(ctx, windows), _touch_reference(ctx, windows)
        back, back_ref = kpi.winback_kpi(ctx, windows), _winback_reference(ctx, windows)
    finally:
        d.close()
    assert touch == touch_ref
    assert back == back_ref
    assert len({r["value"] for r in touch}) > 5 and len({r["value"] for r in back}) > 3


def _arrivals_reference(ev, grid):
    # the two grid queries month_completeness() ran per table before _arrival_counts
    import ibis

    ev = ev.view()
    j = ev.join(
        grid,
        [
            ev.day <= grid.m_end,
            ev.day > grid.m_end - ibis.interval(days=365),
            ev.acq <= grid.m_end,
        ],
    )
    gap = j.m_end.delta(j.day, unit="day")
    zero = ibis.literal(0, "int64")
    agg = j.group_by("m_month").aggregate(
        latest=j.day.max(),
        recent=ibis.ifelse(gap < kpi.RECENT_DAYS, j.n, zero).sum(),
        base=ibis.ifelse(
            (gap >= kpi.RECENT_DAYS) & (gap < kpi.RECENT_DAYS + kpi.BASELINE_DAYS), j.n, zero
        ).sum(),
    )
    got = context._by_month(agg)
    lat = agg.select("m_month", "latest")
    per_day = ev.group_by("day").aggregate(n=ev.n.sum()).view()
    r = per_day.join(
        lat,
        [
            per_day.day <= lat.latest,
            per_day.day > lat.latest - ibis.interval(days=kpi.QUARTER_DAYS),
        ],
    )
    return got, context._by_month(r.group_by("m_month").aggregate(n90=r.n.sum()))


@pytest.mark.parametrize("as_of", ["2026-10-31", "2026-10-17"])
def test_arrival_counts_equal_the_grid_queries(tmp_path, as_of):
    """completeness() sums each month's arrivals from the per-day rows in numpy; the grid
    queries it ran before give the same latest day, recent, baseline and 90-day counts
    (orders partly before acquisition, touches with gaps, a month not over)."""
    import ibis

    gen = _random_orders(8)
    touches = _random_touches(8, gen["customers"], n=400)
    gen["touches"] = touches[~touches.touched_at.between("2026-05-01", "2026-08-15")]
    drop = ("contracts", "surveys", "tickets", "churn_events")
    data = write_fixture(tmp_path / "data", drop=drop, **gen)
    d = fdata.load(fparams.load(params_file(tmp_path, data, as_of=as_of)))
    try:
        windows = [
            kpi.Window.of(m, d.params) for m in kpi.month_range("2022-01", kpi.parse_month(as_of))
        ]
        grid = months._grid(windows)
        for table, col in (("orders", "order_date"), ("touches", "touched_at")):
            t = d[table]
            c = d["customers"].select(cid="customer_id", acq="acquired_at")
            t = t.join(c, t.customer_id == c.cid)
            day = t[col].date() if col == "touched_at" else t[col]
            raw = t.select(day=day, acq=t.acq)
            ev = raw.group_by(
                day=raw.day, acq=ibis.ifelse(raw.acq > raw.day, raw.acq, raw.day)
            ).aggregate(n=raw.count())
            got, rates = arrival._arrival_counts(ev.to_pyarrow(), windows)
            want, want_rates = _arrivals_reference(ev, grid)
            assert set(got) == set(want) and len(got) > 20
            for m, g in got.items():
                w = want[m]
                assert g["latest"] == pd.Timestamp(w["latest"]).date(), (table, m)
                assert (g["recent"], g["base"]) == (w["recent"], w["base"]), (table, m)
                assert rates[m]["n90"] == want_rates[m]["n90"], (table, m)
            assert len({g["latest"] for g in got.values()}) > 5
    finally:
        d.close()


def _with_top_ties(gen: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Three big customers with the same orders (amounts exact in binary, so every order of
    addition gives equal sums): the top-N cut falls inside their tie."""
    c, o = gen["customers"], gen["orders"]
    twins = pd.DataFrame(
        {
            "customer_id": ["T2", "T0", "T1"],
            "acquired_at": "2022-01-01",
            "industry": "retail",
            "region": "华东",
            "tier": "gold",
            "account_manager": "AM-1",
        }
    )
    days = pd.date_range("2022-01-15", "2026-10-15", freq="MS").strftime("%Y-%m-%d")
    rows = [
        (f"TO{t}{i}", t, d, 5000.25 + 0.25 * (i % 3))
        for t in twins.customer_id
        for i, d in enumerate(days)
    ]
    orders = pd.DataFrame(rows, columns=["order_id", "customer_id", "order_date", "amount"])
    return {"customers": pd.concat([c, twins]), "orders": pd.concat([o, orders])}


def _random_contracts(seed: int, customers: pd.DataFrame, n: int = 300) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    who = rng.choice(customers.customer_id.to_numpy(), n)
    start = pd.Timestamp("2022-01-01") + pd.to_timedelta(rng.integers(0, 4 * 365, n), "D")
    end = start + pd.to_timedelta(rng.integers(150, 400, n), "D")
    return pd.DataFrame(
        {
            "contract_id": [f"K{i}" for i in range(n)],
            "customer_id": who,
            "start_date": start.strftime("%Y-%m-%d"),
            "end_date": end.strftime("%Y-%m-%d"),
            "annual_value": 1000.0,
            "renewal_of": None,
        }
    )


@pytest.mark.parametrize("seed, as_of", [(9, "2026-10-31"), (10, "2026-10-17")])
def test_top_n_renewal_series_is_the_catalogue_metric(tmp_path, seed, as_of):
    from fupan.measures import metrics, outcomes

    gen = _with_top_ties(_random_orders(seed))
    gen["contracts"] = _random_contracts(seed, gen["customers"])
    drop = ("surveys", "tickets", "touches", "churn_events")
    data = write_fixture(tmp_path / "data", drop=drop, **gen)
    d = fdata.load(fparams.load(params_file(tmp_path, data, as_of=as_of)))
    try:
        months = kpi.month_range("2024-06", kpi.parse_month(as_of))
        windows = [kpi.Window.of(m, d.params) for m in months]
        rows = [
            r
            for r in kpi.renewal_kpis(context._Ctx(d), windows)
            if r["kpi"] == "renewal_rate_top_n"
        ]
        w = windows[-1]
        start = w.y1 + dt.timedelta(days=1)
        top = metrics.top_n_customers(d, outcomes.churn_status(d, w.end), start, 2)
        point, _ = metrics.top_n_renewal(d, outcomes.churn_status(d, w.end), start, w.end, 2)
    finally:
        d.close()
    assert d.params.diagnosis.top_n == 2
    # the twins tie: the cut keeps the smaller ids
    assert list(top.customer_id) == ["T0", "T1"]
    last = rows[-1]
    assert last["n"] == point["due"]
    assert last["value"] == (point["rate"] if point["due"] else None)
    assert len({r["value"] for r in rows}) > 1


def test_release_keeps_the_report_dates_and_recomputes_the_rest_alike(ds, fast_clv):
    ctx = context._Ctx(ds)
    w = kpi.Window.of("2026-10", ds.params)
    days = [w.end, w.prev_end, w.y1, w.y2]
    before = {d: ctx.status(d).copy() for d in days}
    kept = ctx.status(w.end)
    for d in days:
        ctx.active_ids(d)
    formulas._segments_of(ctx, (w.y2, w.y1, w.end))
    ctx.release({w.end, w.prev_end})
    assert set(ctx._status) == set(ctx._active) == {w.end, w.prev_end}
    assert not ctx._orders
    assert ctx.status(w.end) is kept  # kept, not recomputed
    for d in days:  # a released date is computed again, to the same frame
        pd.testing.assert_frame_equal(ctx.status(d), before[d])
