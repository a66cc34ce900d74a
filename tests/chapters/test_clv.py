"""Chapter 3 logic (fupan.chapters.clv): hand checks on tiny data, simulations with known truth.

Tolerances are stated where a simulation is compared with its truth; every random draw is
seeded, so each test is deterministic.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tiny
from fupan.chapters import clv
from fupan.core import i18n
from fupan.core import params as fparams
from fupan.core.chapter_params import LtvParams
from fupan.io import data as fdata
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures.outcomes import churn_status
from fupan.models.ltv import (
    BetaGeo,
    GammaGamma,
    ShiftedBetaGeometric,
    simulate_bgnbd,
    simulate_gamma_gamma,
)
from scipy.special import betaln

warnings.filterwarnings("ignore", message=".*infer_string.*")

TS = pd.Timestamp
BG_TRUTH = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}  # CDNOW, weeks (FHL 2005)
GG_TRUTH = {"p": 6.25, "q": 3.74, "v": 15.44}  # CDNOW (Fader & Hardie 2013)


def connect(folder: Path, data_dir: Path, extra: str = "") -> Dataset:
    folder.mkdir(parents=True, exist_ok=True)
    pf = tiny.params_file(folder, data_dir, extra=extra)
    return fdata.connect(fparams.load(pf), str(folder / "run"))


# --------------------------------------------------------------------------------------
# Dates and the period ledger


def test_month_starts_then_now():
    snaps = clv.month_starts("2025-11-01", "2026-10-31")
    assert snaps[0] == TS("2025-11-01") and snaps[-1] == TS("2026-11-01")
    assert len(snaps) == 13
    assert all(s.day == 1 for s in snaps)
    mid = clv.month_starts("2025-11-15", "2026-02-10")
    assert mid == [
        TS(d) for d in ("2025-11-15", "2025-12-01", "2026-01-01", "2026-02-01", "2026-02-11")
    ]
    quarterly = clv.month_starts("2025-11-01", "2026-10-31", months=3)
    assert quarterly == [
        TS(d)
        for d in (
            "2025-11-01",
            "2025-12-01",
            "2026-03-01",
            "2026-06-01",
            "2026-09-01",
            "2026-11-01",
        )
    ]
    with pytest.raises(ValueError, match="before as_of"):
        clv.month_starts("2026-11-01", "2026-10-31")


def _status(rows: list[tuple[str, str, str | None]]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=["customer_id", "acquired_at", "churned_at"])
    df["acquired_at"] = pd.to_datetime(df.acquired_at)
    df["churned_at"] = pd.to_datetime(df.churned_at)
    df["churned"] = df.churned_at.notna()
    return df


def test_period_ledger_values_each_churn_at_the_last_snapshot_before_it():
    status = _status(
        [
            ("A", "2024-01-01", None),  # in the base all year
            ("B", "2024-01-01", "2025-11-01"),  # churned on the period start: not in the period
            ("C", "2024-01-01", "2025-12-01"),  # churned exactly on a snapshot: the one before
            ("D", "2024-01-01", "2025-12-02"),
            ("E", "2026-03-15", "2026-10-31"),  # acquired in the period, lost on as_of
            ("F", "2026-10-20", None),  # acquired in the last month: enters "now"
            ("G", "2026-05-10", "2026-05-20"),  # gone before any snapshot could value it
            ("H", "2023-01-01", "2024-06-01"),  # lost long before the period
            ("I", "2024-01-01", None),  # first valued at the third snapshot
        ]
    )
    snaps = clv.month_starts("2025-11-01", "2026-10-31")
    worth = {"A": 100.0, "C": 30.0, "D": 40.0, "E": 50.0, "F": 60.0, "G": 70.0, "I": 90.0}
    asked: list[tuple[pd.Timestamp, list[str]]] = []

    def value(s: pd.Timestamp, ids: list[str]) -> pd.Series:
        asked.append((s, ids))
        k = snaps.index(s)
        known = [c for c in ids if c != "I" or k >= 2]
        # a customer's value falls by 1 a month, so the snapshot used can be read off
        return pd.Series({c: worth[c] - k for c in known})

    led = clv.period_ledger(status, snaps, value).set_index("customer_id")
    assert sorted(led.index) == ["A", "C", "D", "E", "F", "G", "I"]
    assert led.loc["A", "entry_clv"] == 100 and led.loc["A", "entry_snapshot"] == snaps[0]
    assert led.loc["C", "loss_snapshot"] == TS("2025-11-01") and led.loc["C", "lost_ltv"] == 30
    assert led.loc["D", "loss_snapshot"] == TS("2025-12-01") and led.loc["D", "lost_ltv"] == 39
    assert led.loc["E", "entry_snapshot"] == TS("2026-04-01") and led.loc["E", "entry_clv"] == 45
    assert led.loc["E", "loss_snapshot"] == TS("2026-10-01") and led.loc["E", "lost_ltv"] == 39
    assert led.loc["F", "entry_snapshot"] == TS("2026-11-01") and led.loc["F", "entry_clv"] == 48
    assert np.isnan(led.loc["G", "lost_ltv"]) and np.isnan(led.loc["G", "entry_clv"])
    assert led.loc["I", "entry_snapshot"] == TS("2026-01-01") and led.loc["I", "entry_clv"] == 88
    assert led.churned.to_dict() == {
        "A": False,
        "C": True,
        "D": True,
        "E": True,
        "F": False,
        "G": True,
        "I": False,
    }
    loss = clv.summarise_loss(led.reset_index())
    assert loss.lost == 30 + 39 + 39
    assert loss.base == 100 + 30 + 40 + 45 + 48 + 88
    assert loss.rate == pytest.approx(108 / 351)
    assert (loss.churned, loss.churned_not_valued, loss.base_customers) == (4, 1, 6)
    # nobody is valued after they left, and no snapshot is asked about the future
    for s, ids in asked:
        for c in ids:
            row = status.set_index("customer_id").loc[c]
            assert row.acquired_at < s
            assert pd.isna(row.churned_at) or row.churned_at > s


def _period_ledger_loop(status, snapshots, value):
    """The ledger as first written (string membership tests, a loop over customers): the
    reference the array version must equal."""
    start, now = snapshots[0], snapshots[-1]
    end = now - pd.Timedelta(days=1)
    st = status[(status.acquired_at <= end) & ~(status.churned_at <= start)]
    st = st.set_index("customer_id")
    churned_at = st.churned_at
    in_period = churned_at.notna() & (churned_at > start) & (churned_at <= end)
    entry_snap, entry_val, loss_snap, loss_val = {}, {}, {}, {}
    for k, s in enumerate(snapshots):
        nxt = snapshots[k + 1] if k + 1 < len(snapshots) else None
        alive = churned_at.isna() | (churned_at > s)
        not_entered = ~st.index.isin(list(entry_snap))
        need_entry = alive & not_entered & (st.acquired_at < s)
        if nxt is None:
            need_loss = pd.Series(False, index=st.index)
        else:
            need_loss = in_period & (churned_at > s) & (churned_at <= nxt) & (st.acquired_at < s)
        ids = sorted(set(st.index[need_entry | need_loss]))
        if not ids:
            continue
        v = value(s, ids)
        v = v[v.index.isin(ids)].astype(float)
        for cid, val in v.items():
            if cid not in entry_snap:
                entry_snap[cid], entry_val[cid] = s, float(val)
        for cid in st.index[need_loss]:
            if cid in v.index:
                loss_snap[cid], loss_val[cid] = s, float(v[cid])
    out = pd.DataFrame({"customer_id": st.index})
    out["entry_snapshot"] = pd.to_datetime(out.customer_id.map(entry_snap))
    out["entry_clv"] = out.customer_id.map(entry_val).astype(float)
    out["churned"] = in_period.reindex(out.customer_id).to_numpy()
    out["churned_at"] = churned_at.reindex(out.customer_id).to_numpy()
    out["loss_snapshot"] = pd.to_datetime(out.customer_id.map(loss_snap))
    out["lost_ltv"] = out.customer_id.map(loss_val).astype(float)
    out.loc[~out.churned, "lost_ltv"] = np.nan
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_period_ledger_equals_the_per_customer_loop(seed):
    """Random customers (acquired before and in the period, churned before, on and between
    snapshots, never), in no particular order, and a value function that cannot value some
    customers, adds some it was not asked about, and values nobody at one snapshot."""
    rng = np.random.default_rng(seed)
    n = 600
    # dates as the params give them: the snapshots then mix units (seconds, and "now" in
    # microseconds), which the ledger's date columns must keep as the loop did
    snaps = clv.month_starts(TS("2025-11-15").date(), TS("2026-10-31").date())
    acquired = TS("2024-06-01") + pd.to_timedelta(rng.integers(0, 880, n), unit="D")
    churned = TS("2025-06-01") + pd.to_timedelta(rng.integers(0, 520, n), unit="D")
    on_snap = rng.random(n) < 0.1
    churned = churned.where(~on_snap, pd.DatetimeIndex(rng.choice(snaps[1:-1], n)))
    churned = churned.where(rng.random(n) < 0.5, pd.NaT).where(churned > acquired, pd.NaT)
    ids = np.array([f"k{i:04d}" for i in rng.permutation(n)], dtype=object)
    status = pd.DataFrame({"customer_id": ids, "acquired_at": acquired, "churned_at": churned})
    status["churned"] = status.churned_at.notna()
    if seed == 2:  # as churn_status gives it
        status = status.sort_values("customer_id", ignore_index=True)
    worth = pd.Series(rng.gamma(2.0, 500.0, n), index=ids)
    unknown = set(rng.choice(ids, 40, replace=False))
    strangers = pd.Series([1.0, 2.0], index=["zz-not-a-customer", ids[0]])

    def value(s, asked):
        k = snaps.index(s)
        if k == 3:
            return pd.Series(dtype=float)
        known = [c for c in asked if c not in unknown or k > 6]
        out = worth[known] - k
        return pd.concat([out, strangers[~strangers.index.isin(known)]])

    got = clv.period_ledger(status, snaps, value)
    want = _period_ledger_loop(status, snaps, value)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert got.lost_ltv.notna().sum() > 20 and got.entry_snapshot.nunique() > 5


def test_loss_by_group_shares_rates_and_order():
    ledger = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "entry_clv": [100.0, 200.0, 50.0, 50.0, np.nan],
            "churned": [True, False, True, True, True],
            "lost_ltv": [40.0, np.nan, 10.0, 30.0, np.nan],
        }
    )
    attrs = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "tier": ["gold", "gold", "silver", None, "silver"],
            "reason": ["price", None, "service", "price", None],
        }
    )
    by_tier = clv.loss_by(ledger, attrs, "tier", order=["platinum", "gold", "silver"])
    assert list(by_tier.group) == ["gold", "silver", clv.UNRECORDED]
    gold = by_tier.set_index("group").loc["gold"]
    assert (gold.churned, gold.lost_ltv, gold.base_clv) == (1, 40.0, 300.0)
    assert gold.rate == pytest.approx(40 / 300) and gold.share == pytest.approx(40 / 80)
    silver = by_tier.set_index("group").loc["silver"]
    assert (silver.churned, silver.lost_ltv, silver.base_clv) == (2, 10.0, 50.0)
    by_reason = clv.loss_by(ledger, attrs, "reason")
    assert list(by_reason.group) == ["price", "service", clv.UNRECORDED]
    assert by_reason.set_index("group").lost_ltv.to_dict() == {
        "price": 70.0,
        "service": 10.0,
        clv.UNRECORDED: 0.0,
    }
    assert by_reason.rate.isna().all()  # only churners have a reason: no base to divide by
    details = attrs.assign(customer_name=list("ABCDE"))
    top = clv.top_lost(
        ledger.assign(churned_at=TS("2026-01-05"), loss_snapshot=TS("2026-01-01")), details, 2
    )
    assert list(top.customer_id) == ["a", "d"] and list(top.customer_name) == ["A", "D"]


# --------------------------------------------------------------------------------------
# At risk now


def _valuation(kind: str, values: dict[str, list]) -> clv.Valuation:
    return clv.Valuation(TS("2026-11-01"), kind, pd.DataFrame(values).set_index("customer_id"), {})


def test_at_risk_from_the_model_and_from_churn_scores():
    ltv = LtvParams(at_risk_p_alive=0.5, at_risk_renewal_days=90)
    tx = _valuation(
        clv.TRANSACTIONS,
        {
            "customer_id": ["a", "b", "c", "d"],
            "clv": [100.0, 200.0, 300.0, 50.0],
            "p_alive": [0.9, 0.4, 0.2, 0.1],
        },
    )
    tx.values["p_churn"] = 1 - tx.values.p_alive
    risk = clv.at_risk(tx, ["a", "b", "c"], ltv)  # d has churned under the definition
    assert list(risk.customer_id) == ["c", "b"]
    assert risk.ltv_at_risk.tolist() == pytest.approx([0.8 * 300, 0.6 * 200])
    ct = _valuation(
        clv.CONTRACTS,
        {
            "customer_id": ["a", "b"],
            "clv": [1000.0, 500.0],
            "p_churn": [0.2, 0.3],
            "years_to_decision": [80 / 365.25, 0.5],
        },
    )
    risk = clv.at_risk(ct, ["a", "b"], ltv)
    assert risk.customer_id.tolist() == ["a"] and risk.ltv_at_risk.iloc[0] == pytest.approx(200.0)
    scores, why = clv.normalise_scores(
        pd.DataFrame(
            {
                "customer_id": ["a", "b", "x"],
                "band": ["red", "green", "red"],
                "churn_probability": [0.3, 0.9, 0.5],
            }
        )
    )
    assert why == "churn_scores"
    risk = clv.at_risk(tx, ["a", "b", "c", "x"], ltv, scores)
    # the churn chapter's flag wins; a listed customer the model cannot value counts as 0
    assert risk.set_index("customer_id").ltv_at_risk.to_dict() == pytest.approx(
        {"a": 30.0, "x": 0.0}
    )


def test_normalise_scores_refuses_frames_without_probabilities():
    assert clv.normalise_scores(pd.DataFrame({"customer_id": ["a"]}))[1] == "no_probability"
    assert (
        clv.normalise_scores(pd.DataFrame({"customer_id": ["a"], "score": [55.0]}))[1]
        == "no_probability"
    )
    assert clv.normalise_scores("not a frame")[1] == "no_probability"
    empty, why = clv.normalise_scores(pd.DataFrame({"customer_id": [], "churn_probability": []}))
    assert why == "churn_scores" and empty.empty  # chapter 2 found nobody at risk


def test_chapter2_export_is_read_back_when_this_run_recorded_it(tmp_path, tiny_data, monkeypatch):
    # no live scoring here: the churn chapter's list stands in as one that cannot be made
    from fupan.chapters import atrisk

    def no_list(ds: Dataset, as_of: object) -> pd.DataFrame:
        raise ValueError("no live scoring in this test")

    monkeypatch.setattr(atrisk, "at_risk_list", no_list)
    ds = connect(tmp_path, tiny_data)
    run = tmp_path / "myrun"
    (run / "exports").mkdir(parents=True)
    headers = {
        c: i18n.t(f"churn.acol.{c}", "zh") for c in ("customer_id", "churn_probability", "tier")
    }
    pd.DataFrame(
        {
            headers["customer_id"]: ["C1", "C3"],
            headers["tier"]: ["白金", "银牌"],
            headers["churn_probability"]: [0.25, 0.6],
        }
    ).to_csv(run / "exports" / "at_risk.csv", index=False, encoding="utf-8-sig")
    # without chapter 2's count in results.json the file is not trusted
    scores, why = clv.churn_scores(ds, "2026-10-31", run)
    assert (scores, why) == (None, "failed: ValueError: no live scoring in this test")
    (run / "results.json").write_text(json.dumps({"churn": {"at_risk_count": 2}}), encoding="utf-8")
    scores, why = clv.churn_scores(ds, "2026-10-31", run)
    assert why == "churn_export"
    assert scores.set_index("customer_id").p_churn.to_dict() == {"C1": 0.25, "C3": 0.6}
    assert scores.at_risk.all()


# --------------------------------------------------------------------------------------
# Contracts: chains, sBG, renewal value


def test_contract_chains_on_tiny_data(tmp_path, tiny_data):
    ds = connect(tmp_path, tiny_data)
    ch = clv.contract_chains(ds, "2026-11-01").set_index("customer_id")
    assert ch.loc["C1", ["chain", "contracts", "renewals", "annual_value"]].tolist() == [
        1,
        2,
        1,
        110000.0,
    ]
    assert ch.loc["C1", "last_end"] == TS("2026-12-31") and not ch.loc["C1", "ended"]
    assert (
        ch.loc["C2", "contracts"] == 1 and ch.loc["C2", "ended"]
    )  # ended 2025-05-31, grace 60 days
    # as of 2025-01-01 (exclusive) K2 has not started: C1 is in grace after K1, not ended
    early = clv.contract_chains(ds, "2025-01-01").set_index("customer_id")
    assert early.loc["C1", "contracts"] == 1 and not early.loc["C1", "ended"]
    assert "C2" in early.index and not early.loc["C2", "ended"]


def test_contract_chains_break_on_a_new_contract_and_without_renewal_of(tmp_path):
    frames = tiny.frames()
    c = frames["contracts"]
    extra = pd.DataFrame(
        {
            "contract_id": ["K4"],
            "customer_id": ["C2"],
            "start_date": ["2026-01-01"],
            "end_date": ["2026-12-31"],
            "annual_value": [50000.0],
            "renewal_of": [None],
        }
    )
    data = tiny.write(tmp_path / "d1", contracts=pd.concat([c, extra], ignore_index=True))
    ch = clv.contract_chains(connect(tmp_path / "a", data), "2026-11-01")
    c2 = ch[ch.customer_id == "C2"].set_index("chain")
    assert c2.loc[1, "ended"] and not c2.loc[2, "ended"] and c2.loc[2, "renewals"] == 0
    no_link = tiny.write(
        tmp_path / "d2",
        contracts=pd.concat([c, extra], ignore_index=True).drop(columns="renewal_of"),
    )
    ch2 = clv.contract_chains(connect(tmp_path / "b", no_link), "2026-11-01")
    cols = ["customer_id", "chain", "contracts", "renewals", "ended"]
    pd.testing.assert_frame_equal(ch[cols], ch2[cols])  # the grace-gap rule finds the same chains


def test_sbg_cohorts_are_the_exact_likelihood():
    chains = pd.DataFrame(
        {
            "contracts": [1, 1, 2, 3, 1, 2, 2, 4],
            "ended": [True, True, True, False, False, False, False, True],
        }
    )
    surv, init = clv.sbg_cohorts(chains)
    assert sorted(zip(init, map(tuple, surv), strict=True)) == sorted(
        [(2, (0,)), (1, (1, 0)), (1, (1, 1, 1, 0)), (1, (1, 1)), (2, (2,))]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eight chains: the fit may sit near a boundary
        fitted = ShiftedBetaGeometric().fit(surv, init)
    a, b = fitted.params_["alpha"], fitted.params_["beta"]
    # P(T = k) = B(a+1, b+k-1)/B(a, b) for an ended chain; S(k-1) = B(a, b+k-1)/B(a, b) running
    ll = sum(
        (betaln(a + 1, b + k - 1) if ended else betaln(a, b + k - 1)) - betaln(a, b)
        for k, ended in zip(chains.contracts, chains.ended, strict=True)
    )
    assert ll == pytest.approx(fitted.log_likelihood_, rel=1e-12)


def test_renewal_value_is_derl_when_the_decision_is_now():
    m = ShiftedBetaGeometric()
    m.params_ = {"alpha": 0.704, "beta": 1.182}  # Fader & Hardie (2007) "regular" segment
    for n in (0, 1, 4):
        ours = clv.renewal_value(0.704, 1.182, n, 0.0, 100.0, 1.0, 0.1, 5.0)
        ref = m.expected_lifetime_value(100.0, 0.1, periods=5, renewals=n)
        assert ours[0] == pytest.approx(ref, rel=1e-12)
    # half a year to the decision: the same renewals, half a year further away
    shifted = clv.renewal_value(0.704, 1.182, 2, 0.5, 100.0, 1.0, 0.1, 3.0)
    ref = m.expected_lifetime_value(100.0, 0.1, periods=3, renewals=2) / 1.1**0.5
    assert shifted[0] == pytest.approx(ref, rel=1e-12)
    # nothing inside a horizon shorter than the wait
    assert clv.renewal_value(0.704, 1.182, 0, 2.0, 100.0, 1.0, 0.1, 1.5)[0] == 0.0


def _contract_world(folder: Path, n: int, alpha: float, beta: float, seed: int) -> Path:
    """Customers acquired over four years on annual contracts renewed under sBG(alpha, beta)."""
    rng = np.random.default_rng(seed)
    as_of = TS("2026-10-31")
    acquired = as_of - pd.to_timedelta(rng.integers(1, 4 * 365, n), unit="D")
    theta = rng.beta(alpha, beta, n)
    lifetime = rng.geometric(theta)  # contracts a customer would sign
    rows, orders = [], []
    for i in range(n):
        cid = f"C{i:05d}"
        value = float(np.round(rng.lognormal(9.5, 0.5), 2))
        prev = None
        for k in range(int(lifetime[i])):
            start = acquired[i] + pd.DateOffset(years=k)
            if start > as_of:
                break
            kid = f"K{i:05d}-{k}"
            rows.append(
                (
                    kid,
                    cid,
                    start.date(),
                    (start + pd.DateOffset(years=1) - pd.Timedelta(days=1)).date(),
                    value,
                    prev,
                )
            )
            prev = kid
        orders.append((f"O{i:05d}", cid, acquired[i].date(), value, "service"))
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(n)],
            "acquired_at": acquired.date,
            "industry": "retail",
            "region": "华东",
            "tier": "gold",
            "account_manager": "AM-1",
        }
    ).to_csv(folder / "customers.csv", index=False)
    pd.DataFrame(
        orders, columns=["order_id", "customer_id", "order_date", "amount", "category"]
    ).to_csv(folder / "orders.csv", index=False)
    pd.DataFrame(
        rows,
        columns=[
            "contract_id",
            "customer_id",
            "start_date",
            "end_date",
            "annual_value",
            "renewal_of",
        ],
    ).to_csv(folder / "contracts.csv", index=False)
    return folder


def test_sbg_from_contract_chains_recovers_known_retention(tmp_path):
    """Simulated renewals with alpha=1.2, beta=3.5: the estimates' 95% intervals cover the truth,
    and the total value of running contracts is within 8% of its value under the true model
    (estimation error only: same customers, same states)."""
    alpha, beta = 1.2, 3.5
    data = _contract_world(tmp_path / "data", 4000, alpha, beta, seed=11)
    ds = connect(tmp_path, data, extra="business_model: contractual\nltv:\n  sbg_segment: none\n")
    val = clv.value_contracts(ds, "2026-11-01", ds.params.ltv)
    fit = val.models["sbg"][clv.POOLED].summary_.set_index("param")
    for name, truth in (("alpha", alpha), ("beta", beta)):
        assert fit.loc[name, "ci_low"] <= truth <= fit.loc[name, "ci_high"], fit
    chains = val.chains
    ltv = ds.params.ltv
    true_value = clv.renewal_value(
        alpha,
        beta,
        chains.renewals,
        chains.years_to_decision,
        ltv.margin * chains.annual_value,
        1.0,
        ltv.discount_rate_annual,
        ltv.horizon_years,
    )
    assert val.total == pytest.approx(float(true_value.sum()), rel=0.08)
    assert val.info["period_years"] == 1.0
    # p_churn is the probability of not renewing at the next decision
    n = chains.renewals.to_numpy()
    a, b = (val.models["sbg"][clv.POOLED].params_[k] for k in ("alpha", "beta"))
    assert np.allclose(chains.p_churn, a / (a + b + n))


# --------------------------------------------------------------------------------------
# Transactions: BG/NBD x Gamma-Gamma


def _summary(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    T = np.round(rng.uniform(26, 104, n) * 7) / 7  # whole days, in weeks
    d = simulate_bgnbd(n, BG_TRUTH, T, random_state=seed)
    d["recency"] = np.minimum(np.round(d.recency * 7) / 7, d["T"])
    g = simulate_gamma_gamma(n, GG_TRUTH, d.frequency, random_state=seed + 1)
    s = d[["frequency", "recency", "T"]].assign(monetary=g.monetary.to_numpy())
    s.index = pd.Index([f"C{i:06d}" for i in range(n)], name="customer_id")
    s.attrs["time_unit"] = "W"
    return s


def _true_models() -> clv.TransactionModels:
    bg, gg = BetaGeo(), GammaGamma()
    bg.params_, bg.time_unit_, gg.params_ = dict(BG_TRUTH), "W", dict(GG_TRUTH)
    return clv.TransactionModels(bg, gg, 0, gg.population_mean_spend())


def _analytic_total(T: np.ndarray, ltv: LtvParams) -> float:
    """E[total CLV] of customers of ages T under the true BG/NBD and Gamma-Gamma.

    By the law of total expectation the conditional expected purchases in (T, T + t] average
    to the unconditional E[X(T + t)] - E[X(T)] (FHL 2005, eq. 7), and spend, independent of
    purchasing, to the population mean p v / (q - 1)."""
    m = _true_models()
    H = clv.horizon_months(ltv)
    step = (365.25 / 12) / 7
    tt = T[:, None] + np.arange(H + 1)[None, :] * step
    cum = np.asarray(m.purchases.expected_purchases_new(tt.ravel()), dtype=float).reshape(tt.shape)
    disc = (1 + ltv.discount_rate_annual) ** (-np.arange(1, H + 1) / 12)
    return float(np.sum(np.diff(cum, axis=1) * disc) * m.population_spend * ltv.margin)


def test_total_clv_matches_the_analytic_expectation():
    """20,000 simulated BG/NBD + Gamma-Gamma customers (CDNOW parameters). Over eight seeds the
    relative error of the fitted total had sd 2.4% (sampling noise of the customers drawn) and
    the fitted-vs-true-parameter gap sd 0.9%; the tolerances are about three of those."""
    ltv = LtvParams(margin=0.3, discount_rate_annual=0.10, horizon_years=3, time_unit="W")
    s = _summary(20_000, seed=3)
    models = clv.fit_transactions(s, ltv)
    for name, truth in {**BG_TRUTH, **GG_TRUTH}.items():
        est = (
            (models.purchases if name in BG_TRUTH else models.spend)
            .summary_.set_index("param")
            .loc[name]
        )
        assert est.ci_low * 0.9 <= truth <= est.ci_high * 1.1, (name, est.to_dict())
    fitted = clv.value_transactions(models, s, ltv, "2026-01-01")
    true = clv.value_transactions(_true_models(), s, ltv, "2026-01-01")
    analytic = _analytic_total(s["T"].to_numpy(), ltv)
    assert fitted.total == pytest.approx(analytic, rel=0.07)
    assert true.total == pytest.approx(analytic, rel=0.07)
    assert fitted.total == pytest.approx(true.total, rel=0.04)


def test_discounted_purchases_equal_gamma_gamma_clv():
    """The one-call monthly sum is GammaGamma.clv's purchase factor, to rounding."""
    s = _summary(800, seed=5)
    m = _true_models()
    ours = clv.discounted_purchases(m.purchases, s.frequency, s.recency, s["T"], 24, 0.08)
    z = s.monetary.where(s.frequency > 0, 1.0)
    ref = m.spend.clv(
        m.purchases,
        s.frequency,
        s.recency,
        s["T"],
        z,
        time_unit="W",
        horizon=24,
        period="M",
        discount_rate=0.08,
        discount_period="Y",
        margin=0.4,
    )
    assert np.allclose(
        ours * m.spend.expected_spend(s.frequency, z) * 0.4, ref, rtol=1e-12, atol=1e-9
    )


