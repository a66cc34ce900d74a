"""fupan.measures.features: the catalogue, hand-checked as-of features, snapshots, labels and leakage.

Hand-checked values use the 5-customer tiny dataset (see tests/tiny.py for every row).
The leakage tests plant events that exist only on or after a snapshot and show that no
feature of that snapshot changes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tiny
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.measures import feature_tables
from fupan.measures import features as F


def _ds(tmp_path, drop=(), extra="", **replace):
    d = tiny.write(tmp_path / "d", drop=drop, **replace)
    return fdata.load(fparams.load(tiny.params_file(tmp_path, d, extra=extra)))


@pytest.fixture
def ds(tmp_path):
    ds = _ds(tmp_path)
    yield ds
    ds.close()


def test_catalogue_entries_are_documented():
    required = [
        "median_first_response_days",
        "no_touch_after_first_repeat",
        "spend_change_qoq",
        "weeks_without_login",
        "detractor",
        "recency_days",
        "orders_90d",
        "orders_365d",
        "spend_90d",
        "spend_365d",
        "order_gap_ratio",
        "touches_30d",
        "touches_90d",
        "days_since_touch",
        "tickets_90d",
        "tickets_change_qoq",
        "open_tickets",
        "nps_latest",
        "nps_change",
        "csat_latest",
        "logins_28d",
        "tenure_days",
        "tier",
        "days_to_renewal",
        "region",
        "acquisition_channel",
        "industry",
    ]
    for name in required:
        f = F.CATALOGUE[name]
        assert f.name == name and len(f.definition) > 20 and f.unit and f.source
    assert F.feature("dim_need_fit").source == "surveys"
    with pytest.raises(KeyError):
        F.feature("no_such_feature")


def test_every_catalogue_feature_has_labels_in_both_languages():
    from fupan.core import i18n

    for name in F.CATALOGUE:
        for lang in ("zh", "en"):
            assert i18n.t(f"feat.{name}", lang)


def test_features_by_hand_at_as_of(ds):
    df = F.customer_features_before(ds, "2026-10-31").set_index("customer_id")
    c1, c3, c5 = df.loc["C1"], df.loc["C3"], df.loc["C5"]
    # C1 orders: 2023-01-10, 2024-06-01, 2026-09-15 (150k), refund 2026-10-01 (-5k)
    assert c1.recency_days == 46
    assert c1.orders_90d == 1 and c1.orders_365d == 1
    assert c1.spend_90d == 145_000
    assert c1.spend_change_qoq == 0  # nothing in the 90 days before those
    assert c1.order_gap_ratio == pytest.approx(
        46 / ((pd.Timestamp("2026-09-15") - pd.Timestamp("2023-01-10")).days / 2)
    )
    assert c1.tenure_days == (pd.Timestamp("2026-10-31") - pd.Timestamp("2023-01-10")).days
    # touches 2026-09-01 10:00 and 2026-10-01 09:30
    assert c1.touches_30d == 1 and c1.touches_90d == 2 and c1.days_since_touch == 29
    # second order 2024-06-01 had no touch within 7 days
    assert c1.no_touch_after_first_repeat == 1
    # ticket opened 2026-09-01 08:00, answered a day later
    assert c1.median_first_response_days == pytest.approx(1.0)
    assert c1.open_tickets == 0 and c1.sla_breaches_90d == 0
    assert c1.nps_latest == 9 and c1.detractor == 0 and c1.csat_latest == 5
    assert np.isnan(c1.nps_change)
    # weekly activity: 5 logins in the week of 10-05, 3 in the week of 10-12 (ends 10-19)
    assert c1.logins_28d == 8 and c1.weeks_without_login == 1
    assert c1.days_to_renewal == 61  # contract K2 ends 2026-12-31
    assert c1.no_running_contract == 0
    # C2's only contract (K3) ended 2025-05-31 unrenewed; C3 never had one
    assert df.loc["C2"].no_running_contract == 1 and np.isnan(df.loc["C2"].days_to_renewal)
    assert c3.no_running_contract == 0
    assert c1.tier == "platinum" and c1.region == "华东"
    # C3: urgent ticket opened 2026-10-25 08:00, never answered: waited 5 2/3 days by the snapshot
    assert c3.median_first_response_days == pytest.approx(5 + 2 / 3)
    assert c3.open_tickets == 1 and c3.sla_breaches_90d == 1  # silver SLA 3.5 days
    assert c3.weeks_without_login == 3  # tracked since 2026-10-05, never logged in
    assert c3.no_touch_after_first_repeat == 0  # one order only
    assert np.isnan(c3.order_gap_ratio)
    assert c3.detractor == 0 and c3.nps_latest == 7
    # C5: second order 2026-10-20, 7-day window passed by 10-31 with no touch
    assert c5.no_touch_after_first_repeat == 1
    assert c5.days_since_touch == c5.tenure_days  # never touched
    assert np.isnan(c5.nps_latest) and c5.detractor == 0
    assert df.loc["C2"].detractor == 1  # NPS 3


def test_first_repeat_window_not_yet_passed(ds):
    # On 2026-10-25 C5's first repeat purchase (10-20) is only 5 days old: no flag yet.
    df = F.customer_features_before(ds, "2026-10-25", ["no_touch_after_first_repeat"]).set_index(
        "customer_id"
    )
    assert df.loc["C5"].no_touch_after_first_repeat == 0


def test_spend_change_and_ticket_change(tmp_path):
    orders = tiny.frames()["orders"]
    extra = pd.DataFrame(
        {
            "order_id": ["O91", "O92"],
            "customer_id": ["C5", "C5"],
            "order_date": ["2026-06-15", "2026-05-20"],
            "amount": [20000.0, 2000.0],
            "category": ["hardware"] * 2,
        }
    )
    ds = _ds(tmp_path, orders=pd.concat([orders, extra]))
    try:
        df = F.customer_features_before(
            ds, "2026-10-31", ["spend_change_qoq", "spend_90d"]
        ).set_index("customer_id")
        # C5: last 90 days (from 08-02) 11,000; the 90 days before (05-04..08-01) 22,000
        assert df.loc["C5"].spend_90d == 11_000
        assert df.loc["C5"].spend_change_qoq == pytest.approx(-0.5)
    finally:
        ds.close()


def test_features_need_their_tables(tmp_path):
    ds = _ds(
        tmp_path, drop=("touches", "activity", "surveys", "contracts", "tickets", "churn_events")
    )
    try:
        names = F.available(ds)
        assert "recency_days" in names and "touches_90d" not in names and "nps_latest" not in names
        assert "no_touch_after_first_repeat" not in names and "weeks_without_login" not in names
        df = F.customer_features_before(ds, "2026-10-31")
        assert list(df.columns) == ["customer_id", "snapshot_date", *names]
        with pytest.raises(KeyError):
            F.customer_features_before(ds, "2026-10-31", ["touches_90d"])
    finally:
        ds.close()


def test_monthly_snapshot_dates_end_where_labels_are_complete():
    dates = F.monthly_snapshot_dates("2026-10-31", 24, 90)
    assert len(dates) == 24
    assert dates[-1] == pd.Timestamp("2026-08-01")
    assert dates[0] == pd.Timestamp("2024-09-01")
    assert dates[-1] + pd.Timedelta(days=89) <= pd.Timestamp("2026-10-31")


def test_snapshot_membership_and_labels_by_hand(ds):
    snap = F.snapshots(
        ds, ["2025-05-01", "2025-07-01", "2026-10-01"], 90, names=["recency_days", "tier"]
    )
    s = {d: g.set_index("customer_id") for d, g in snap.groupby("snapshot_date")}
    may, jul, oct_ = (s[pd.Timestamp(x)] for x in ("2025-05-01", "2025-07-01", "2026-10-01"))
    # C2 has a recorded churn on 2025-06-30: in the May snapshot with a positive label,
    # gone by July.
    assert may.loc["C2"].label and may.loc["C2"].label_churned_at == pd.Timestamp("2025-06-30")
    assert "C2" not in jul.index
    # C3 (last order 2024-02-15) went dormant on 2025-02-14: gone before May.
    assert "C3" not in may.index
    # C4 (last order 2024-08-01) goes dormant on 2025-08-01: live in May (outside the
    # 90-day window), labelled in July.
    assert not may.loc["C4"].label and jul.loc["C4"].label
    # C5 was acquired 2025-03-03: in May, not churning.
    assert not may.loc["C5"].label
    # C1 ordered on 2024-06-01 and then not until 2026-09-15: by the dormancy rule it was
    # lost on 2025-06-01 (what was known at the end of May's horizon), so May's label is
    # positive and July leaves it out, although it came back a year later.
    assert may.loc["C1"].label and may.loc["C1"].label_churned_at == pd.Timestamp("2025-06-01")
    assert "C1" not in jul.index
    # October 2026: the horizon runs past as_of, so the label is incomplete.
    assert not oct_.label_complete.any() and may.label_complete.all()
    assert (
        may.loc["C1"].recency_days == (pd.Timestamp("2025-05-01") - pd.Timestamp("2024-06-01")).days
    )


def test_split_leaves_a_gap_of_one_horizon():
    dates = pd.date_range("2025-01-01", periods=12, freq="MS")
    snap = pd.DataFrame({"snapshot_date": np.repeat(dates, 2), "customer_id": ["a", "b"] * 12})
    train, test, start = F.split(snap, 3, 90)
    assert start == pd.Timestamp("2025-10-01")
    assert test.snapshot_date.min() == start
    assert (train.snapshot_date + pd.Timedelta(days=90) <= start).all()
    assert train.snapshot_date.max() == pd.Timestamp("2025-07-01")


def _plant_future(frames: dict[str, pd.DataFrame], at: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Add events dated on or after ``at[customer]`` for each customer: a loud future signal."""
    out = {k: v.copy() for k, v in frames.items()}
    rows = {"orders": [], "touches": [], "tickets": [], "surveys": [], "activity": []}
    for i, (cid, day) in enumerate(at.items()):
        d = pd.Timestamp(day)
        rows["orders"].append(
            {
                "order_id": f"FO{i}",
                "customer_id": cid,
                "order_date": d.date().isoformat(),
                "amount": -99_999.0,
                "category": "hardware",
            }
        )
        rows["touches"].append(
            {
                "touch_id": f"FT{i}",
                "customer_id": cid,
                "touched_at": (d + pd.Timedelta(hours=1)).isoformat(sep=" "),
                "channel": "call",
                "responded": "false",
            }
        )
        rows["tickets"].append(
            {
                "ticket_id": f"FS{i}",
                "customer_id": cid,
                "opened_at": (d + pd.Timedelta(hours=2)).isoformat(sep=" "),
                "first_response_at": (d + pd.Timedelta(days=30)).isoformat(sep=" "),
                "resolved_at": "",
                "priority": "urgent",
                "category": "billing",
            }
        )
        rows["surveys"].append(
            {
                "survey_id": f"FV{i}",
                "customer_id": cid,
                "surveyed_at": d.date().isoformat(),
                "nps": 0,
                "csat": 1,
                "dim_need_fit": 1.0,
            }
        )
        # a weekly period starting 3 days before the snapshot ends after it: not yet known
        rows["activity"].append(
            {
                "customer_id": cid,
                "period_start": (d - pd.Timedelta(days=3)).date().isoformat(),
                "logins": 500,
            }
        )
    for k, r in rows.items():
        out[k] = pd.concat([out[k], pd.DataFrame(r)], ignore_index=True)
    return out


