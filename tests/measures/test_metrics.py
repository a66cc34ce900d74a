"""The metric catalogue: each metric function against a hand-computed table, the KPI
series equal to the point functions, the consistency gate and the glossary.

The table is test_kpi's fixture (``test_kpi.frames``, every number worked out in its
comments) with one addition: customer P, acquired 2025-01-01 (inside the base year of
2026-10-31), with revenue in both years, the population the KPI chapter used to count and
the diagnosis did not. Exact rationals: tolerance 1e-12.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest
from fupan.chapters import kpi
from fupan.core import i18n
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.measures import metrics, outcomes
from fupan.report import gate, glossary
from test_kpi import _random_orders, frames, params_file, write_fixture

TOL = 1e-12
END = dt.date(2026, 10, 31)


def _with_partial_base_year() -> dict[str, pd.DataFrame]:
    f = frames()
    p = f["customers"].iloc[[0]].assign(customer_id="P", acquired_at="2025-01-01", tier="gold")
    orders = pd.DataFrame(
        {
            "order_id": ["OP1", "OP2"],
            "customer_id": "P",
            "order_date": ["2025-02-01", "2026-06-01"],
            "amount": [50.0, 200.0],
        }
    )
    touches = pd.concat(
        [
            f["touches"],
            # N's touch before its acquisition (10-15) does not count
            pd.DataFrame(
                {
                    "touch_id": ["W9"],
                    "customer_id": ["N"],
                    "touched_at": ["2026-10-01 10:00:00"],
                    "channel": ["visit"],
                }
            ),
        ]
    )
    return {
        "customers": pd.concat([f["customers"], p]),
        "orders": pd.concat([f["orders"], orders]),
        "touches": touches,
    }


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    root = tmp_path_factory.mktemp("metrics")
    data = write_fixture(root / "data", **_with_partial_base_year())
    d = fdata.load(fparams.load(params_file(root, data)))
    yield d
    d.close()


@pytest.fixture(scope="module")
def status(ds):
    return outcomes.churn_status(ds, END)


# --------------------------------------------------------------------------------------
# Each metric against the hand computation


def test_annual_churn(status):
    # On the books at 2025-10-31: A, B, C, D, G, H, P (L lost in 2024; D and G ordered
    # again, so no churn is dated for them). Lost since: B (recorded 10-10), C -> 2/7.
    got = metrics.annual_churn(status, END)
    assert got["at_risk"] == 7 and got["churned"] == 2
    assert got["rate"] == pytest.approx(2 / 7, abs=TOL)
    # a month: at risk at 09-30 A, B, D, E, G, H, P; B lost in October -> 1/7
    assert metrics.churn(status, dt.date(2026, 9, 30), END)["rate"] == pytest.approx(1 / 7)


def test_revenue_retention_counts_only_full_base_years(ds):
    # Base year (2024-10-31, 2025-10-31]: A 100, B 200, C 100, H 20; P (acquired 2025-01-01,
    # base year partial) is left out though it had 50 then and 200 now.
    # Now: A 150, B 50, C 0, H 40 -> NRR 240/420, GRR (100 + 50 + 0 + 20)/420.
    got = metrics.revenue_retention(ds, END)
    assert got["customers"] == 4 and got["base"] == pytest.approx(420)
    assert got["nrr"] == pytest.approx(240 / 420, abs=TOL)
    assert got["grr"] == pytest.approx(170 / 420, abs=TOL)
    assert metrics.retention_base_start(END) == dt.date(2024, 11, 1)
    # a year later P's base year (2025-10-31, 2026-10-31] is full: the cohort is A, B, D
    # (80 - 20), G, H, P (E was acquired 2025-12-01, after the base year began; C, L, N
    # had no base revenue); nothing after 2026-10-31 -> NRR 0
    later = metrics.revenue_retention(ds, dt.date(2027, 10, 31))
    assert later["customers"] == 6 and later["base"] == pytest.approx(
        150 + 50 + 60 + 100 + 40 + 200
    )
    assert later["nrr"] == pytest.approx(0.0, abs=TOL)


def test_retention_sums_and_history_rule():
    # then 100, 100, 0 (left out), -5 (left out); now 150, -20 (as 0), 30, 10
    s = metrics.retention_sums(np.array([150.0, -20.0, 30.0, 10.0]), np.array([100.0, 100, 0, -5]))
    assert s["customers"] == 2 and s["base"] == 200 and s["net"] == 150 and s["kept"] == 100
    assert metrics.retention_ratios(s) == (0.5, 0.75)
    assert metrics.retention_ratios({"base": 0, "kept": 0, "net": 0}) == (None, None)
    # the orders must reach the base year's first day (2024-11-01) within 30 days
    assert metrics.retention_history_ok(pd.Timestamp("2024-12-01"), END)
    assert not metrics.retention_history_ok(pd.Timestamp("2024-12-02"), END)
    assert not metrics.retention_history_ok(None, END)


def test_top_n_renewal_per_customer(ds, status):
    # Top 2 at 2025-11-01 by revenue in the year before: B 200, A 100 (ahead of C and P on
    # the tie... P had 50). B's K3 ended 2026-02-28, not renewed, grace over -> due, no.
    # A's K1 ended 2025-12-31, renewed by K2 -> 1/2.
    s, per = metrics.top_n_renewal(ds, status, dt.date(2025, 11, 1), END, 2)
    assert list(per.customer_id) == ["B", "A"]
    assert (s["due"], s["renewed"], s["metric"]) == (2, 1, "top_n_renewal")
    assert s["rate"] == pytest.approx(0.5)


def test_top_n_renewal_sees_only_contracts_started_by_the_end(ds):
    # At 2025-12-31: top 2 at 2025-01-01 by revenue in 2024 (all 10, ids decide): A, B. A's
    # K1 ended 2025-12-31, its renewal K2 starts 2026-01-01 (after the date) and the grace
    # runs to 2026-03-01: pending, not due. B has no contract ending in 2025 -> none due.
    end = dt.date(2025, 12, 31)
    s, per = metrics.top_n_renewal(ds, outcomes.churn_status(ds, end), dt.date(2025, 1, 1), end, 2)
    assert list(per.customer_id) == ["A", "B"]
    assert s["due"] == 0 and np.isnan(s["rate"])


def test_top_n_repurchase_without_contracts(tmp_path):
    data = write_fixture(tmp_path / "data", drop=("contracts",))
    d = fdata.load(fparams.load(params_file(tmp_path, data)))
    try:
        s, per = metrics.top_n_renewal(
            d, outcomes.churn_status(d, END), dt.date(2025, 11, 1), END, 2
        )
    finally:
        d.close()
    # B ordered 2026-01-10, A 2026-02-01 and 09-15 -> both repurchased
    assert (s["metric"], s["basis"], s["due"], s["renewed"]) == (
        "top_n_repurchase",
        "repurchase",
        2,
        2,
    )


def test_touch_coverage(ds, status):
    # Active at 10-31: A, D, E, G, H, N, P. In (08-02, 10-31]: E (10-31 23:00), H; A's
    # 08-01 and G's 07-31 are older, N's 10-01 is before its acquisition -> 2/7.
    got = metrics.touch_coverage(ds, status, END, 90)
    assert (got["customers"], got["touched"]) == (7, 2)
    assert got["coverage"] == pytest.approx(2 / 7, abs=TOL)
    # 92 days reach A's touch on 08-01 -> 3/7
    assert metrics.touch_coverage(ds, status, END, 92)["coverage"] == pytest.approx(3 / 7)


# --------------------------------------------------------------------------------------
# The KPI chapter's series are the catalogue's metrics


def test_kpi_month_equals_the_catalogue(ds, status):
    values, _ = kpi.compute_series(ds, ["2026-10"])
    v = {r.kpi: r.value for r in values.itertuples()}
    rr = metrics.revenue_retention(ds, END)
    assert v["nrr"] == pytest.approx(rr["nrr"], rel=1e-9)
    assert v["grr"] == pytest.approx(rr["grr"], rel=1e-9)
    assert v["churn_rate_t12"] == pytest.approx(metrics.annual_churn(status, END)["rate"])
    top, _ = metrics.top_n_renewal(ds, status, dt.date(2025, 11, 1), END, 2)
    assert v["renewal_rate_top_n"] == pytest.approx(top["rate"])
    cov = metrics.touch_coverage(ds, status, END, ds.params.diagnosis.coverage_days)
    assert v["touch_coverage"] == pytest.approx(cov["coverage"])


@pytest.mark.parametrize("seed, as_of", [(3, "2026-10-31"), (4, "2026-10-17")])
def test_kpi_series_equal_point_functions_at_every_month(tmp_path, seed, as_of):
    """Random logs (customers acquired over four years, refunds, orders before acquisition):
    NRR, GRR and touch coverage of each month end from the KPI's one-pass computation equal
    the point functions at that date, to the gate's tolerance."""
    from test_kpi import _random_touches

    gen = _random_orders(seed)
    gen["touches"] = _random_touches(seed, gen["customers"])
    drop = ("contracts", "surveys", "tickets", "churn_events")
    data = write_fixture(tmp_path / "data", drop=drop, **gen)
    d = fdata.load(fparams.load(params_file(tmp_path, data, as_of=as_of)))
    try:
        months = kpi.month_range("2025-09", kpi.parse_month(as_of))
        values, _ = kpi.compute_series(d, months)
        v = {(r.month, r.kpi): r.value for r in values.itertuples()}
        checked = 0
        for m in months:
            end = kpi.Window.of(m, d.params).end
            rr = metrics.revenue_retention(d, end)
            st = outcomes.churn_status(d, end)
            cov = metrics.touch_coverage(d, st, end, d.params.diagnosis.coverage_days)
            for key, want in (
                ("nrr", rr["nrr"]),
                ("grr", rr["grr"]),
                ("touch_coverage", cov["coverage"]),
            ):
                got = v[(m, key)]
                assert (got is None or np.isnan(got)) == (want is None), (m, key, got, want)
                if want is not None:
                    # the KPI sums amounts exactly in units of 10^-4 (a re-run month gives the
                    # same bits); these amounts have six decimals, so the two differ by ~1e-8
                    assert got == pytest.approx(want, rel=gate.REL_TOL), (m, key)
                    checked += 1
    finally:
        d.close()
    assert checked >= 2 * len(months)