@pytest.mark.parametrize("a", [2e3, 5e4, 5e5])
def test_bgnbd_predictions_stay_finite_when_dropout_is_homogeneous(a):
    """Fits with a, b in the thousands and beyond (seen on the contractual demo's orders) made
    the BG/NBD 2F1 overflow; the predictions now follow the model's fixed-p limit, here checked
    against its closed form (1/p) [1 - ((alpha+T)/(alpha+T+p t))^(r+x)] x P(alive)."""
    m = BetaGeo()
    m.params_, m.time_unit_ = {"r": 3.7, "alpha": 15.5, "a": a, "b": 100 * a}, "W"
    x = np.array([0.0, 1.0, 19.0, 61.0, 30.0])
    tx = np.array([0.0, 2.0, 150.0, 155.0, 20.0])
    T = np.array([3.0, 10.0, 156.0, 156.0, 156.0])
    t = np.array([156.0, 80.0, 4.3, 156.0, 52.0])
    got = np.asarray(m.expected_purchases(t, x, tx, T), dtype=float)
    p = a / (a + 100 * a)
    alive = np.asarray(m.probability_alive(x, tx, T), dtype=float)
    limit = (1 - ((15.5 + T) / (15.5 + T + p * t)) ** (3.7 + x)) / p * alive
    assert np.all(np.isfinite(got))
    assert got == pytest.approx(limit, rel=20 / a + 1e-6)
    assert np.isfinite(m.expected_purchases_new(52.0))