def test_future_events_do_not_change_snapshot_features(tmp_path):
    s = "2026-10-01"
    base = _ds(tmp_path / "a")
    planted = _ds(
        tmp_path / "b",
        **_plant_future(tiny.frames(), {c: s for c in ["C1", "C2", "C3", "C4", "C5"]}),
    )
    try:
        a = F.customer_features_before(base, s)
        b = F.customer_features_before(planted, s)
        pd.testing.assert_frame_equal(a, b)
        # ...while the same events are visible a day later
        c = F.customer_features_before(planted, "2026-10-02").set_index("customer_id")
        assert c.loc["C1"].nps_latest == 0 and c.loc["C1"].touches_30d >= 1
    finally:
        base.close()
        planted.close()


def test_ticket_answer_after_snapshot_is_not_known(tmp_path):
    # C3's ticket opened 2026-10-25 08:00. Answering it on 10-27 must not change what was
    # known on 10-26 (a 16-hour wait so far), only what is known on 10-28.
    tickets = tiny.frames()["tickets"].copy()
    tickets.loc[tickets.ticket_id == "S3", "first_response_at"] = "2026-10-27 08:00:00"
    ds = _ds(tmp_path, tickets=tickets)
    try:
        before = F.customer_features_before(
            ds, "2026-10-26", ["median_first_response_days"]
        ).set_index("customer_id")
        after = F.customer_features_before(
            ds, "2026-10-28", ["median_first_response_days"]
        ).set_index("customer_id")
        assert before.loc["C3"].median_first_response_days == pytest.approx(16 / 24)
        assert after.loc["C3"].median_first_response_days == pytest.approx(2.0)
    finally:
        ds.close()


