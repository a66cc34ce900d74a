"""Chapter 4 on data it was not built on: money in the data's scale, scenarios that cannot be
estimated or do not apply, tiers checked against the data (issue 17).

Hand-built frames pin the definitions by hand-counted numbers; the small demo checks that a
change of currency scale moves every amount and no ROI, and that every reason a scenario is
not priced is reported in words and never ranked.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import paramfile
import pytest
import tiny
from conftest import ROOT
from fupan.chapters import simulate
from fupan.chapters.simulate import values as sim_values
from fupan.core import i18n
from fupan.core import params as fparams
from fupan.core import scenarios as fsc
from fupan.io import data as fdata
from fupan.measures import outcomes


def _params_file(tmp: Path, data: Path, extra: str = "") -> Path:
    (tmp / "benchmarks.yaml").write_text(
        (ROOT / "params" / "benchmarks.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    return paramfile.write(
        tmp,
        data,
        extra,
        benchmarks_file="benchmarks.yaml",
        name="scenarios test",
        as_of="2026-10-31",
        period_start="2025-11-01",
        lang="en",
        seed=42,
    )


def _scenario(name: str, **kw) -> dict:
    return {"name": name, "label": {"zh": name, "en": name}, **kw}


SLA = _scenario("sla", target={"tiers": ["platinum", "gold"]}, change={"first_response_days": 3.5})
WINBACK = _scenario(
    "winback",
    target={"status": "lost", "lost_within_days": 365},
    change={"winback": {"reactivation_rate": 0.12}},
)
BAD = re.compile(r"\b(nan|None|inf)\b|–")


# ----------------------------------------------------------------------------- money


def test_reference_spend_is_the_median_annual_spend_of_the_years_buyers(tiny_params):
    ds = fdata.load(fparams.load(tiny_params))
    # orders in (2025-10-31, 2026-10-31]: C1 150,000 - 5,000 refund = 145,000; C5 11,000
    got = simulate.reference_spend(ds, pd.Timestamp("2026-10-31"))
    assert got == (145_000.0 + 11_000.0) / 2
    # a year with no order has no reference (costs then come out 0: "not estimable")
    assert np.isnan(simulate.reference_spend(ds, pd.Timestamp("2022-12-31")))


def test_amounts_left_out_are_shares_of_the_data_and_the_file_wins():
    sh = fsc.DEFAULT_COST_SHARES
    scen = fsc.Scenario.model_validate(SLA)
    c = sim_values._retention_costs(scen, ref=1000.0, target_spend=50_000.0)
    assert (c.per_customer, c.per_touch, c.fixed) == (
        sh["per_customer"] * 1000.0,
        sh["per_touch"] * 1000.0,
        sh["fixed"] * 50_000.0,
    )
    assert c.record()["cost_basis"] == "data"
    given = fsc.Scenario.model_validate({**SLA, "cost": {"per_customer": 5, "fixed": 0}})
    c = sim_values._retention_costs(given, ref=1000.0, target_spend=50_000.0)
    assert (c.per_customer, c.per_touch, c.fixed) == (5.0, 20.0, 0.0)
    assert c.record()["cost_basis"] == "mixed"
    every = {"per_customer": 1, "per_touch": 2, "fixed": 3}
    c = sim_values._retention_costs(
        fsc.Scenario.model_validate({**SLA, "cost": every}), float("nan"), 0.0
    )
    assert c.record()["cost_basis"] == "file" and c.fixed == 3.0


def test_shipped_scenarios_carry_no_currency_amounts():
    """The fallback for any export: amounts in one currency would be wrong in every other."""
    raw = fsc._read_yaml(ROOT / "params" / "scenarios.yaml")
    for s in raw["scenarios"]:
        cost = s.get("cost", {})
        assert all(v == 0 for v in cost.values()), (s["name"], cost)
        assert "offer_cost" not in s["change"].get("winback", {})


@pytest.fixture(scope="module")
def scaled(tmp_path_factory, demo_small):
    """The small demo twice: as made, and with every amount x 100 (another currency)."""
    root = tmp_path_factory.mktemp("scaled")
    big = root / "data100"
    shutil.copytree(demo_small, big)
    for table, cols in {
        "orders": ["amount"],
        "contracts": ["annual_value"],
        "churn_events": ["lost_value"],
    }.items():
        path = big / f"{table}.csv"
        if path.exists():
            df = pd.read_csv(path, dtype=str, keep_default_na=False)
            for col in cols:
                if col in df:
                    num = pd.to_numeric(df[col], errors="coerce") * 100
                    df[col] = num.map(lambda v: "" if pd.isna(v) else repr(float(v)))
            df.to_csv(path, index=False)
    out = []
    for name, data in (("a", demo_small), ("b", big)):
        tmp = root / name
        tmp.mkdir()
        P = fparams.load(_params_file(tmp, data))
        ds = fdata.connect(P, None)
        scen = fsc.parse({"scenarios": [SLA, WINBACK]}, P)
        out.append((simulate.simulate(ds, scen, bootstrap=10), ds))
    return out


def test_a_change_of_currency_scale_moves_every_amount_and_no_ratio(scaled):
    (a, ds_a), (b, ds_b) = scaled
    ta, tb = a.table.set_index("name"), b.table.set_index("name")
    assert sorted(ta.index) == sorted(tb.index) == ["sla", "winback"]
    assert (ta.cost_basis == "data").all()
    ref_a = simulate.reference_spend(ds_a, pd.Timestamp("2026-10-31"))
    ref_b = simulate.reference_spend(ds_b, pd.Timestamp("2026-10-31"))
    np.testing.assert_allclose(ref_b, 100 * ref_a, rtol=1e-9)
    # Amounts follow the data exactly, and so does the LTV side through the CLV fits (the
    # largest relative difference measured was 1.2e-13 for LTV, 1.8e-13 for ROI): 1e-9.
    for col in ("cost", "cost_per_customer", "cost_fixed"):
        np.testing.assert_allclose(tb[col], 100 * ta[col], rtol=1e-9, err_msg=col)
    np.testing.assert_allclose(tb.offer_cost["winback"], 100 * ta.offer_cost["winback"], rtol=1e-9)
    np.testing.assert_allclose(tb.ltv_retained, 100 * ta.ltv_retained, rtol=1e-9)
    np.testing.assert_allclose(tb.roi, ta.roi, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(tb.target_customers, ta.target_customers)


def test_one_cost_per_scenario_and_totals_of_the_funded(scaled):
    (a, _), _ = scaled
    t = a.table
    tot = simulate.funded_totals(t)
    funded = t[t.phase != "hold"]
    assert tot["n"] == len(funded) and tot["names"] == list(funded.name)
    assert tot["cost"] == pytest.approx(float(funded.cost.sum()), rel=1e-12)
    wb = t.set_index("name").loc["winback"]
    # a win-back's cost is its offer per contacted customer plus its fixed cost, once
    assert wb.cost == pytest.approx(wb.cost_fixed + wb.contacted * wb.offer_cost, rel=1e-12)
    # the pilot is drawn from the customers worth the offer, and there are some
    pl = a.pilots.set_index("name").loc["winback"]
    assert pl.eligible == wb.contacted > 0
    one = simulate.funded_totals(t.assign(phase="hold"))
    assert one == {"n": 0, "names": [], "customers_kept": 0.0, "ltv_retained": 0.0, "cost": 0.0}


# ----------------------------------------------------------------------------- not estimable


def test_scenarios_without_an_estimable_effect_are_never_ranked(tmp_path, demo_small):
    P = fparams.load(_params_file(tmp_path, demo_small))
    ds = fdata.connect(P, None)
    raw = {
        "scenarios": [
            _scenario("moves_nobody", change={"first_response_days": 10_000}),
            {**SLA, "name": "free", "cost": {"per_customer": 0, "per_touch": 0, "fixed": 0}},
            _scenario("diamond", target={"tiers": ["diamond"]}, change={"touches_per_quarter": 3}),
            {
                **WINBACK,
                "name": "dear_offer",
                "change": {"winback": {"offer_cost": 1e12, "reactivation_rate": 0.12}},
            },
            {
                **WINBACK,
                "name": "pilot_says_no",
                "pilot": {"treated": 100, "treated_events": 1, "control": 100, "control_events": 9},
            },
            WINBACK,
        ]
    }
    res = simulate.simulate(ds, fsc.parse(raw, P), bootstrap=10)
    reasons = {s["name"]: s["reason"] for s in res.skipped}
    assert reasons == {
        "moves_nobody": "no_effect",
        "free": "zero_cost",
        "diamond": "tiers_absent",
        "dear_offer": "none_worth",
        "pilot_says_no": "no_uplift",
    }
    assert res.table.name.tolist() == ["winback"] and res.pilots.name.tolist() == ["winback"]
    present = sorted(ds["customers"].to_pandas().tier.unique())
    diamond = next(s for s in res.skipped if s["name"] == "diamond")
    assert diamond["tiers"] == ["diamond"] and diamond["present"] == present
    fmt = i18n.Fmt.from_params(P)
    for lang in ("en", "zh"):
        for s in res.skipped:
            text = simulate.skip_reason(s, lang, s["name"], fmt)
            assert s["name"] in text and not BAD.search(text), text
    en = {s["name"]: simulate.skip_reason(s, "en", s["name"], fmt) for s in res.skipped}
    assert "tiers present: " + ", ".join(present) in en["diamond"]
    assert "not estimable" in en["free"] and "not worth running" in en["dear_offer"]


def test_a_business_with_its_own_tier_name_runs_chapter_4(tmp_path, demo_small):
    """One tier called 'member' and the shipped scenarios (which name platinum and gold):
    the tier-targeted scenario is not applicable, the others are priced or say why."""
    data = tmp_path / "data"
    shutil.copytree(demo_small, data)
    cust = pd.read_csv(data / "customers.csv", dtype=str, keep_default_na=False)
    cust["tier"] = "member"
    cust.to_csv(data / "customers.csv", index=False)
    extra = "tiers:\n  order: [member]\n  core: [member]\n  spend_floors: [0]\n"
    P = fparams.load(_params_file(tmp_path, data, extra))
    scen = fsc.load(P, ROOT / "params" / "scenarios.yaml")  # no ParamsError
    problems = fsc.check_against(P, ["member"], scen)
    assert len(problems) == 1 and "'sla_core'" in problems[0]
    assert "['platinum', 'gold']" in problems[0] and "tiers present: member" in problems[0]
    res = simulate.simulate(fdata.connect(P, None), scen, bootstrap=10)
    skipped = {s["name"]: s for s in res.skipped}
    assert skipped["sla_core"]["reason"] == "tiers_absent"
    assert skipped["sla_core"]["present"] == ["member"]
    # every scenario is either priced or skipped with a reason, once
    assert sorted([*res.table.name, *skipped]) == sorted(s.name for s in scen)


# ----------------------------------------------------------------------------- natural return


def _orders_only(folder: Path) -> Path:
    """Five customers, no churn events (dormancy 180 days, as_of 2026-10-31, so lost a year
    before means dormant by 2025-10-31). A, B, C went quiet in mid-2024 and were lost by
    then; A came back in 2026. D was live; E was lost before the 365-day window."""
    base = tiny.frames()
    cust = base["customers"].iloc[:0].copy()
    rows = {
        "A": ["2024-06-01", "2026-01-10"],
        "B": ["2024-07-01"],
        "C": ["2024-08-01"],
        "D": ["2025-09-01"],
        "E": ["2023-01-01"],
    }
    cust = pd.concat(
        [
            cust,
            pd.DataFrame(
                {
                    "customer_id": list(rows),
                    "acquired_at": [d[0] for d in rows.values()],
                    "customer_name": list(rows),
                    "industry": "retail",
                    "region": "east",
                    "tier": "member",
                    "account_manager": "AM",
                    "acquisition_channel": "online",
                }
            ),
        ]
    )
    orders = pd.DataFrame(
        [(c, d) for c, days in rows.items() for d in days], columns=["customer_id", "order_date"]
    )
    orders.insert(0, "order_id", [f"O{i}" for i in range(len(orders))])
    orders["amount"] = 100.0
    orders["category"] = "x"
    return tiny.write(
        folder,
        drop=("contracts", "touches", "tickets", "surveys", "activity", "churn_events", "pilots"),
        customers=cust,
        orders=orders,
    )


def test_natural_return_without_churn_events_counts_the_lost_who_came_back(tmp_path):
    data = _orders_only(tmp_path / "data")
    extra = (
        "churn_definition:\n  dormancy_days: 180\n"
        "tiers:\n  order: [member]\n  core: [member]\n  spend_floors: [0]\n"
    )
    P = fparams.load(_params_file(tmp_path, data, extra))
    ds = fdata.load(P)
    status = outcomes.churn_status(ds)
    rate, n, basis = simulate.natural_return(ds, status, pd.Timestamp("2026-10-31"), 365)
    assert (rate, n, basis) == (1 / 3, 3, "dormancy")
    # a shorter window keeps only C (lost 2025-01-28): it never came back
    rate, n, _ = simulate.natural_return(ds, status, pd.Timestamp("2026-10-31"), 300)
    assert (rate, n) == (0.0, 1)