def test_time_unit_does_not_change_the_value():
    """The same customers in days and in weeks: the same CLV (the unit is carried, not assumed)."""
    s = _summary(2000, seed=9)
    days = s.assign(recency=s.recency * 7, T=s["T"] * 7)
    with pytest.raises(ValueError, match="contradicts"):  # the summary still says weeks
        clv.fit_transactions(days, LtvParams(time_unit="D"))
    days.attrs["time_unit"] = "D"
    weeks = clv.value_transactions(
        clv.fit_transactions(s, LtvParams(time_unit="W")), s, LtvParams(time_unit="W"), "2026-01-01"
    )
    in_days = clv.value_transactions(
        clv.fit_transactions(days, LtvParams(time_unit="D")),
        days,
        LtvParams(time_unit="D"),
        "2026-01-01",
    )
    assert in_days.total == pytest.approx(weeks.total, rel=1e-4)
    assert np.allclose(in_days.values.clv, weeks.values.clv, rtol=1e-3)


def test_pareto_nbd_scores_one_time_buyers():
    ltv = LtvParams(transaction_model="pareto_nbd")
    s = _summary(1500, seed=4)
    val = clv.value_transactions(clv.fit_transactions(s, ltv), s, ltv, "2026-01-01")
    assert clv.model_name(clv.TRANSACTIONS, ltv) == "pareto_nbd+gamma_gamma"
    once = val.values[val.values.frequency == 0]
    assert len(once) and (once.p_alive < 1).all() and np.isfinite(val.total)