@pytest.mark.slow
def test_future_only_signal_is_not_used_on_generated_data(tmp_path, demo_small):
    """Plant, for every churner, a burst of events on the churn day itself: a perfect
    future-only signal. Every snapshot feature frame must be unchanged."""
    import shutil

    from fupan.measures import outcomes

    src = tmp_path / "src"
    shutil.copytree(demo_small, src)
    (tmp_path / "p").mkdir()
    p = fparams.load(tiny.params_file(tmp_path / "p", src))
    ds = fdata.load(p)
    st = outcomes.churn_status(ds)
    churners = st[st.churned].set_index("customer_id")
    dates = F.monthly_snapshot_dates(p.as_of, 6, 90)
    before = F.snapshots(ds, dates, 90)
    ds.close()
    frames = {
        name: pd.read_csv(src / f"{name}.csv", dtype=str, keep_default_na=False)
        for name in ("orders", "touches", "tickets", "surveys", "activity")
    }
    planted = _plant_future(
        frames, {c: d.date().isoformat() for c, d in churners.churned_at.items()}
    )
    # An order on the churn day would move a dormancy churner's last order (and so the
    # churn itself): plant orders only where churn is recorded.
    recorded = set(churners.index[churners.source == "recorded"])
    o = planted["orders"]
    planted["orders"] = o[~o.order_id.str.startswith("FO") | o.customer_id.isin(recorded)]
    for name, df in planted.items():
        df.to_csv(src / f"{name}.csv", index=False)
    ds2 = fdata.load(p)
    after = F.snapshots(ds2, dates, 90)
    ds2.close()
    pd.testing.assert_frame_equal(before, after)
    # The planted signal would have been perfect: every positive label's churn day carries it.
    assert before.label.sum() > 20


