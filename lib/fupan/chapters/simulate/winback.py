"""Pricing the win-back scenarios: who was lost, the offer against the natural return, on the
prior or a pilot."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fupan.chapters.simulate.common import _money, _Priced, _row, _Run, _seed, _sensitivity
from fupan.chapters.simulate.pilots import pilot_design
from fupan.chapters.simulate.snapshots import effective_churn_dates
from fupan.chapters.simulate.targets import _select
from fupan.chapters.simulate.values import _amount, _Costs, annuity, natural_return, spend_before
from fupan.core.scenarios import (
    DEFAULT_COST_SHARES,
    Scenario,
)
from fupan.io.dataset import Dataset
from fupan.measures import metrics

# ---- win-back ----------------------------------------------------------------------------


@dataclass
class _WinBack:
    scenario: Scenario
    frame: pd.DataFrame  # per targeted lost customer
    rate: float  # reactivation with the offer (prior or pilot)
    natural: float  # without it (observed natural return rate, or the pilot's control)
    cost: float
    years: float
    costs: _Costs | None = None

    @property
    def contacted(self) -> pd.DataFrame:
        return self.frame[self.frame.contacted]


def _wb_expected(
    w: _WinBack, rate: float, natural: float, value_scale: float = 1.0, cost_scale: float = 1.0
) -> dict[str, float]:
    c = w.contacted
    inc = rate - natural
    share = inc * len(c) / max(len(w.frame), 1)
    out = {"churn_before": 1.0, "churn_after": 1.0 - share, "churn_change": -share}
    kept = np.full(len(c), inc)
    out.update(
        _money(
            kept,
            kept,
            c.value_if_back.to_numpy(),
            c.margin.to_numpy(),
            w.cost * cost_scale,
            value_scale,
        )
    )
    return out


def _wb_realised(w: _WinBack, rate: float, natural: float, u: np.ndarray) -> dict[str, float]:
    c = w.contacted
    kept = (u < rate).astype(float) - (u < natural)  # back with the offer, minus back anyway
    share = float(kept.sum()) / max(len(w.frame), 1)
    out = {"churn_before": 1.0, "churn_after": 1.0 - share, "churn_change": -share}
    out.update(_money(kept, kept, c.value_if_back.to_numpy(), c.margin.to_numpy(), w.cost))
    return out


def _winback_pack(
    ds: Dataset,
    s: Scenario,
    pool: pd.DataFrame,
    eff: pd.Series,
    natural: float,
    annuity_years: float,
) -> _WinBack | None:
    """Value each targeted lost customer, drop those worth less than their cost."""
    P = ds.params
    wbp = s.change.winback
    assert wbp is not None
    tgt = pool[_select(pool, s, P.tiers.order)].reset_index(drop=True) if len(pool) else pool
    if tgt.empty:
        return None
    if s.pilot is not None:
        # the pilot's arms replace both the prior and the natural return rate
        rate = (s.pilot.treated_events + 0.5) / (s.pilot.treated + 1.0)
        nat = (s.pilot.control_events + 0.5) / (s.pilot.control + 1.0)
    else:
        rate, nat = wbp.reactivation_rate, natural
    ends = pd.Series(eff.reindex(tgt.customer_id).to_numpy(), index=tgt.customer_id.to_numpy())
    spend = spend_before(ds, ends).clip(lower=0.0).to_numpy(dtype=float)
    margin = P.ltv.margin * spend
    years = float(s.horizon_years or P.simulation.horizon_years)
    # Amounts left out of the file scale with these customers' own spend (their last year as
    # customers): an offer is a share of the median; no yearly service cost for the lost.
    basis: dict[str, str] = {}
    offer = _amount(
        wbp.offer_cost, DEFAULT_COST_SHARES["offer_cost"] * float(np.median(spend)), "offer", basis
    )
    per_customer = _amount(s.cost.per_customer, 0.0, "per_customer", basis)
    frame = pd.DataFrame(
        {
            "customer_id": tgt.customer_id.to_numpy(),
            "tier": tgt.tier.to_numpy(),
            "churned_at": pd.to_datetime(tgt.churned_at).to_numpy(),
            "annual_spend": spend,
            "margin": margin,
            "value_if_back": margin * annuity_years,
        }
    )
    frame["expected_value"] = max(rate - nat, 0.0) * frame.value_if_back
    frame["cost"] = offer + years * per_customer
    # a customer worth nothing is never contacted, even by a free offer
    frame["contacted"] = (frame.expected_value >= frame.cost) & (frame.expected_value > 0)
    n = int(frame.contacted.sum())
    contacted_spend = float(frame.loc[frame.contacted, "annual_spend"].sum())
    fixed = _amount(s.cost.fixed, DEFAULT_COST_SHARES["fixed"] * contacted_spend, "fixed", basis)
    costs = _Costs(per_customer=per_customer, per_touch=0.0, fixed=fixed, offer=offer, basis=basis)
    cost = fixed + n * (offer + years * per_customer)
    return _WinBack(s, frame, float(rate), float(nat), float(cost), years, costs)


# ---- win-back ----------------------------------------------------------------------------


@dataclass
class _Lost:
    """What every win-back scenario shares: the lost customers, their natural return and
    how many years a customer won back is worth."""

    eff: pd.Series  # effective churn dates
    natural: float
    natural_n: int
    natural_basis: str
    years_value: float
    lost: pd.DataFrame  # churned customers with ``churned_at``


def _price_winback(run: _Run, scenarios: list[Scenario], out: _Priced) -> None:
    """Price the win-back scenarios: offer against natural return, on the prior or a pilot."""
    if not scenarios:
        return
    lost = _lost(run, scenarios)
    for s in scenarios:
        w = _winback_offer(run, s, lost, out)
        if w is not None:
            _winback_row(run, s, w, lost, out)


def _lost(run: _Run, scenarios: list[Scenario]) -> _Lost:
    P, status, as_of = run.P, run.status, run.as_of
    eff = effective_churn_dates(status)
    within = max(s.target.lost_within_days for s in scenarios)
    natural, natural_n, natural_basis = natural_return(run.ds, status, as_of, within)
    base_churn = metrics.annual_churn(status, as_of)["rate"]  # the catalogue's
    base_churn = base_churn if np.isfinite(base_churn) else 0.0
    years_value = annuity(P.ltv.horizon_years, base_churn, P.ltv.discount_rate_annual)
    lost = run.cust.merge(
        status.loc[status.churned, ["customer_id", "churned_at"]], on="customer_id"
    )
    return _Lost(eff, natural, natural_n, natural_basis, years_value, lost)


def _winback_offer(run: _Run, s: Scenario, lost: _Lost, out: _Priced) -> _WinBack | None:
    """The scenario's targets and economics; None (skipped) when there is no one to win
    back, no uplift over the natural return, no one worth the offer, or no cost."""
    since = run.as_of - pd.Timedelta(days=s.target.lost_within_days)
    pool = lost.lost[pd.to_datetime(lost.lost.churned_at) > since].reset_index(drop=True)
    w = _winback_pack(run.ds, s, pool, lost.eff, lost.natural, lost.years_value)
    if w is None:
        out.skip(s, "no_targets")
        return None
    if not w.rate > w.natural:
        out.skip(s, "no_uplift", rate=w.rate, natural=w.natural)
        return None
    if not w.frame.contacted.any():
        assert w.costs is not None
        out.skip(
            s,
            "none_worth",
            targets=len(w.frame),
            best_value=float(w.frame.expected_value.max()),
            offer=w.costs.offer,
        )
        return None
    if not w.cost > 0:
        out.skip(s, "zero_cost")
        return None
    return w


def _winback_rates(run: _Run, s: Scenario, w: _WinBack) -> tuple[np.ndarray, np.ndarray]:
    """Replicates of the reactivation rate with and without the offer: the pilot's arms'
    Beta posteriors, else the prior (a Beta worth ``prior_customers``) against the
    observed natural return."""
    B = run.B
    rng = _seed(run.P.seed, "winback", s.name)
    if s.pilot is not None:
        pv = s.pilot
        rates = rng.beta(pv.treated_events + 0.5, pv.treated - pv.treated_events + 0.5, B)
        nats = rng.beta(pv.control_events + 0.5, pv.control - pv.control_events + 0.5, B)
    else:
        wbp = s.change.winback
        assert wbp is not None
        a = wbp.reactivation_rate * wbp.prior_customers
        rates = rng.beta(a, wbp.prior_customers - a, B)
        nats = np.full(B, w.natural)
    return rates, nats


def _winback_row(run: _Run, s: Scenario, w: _WinBack, lost: _Lost, out: _Priced) -> None:
    """A priced win-back's row, draws, pilot design, per-customer table, sensitivity."""
    sp = run.sp
    m0 = _wb_expected(w, w.rate, w.natural)
    rates, nats = _winback_rates(run, s, w)
    fate = _seed(run.P.seed, "fate", s.name)
    n_c = len(w.contacted)
    rep = pd.DataFrame(
        [
            _wb_realised(w, float(r), float(n), fate.random(n_c))
            for r, n in zip(rates, nats, strict=True)
        ]
    )
    exp_ = pd.DataFrame(
        [_wb_expected(w, float(r), float(n)) for r, n in zip(rates, nats, strict=True)]
    )
    out.draws[s.name] = rep
    source = "pilot" if s.pilot is not None else "prior"
    row = _row(s, source, len(w.frame), m0, rep, exp_, sp.interval, w.years)
    design = pilot_design("reactivation", n_c, sp, p_control=w.natural, p_treated=w.rate)
    out.pilots.append({"name": s.name, **design})
    row.update(
        pilot_n_per_arm=design["n_per_arm"],
        pilot_months=design["months"],
        extra_touches_per_year=0.0,
        contacted=n_c,
        excluded=int(len(w.frame) - n_c),
        natural_return_rate=w.natural,
        natural_return_customers=lost.natural_n,
        natural_return_basis=lost.natural_basis,
        reactivation_rate=w.rate,
        value_years=lost.years_value,
        offer_cost=w.costs.offer if w.costs is not None else float("nan"),
        **(w.costs.record() if w.costs is not None else {}),
    )
    out.rows.append(row)
    out.winback[s.name] = w.frame
    out.per_customer[s.name] = w.frame

    def roi_wb(mult: float, cost_scale: float = 1.0, value_scale: float = 1.0) -> float:
        rate = w.natural + mult * (w.rate - w.natural)
        return _wb_expected(w, rate, w.natural, value_scale, cost_scale)["roi"]

    out.sens.append(_sensitivity(s.name, roi_wb, m0["roi"], *run.effect_range))