def test_refunds_and_first_day_customers_are_valued_not_dropped():
    ltv = LtvParams()
    s = _summary(3000, seed=8)
    models = clv.fit_transactions(s, ltv)
    odd = pd.DataFrame(
        {
            "frequency": [3, 2, 0],
            "recency": [10.0, 5.0, 0.0],
            "T": [20.0, 30.0, 0.0],
            "monetary": [-40.0, 0.0, 0.0],
        },
        index=pd.Index(["R1", "R2", "N1"], name="customer_id"),
    )
    val = clv.value_transactions(models, odd, ltv, "2026-01-01")
    assert val.info["spend_imputed"] == 2 and val.info["spend_imputed_negative"] == 1
    assert val.info["first_seen_last_day"] == 1
    assert val.values.loc[["R1", "R2"], "spend"].tolist() == pytest.approx(
        [models.population_spend] * 2
    )
    assert (val.values.clv > 0).all()
    assert val.values.loc["N1", "T"] == pytest.approx(1 / 7)
    # refunds outweighing purchases are never fitted: Gamma-Gamma would refuse them
    with_refunds = pd.concat([s, odd.iloc[:2]])
    assert clv.fit_transactions(with_refunds, ltv).spend.n_obs_ == models.spend.n_obs_


# --------------------------------------------------------------------------------------
# The whole chapter on generated data