# --------------------------------------------------------------------------------------
# The gate


def _results(**over):
    r = {
        "kpi": {
            "month": "2026-10",
            "values": {"nrr": 0.96, "grr": 0.71, "churn_rate_t12": 0.17, "touch_coverage": 0.5},
        },
        "diagnosis": {
            "net_revenue_retention": 0.96,
            "gross_revenue_retention": 0.71,
            "churn_rate": 0.17,
            "touch_coverage": 0.5,
            "top_n_renewal_rate": 0.8,
            "top_n_renewal": {"basis": "repurchase"},
        },
    }
    for key, value in over.items():
        chapter, name = key.split("__")
        target = r[chapter]["values"] if chapter == "kpi" else r[chapter]
        target[name] = value
    return r


def test_gate_passes_when_shared_metrics_agree(make_params):
    p = make_params(name="t", kind="annual_review", as_of="2026-10-31", load=True)
    r = _results()
    gate.enforce(r, p)
    shared = {g[0].metric for g in gate.shared(r, p)}
    assert shared == {"nrr", "grr", "annual_churn", "touch_coverage"}
    # the diagnosis's top-N figure is repurchase here: nothing in the KPIs to compare with
    assert "top_n_repurchase" in {q.metric for q in gate.quotes(r, p)}


def test_gate_fails_on_a_planted_mismatch_naming_both_places(make_params):
    p = make_params(name="t", kind="annual_review", as_of="2026-10-31", load=True)
    with pytest.raises(gate.GateError) as err:
        gate.enforce(_results(kpi__nrr=1.114), p)
    text = str(err.value)
    assert "diagnosis.net_revenue_retention (01_diagnosis) = 0.96" in text
    assert "kpi.values.nrr (05_kpi_tracking) = 1.114" in text
    assert "nrr over 2025-11-01..2026-10-31" in text
    assert len(err.value.mismatches) == 1


