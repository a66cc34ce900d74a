"""The churn definition, checked by hand on the tiny dataset, and the Wilson interval."""

from __future__ import annotations

import pandas as pd
import pytest
import tiny
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.measures import outcomes
from results.wilson_newcombe import WILSON_95


def _status(tmp_path, extra_kw=None, **replace):
    data = tiny.write(tmp_path / "d", **replace)
    p = fparams.load(tiny.params_file(tmp_path, data), **(extra_kw or {}))
    with fdata.loaded(p) as ds:
        return outcomes.churn_status(ds).set_index("customer_id")


def test_non_contractual_by_hand(tmp_path):
    s = _status(tmp_path)
    # C1 ordered 2026-10-01: alive. C2: recorded churn 2025-06-30 wins over dormancy.
    assert not s.loc["C1", "churned"]
    assert (
        s.loc["C2", "churned_at"] == pd.Timestamp("2025-06-30")
        and s.loc["C2", "source"] == "recorded"
    )
    assert s.loc["C2", "reason"] == "service"
    # C3: only order 2024-02-15, dormant 365 days later.
    assert (
        s.loc["C3", "churned_at"] == pd.Timestamp("2025-02-14")
        and s.loc["C3", "source"] == "dormancy"
    )
    assert s.loc["C4", "churned_at"] == pd.Timestamp("2025-08-01")
    assert not s.loc["C5", "churned"]


def test_as_of_earlier_uses_only_data_up_to_then(tmp_path):
    data = tiny.write(tmp_path / "d")
    p = fparams.load(tiny.params_file(tmp_path, data))
    with fdata.loaded(p) as ds:
        s = outcomes.churn_status(ds, "2025-01-31").set_index("customer_id")
    assert "C5" not in s.index, "not yet acquired"
    assert not s.loc["C3", "churned"], "its dormancy completes only on 2025-02-14"
    assert not s.loc["C2", "churned"], "the recorded churn lies after this as-of"


def test_contractual_by_hand(tmp_path):
    s = _status(tmp_path, {"business_model": "contractual"})
    # C1's renewed contract runs to 2026-12-31: alive. C2's recorded churn wins.
    assert not s.loc["C1", "churned"]
    assert s.loc["C2", "churned_at"] == pd.Timestamp("2025-06-30")
    # C3 has no contract: the dormancy rule applies.
    assert s.loc["C3", "source"] == "dormancy"


def test_contract_ended_without_renewal(tmp_path):
    contracts = tiny.frames()["contracts"].copy()
    contracts.loc[1, "end_date"] = "2025-12-31"  # C1's renewal ended, nothing after it
    s = _status(tmp_path, {"business_model": "contractual"}, contracts=contracts)
    assert (
        s.loc["C1", "churned_at"] == pd.Timestamp("2025-12-31")
        and s.loc["C1", "source"] == "contract"
    )


def test_won_back_then_dormant_again_is_lost(tmp_path):
    orders = tiny.frames()["orders"].copy()
    orders.loc[len(orders)] = [
        "O11",
        "C2",
        "2025-08-01",
        5000.0,
        "hardware",
    ]  # win-back after 2025-06-30
    s = _status(tmp_path, orders=orders)
    assert s.loc["C2", "won_back"]
    assert s.loc["C2", "churned_at"] == pd.Timestamp("2026-08-01"), (
        "dormant 365 days after the win-back order"
    )
    assert s.loc["C2", "source"] == "dormancy"


def test_period_churn_rate(tmp_path):
    s = _status(tmp_path).reset_index()
    r = outcomes.churn_rate(s, "2024-10-31", "2025-10-31").iloc[0]
    # at risk on 2024-10-31: C1..C4 (C5 not yet acquired); churned in the year: C2, C3, C4
    assert (r.at_risk, r.churned) == (4, 3)
    assert r.rate == pytest.approx(0.75)


def test_wilson_interval_matches_published_values():
    # Newcombe (1998), table I (tests/results/wilson_newcombe.py)
    for (events, trials), (low, high) in WILSON_95.items():
        _, lo, hi = outcomes.rate_with_ci(events, trials)
        assert (lo, hi) == (pytest.approx(low, abs=5e-4), pytest.approx(high, abs=5e-4))
    assert outcomes.rate_with_ci(0, 20)[1] == 0.0  # exactly 0, not approximately


@pytest.mark.parametrize("model", ["non_contractual", "contractual"])
def test_status_on_a_subset_equals_the_full_status_filtered(demo_small, tmp_path, model):
    # Models fitted on a sample of customers read the sample's rows only (Dataset.subset):
    # each customer's status must depend on their own rows alone.
    p = fparams.load(
        tiny.params_file(tmp_path, demo_small), business_model=model, as_of="2026-09-30"
    )
    with fdata.loaded(p) as ds:
        full = outcomes.churn_status(ds, "2026-09-30")
        ids = full.customer_id.sample(300, random_state=1).to_numpy()
        sub = ds.subset([*ids, "no-such-customer"])
        assert sub.root is ds and sub.cache_dir is None
        for cut in ("2025-03-31", "2026-09-30"):
            full = outcomes.churn_status(ds, cut)
            part = outcomes.churn_status(sub, cut)
            want = full[full.customer_id.isin(ids)].reset_index(drop=True)
            pd.testing.assert_frame_equal(part, want)
            assert part.churned.sum() > 0
        sub.close()


@pytest.mark.parametrize("k,n", [(0, 1), (0, 7), (3, 3), (0, 250_000), (1, 3)])
def test_rate_interval_always_holds_the_rate(k, n):
    # an interval a rounding error beside its estimate drew a negative error bar (notebook 01)
    p, lo, hi = outcomes.rate_with_ci(k, n)
    assert lo <= p <= hi and 0.0 <= lo and hi <= 1.0