@pytest.fixture(scope="module")
def demo_contractual(tmp_path_factory: pytest.TempPathFactory) -> Path:
    demo = pytest.importorskip("fupan.demo")
    out = tmp_path_factory.mktemp("demo_ct") / "data"
    demo.generate(out, customers=1500, seed=7, business_model="contractual")
    return out


def _review(
    folder: Path, data_dir: Path, extra: str = ""
) -> tuple[Dataset, pd.DataFrame, clv.Review]:
    ds = connect(folder, data_dir, extra=extra)
    status = churn_status(ds)
    return ds, status, clv.review(ds, status)


def _check_review(ds: Dataset, status: pd.DataFrame, rv: clv.Review) -> None:
    led = rv.ledger
    churned = led[led.churned & led.lost_ltv.notna()]
    snaps = rv.snapshots
    # each loss is valued at the last snapshot strictly before the churn date
    nxt = churned.loss_snapshot.map(lambda s: snaps[snaps.index(s) + 1])
    assert (churned.loss_snapshot < churned.churned_at).all()
    assert (churned.churned_at <= nxt).all()
    assert rv.loss.rate == pytest.approx(rv.loss.lost / rv.loss.base)
    assert 0 < rv.loss.lost < rv.loss.base
    active = set(status.customer_id[~status.churned])
    assert set(rv.current.index) <= active and (rv.current.clv >= 0).all()
    assert set(rv.not_valued) == active - set(rv.current.index)
    assert rv.valuations == len(snaps)