def test_gate_a_value_against_no_value_is_a_mismatch(make_params):
    p = make_params(name="t", kind="annual_review", as_of="2026-10-31", load=True)
    bad = gate.check(_results(diagnosis__touch_coverage=None), p)
    assert [m.b.key for m in bad] == ["kpi.values.touch_coverage"]
    assert "no value" in bad[0].message()


def test_gate_compares_only_the_same_window(tmp_path, make_params):
    # a KPI report for September in an October review: other dates, nothing to compare
    p = make_params(name="t", kind="annual_review", as_of="2026-10-31", load=True)
    r = _results(kpi__nrr=2.0)
    r["kpi"]["month"] = "2026-09"
    assert gate.check(r, p) == []
    # a review period shorter than a year is not the trailing-year churn of the KPIs
    path = tmp_path / "short.yaml"
    path.write_text(
        "name: t\nkind: annual_review\nas_of: 2026-10-31\nperiod_start: 2026-05-01\n"
        f"benchmarks_file: null\ndata:\n  source: {tmp_path}\n",
        encoding="utf-8",
    )
    assert gate.check(_results(kpi__churn_rate_t12=0.3), fparams.load(path)) == []


def test_gate_reads_a_results_file(tmp_path, make_params):
    p = make_params(name="t", kind="annual_review", as_of="2026-10-31", load=True)
    gate.enforce(tmp_path / "absent.json", p)  # nothing recorded: nothing to compare
    (tmp_path / "results.json").write_text(json.dumps(_results(diagnosis__churn_rate=0.2)))
    with pytest.raises(gate.GateError, match="annual_churn"):
        gate.enforce(tmp_path / "results.json", p)


# --------------------------------------------------------------------------------------
# The glossary


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_glossary_lists_every_quoted_metric_with_its_window(make_params, lang):
    p = make_params(name="t", kind="annual_review", as_of="2026-10-31", load=True).model_copy(
        update={"lang": lang}
    )
    r = _results()
    r["diagnosis"]["churn_counts"] = {
        "at_start": 522,
        "churned_in_period": 84,
        "churned_before_period": 127,
        "new_churned_in_period": 33,
        "churned_by_as_of": 244,
    }
    slides = glossary.slides(r, p)
    text = "".join(s.head + "".join(s.body) for s in slides)
    for m in ("nrr", "grr", "annual_churn", "touch_coverage", "top_n_repurchase"):
        name = i18n.t(f"metric.{m}.name", lang, n=p.diagnosis.top_n, days=90)
        assert name in text
    assert "2025-11-01" in text and "2026-08-03" in text  # the trailing year, 90 days
    assert ">244<" in text and ">84<" in text
    assert "{" not in text and "nan" not in text.lower()
    # every metric has its words in both languages
    for m in metrics.CATALOGUE:
        for part in ("name", "formula", "population", "window"):
            assert i18n.t(f"metric.{m}.{part}", lang, n=1, days=1, start=1, end=1, base=1)
