"""The data-check chapter's tables: completeness and the capability map."""

from __future__ import annotations

import tiny
from fupan.chapters import quality
from fupan.core import params as fparams
from fupan.core.i18n import catalogue
from fupan.io import data as fdata


def _load(tmp_path, data, extra=""):
    return fdata.load(fparams.load(tiny.params_file(tmp_path, data, extra)))


def test_capability_map_on_the_full_tiny_dataset(tmp_path):
    ds = _load(tmp_path, tiny.write(tmp_path / "d"))
    cap = quality.capability_map(ds.report, "non_contractual").set_index("section")
    assert set(cap.index) == set(quality.CAPABILITIES)
    # every table and column is there; tiny has 3.8 years of orders
    assert cap.runs.drop("ltv.contractual").all()
    assert cap.missing["ltv.contractual"] == ["model:contractual"]
    assert not cap.runs["ltv.contractual"]


def test_capability_map_of_a_transaction_log(tmp_path):
    d = tmp_path / "d"
    d.mkdir()
    o = tiny.frames()["orders"][["customer_id", "order_date", "amount"]]
    o[o.order_date >= "2025-11-01"].to_csv(d / "orders.csv", index=False)
    ds = _load(tmp_path, d)
    cap = quality.capability_map(ds.report, "non_contractual").set_index("section")
    # derived customer columns do not count as supplied
    assert cap.missing["diagnosis.assigned_vs_recommended_tier"] == ["column:customers.tier"]
    assert cap.missing["diagnosis.churn_by_region"] == ["column:customers.region"]
    assert cap.missing["churn.touch_signals"] == ["table:touches", "history:13"]
    assert cap.missing["diagnosis.net_revenue_retention"] == ["history:24"]
    assert cap.runs["diagnosis.churn"] and cap.runs["ltv.transactions"]
    assert quality.history_months(ds.report) < 12
    # what was not supplied is not a completeness gap
    assert quality.completeness(ds.report).empty


def test_every_capability_has_labels_in_both_languages():
    cat = catalogue()
    for section in quality.CAPABILITIES:
        assert set(cat[f"dc.cap.section.{section}"]) >= {"zh", "en"}
        assert f"dc.cap.chapter.{section.split('.')[0]}" in cat
    t = lambda key, **kw: cat[key]["en"].format(**kw)  # noqa: E731
    assert quality.describe_need("history:24", t) == "at least 24 months of history"