def test_review_on_demo_data_non_contractual(tmp_path, demo_small):
    ds, status, rv = _review(tmp_path, demo_small)
    assert (rv.kind, rv.model, rv.fallback) == (clv.TRANSACTIONS, "bgnbd+gamma_gamma", None)
    _check_review(ds, status, rv)
    m = rv.check.attrs
    assert abs(m["total_predicted"] / m["total_actual"] - 1) < 0.25  # the model check is sane
    record = clv.params_record(rv.now)
    assert set(record) == {"bgnbd", "gamma_gamma"} and set(record["bgnbd"]) == {
        "r",
        "alpha",
        "a",
        "b",
        "se",
    }


def test_review_on_demo_data_contractual_and_its_fallback(tmp_path, demo_contractual):
    ds, status, rv = _review(
        tmp_path / "a", demo_contractual, extra="business_model: contractual\n"
    )
    assert (rv.kind, rv.model, rv.fallback) == (clv.CONTRACTS, "sbg", None)
    _check_review(ds, status, rv)
    assert rv.check.attrs["decisions"] > 100
    assert abs(rv.check.attrs["total_predicted"] / rv.check.attrs["total_actual"] - 1) < 0.1
    assert set(clv.params_record(rv.now)["sbg"]) >= {clv.POOLED}
    # contractual without a contracts table: the transaction model, and it says so
    no_contracts = tmp_path / "nc"
    no_contracts.mkdir()
    for f in demo_contractual.iterdir():
        if f.name != "contracts.csv":
            (no_contracts / f.name).symlink_to(f)
    ds2 = connect(tmp_path / "b", no_contracts, extra="business_model: contractual\n")
    assert clv.choose_model(ds2.params, ds2) == (clv.TRANSACTIONS, "no_contracts")


