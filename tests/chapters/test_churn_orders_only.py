"""Chapter 2 on a transaction log: churn learned from orders alone (no churn_events)."""

from __future__ import annotations

import orders_only
import pandas as pd
import pytest
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.measures import features, outcomes
from fupan.models import drivers


def test_dormancy_snapshot_dates_by_hand():
    got = features.dormancy_snapshot_dates("2024-01-01", "2025-06-23", 180)
    # last: as_of - 179 days; then one dormancy earlier while at least 90 days after the start
    assert got == [pd.Timestamp("2024-06-29"), pd.Timestamp("2024-12-26")]
    assert features.dormancy_snapshot_dates("2024-01-01", "2024-10-26", 180) == [
        pd.Timestamp("2024-04-30")
    ]
    assert features.dormancy_snapshot_dates("2024-01-01", "2024-03-01", 180) == []


def _dataset(tmp_path, **kw):
    data, as_of = orders_only.write(tmp_path / "data", **kw)
    p = fparams.load(orders_only.params_file(tmp_path, data, as_of))
    return p, fdata.connect(p)


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    p, ds = _dataset(tmp_path_factory.mktemp("log"), n=1500, seed=0)
    yield p, ds
    ds.close()


def test_orders_only_drivers_get_real_events(log):
    p, ds = log
    status = outcomes.churn_status(ds)
    assert not (status.source == "recorded").any()
    empty = pd.DataFrame({"customer_id": [], "snapshot_date": [], "label": []})
    dd = drivers.driver_data(ds, status, empty, empty, p, random_state=0)
    assert dd.reason is None and dd.info["dormancy_windows"]
    assert dd.step_days == 180
    # every event is a churn by the shared definition, dated inside its row's window
    ev = dd.train[dd.train.label]
    assert len(ev) >= 100 and (~dd.train.label).sum() >= 100
    end = ev.snapshot_date + pd.Timedelta(days=179)
    assert ((ev.label_churned_at >= ev.snapshot_date) & (ev.label_churned_at <= end)).all()
    s0 = ev.snapshot_date.iloc[0]
    by_rule = outcomes.churn_status(ds, s0 + pd.Timedelta(days=179)).set_index("customer_id")
    first = ev[ev.snapshot_date == s0]
    assert (
        by_rule.churned_at.reindex(first.customer_id).to_numpy() == first.label_churned_at
    ).all()
    assert dd.values["test_events"] >= 20
    # the planted driver (region) is found; the dormancy rule's own features are adjusted for
    numeric, categorical = drivers.model_features(list(features.available(ds)), p, True)
    res = drivers.analyse(
        dd.train, dd.test, numeric, categorical,
        definitional=drivers.definitional_features(p), random_state=0, step_days=dd.step_days,
    )  # fmt: skip
    assert "region" in res.top
    assert "recency_days" in res.adjusted_for


def test_short_history_says_what_would_enable_drivers(tmp_path):
    p, ds = _dataset(tmp_path, n=200, days=300, seed=1)
    status = outcomes.churn_status(ds)
    empty = pd.DataFrame({"customer_id": [], "snapshot_date": [], "label": []})
    dd = drivers.driver_data(ds, status, empty, empty, p)
    ds.close()
    assert dd.reason == "history"
    assert dd.values == {"need": 90 + 2 * 180, "have": 300}
