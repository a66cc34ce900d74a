"""The follow-up chapter (fupan.chapters.followup): grades against planted truth, no leakage,
pilot readout, degrading in words, and grading a previous run's list."""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import paramfile
import pytest
from fupan import demo
from fupan.chapters import followup
from fupan.chapters.followup.headline import _row
from fupan.core import i18n
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.report.results import to_jsonable

warnings.filterwarnings("ignore")
AS_OF = "2026-10-31"
CUT = pd.Timestamp("2025-10-31")


def _params(folder: Path, data_dir: Path, extra: str = "") -> fparams.Params:
    return fparams.load(
        paramfile.write(folder, data_dir, extra, name="follow-up test", as_of=AS_OF)
    )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("fu") / "data"
    truth = demo.generate(out, customers=300, seed=3)
    return out, truth


@pytest.fixture(scope="module")
def graded(world, tmp_path_factory):
    data_dir, _ = world
    P = _params(tmp_path_factory.mktemp("p"), data_dir)
    with fdata.loaded(P) as ds:
        fu = followup.follow_up(ds)
    return fu


def _no_nulls(node, path: str = "followup") -> None:
    """results.json holds no number from nothing: each missing figure has a reason instead."""
    if isinstance(node, dict):
        for k, v in node.items():
            _no_nulls(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            _no_nulls(v, f"{path}[{i}]")
    else:
        assert node is not None and not (isinstance(node, float) and not math.isfinite(node)), path
    if isinstance(node, dict) and "skipped" in node:
        assert all(isinstance(r, str) and len(r) > 10 for r in node["skipped"].values())


def _raw(data_dir: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for name, cols in (
        ("customers", ["acquired_at"]),
        ("orders", ["order_date"]),
        ("churn_events", ["churned_at"]),
        ("contracts", ["start_date", "end_date"]),
    ):
        df = pd.read_csv(data_dir / f"{name}.csv", dtype={"customer_id": str})
        for c in cols:
            df[c] = pd.to_datetime(df[c])
        out[name] = df
    return out


def test_backtest_grades_equal_a_direct_computation_from_the_raw_tables(world, graded):
    """Precision, recall, base rate and lift recomputed from the CSVs with an independent
    churn rule (recorded events unless an order follows, else 365 days of dormancy)."""
    data_dir, _ = world
    fu = graded
    assert fu.source == "backtest" and fu.problem is None
    assert fu.as_of_then == CUT.date()
    raw = _raw(data_dir)
    args = (raw["customers"], raw["orders"], raw["churn_events"], raw["contracts"])
    before = demo._churned_by(*args, CUT, "non_contractual")
    after = demo._churned_by(*args, pd.Timestamp(AS_OF), "non_contractual")
    acquired = raw["customers"].set_index("customer_id").acquired_at
    live = acquired.index[((acquired <= CUT) & ~before).to_numpy()]
    assert set(fu.graded.customer_id) == set(live)
    churned = set(live[after.reindex(live).to_numpy()])
    flagged = set(fu.graded.customer_id[fu.graded.flagged])
    assert len(flagged) == fu.forecast.flagged_count_then > 0 and churned
    precision = len(flagged & churned) / len(flagged)
    base = len(churned) / len(live)
    r = fu.red
    assert r["precision"] == pytest.approx(precision, abs=1e-12)
    assert r["recall"] == pytest.approx(len(flagged & churned) / len(churned), abs=1e-12)
    assert r["base_rate"] == pytest.approx(base, abs=1e-12)
    assert r["lift"] == pytest.approx(precision / base, abs=1e-12)
    assert r["precision_low"] <= r["precision"] <= r["precision_high"]
    assert r["lift_low"] <= r["lift"] <= r["lift_high"]
    rec = fu.record()
    _no_nulls(rec)
    assert set(rec["skipped"]) == {"findings"}  # a backtest has no findings of its own
    assert rec["at_risk_then"] == len(flagged) and rec["at_risk_lift"] == r["lift"]
    assert math.isfinite(rec["brier"]) and math.isfinite(rec["clv_mae"])
    exp = fu.export_frame()
    assert set(exp.columns) == {
        "customer_id", "score", "churn_probability", "flagged", "churned", "churned_at"
    }  # fmt: skip
    assert int(exp.flagged.sum()) == len(flagged)


def test_brier_and_clv_grades_match_their_definitions(world, graded):
    g = graded.graded
    p = g.churn_probability.to_numpy(float)
    y = g.churned_in_horizon.to_numpy(float)
    assert graded.calibration["brier"] == pytest.approx(np.mean((p - y) ** 2), abs=1e-12)
    v = graded.clv
    frame = v["customers_frame"]
    err = frame.predicted_spend_12m - frame.realised_spend_12m
    assert v["bias"] == pytest.approx(err.mean())
    assert v["mae"] == pytest.approx(err.abs().mean())
    assert v["bias_low"] < v["bias"] < v["bias_high"] and v["mae_low"] < v["mae"] < v["mae_high"]
    # the base: "the same as last year", each customer's net orders in the year to the cut
    raw = _raw(world[0])
    o = raw["orders"]
    before = o[(o.order_date > CUT - pd.DateOffset(years=1)) & (o.order_date <= CUT)]
    naive = before.groupby("customer_id").amount.sum().reindex(frame.customer_id).fillna(0)
    base_err = naive.to_numpy() - frame.realised_spend_12m.to_numpy()
    assert v["mae_base"] == pytest.approx(np.abs(base_err).mean(), rel=1e-9)
    assert v["bias_base"] == pytest.approx(base_err.mean(), rel=1e-9)


def test_events_after_the_cut_do_not_change_the_flags(world, graded, tmp_path):
    """Plant post-cut orders for every flagged customer, churn events for every unflagged
    one and post-cut surveys: the backtest's data and flags stay the same."""
    data_dir, _ = world
    P = _params(tmp_path, data_dir)
    with fdata.loaded(P) as ds:
        base = graded.forecast  # the backtest on the same data and params
        cut_tables = _cut_tables(ds)
        n_orders = ds["orders"].count().execute()
    flagged = base.scores.customer_id[base.scores.flagged].tolist()
    calm = base.scores.customer_id[~base.scores.flagged].tolist()
    planted = tmp_path / "planted"
    shutil.copytree(data_dir, planted)
    day = (CUT + pd.Timedelta(days=1)).date().isoformat()
    orders = pd.read_csv(planted / "orders.csv", dtype=str)
    extra = pd.DataFrame(
        {"order_id": [f"X{i}" for i in range(len(flagged))], "customer_id": flagged,
         "order_date": day, "amount": "99999", "category": orders.category.iloc[0]}
    )  # fmt: skip
    pd.concat([orders, extra[orders.columns]]).to_csv(planted / "orders.csv", index=False)
    ev = pd.read_csv(planted / "churn_events.csv", dtype=str)
    more = pd.DataFrame({"customer_id": calm, "churned_at": day, "reason": ev.reason.iloc[0]})
    pd.concat([ev, more.reindex(columns=ev.columns)]).to_csv(
        planted / "churn_events.csv", index=False
    )
    sv = pd.read_csv(planted / "surveys.csv", dtype=str)
    s_more = sv.head(0).reindex(range(len(calm)))
    s_more["survey_id"] = [f"XS{i}" for i in range(len(calm))]
    s_more["customer_id"], s_more["surveyed_at"], s_more["nps"] = calm, day, "0"
    pd.concat([sv, s_more]).to_csv(planted / "surveys.csv", index=False)
    P2 = _params(tmp_path, planted)
    with fdata.loaded(P2) as ds2:
        fu2 = followup.follow_up(ds2)
        for name, frame in _cut_tables(ds2).items():
            pd.testing.assert_frame_equal(frame, cut_tables[name], check_dtype=False)
        # the planted events are in the full data, and change what happened since
        assert ds2["orders"].count().execute() == n_orders + len(flagged)
    again = fu2.forecast
    pd.testing.assert_frame_equal(again.scores, base.scores)
    # the headline forecasts rest on the cut too: spend forecast, revenue before the cut and
    # the base rates are the same; only the actuals move
    pd.testing.assert_frame_equal(again.clv, base.clv)
    pd.testing.assert_frame_equal(again.before, base.before)
    assert again.base == base.base
    then_rows = {r["metric"]: r for r in graded.headline}
    for r in fu2.headline:
        keep = ("forecast", "population", "base", "base_revenue")
        assert {k: r.get(k) for k in keep} == {k: then_rows[r["metric"]].get(k) for k in keep}
    rev = {r["metric"]: r for r in fu2.headline}["revenue_12m"]
    assert rev["actual"] - then_rows["revenue_12m"]["actual"] == pytest.approx(99999 * len(flagged))


def _cut_tables(ds) -> dict[str, pd.DataFrame]:
    cut = followup.as_of_cut(ds, CUT.date())
    try:
        out = {}
        for name in cut.present:
            df = cut[name].to_pandas()
            out[name] = df.sort_values(list(df.columns)).reset_index(drop=True)
        return out
    finally:
        cut.close()


def test_planted_pilot_effect_is_read_out_within_its_interval(world, graded):
    _, truth = world
    t = truth["pilots"]
    pl = graded.pilots
    assert pl is not None and len(pl) == 1
    row = pl.iloc[0]
    assert row.pilot == t["pilot"]
    assert (row.treated, row.control) == (t["treated"], t["control"])
    # the chapter measures churn by the same rule the demo planted the effect in
    assert row.treated_rate == pytest.approx(t["realised_treated_rate"], abs=1e-6)
    assert row.control_rate == pytest.approx(t["realised_control_rate"], abs=1e-6)
    assert row.effect_low <= t["expected_effect"] <= row.effect_high
    assert t["expected_effect"] < 0


def test_difference_interval_matches_newcombe_and_statsmodels():
    """Newcombe (1998), Stat Med 17:873, Table II: 9/10 - 3/10, method 10: 0.1705 to 0.8090."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    d, lo, hi = followup.diff_with_ci(9, 10, 3, 10)
    assert d == pytest.approx(0.6)
    assert (lo, hi) == pytest.approx((0.1705, 0.8090), abs=5e-5)
    for k1, n1, k2, n2 in ((10, 100, 20, 100), (5, 56, 0, 29), (56, 70, 48, 80)):
        ref = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff")
        assert followup.diff_with_ci(k1, n1, k2, n2)[1:] == pytest.approx(ref, abs=1e-12)


def _small_world(folder: Path, first: str) -> Path:
    """Six customers buying every 17 days from ``first`` to 2026-10-20."""
    data = folder / "data"
    data.mkdir()
    ids = [f"C{i}" for i in range(1, 7)]
    pd.DataFrame(
        {"customer_id": ids, "acquired_at": first, "industry": "x", "region": "y",
         "tier": "silver", "account_manager": "AM"}
    ).to_csv(data / "customers.csv", index=False)  # fmt: skip
    days = pd.date_range(first, "2026-10-20", freq="17D")
    rows = [(f"O{i}-{c}", c, d.date(), 100.0) for i, d in enumerate(days) for c in ids[: 3 + i % 3]]
    pd.DataFrame(rows, columns=["order_id", "customer_id", "order_date", "amount"]).to_csv(
        data / "orders.csv", index=False
    )
    return data


@pytest.mark.parametrize("first", ["2026-01-05", "2025-10-15"])
def test_short_history_degrades_in_words(tmp_path, first):
    """Under 12 + 1 months of orders (the second: 12.5 months, two weeks before the cut)."""
    P = _params(tmp_path, _small_world(tmp_path, first))
    with fdata.loaded(P) as ds:
        fu = followup.follow_up(ds)
        nxt = followup.next_year(ds)  # this review's own forecasts are still recorded
    assert fu.problem["reason"] == "short_history"
    _no_nulls(to_jsonable(nxt.summary))
    for lang in ("zh", "en"):
        text = " ".join(followup.next_year_lines(to_jsonable(nxt.summary), lang, i18n.Fmt(lang)))
        assert "nan" not in text and "None" not in text and "–" not in text
    rec = fu.record("en")
    _no_nulls(rec)
    assert "at_risk_precision" not in rec and "pilots" not in rec and "headline" not in rec
    assert first in rec["skipped"]["at_risk_precision"] and first in rec["skipped"]["headline"]
    assert "pilots table" in rec["skipped"]["pilots"]
    for lang in ("zh", "en"):
        text = i18n.t(
            "fu.short.short_history", lang, then=str(fu.as_of_then), need=13,
            first=str(fu.problem["first_order"]), months=fu.problem["months"],
        )  # fmt: skip
        assert first in text and "None" not in text and "nan" not in text


def test_just_enough_history_grades_or_says_why(tmp_path):
    """13.5 months of orders from six steady customers: the chapter runs; what it cannot
    grade (no churn, no probabilities, no NRR cohort) it explains in words."""
    P = _params(tmp_path, _small_world(tmp_path, "2025-09-15"))
    with fdata.loaded(P) as ds:
        fu = followup.follow_up(ds)
    assert fu.problem is None or fu.problem["reason"] != "short_history"
    for lang in ("zh", "en"):
        rec = fu.record(lang)
        _no_nulls(rec)
        made = {h["metric"] for h in rec.get("headline", [])}
        missing = {k.removeprefix("headline_") for k in rec["skipped"] if k.startswith("headline_")}
        assert made | missing == set(followup.HEADLINE_METRICS) and not made & missing
    assert "nrr" in missing  # no customer was acquired a year before the cut


def test_previous_run_grades_exactly_the_customers_it_flagged(world, graded, tmp_path):
    data_dir, _ = world
    P = _params(tmp_path, data_dir)
    with fdata.loaded(P) as ds:
        from fupan.measures import outcomes

        status = outcomes.churn_status(ds, CUT.date())
        live = status.customer_id[~status.churned].tolist()
        flagged = live[::7]
        run = tmp_path / "reports" / "last_year"
        (run / "exports").mkdir(parents=True)
        (run / "results.json").write_text(
            json.dumps(
                {"run": {"as_of": str(CUT.date()), "kind": "annual_review"},
                 "churn": {"at_risk_count": len(flagged)},
                 "diagnosis": {"findings": [
                     {"key": "churn", "metric": "churn_rate", "value": 0.3, "title": "t1"},
                     {"key": "service", "metric": "sla_compliance", "value": 0.5, "title": "t2"}]},
                 "simulation": {
                     "model": {"predicted_annual_churn": 0.2, "observed_annual_churn": 0.18},
                     "pilots": [{"name": "amber_monthly_touch"}, {"name": "sla_core"}],
                     "scenarios": [{"name": "amber_monthly_touch", "churn_change": -0.05,
                                    "churn_change_low": -0.3, "churn_change_high": 0.1}]}}
            ),
            encoding="utf-8",
        )  # fmt: skip
        pd.DataFrame({"客户编号": flagged, "流失概率": 0.5}).to_csv(
            run / "exports" / "at_risk.csv", index=False, encoding="utf-8-sig"
        )
        assert followup.find_previous(tmp_path / "reports", pd.Timestamp(AS_OF).date()) == run
        fu = followup.follow_up(ds, previous=run, results_now={"diagnosis": {"churn_rate": 0.2}})
    assert fu.source == "previous_run" and fu.as_of_then == CUT.date()
    assert set(fu.graded.customer_id[fu.graded.flagged]) == set(flagged)
    rec = fu.record("zh")
    _no_nulls(rec)
    assert fu.red["flagged"] == len(flagged) == rec["at_risk_count_then_recorded"]
    assert {"brier", "clv_bias", "clv_mae"} <= set(rec["skipped"])
    assert fu.calibration is None and fu.forecast.notes["calibration"] == "red_list_only"
    # last year's findings next to this year's values; a value not computed now stays empty
    assert fu.findings.value_now.tolist()[0] == 0.2 and fu.findings.value_now.isna().tolist()[1]
    assert fu.pilots_not_run == ["sla_core"]
    # the pilot run is compared with last year's predicted change for its scenario
    row = fu.pilots.iloc[0]
    assert row.predicted_effect == -0.05
    assert row.prediction_held == (-0.3 <= row.effect <= 0.1)
    line = followup.summary_line({"followup": rec}, "en", i18n.Fmt("en"))
    assert line.startswith(f"Of last year's {len(flagged)} red customers (2025-10-31)")
    assert followup.resolve_previous(tmp_path / "x.yaml", "", CUT.date(), str(run)) == run
    for lang in ("zh", "en"):
        table = followup.findings_lines(fu.findings, lang, i18n.Fmt(lang))
        assert "nan" not in table.to_string() and "None" not in table.to_string()
    # headline: the churn forecast it recorded, graded over the 12 months after its date;
    # revenue and NRR from the same models rerun at its date (= the backtest's, same cut)
    rows = {r["metric"]: r for r in fu.headline}
    churn = rows["churn_rate"]
    assert churn["basis"] == "recorded" and churn["months"] == 12
    assert (churn["forecast"], churn["base"]) == (0.2, 0.18)
    assert churn["population"] == len(fu.graded)
    assert churn["actual"] == pytest.approx(fu.graded.churned.mean(), abs=1e-12)
    backtest_rows = {r["metric"]: r for r in graded.headline}
    for metric in ("revenue_12m", "nrr"):
        assert rows[metric]["basis"] == "recomputed"
        for k in ("forecast", "actual", "population", "base"):
            assert rows[metric][k] == pytest.approx(backtest_rows[metric][k], rel=1e-12)
    note = followup.headline_lines(fu.headline, fu.as_of_then, fu.source, "en", i18n.Fmt("en"))
    assert "rerun on the data as it stood on 2025-10-31" in note["note"]


def test_settings_read_from_the_params_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("as_of: 2026-10-31\nfollowup:\n  previous: reports/r1\n", encoding="utf-8")
    s = followup.load_settings(path)
    assert s.previous == str((tmp_path / "reports" / "r1").resolve()) and s.months == 12
    path.write_text("as_of: 2026-10-31\n", encoding="utf-8")
    assert followup.load_settings(path).previous is None


def test_backtest_flags_what_a_review_run_as_of_the_cut_flags(world, graded, tmp_path):
    """The backtest is the review we would have produced a year ago: the same red band as
    chapter 2's list on the data loaded with ``as_of`` at the cut (the loader drops rows
    dated after it)."""
    from fupan.chapters import atrisk

    data_dir, _ = world
    P = _params(tmp_path, data_dir).model_copy(update={"as_of": CUT.date()})
    P = fparams.Params.model_validate({**P.model_dump(), "period_start": None})
    with fdata.loaded(P, strict=False) as ds:
        red = atrisk.at_risk_list(ds)
    scores = graded.forecast.scores
    assert set(red.customer_id) == set(scores.customer_id[scores.flagged])
    merged = red.merge(scores, on="customer_id", suffixes=("", "_backtest"))
    np.testing.assert_allclose(merged.churn_probability, merged.churn_probability_backtest)


def test_a_list_of_everyone_is_not_graded(graded):
    """A red list holding (nearly) every live customer has the base rate as its precision by
    construction: its grades are replaced by the reason."""
    fu = followup.Followup(graded.source, graded.as_of_then, None, graded.forecast)
    fu.graded = graded.graded.assign(flagged=True)
    fu.red = followup.red_list_grades(fu.graded)
    assert fu.red["lift"] == pytest.approx(1.0)
    fu.problem = {"reason": "flags_everyone", "share": 1.0, "graded": len(fu.graded)}
    rec = fu.record("en")
    _no_nulls(rec)
    assert not set(followup.RED_LIST_KEYS) & set(rec)
    assert "100%" in rec["skipped"]["at_risk_lift"]


# --------------------------------------------------------------------------------------
# Headline forecasts: expected churn rate, 12-month revenue and NRR vs the actuals


def _churned_at(raw: dict[str, pd.DataFrame], day: pd.Timestamp) -> pd.Series:
    """Churn date per customer from data on or before ``day``, written out from the
    contract's rule: the latest recorded event unless an order follows it, else the last
    order (or acquisition) plus 365 days of dormancy when that has passed."""
    cust = raw["customers"].set_index("customer_id")
    o = raw["orders"][raw["orders"].order_date <= day].groupby("customer_id").order_date.max()
    last_order = o.reindex(cust.index)
    derived = last_order.fillna(cust.acquired_at) + pd.Timedelta(days=365)
    derived = derived.where(derived <= day)
    ev = raw["churn_events"]
    ev = ev[ev.churned_at <= day].groupby("customer_id").churned_at.max().reindex(cust.index)
    recorded = ev.notna() & ~(last_order > ev)
    return ev.where(recorded, derived)


def _spend(raw: dict[str, pd.DataFrame], start: pd.Timestamp, end: pd.Timestamp) -> pd.Series:
    """Net order amount per customer in ``(start, end]``."""
    o = raw["orders"]
    return o[(o.order_date > start) & (o.order_date <= end)].groupby("customer_id").amount.sum()


def test_headline_forecasts_equal_a_direct_computation_from_the_raw_tables(world, graded, tmp_path):
    """Each headline row's forecast and actual recomputed from the CSVs and the models'
    per-customer outputs, with independently written populations (tolerance 1e-9 relative;
    the counts exactly)."""
    data_dir, _ = world
    raw = _raw(data_dir)
    fc, rows = graded.forecast, {r["metric"]: r for r in graded.headline}
    assert set(rows) == set(followup.HEADLINE_METRICS) and not graded.headline_skipped
    churned_at = _churned_at(raw, pd.Timestamp(AS_OF))
    acquired = raw["customers"].set_index("customer_id").acquired_at
    live = acquired.index[((acquired <= CUT) & ~(churned_at <= CUT)).to_numpy()]

    # churn: mean probability of the live customers scored then vs their churn in the horizon
    r = rows["churn_rate"]
    p = fc.scores.set_index("customer_id").churn_probability.dropna()
    scored = p.index.intersection(live)
    h_end = CUT + pd.Timedelta(days=fc.horizon_days)
    y = (churned_at.reindex(scored) > CUT) & (churned_at.reindex(scored) <= h_end)
    assert r["population"] == len(scored) > 0 and r["churned"] == int(y.sum())
    assert r["forecast"] == pytest.approx(p[scored].mean(), rel=1e-9)
    assert r["actual"] == pytest.approx(y.mean(), rel=1e-9)
    assert r["days"] == fc.horizon_days and r["low"] <= r["actual"] <= r["high"]

    # revenue: live then with an order by then; net orders in the 12 months after the cut
    r = rows["revenue_12m"]
    o = raw["orders"]
    ordered = set(o.customer_id[o.order_date <= CUT])
    pop = sorted(set(live) & ordered)
    pred = fc.clv.set_index("customer_id").predicted_spend_12m
    after = _spend(raw, CUT, pd.Timestamp(AS_OF)).reindex(pop).fillna(0)
    before = _spend(raw, CUT - pd.DateOffset(years=1), CUT).reindex(pop).fillna(0)
    assert r["population"] == len(pop)
    assert r["forecast"] == pytest.approx(pred.reindex(pop).sum(), rel=1e-9)
    assert r["actual"] == pytest.approx(after.sum(), rel=1e-9)
    assert r["base"] == pytest.approx(before.sum(), rel=1e-9)
    assert r["low"] <= r["actual"] <= r["high"]

    # NRR: acquired by a year before the cut with revenue in the year to it
    r = rows["nrr"]
    base_start = CUT - pd.DateOffset(years=1)
    b = _spend(raw, base_start, CUT).clip(lower=0)
    cohort = b.index[(b > 0).to_numpy() & (acquired.reindex(b.index) <= base_start).to_numpy()]
    now = _spend(raw, CUT, pd.Timestamp(AS_OF)).reindex(cohort).fillna(0).clip(lower=0)
    assert r["population"] == len(cohort) > 0
    assert r["base_revenue"] == pytest.approx(b[cohort].sum(), rel=1e-9)
    assert r["actual"] == pytest.approx(now.sum() / b[cohort].sum(), rel=1e-9)
    assert r["forecast"] == pytest.approx(
        pred.reindex(cohort).fillna(0).clip(lower=0).sum() / b[cohort].sum(), rel=1e-9
    )
    # one number, one definition: the actual is the catalogue's NRR at as_of (chapter 1's)
    from fupan.measures import metrics

    with fdata.loaded(_params(tmp_path, data_dir)) as ds:
        nrr_now = metrics.revenue_retention(ds, AS_OF)["nrr"]
    assert r["actual"] == pytest.approx(nrr_now, rel=1e-12)
    # the verdict says what the interval says
    for r in rows.values():
        held = r["low"] <= r["forecast"] <= r["high"]
        assert r["verdict"] == (
            "held" if held else "over" if r["forecast"] > r["high"] else "under"
        )
    rec = graded.record("en")
    assert [h["metric"] for h in rec["headline"]] == list(followup.HEADLINE_METRICS)
    assert not any("total_clv" in h["metric"] for h in rec["headline"])


def test_headline_intervals_cover_the_truth_in_a_simulation():
    """Populations drawn from a known world: the churn rate's Wilson interval, the revenue
    total's and the NRR ratio's customer bootstraps each hold the truth (the world's
    expectation) in about 95% of draws (200 draws: 0.90 to 0.99), and a forecast equal to
    the truth is graded "held" exactly when it is inside."""
    from fupan.measures import outcomes

    rng = np.random.default_rng(11)
    n, draws, boot = 300, 200, 800
    p_true = 2 / (2 + 30)  # churn probabilities ~ Beta(2, 30)
    spend_true = n * 0.7 * math.exp(8 + 0.5)  # 30% no order, else lognormal(8, 1)
    nrr_true = 0.8 * math.exp(0.3**2 / 2)  # 20% lost, else growth ~ lognormal(0, 0.3)
    held = {"churn": 0, "revenue": 0, "nrr": 0}
    for i in range(draws):
        y = rng.random(n) < rng.beta(2, 30, n)
        _, lo, hi = outcomes.rate_with_ci(int(y.sum()), n)
        row = _row("churn_rate", "model_then", n, p_true, y.mean(), lo, hi, None)
        held["churn"] += row["verdict"] == "held"
        assert (row["verdict"] == "held") == (lo <= p_true <= hi)
        x = np.where(rng.random(n) < 0.3, 0.0, rng.lognormal(8, 1, n))
        lo, hi = followup.total_interval(x, seed=i, n_boot=boot)
        held["revenue"] += lo <= spend_true <= hi
        then = rng.lognormal(8, 1, n)
        now = then * np.where(rng.random(n) < 0.2, 0.0, rng.lognormal(0, 0.3, n))
        lo, hi = followup.ratio_interval(now, then, seed=i, n_boot=boot)
        held["nrr"] += lo <= nrr_true <= hi
    for key, k in held.items():
        assert 0.90 <= k / draws <= 0.99, (key, k / draws)


def test_headline_forecasts_need_their_window_and_say_so(world, graded, tmp_path):
    """A forecast whose window has not passed is not graded: its reason is recorded in
    words, in both languages, and no row stands in for it."""
    import dataclasses

    data_dir, _ = world
    fc = dataclasses.replace(graded.forecast, as_of_then=(CUT + pd.DateOffset(months=6)).date())
    with fdata.loaded(_params(tmp_path, data_dir)) as ds:
        rows, skipped = followup.headline_rows(ds, graded.graded, fc, fc, seed=0)
        # a forecast without probabilities or a spend model grades nothing, and says why
        rules = dataclasses.replace(fc, method="rules", clv=None, notes={"clv": "model_failed"})
        none, why = followup.headline_rows(ds, graded.graded, rules, rules, seed=0)
    assert none == [] and why == dict.fromkeys(followup.HEADLINE_METRICS, "model_failed") | {
        "churn_rate": "rules"
    }
    # the churn probability's 90 days have passed; the 12-month forecasts' have not
    assert [r["metric"] for r in rows] == ["churn_rate"]
    assert skipped == {"revenue_12m": "short_follow_up", "nrr": "short_follow_up"}
    fu = dataclasses.replace(
        graded, as_of_then=fc.as_of_then, headline=rows, headline_skipped=skipped
    )
    for lang in ("zh", "en"):
        rec = fu.record(lang)
        _no_nulls(rec)
        assert {"headline_revenue_12m", "headline_nrr"} <= set(rec["skipped"])
        assert "2026-04-30" in rec["skipped"]["headline_nrr"]


def test_headline_slide_quotes_the_numbers(graded):
    for lang in ("zh", "en"):
        f = i18n.Fmt(lang)
        lines = followup.headline_lines(graded.headline, graded.as_of_then, "backtest", lang, f)
        table = followup.headline_table(graded.headline, lang, f)
        text = " ".join(lines.values()) + table.to_string()
        assert "nan" not in text and "None" not in text and "–" not in text
        for r in graded.headline:
            shown = (
                f.money(r["forecast"]) if r["metric"] == "revenue_12m" else f.pct(r["forecast"], 1)
            )
            assert shown in lines["finding"]
            assert f.int(r["population"]) in lines["note"]
        held = sum(r["verdict"] == "held" for r in graded.headline)
        assert f"{held}" in lines["title"]


def test_a_previous_runs_recorded_forecasts_are_graded_as_recorded(world, graded, tmp_path):
    """A review as of the cut records its forecasts (``next_year``); next year's follow-up
    reads them back and grades them as recorded: the same numbers the backtest rebuilds
    from the data as it stood then (1e-9), with the same actuals."""
    from fupan.io import exports

    data_dir, _ = world
    P = _params(tmp_path, data_dir).model_copy(update={"as_of": CUT.date()})
    P = fparams.Params.model_validate({**P.model_dump(), "period_start": None})
    with fdata.loaded(P, strict=False) as ds_then:
        nxt = followup.next_year(ds_then)
    run = tmp_path / "reports" / "then"
    flagged = nxt.frame.customer_id[nxt.frame.flagged]
    exports.write(pd.DataFrame({"customer_id": flagged}), run, "churn_at_risk", xlsx=False)
    exports.write(nxt.frame, run, followup.FORECASTS_EXPORT, xlsx=False)
    (run / "results.json").write_text(
        json.dumps(to_jsonable({"run": {"as_of": str(CUT.date()), "kind": "annual_review"},
                                "churn": {"at_risk_count": len(flagged)},
                                "followup": {"next_year": nxt.summary}})),
        encoding="utf-8",
    )  # fmt: skip
    with fdata.loaded(_params(tmp_path, data_dir)) as ds:
        fu = followup.follow_up(ds, previous=run)
    assert fu.source == "previous_run" and not fu.headline_skipped
    rows = {r["metric"]: r for r in fu.headline}
    backtest_rows = {r["metric"]: r for r in graded.headline}
    assert set(rows) == set(backtest_rows)
    for metric, r in rows.items():
        assert r["basis"] == "recorded"
        for k in ("forecast", "actual", "population", "base", "low", "high"):
            assert r[k] == pytest.approx(backtest_rows[metric][k], rel=1e-9), (metric, k)
    # its recorded probabilities and spend forecasts are graded as the backtest's are
    assert fu.calibration["brier"] == pytest.approx(graded.calibration["brier"], rel=1e-9)
    assert fu.clv["mae"] == pytest.approx(graded.clv["mae"], rel=1e-9)
    assert fu.clv["mae_base"] == pytest.approx(graded.clv["mae_base"], rel=1e-9)
    assert not {"brier", "clv_mae"} & set(fu.record("en").get("skipped", {}))
    # the totals the review recorded are the forecasts graded a year later
    assert nxt.summary["revenue_12m"] == pytest.approx(rows["revenue_12m"]["forecast"], rel=1e-9)
    assert nxt.summary["nrr"] == pytest.approx(rows["nrr"]["forecast"], rel=1e-9)
    assert nxt.summary["nrr_cohort"] == rows["nrr"]["population"]
    for lang in ("zh", "en"):
        f = i18n.Fmt(lang)
        title, finding = followup.next_year_lines(to_jsonable(nxt.summary), lang, f)
        assert "2025-10-31" not in title and "2026-10-31" in title
        assert f.money(nxt.summary["revenue_12m"]) in finding and "nan" not in finding
        table = followup.next_year_table(to_jsonable(nxt.summary), lang, f).to_string()
        assert (
            f.pct(nxt.summary["nrr"], 1) in table and f.pct(nxt.summary["base"]["nrr"], 1) in table
        )
        assert "nan" not in table and "None" not in table and "–" not in table
        note = followup.headline_lines(fu.headline, fu.as_of_then, fu.source, lang, f)["note"]
        assert "followup_forecasts.csv" in note


def test_the_report_dates_health_scoring_is_scored_once_per_run(world, tmp_path, monkeypatch):
    """Chapter 5 scores the report date and the month before; the follow-up's next-year
    forecast reads the report date's scoring from the run cache: the same frame as scoring
    it alone, without a second scoring. ``reasons=False`` changes no score, only leaves the
    red band's reasons blank."""
    import dataclasses

    from fupan.chapters import atrisk, kpi

    data_dir, _ = world
    P = _params(tmp_path, data_dir)
    day, before = dt.date(2026, 10, 31), dt.date(2026, 9, 30)
    with fdata.loaded(P) as ds:
        alone, _ = kpi.health_bands(ds, day)  # no run cache: scored here
        quiet, _ = kpi.health_bands(ds, day, reasons=False)
        run = dataclasses.replace(ds, cache_dir=tmp_path / "cache")
        both, _ = kpi.health_bands(run, day, before)

        def scored_again(*args, **kwargs):
            raise AssertionError("scored a second time")

        monkeypatch.setattr(atrisk, "at_risk_lists", scored_again)
        again, _ = kpi.health_bands(run, day)
    pd.testing.assert_frame_equal(both[day], alone[day])
    pd.testing.assert_frame_equal(again[day], alone[day])
    assert set(both) == {day, before} and len(both[before])
    red = alone[day].band == "red"
    assert red.any() and (alone[day].reasons[red] != "").all()
    assert (quiet[day].reasons == "").all()
    pd.testing.assert_frame_equal(
        quiet[day].drop(columns="reasons"), alone[day].drop(columns="reasons")
    )