def test_frames_read_with_engine_to_pandas_equal_ibis(tmp_path, demo_contractual, monkeypatch):
    """Chains, contract valuations and customer attributes read through
    ``fupan.io.engine.to_pandas`` are the frames Ibis' own ``to_pandas`` gave."""
    ds = connect(tmp_path, demo_contractual, extra="business_model: contractual\n")
    now = TS(ds.params.as_of) + pd.Timedelta(days=1)
    status = churn_status(ds)

    def frames():
        val = clv.value_contracts(ds, now, ds.params.ltv)
        return (
            clv.contract_chains(ds, now),
            val.values,
            val.chains,
            clv.customer_attributes(ds, status),
        )

    fast = frames()
    monkeypatch.setattr(engine, "to_pandas", lambda expr: expr.to_pandas())
    for got, want in zip(fast, frames(), strict=True):
        pd.testing.assert_frame_equal(got, want, check_exact=True)


def test_valuation_uses_nothing_dated_on_or_after_its_snapshot(tmp_path, demo_small):
    """Plant large orders dated on a snapshot: its valuation does not move; the next day's does."""
    snap = TS("2026-03-01")
    ds0 = connect(tmp_path / "a", demo_small)
    before = clv.Valuer(ds0, clv.TRANSACTIONS).valuation(snap).values
    planted = tmp_path / "planted"
    planted.mkdir()
    for f in demo_small.iterdir():
        if f.name != "orders.csv":
            (planted / f.name).symlink_to(f)
    orders = pd.read_csv(demo_small / "orders.csv", dtype=str)
    ids = sorted(before.index)[:50]
    extra = pd.DataFrame(
        {
            "order_id": [f"X{i}" for i in range(len(ids))],
            "customer_id": ids,
            "order_date": "2026-03-01",
            "amount": "250000",
            "category": "hardware",
        }
    )
    pd.concat([orders, extra]).to_csv(planted / "orders.csv", index=False)
    ds1 = connect(tmp_path / "b", planted)
    after = clv.Valuer(ds1, clv.TRANSACTIONS).valuation(snap).values
    pd.testing.assert_frame_equal(before, after)
    later0 = clv.transaction_summary(ds0, "2026-03-02", ds0.params.ltv).loc[ids]
    later1 = clv.transaction_summary(ds1, "2026-03-02", ds1.params.ltv).loc[ids]
    bought = ~later0.recency.eq(later0["T"])  # customers who had not bought on 2026-03-01 anyway
    assert (later1.frequency[bought] == later0.frequency[bought] + 1).all() and bought.sum() > 40


