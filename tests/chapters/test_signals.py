"""fupan.chapters.signals: rule flags, backtest metrics and lead times by hand; satisfaction helpers
against published reference values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fupan.chapters import signals
from fupan.core.chapter_params import WarningRule
from fupan.measures.outcomes import rate_with_ci


def _snap():
    # 4 customers x 3 monthly snapshots; customer "c" churns on 2026-03-20, "d" on 2026-02-10.
    dates = pd.to_datetime(["2026-01-01", "2026-02-01", "2026-03-01"])
    rows = []
    for cid, spend, label in (
        ("a", [0.1, 0.0, -0.1], [0, 0, 0]),
        ("b", [-0.5, -0.6, 0.2], [0, 0, 0]),
        ("c", [0.0, -0.5, -0.9], [1, 1, 1]),
        ("d", [-0.7, -0.8, None], [1, 1, None]),
    ):
        for s, sp, lab in zip(dates, spend, label, strict=True):
            if lab is None:
                continue  # churned: not in the snapshot any more
            rows.append(
                {"customer_id": cid, "snapshot_date": s, "spend_change_qoq": sp, "label": bool(lab)}
            )
    return pd.DataFrame(rows)


RULES = {
    "spend_down": WarningRule(feature="spend_change_qoq", op="<=", threshold=-0.4),
    "no_login": WarningRule(feature="weeks_without_login", op=">=", threshold=3),
}
CHURNED_AT = pd.Series(pd.to_datetime(["2026-03-20", "2026-02-10"]), index=["c", "d"])


def test_rule_flags_and_missing_features():
    snap = _snap()
    flags, skipped = signals.rule_flags(snap, RULES)
    assert skipped == ["no_login"]
    assert flags.spend_down.sum() == 6  # b twice, c twice, d twice
    expected = (snap.spend_change_qoq <= -0.4).to_numpy()
    np.testing.assert_array_equal(flags.spend_down.to_numpy(), expected)
    # a missing value never fires
    s2 = snap.assign(spend_change_qoq=np.nan)
    assert not signals.rule_flags(s2, RULES)[0].spend_down.any()


def test_backtest_by_hand():
    snap = _snap()
    bt = signals.backtest_rules(snap, RULES, CHURNED_AT, window_days=90, n_boot=50, seed=1)
    r = bt.set_index("rule")
    row = r.loc["spend_down"]
    # 11 rows, 5 positive (c x3, d x2). Flagged: b(2), c(2), d(2) = 6 rows, 4 of them positive.
    assert row.rows == 11 and row.flagged_rows == 6
    assert row.precision == pytest.approx(4 / 6)
    assert row.recall == pytest.approx(4 / 5)
    assert row.lift == pytest.approx((4 / 6) / (5 / 11))
    assert row.precision_low <= row.precision <= row.precision_high
    # lead: c first flagged 2026-02-01 -> 47 days before 03-20; d first flagged 01-01 -> 40 days
    assert row.churners == 2 and row.churners_flagged == 2
    assert row.median_lead_days == pytest.approx((47 + 40) / 2)
    assert not r.loc["no_login"].available


def test_lead_times_window_and_period():
    snap = _snap()
    flag = (snap.spend_change_qoq <= -0.4).to_numpy()
    lt = signals.lead_times(snap, flag, CHURNED_AT, window_days=30).set_index("customer_id")
    # within 30 days before churn: c's 03-01 snapshot (flagged), d's 02-01 (flagged)
    assert lt.loc["c"].lead_days == 19 and lt.loc["d"].lead_days == 9
    lt2 = signals.lead_times(snap, flag, CHURNED_AT, window_days=90, start="2026-03-01")
    assert list(lt2.customer_id) == ["c"]


def test_backtest_is_deterministic():
    snap = _snap()
    a = signals.backtest_rules(snap, RULES, CHURNED_AT, n_boot=30, seed=3)
    b = signals.backtest_rules(snap, RULES, CHURNED_AT, n_boot=30, seed=3)
    pd.testing.assert_frame_equal(a, b)


def test_nps_categories():
    cat = signals.nps_category([10, 9, 8, 7, 6, 0, None, np.nan])
    assert list(cat) == [
        "promoter",
        "promoter",
        "passive",
        "passive",
        "detractor",
        "detractor",
        "none",
        "none",
    ]
    assert signals.nps_score([10, 9, 8, 0, None]) == pytest.approx(100 * (2 / 4 - 1 / 4))


def test_churn_by_group_uses_wilson():
    t = signals.churn_by_group(
        ["x", "x", "y", "y", "y"], [True, False, True, True, False], ["y", "x"]
    )
    assert list(t.group) == ["y", "x"]
    p, lo, hi = rate_with_ci(2, 3)
    assert t.iloc[0].rate == pytest.approx(p) and t.iloc[0].low == pytest.approx(lo)


def test_correlation_ci_matches_textbook():
    # r = 0.5 with n = 50: Fisher-z 95% interval 0.26 to 0.68 (standard textbook value).
    rng = np.random.default_rng(0)
    x = rng.normal(size=50)
    # build y with sample correlation exactly 0.5
    e = rng.normal(size=50)
    e = e - x * (np.dot(x - x.mean(), e - e.mean()) / np.dot(x - x.mean(), x - x.mean()))
    xs = (x - x.mean()) / x.std()
    es = (e - e.mean()) / e.std()
    y = 0.5 * xs + np.sqrt(1 - 0.25) * es
    c = signals.correlation(x, y)
    assert c["r"] == pytest.approx(0.5, abs=1e-9)
    assert c["low"] == pytest.approx(0.2575, abs=5e-4)
    assert c["high"] == pytest.approx(0.6833, abs=5e-4)
    assert c["n"] == 50


def test_monthly_trend():
    snap = _snap().assign(nps_latest=[10, 10, 10, 3, 3, 8, None, 9, 9, 0, 0])
    tr = signals.monthly_trend(snap)
    assert len(tr) == 3
    jan = tr.iloc[0]
    assert jan.customers == 4 and jan.churn_rate == pytest.approx(0.5)
    # January NPS: a 10 (promoter), b 3 (detractor), c None, d 0 (detractor) -> 1/3 - 2/3
    assert jan.nps == pytest.approx(100 * (1 / 3 - 2 / 3))


def test_rule_labels_fall_back_to_the_feature():
    assert signals.rule_label("spend_down", RULES["spend_down"], "en").startswith("Spend down")
    custom = WarningRule(feature="open_tickets", op=">=", threshold=2)
    assert signals.rule_label("my_rule", custom, "en") == "Open tickets >= 2"


def test_bootstrap_intervals_equal_row_weighted_sums():
    """Per-customer counts times draws give the same replicates as row weights."""
    from fupan.models.health import cluster_bootstrap_weights, nan_percentile

    rng = np.random.default_rng(3)
    rows = []
    for c in range(300):
        for s in pd.date_range("2025-01-01", periods=int(rng.integers(1, 8)), freq="MS"):
            rows.append(
                {
                    "customer_id": f"c{c}",
                    "snapshot_date": s,
                    "x": rng.normal(),
                    "label": rng.random() < 0.1,
                }
            )
    snap = pd.DataFrame(rows)
    rules = {"low_x": WarningRule(feature="x", op="<", threshold=-0.5)}
    churned = pd.Series(pd.to_datetime(["2025-05-15", "2025-03-02"]), index=["c1", "c2"])
    bt = signals.backtest_rules(snap, rules, churned, n_boot=40, seed=9)
    f = (snap.x < -0.5).to_numpy()
    y = snap.label.to_numpy(bool)
    boot = np.array(
        [signals._rates(f, y, w) for w in cluster_bootstrap_weights(snap.customer_id, 40, 9)]
    )
    lo, hi = nan_percentile(boot, 2.5, axis=0), nan_percentile(boot, 97.5, axis=0)
    row = bt.iloc[0]
    assert [row.precision_low, row.recall_low, row.lift_low] == list(lo)
    assert [row.precision_high, row.recall_high, row.lift_high] == list(hi)


def test_a_rule_with_lift_at_most_one_is_not_a_warning():
    snap = _snap()
    rules = {
        **RULES,
        # fires on a and b only, who never churn: lift 0
        "spend_up": WarningRule(feature="spend_change_qoq", op=">=", threshold=0.05),
    }
    r = signals.backtest_rules(snap, rules, CHURNED_AT, n_boot=30, seed=1).set_index("rule")
    assert r.loc["spend_down", "warning"] and r.loc["spend_down", "lift"] > 1
    assert r.loc["spend_up", "lift"] < 1 and not r.loc["spend_up", "warning"]
    assert pd.isna(r.loc["no_login"].get("warning")) or not r.loc["no_login", "warning"]
