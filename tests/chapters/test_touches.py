"""fupan.chapters.touches: exposure-based frequency, policy, coverage and channel response on tiny data.

Review period 2025-11-01..2026-10-31 (365 days). Only C1 and C5 are customers in it: C2
churned (recorded) in 2025-06, C3 and C4 by dormancy in 2025. Touches in the period: T1 visit
(C1, 2026-09-01, responded), T2 call (C1, 2026-10-01, not), T4 wechat (C3, 2026-08-08, unknown).
"""

from __future__ import annotations

import pandas as pd
import pytest
import tiny
from fupan.chapters import touches
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.measures.outcomes import churn_status

YEAR_Q = 365 / touches.QUARTER_DAYS


@pytest.fixture
def ds(tmp_path):
    data = tiny.write(tmp_path / "d")
    d = fdata.load(fparams.load(tiny.params_file(tmp_path, data)))
    yield d
    d.close()


@pytest.fixture
def per(ds):
    return touches.customer_touches(ds, churn_status(ds)).set_index("customer_id")


def test_exposure_and_counts(per):
    assert set(per.index) == {"C1", "C5"}
    assert per.loc["C1"].touches == 2 and per.loc["C5"].touches == 0
    assert per.loc["C1"].exposure_quarters == pytest.approx(YEAR_Q)
    assert per.loc["C1"].per_quarter == pytest.approx(2 / YEAR_Q)
    assert per.loc["C1"].touched_recently and not per.loc["C5"].touched_recently


def test_touches_after_churn_do_not_count(ds):
    status = churn_status(ds)
    status.loc[status.customer_id == "C1", "churned_at"] = pd.Timestamp("2026-09-15")
    p = touches.customer_touches(ds, status).set_index("customer_id")
    assert p.loc["C1"].touches == 1  # 2026-10-01 falls after the customer was lost
    assert p.loc["C1"].exposure_quarters == pytest.approx(319 / touches.QUARTER_DAYS)
    assert not p.loc["C1"].active_at_end


def test_frequency_against_policy(per, ds):
    f = touches.touch_frequency(
        per.reset_index(), ds.params.benchmarks.touch_policy_per_quarter, ds.params.tiers.order
    ).set_index("tier")
    assert list(f.index) == ["platinum", "silver"]
    assert f.loc["platinum", "policy"] == 6 and f.loc["platinum", "meeting_policy"] == 0
    assert f.loc["platinum", "ratio"] == pytest.approx(2 / YEAR_Q / 6)
    assert f.loc["silver", "per_quarter"] == 0.0
    loose = touches.touch_frequency(
        per.reset_index(), {"platinum": 0.5, "silver": 0}, ds.params.tiers.order
    )
    assert loose.set_index("tier").meeting_share.tolist() == [1.0, 1.0]


def test_coverage(per, ds):
    c = touches.coverage(per.reset_index(), ds.params.tiers.order).set_index("tier")
    assert c.loc["all"].coverage == 0.5 and c.loc["all"].customers == 2
    assert c.loc["platinum"].coverage == 1.0 and c.loc["silver"].coverage == 0.0
    assert c.loc["all"].ci_low < 0.5 < c.loc["all"].ci_high


def test_channel_mix(ds):
    m = touches.channel_mix(ds).set_index("channel")
    assert m.touches.sum() == 3 and m.share.sum() == pytest.approx(1.0)
    assert m.loc["visit"].response_rate == 1.0 and m.loc["call"].response_rate == 0.0
    assert m.loc["wechat"].known == 0 and pd.isna(m.loc["wechat"].response_rate)