def test_valuer_summaries_equal_transaction_summary(tmp_path, demo_small):
    """The review's one-pass summaries are the per-date queries' frames, holdout included."""
    ds = connect(tmp_path, demo_small)
    ltv = ds.params.ltv
    snaps = clv.month_starts(ds.params.period_start, ds.params.as_of)
    valuer = clv.Valuer(ds, clv.TRANSACTIONS, snaps)
    for s in snaps:
        want = clv.transaction_summary(ds, s, ltv)
        pd.testing.assert_frame_equal(valuer.summary(s), want, check_exact=True)
        assert valuer.summary(s).attrs == want.attrs
    want = clv.transaction_summary(ds, snaps[0], ltv, holdout_end=snaps[-1])
    pd.testing.assert_frame_equal(valuer.summary(snaps[0], snaps[-1]), want, check_exact=True)
    other = TS("2026-02-11")  # not a snapshot: summarised on its own
    pd.testing.assert_frame_equal(
        valuer.summary(other), clv.transaction_summary(ds, other, ltv), check_exact=True
    )


# --------------------------------------------------------------------------------------
# The notebook, end to end

REQUIRED_KEYS = (
    "model",
    "params",
    "total_clv",
    "lost_ltv",
    "lost_ltv_rate",
    "benchmark_lost_ltv_rate",
    "at_risk_ltv",
    "top_lost_accounts",
    "lost_by_tier",
    "lost_by_reason",
    "lost_by_industry",
    "lost_by_cohort",
    "check",
)


@pytest.mark.slow
@pytest.mark.parametrize(("model", "lang"), [("non_contractual", "zh"), ("contractual", "en")])
def test_notebook_end_to_end(tmp_path, demo_small, demo_contractual, model, lang):
    from fupan.run import runner

    data_dir = demo_small if model == "non_contractual" else demo_contractual
    pf = tiny.params_file(
        tmp_path,
        data_dir,
        extra=f"business_model: {model}\nlang: {lang}\n",
        notebooks=("00_data_check", "03_ltv_loss"),
    )
    params = fparams.load(pf)
    run = runner.run(params, pf, reports_dir=tmp_path / "reports", log=lambda m: None)
    ltv = json.loads((run.run_dir / "results.json").read_text(encoding="utf-8"))["ltv"]
    assert not [k for k in REQUIRED_KEYS if ltv.get(k) is None]
    assert ltv["model"] == ("sbg" if model == "contractual" else "bgnbd+gamma_gamma")
    assert ltv["lost_ltv_rate"] == pytest.approx(ltv["lost_ltv"] / ltv["base_ltv"])
    assert ltv["benchmark_lost_ltv_rate"] == params.benchmarks.lost_ltv_rate
    assert sum(r["lost_ltv"] for r in ltv["lost_by_tier"]) == pytest.approx(ltv["lost_ltv"])
    assert 0 < len(ltv["top_lost_accounts"]) <= params.ltv.top_lost
    html = run.deck.read_text(encoding="utf-8")
    headline = i18n.Fmt(lang).money(ltv["lost_ltv"])
    assert headline in html  # the deck quotes the recorded figure
    assert (run.run_dir / "exports" / "ltv_period_ledger.csv").exists()
