"""fupan.chapters.diagnosis: headline churn, top-N renewal, excess churn and the failure-point ranking.

Unit tests are hand-checked on tiny data and small frames. The acceptance tests run on the
generated 5,000-customer demo (seed 42) and compare with its known truth, or with figures
computed independently with pandas from the CSV files.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import paramfile
import pytest
import tiny
from fupan.chapters import diagnosis, funnel, service
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.measures import segments
from fupan.measures.outcomes import churn_status


def _load(tmp_path, extra: str = "", drop: tuple[str, ...] = (), **replace):
    data = tiny.write(tmp_path / "d", drop=drop, **replace)
    return fdata.load(fparams.load(tiny.params_file(tmp_path, data, extra=extra)))


def test_review_window(tiny_params):
    p = fparams.load(tiny_params)
    assert diagnosis.review_window(p) == (dt.date(2025, 10, 31), dt.date(2026, 10, 31))


def _status(rows):
    df = pd.DataFrame(rows, columns=["customer_id", "acquired_at", "tier", "churned_at"])
    df["acquired_at"] = pd.to_datetime(df.acquired_at)
    df["churned_at"] = pd.to_datetime(df.churned_at)
    return df


def test_headline_churn_by_hand(tiny_params):
    p = fparams.load(tiny_params)
    status = _status(
        [
            ("a", "2024-01-01", "platinum", "2026-03-01"),  # churned in the period
            ("b", "2024-01-01", "gold", None),
            ("c", "2024-01-01", "silver", "2026-10-31"),  # last day of the period counts
            ("d", "2024-01-01", "silver", None),
            ("e", "2024-01-01", "silver", "2025-10-31"),  # lost before the period: not at risk
            ("f", "2025-12-01", "silver", "2026-05-01"),  # acquired during the period: not at risk
        ]
    )
    dims = pd.DataFrame(
        {
            "customer_id": list("abcdef"),
            "industry": ["x", "x", "y", "y", "y", "y"],
            "region": ["r"] * 6,
        }
    )
    h = diagnosis.headline_churn(status, dims, p)
    overall = h[h.dimension == "overall"].iloc[0]
    assert (overall.at_risk, overall.churned, overall.rate) == (4, 2, 0.5)
    assert overall.gap == pytest.approx(0.5 - 0.12)
    assert overall.gap_ci_low == pytest.approx(overall.ci_low - 0.12)
    core = h[h.dimension == "core"].iloc[0]
    assert (core.at_risk, core.churned) == (2, 1)
    tiers = h[h.dimension == "tier"]
    assert tiers.group.tolist() == ["platinum", "gold", "silver"]
    assert tiers.set_index("group").rate.to_dict() == {"platinum": 1.0, "gold": 0.0, "silver": 0.5}
    ind = h[h.dimension == "industry"].set_index("group")
    assert ind.rate.to_dict() == {"x": 0.5, "y": 0.5}
    assert set(h.dimension) == {"overall", "core", "tier", "industry", "region"}


def test_excess_churn_within_strata():
    # Exposure sits in the tier that churns more: the crude gap is 0.3, within tiers it is 0.
    tier = ["hi"] * 10 + ["lo"] * 10
    exposed = [True] * 8 + [False] * 2 + [True] * 2 + [False] * 8
    churned = [True, True, True, True, False, False, False, False, True, False] + [
        False,
        False,
        False,
        False,
        False,
        False,
        False,
        False,
        False,
        False,
    ]
    crude = diagnosis.excess_churn(exposed, churned)
    adj = diagnosis.excess_churn(exposed, churned, tier)
    assert crude["exposed"] == 10 and crude["exposed_churn"] == pytest.approx(0.4)
    assert crude["excess"] == pytest.approx(0.4 - 0.1)
    # hi: 4/8 vs 1/2 -> 0; lo: 0/2 vs 0/8 -> 0
    assert adj["excess"] == pytest.approx(0.0)
    assert np.isnan(diagnosis.excess_churn([True, True], [True, False])["excess"])


def test_excess_share():
    assert diagnosis.excess_share(0.24, 0.12) == pytest.approx(0.5)
    assert diagnosis.excess_share(0.10, 0.12) == 0.0
    assert diagnosis.excess_share(float("nan"), 0.12) == 0.0


def test_rank_failure_points():
    ranked = diagnosis.rank_failure_points(
        [
            {"key": "a", "metric": "m", "value": 1, "revenue_at_stake": 10.0},
            {"key": "b", "metric": "m", "value": 1, "revenue_at_stake": 30.0},
            {"key": "c", "metric": "m", "value": 1, "revenue_at_stake": None},
            {"key": "d", "metric": "m", "value": 1, "revenue_at_stake": 0.0},
            {"key": "e", "metric": "m", "value": 1, "revenue_at_stake": 20.0},
            {"key": "f", "metric": "m", "value": 1, "revenue_at_stake": 5.0},
        ]
    )
    assert ranked.key.tolist() == ["b", "e", "a"] and ranked["rank"].tolist() == [1, 2, 3]
    assert diagnosis.rank_failure_points([]).empty


def test_lost_revenue(tmp_path):
    ds = _load(tmp_path)
    status = churn_status(ds)
    before = diagnosis.prior_year_revenue(ds, dt.date(2025, 10, 31))
    assert before.set_index("customer_id").revenue.to_dict() == {"C2": 30_000.0, "C5": 9_000.0}
    assert diagnosis.lost_revenue(status, before, ds.params) == (
        0,
        0.0,
    )  # nobody churned in the period
    ds.close()


def _contracts(rows):
    return pd.DataFrame(
        rows,
        columns=[
            "contract_id",
            "customer_id",
            "start_date",
            "end_date",
            "annual_value",
            "renewal_of",
        ],
    )


def test_top_n_renewal_contracts(tmp_path):
    # At the period start only C5 is alive with revenue in the year before (9k on 2025-03-03).
    renewed = _contracts(
        [
            ("K1", "C5", "2025-03-03", "2026-03-02", 9000.0, None),
            ("K2", "C5", "2026-03-03", "2027-03-02", 9000.0, "K1"),
        ]
    )
    ds = _load(tmp_path / "a", contracts=renewed)
    s, per = diagnosis.top_n_renewal(ds, churn_status(ds))
    assert per.customer_id.tolist() == ["C5"] and per["rank"].tolist() == [1]
    assert (s["basis"], s["due"], s["renewed"], s["rate"]) == ("contract", 1, 1, 1.0)
    assert s["gap"] == pytest.approx(0.25)
    ds.close()

    lapsed = _contracts([("K1", "C5", "2025-03-03", "2026-03-02", 9000.0, None)])
    ds = _load(tmp_path / "b", contracts=lapsed)
    s, _ = diagnosis.top_n_renewal(ds, churn_status(ds))
    assert (s["due"], s["renewed"], s["rate"]) == (1, 0, 0.0)
    ds.close()

    # a new contract without a renewal_of link, started within the grace period, renews too
    unlinked = _contracts(
        [
            ("K1", "C5", "2025-03-03", "2026-03-02", 9000.0, None),
            ("K2", "C5", "2026-04-15", "2027-04-14", 9000.0, None),
        ]
    )
    ds = _load(tmp_path / "c", contracts=unlinked)
    assert diagnosis.top_n_renewal(ds, churn_status(ds))[0]["renewed"] == 1
    ds.close()

    # ended 2026-10-15: still inside its 60-day grace at as_of, not renewed yet -> pending
    pending = _contracts([("K1", "C5", "2025-10-16", "2026-10-15", 9000.0, None)])
    ds = _load(tmp_path / "d", contracts=pending)
    s, _ = diagnosis.top_n_renewal(ds, churn_status(ds))
    assert s["due"] == 0 and np.isnan(s["rate"])
    ds.close()


def test_top_n_renewal_without_contracts_is_repurchase(tmp_path):
    ds = _load(tmp_path, drop=("contracts",))
    s, per = diagnosis.top_n_renewal(ds, churn_status(ds))
    assert (s["basis"], s["due"], s["renewed"]) == ("repurchase", 1, 1)  # C5 ordered on 2026-10-20
    ds.close()


def test_top_n_limit(tmp_path):
    ds = _load(tmp_path, extra="diagnosis:\n  top_n: 1\n")
    assert ds.params.diagnosis.top_n == 1
    assert len(diagnosis.top_n_customers(ds, churn_status(ds), 1)) == 1
    ds.close()


# --------------------------------------------------------------------------------------
# Acceptance on the generated demo (5,000 customers, seed 42: the default demo)


@pytest.fixture(scope="module")
def demo(tmp_path_factory, demo_default):
    root = tmp_path_factory.mktemp("demo5k")
    pf = paramfile.write(root, demo_default, name="demo", as_of="2026-10-31")
    ds = fdata.load(fparams.load(pf))
    yield demo_default, ds
    ds.close()


def independent_churn_rate(folder, as_of="2026-10-31", start="2025-10-31", dormancy=365):
    """Annual churn straight from the CSVs with pandas, by the definition in DESIGN.md.

    Non-contractual: lost once ``dormancy`` days pass after the last order (or acquisition);
    a recorded churn event takes precedence unless the customer ordered after it.
    """
    as_of, start = pd.Timestamp(as_of), pd.Timestamp(start)
    c = pd.read_csv(folder / "customers.csv", parse_dates=["acquired_at"]).set_index("customer_id")
    o = pd.read_csv(folder / "orders.csv", parse_dates=["order_date"])
    e = pd.read_csv(folder / "churn_events.csv", parse_dates=["churned_at"])
    o = o[(o.order_date <= as_of) & o.customer_id.isin(c.index)]
    last = o.groupby("customer_id").order_date.max().reindex(c.index)
    dormant = last.fillna(c.acquired_at) + pd.Timedelta(days=dormancy)
    churned_at = dormant.where(dormant <= as_of)
    rec = e[e.churned_at <= as_of].groupby("customer_id").churned_at.max().reindex(c.index)
    stands = rec.notna() & ~(last > rec)
    churned_at = churned_at.mask(stands, rec)
    at_risk = (c.acquired_at <= start) & ~(churned_at <= start)
    lost = at_risk & (churned_at > start) & (churned_at <= as_of)
    return int(lost.sum()) / int(at_risk.sum())


def independent_first_response(folder, start="2025-11-01", end="2026-10-31"):
    t = pd.read_csv(folder / "tickets.csv", parse_dates=["opened_at", "first_response_at"])
    c = pd.read_csv(folder / "customers.csv")
    t = t[t.customer_id.isin(c.customer_id)]
    day = t.opened_at.dt.normalize()
    t = t[(day >= pd.Timestamp(start)) & (day <= pd.Timestamp(end))]
    days = (t.first_response_at - t.opened_at).dt.total_seconds() / 86_400
    return float(days.dropna().median()), float(days.dropna().quantile(0.9)), int(days.isna().sum())


def test_demo_churn_rate_matches_pandas(demo):
    folder, ds = demo
    status = churn_status(ds)
    dims = ds["customers"].select("customer_id", "industry", "region").to_pandas()
    h = diagnosis.headline_churn(status, dims, ds.params)
    assert h.iloc[0].rate == pytest.approx(independent_churn_rate(folder), abs=1e-12)


def test_demo_first_response_matches_pandas(demo):
    folder, ds = demo
    row = service.service_levels(ds).iloc[0]
    median, p90, unanswered = independent_first_response(folder)
    assert row.median_first_response_days == pytest.approx(median, rel=1e-9)
    assert row.p90_first_response_days == pytest.approx(p90, rel=1e-9)
    assert row.unanswered == unanswered


def test_demo_misclassified_customers_found(demo):
    """The planted under-tiered growers are found: recall >= 0.9, precision >= 0.8."""
    folder, ds = demo
    truth = set(
        json.loads((folder / "truth.json").read_text(encoding="utf-8"))[
            "misclassified_customer_ids"
        ]
    )
    feats = segments.customer_features_as_of(ds)
    status = churn_status(ds).set_index("customer_id").churned.reindex(feats.customer_id).to_numpy()
    found = set(
        segments.retier(feats, ds.params, churned=status).query("misclassified").customer_id
    )
    tp = len(found & truth)
    assert truth, "the demo planted no misclassified customers"
    assert tp / len(truth) >= 0.9, f"recall {tp / len(truth):.3f}"
    assert tp / len(found) >= 0.8, f"precision {tp / len(found):.3f}"


def test_demo_funnel_adds_up(demo):
    _, ds = demo
    snap = funnel.stage_snapshots(ds, [ds.params.as_of])
    counts = funnel.funnel_counts(snap.stage)
    n_customers = int(ds["customers"].count().to_pyarrow().as_py())
    assert counts.customers.sum() == n_customers == 5000
    assert (counts.customers > 0).sum() >= 4


def test_failure_point_and_loss_point():
    at_start = pd.DataFrame(
        {
            "customer_id": list("abcdef"),
            "tier": ["t"] * 6,
            "churned_in_period": [True, True, False, False, False, False],
        }
    )
    revenue = pd.DataFrame({"customer_id": list("abcdefg"), "revenue": [1, 2, 3, 4, 5, 6, 100.0]})
    # exposed then: a, b, c (2 of 3 churned) vs d, e, f (0 of 3): excess 2/3
    p = diagnosis.failure_point(
        "service", "sla_compliance", 0.5, {"c", "g"}, {"a", "b", "c"}, at_start, revenue
    )
    assert p["customers"] == 2 and p["revenue_exposed"] == 103.0
    assert p["excess_churn"] == pytest.approx(2 / 3)
    assert p["revenue_at_stake"] == pytest.approx(103.0 * 2 / 3)
    none = diagnosis.failure_point("tiering", "m", 0, set(), set(), at_start, revenue)
    assert np.isnan(none["revenue_at_stake"])
    loss = diagnosis.loss_point("churn", "churn_rate", 0.24, 10, 1000.0, 0.24, 0.12)
    assert loss["revenue_at_stake"] == pytest.approx(500.0) and loss[
        "excess_churn"
    ] == pytest.approx(0.12)
