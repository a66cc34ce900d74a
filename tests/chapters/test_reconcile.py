"""Counts that reconcile across chapters 3 and 5, and columns the data never supplied (issue 17).

One churn status per customer per date (:func:`fupan.measures.outcomes.churn_status`): a customer
churned at a date is on no at-risk list of that date, and the at-risk counts chapter 3 and
chapter 5 quote at the same date are the same number. The data is a simulated orders-only
export (``shapes17``) with one customer whose dormancy completes exactly on ``as_of``.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import shapes17
from fupan.chapters import atrisk, clv, kpi
from fupan.core import i18n
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io import exports
from fupan.measures import outcomes

EVERYONE = ("red", "amber", "green")


@pytest.fixture(scope="module")
def orders_only(tmp_path_factory):
    warnings.filterwarnings("ignore")
    path = shapes17.build("orders_only", tmp_path_factory.mktemp("oo"), seed=3)
    ds = fdata.load(fparams.load(path))
    model = atrisk.train(ds)
    yield ds, model
    ds.close()


@pytest.fixture(scope="module")
def report(orders_only):
    return kpi.month_report(orders_only[0])


def test_a_customer_churned_at_the_date_is_on_no_at_risk_list(orders_only, report):
    ds, model = orders_only
    day = pd.Timestamp(ds.params.as_of)
    status = outcomes.churn_status(ds, day.date())
    before = outcomes.churn_status(ds, (day - pd.Timedelta(days=1)).date())
    # the planted edge: live the day before, churned on the day
    edge = status.set_index("customer_id").loc["KEDGE"]
    assert edge.churned_at == day
    assert not before.set_index("customer_id").loc["KEDGE"].churned
    churned = set(status.customer_id[status.churned])
    listed = atrisk.at_risk_list(ds, day, model=model, bands=EVERYONE, lang="en")
    assert len(listed) > 100
    assert not churned & set(listed.customer_id)
    live = set(status.customer_id[~status.churned & (status.acquired_at < day)])
    assert set(listed.customer_id) == live  # every band: exactly the live customers
    # the KPI chapter's list (health bands or rules) and its export
    rep = report
    assert len(rep.at_risk) and not churned & set(rep.at_risk.customer_id)
    assert not churned & set(kpi.customer_facts(ds, day.date()).customer_id)


def test_at_risk_counts_of_chapters_3_and_5_are_equal_at_the_same_date(orders_only, report):
    ds, _ = orders_only
    rep = report
    assert rep.red_source == "health"
    status = outcomes.churn_status(ds)
    active = status.customer_id[~status.churned]
    scores, source = clv.churn_scores(ds, ds.params.as_of)
    assert source == "churn_scores"
    val = kpi.clv_valuation(ds, pd.Timestamp(ds.params.as_of).date())
    risk = clv.at_risk(val, active, ds.params.ltv, scores)
    assert len(risk) == len(rep.at_risk) > 0
    assert set(risk.customer_id) == set(rep.at_risk.customer_id)
    # the LTV-at-risk KPI counts the same customers
    row = rep.table.set_index("kpi").loc["ltv_at_risk"]
    assert int(row.n) == len(risk)


def test_unsupported_drivers_are_never_quoted_as_reasons(orders_only):
    ds, model = orders_only
    day = pd.Timestamp(ds.params.as_of)
    listed = atrisk.at_risk_list(ds, day, model=model, bands=("red",), lang="en")
    assert len(listed)
    quoted = {r.split(":")[0] for text in listed.reasons for r in text.split("; ") if r}
    top = sorted(quoted)[0]
    name = next(f for f in atrisk.model_names(ds, model) if atrisk.feature_label(f, "en") == top)
    # explicitly excluded, or flagged on the model / a drivers table by the churn chapter
    flagged = [
        {"exclude": [name]},
        {"model_attr": {name}},
        {"table": pd.DataFrame({"supported": [False]}, index=[name])},
    ]
    for how in flagged:
        exclude = how.get("exclude")
        if "model_attr" in how:
            model.unsupported_ = how["model_attr"]
        if "table" in how:
            exclude = atrisk.unsupported_features(drivers=how["table"])
        try:
            again = atrisk.at_risk_list(
                ds, day, model=model, bands=("red",), lang="en", exclude=exclude
            )
        finally:
            if hasattr(model, "unsupported_"):
                del model.unsupported_
        assert list(again.customer_id) == list(listed.customer_id)  # scores unchanged
        words = {r.split(":")[0] for text in again.reasons for r in text.split("; ") if r}
        assert top not in words, how
        assert words  # other reasons remain


def test_unsupported_features_reads_flags_defensively():
    table = pd.DataFrame(
        {"feature": ["a", "b", "c"], "unsupported": [True, False, None]},
    )
    assert atrisk.unsupported_features(drivers=table) == {"a"}

    class Result:
        table = pd.DataFrame({"supported": [True, False]}, index=["x", "y"])

    assert atrisk.unsupported_features(drivers=Result()) == {"y"}
    assert atrisk.unsupported_features(object(), None) == set()
    flagged = pd.DataFrame({"rank": [1]}, index=["z"])
    flagged.attrs["unsupported"] = ["z"]
    assert atrisk.unsupported_features(drivers=flagged) == {"z"}


def test_columns_not_supplied_are_dropped(orders_only):
    ds, _ = orders_only
    assert exports.supplied(ds, "customers", "tier")
    for col in ("industry", "region", "account_manager", "customer_name"):
        assert not exports.supplied(ds, "customers", col)
    frame = pd.DataFrame(
        {
            "customer_id": ["K1"],
            "customer_name": [None],
            "account_manager": [None],
            "tier": ["attention"],
            "x": [1.0],
        }
    )
    assert list(exports.drop_unsupplied(frame, ds).columns) == ["customer_id", "tier", "x"]

    class Told:
        """A dataset that says which columns were supplied (the data helper's API)."""

        def supplied(self, table, column):
            return column == "customer_name"

    kept = exports.drop_unsupplied(frame.assign(tier=[None]), Told())
    assert list(kept.columns) == ["customer_id", "customer_name", "x"]
    # a recommended tier (not supplied, but filled) stays for the reader
    assert "tier" in exports.drop_unsupplied(frame, Told()).columns


def test_kpi_export_leaves_out_unsupplied_columns(orders_only, report):
    ds, _ = orders_only
    rep = report
    hidden = exports.unsupplied(rep.at_risk, ds)
    assert {"customer_name", "account_manager"} <= set(hidden)
    out = kpi.at_risk_export_frame(
        rep.at_risk, set(), "en", lambda t: t, rep.red_source, drop=hidden
    )
    for col in hidden:
        assert i18n.t(f"kpi.col.{col}", "en") not in out.columns
    text = out.astype(str).to_numpy().ravel()
    assert not any(v in ("None", "nan", "NaT", "–") for v in text)


def test_formatting_never_writes_a_placeholder_sign():
    fmt = i18n.Fmt("en", "$", ",", 1)
    for key in kpi.CATALOGUE:
        for v in (None, float("nan"), float("inf")):
            assert kpi.format_value(key, v, fmt) == "not available"
            assert kpi.format_change(key, v, fmt) == "no earlier value"
        assert kpi.format_threshold(key, {}, "target", fmt) == "none set"
    zh = i18n.Fmt("zh", "¥", ",", 1)
    assert kpi.format_value("nrr", None, zh) == "暂无"


def test_trend_plan_says_when_a_trend_starts():
    months = kpi.month_range("2025-01", "2025-06")
    rows = []
    for i, m in enumerate(months):
        rows.append({"month": m, "kpi": "nrr", "value": 1.0 + i / 100})  # six points
        rows.append({"month": m, "kpi": "grr", "value": 0.9 if i >= 5 else np.nan})  # one
    trend = pd.DataFrame(rows)
    table = pd.DataFrame(
        {"kpi": ["nrr", "grr", "repurchase_rate"], "reason": [None, None, "history"]}
    )
    plan = kpi.trend_plan(trend, table, ["nrr", "grr", "repurchase_rate"], "2025-06")
    assert plan.draw == ["nrr"]
    assert plan.starts == {"grr": "2025-11"}  # one point now, six (a trend) by 2025-11
    assert plan.missing == {"repurchase_rate": "history"}


def test_cohort_unit_is_the_coarsest_that_splits():
    years = pd.Series(pd.to_datetime(["2023-05-01", "2024-01-03"]))
    assert clv.cohort_unit(years) == "year"
    quarters = pd.Series(pd.to_datetime(["2024-01-05", "2024-03-02", "2024-07-01"]))
    assert clv.cohort_unit(quarters) == "quarter"
    months = pd.Series(pd.to_datetime(["2024-01-05", "2024-02-02"]))
    assert clv.cohort_unit(months) == "month"
    assert clv.cohort_unit(pd.Series(pd.to_datetime(["2024-01-05", "2024-01-20"]))) is None


def test_breakdown_gap_names_one_group_and_unsupplied(orders_only):
    ds, _ = orders_only
    one = pd.DataFrame({"group": ["attention"], "lost_ltv": [5.0], "base_clv": [50.0]})
    assert clv.breakdown_gap(ds, one) == "one_group"
    assert clv.breakdown_gap(ds, one, "industry") == "not_supplied"
    two = pd.DataFrame({"group": ["a", "b"], "lost_ltv": [5.0, 1.0], "base_clv": [50.0, 9.0]})
    assert clv.breakdown_gap(ds, two) is None
    assert clv.breakdown_gap(ds, two.assign(lost_ltv=0.0)) == "no_loss"


def test_no_churn_to_learn_from_gives_no_health_score(tmp_path):
    """A period without churn: the health score has nothing to learn, so it is not made
    (it once put every customer in the red band); chapter 5 falls back to its rules."""
    ds = fdata.load(fparams.load(shapes17.build("no_churn", tmp_path, seed=3)))
    try:
        with pytest.raises(ValueError, match="churn events"):
            atrisk.train(ds)
        day = pd.Timestamp(ds.params.as_of).date()
        assert kpi.health_bands(ds, day) == (None, "model_failed:health")
        scores, source = clv.churn_scores(ds, ds.params.as_of)
        assert scores is None and source.startswith("failed: ValueError")
    finally:
        ds.close()


def test_a_loss_that_rounds_to_nothing_is_not_material():
    assert not clv.material(0.0, 1000.0)
    assert not clv.material(0.4, 10.0)  # below one currency unit
    assert not clv.material(5.0, 1e6)  # below 0.01% of the base
    assert clv.material(150.0, 1e6)
    assert not clv.material(float("nan"), 10.0)