def test_sampled_snapshots_are_the_full_snapshots_of_the_sample(demo_small, tmp_path):
    p = fparams.load(tiny.params_file(tmp_path, demo_small), as_of="2026-09-30")
    with fdata.loaded(p) as ds:
        dates = F.monthly_snapshot_dates(p.as_of, 4, 90)
        full = F.snapshots(ds, dates, 90)
        part = F.snapshots(ds, dates, 90, max_customers=200, random_state=3)
    assert part.customer_id.nunique() <= 200 and len(part) > 200
    want = full[full.customer_id.isin(set(part.customer_id))].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, want)
    # the same seed draws the same customers; the sample is not the first ids in order
    assert sorted(part.customer_id.unique())[:5] != sorted(full.customer_id.unique())[:5]


def _activity(ids: list[str], step_days: int, periods: int) -> pd.DataFrame:
    start = pd.Timestamp("2026-06-01")
    rows = [
        (cid, (start + pd.Timedelta(days=step_days * k + j % step_days)).date().isoformat(), 1)
        for j, cid in enumerate(ids)
        for k in range(periods)
    ]
    return pd.DataFrame(rows, columns=["customer_id", "period_start", "logins"])


@pytest.mark.parametrize("step", [1, 7])
def test_activity_period_is_the_most_common_gap(tmp_path, monkeypatch, step):
    ids = list(tiny.frames()["customers"].customer_id)
    act = _activity(ids, step, 6)
    act = pd.concat([act, act.iloc[[0]].assign(period_start="2026-09-30")])  # one odd gap
    ds = _ds(tmp_path, activity=act)
    try:
        assert feature_tables._period_days(ds) == step
        # above the sample size, every k-th customer by id decides: the same answer here
        monkeypatch.setattr(feature_tables, "PERIOD_SAMPLE_CUSTOMERS", 2)
        assert feature_tables._period_days(ds) == step
    finally:
        ds.close()
