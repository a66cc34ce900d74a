"""Pilot design (customers per arm, duration) and the go/no-go readout of a pilot's results."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from fupan.core.chapter_params import SimulationParams
from fupan.core.scenarios import (
    PilotEvidence,
)

# --------------------------------------------------------------------------------------
# Pilot design and readout


def _n_per_arm(p_control: float, p_treated: float, alpha: float, power: float) -> float | None:
    from statsmodels.stats.power import NormalIndPower
    from statsmodels.stats.proportion import proportion_effectsize

    h = abs(float(proportion_effectsize(p_treated, p_control)))
    if not np.isfinite(h) or h < 1e-6:
        return None
    n = NormalIndPower().solve_power(
        effect_size=h, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
    )
    return float(math.ceil(n))


def pilot_design(
    outcome: str,
    eligible: int,
    sp: SimulationParams,
    hazard0: np.ndarray | None = None,
    hazard1: np.ndarray | None = None,
    p_control: float | None = None,
    p_treated: float | None = None,
) -> dict[str, Any]:
    """Customers per arm to detect the predicted effect, and how long the pilot runs.

    Churn pilots: the rates over an ``m``-month window follow from each targeted customer's
    monthly hazard without (``hazard0``) and with (``hazard1``) the change; the pilot runs
    the shortest ``m`` (3 to ``pilot_max_months``) at which two arms fit in the ``eligible``
    customers. Win-back pilots compare the reactivation prior (``p_treated``) with the
    natural return rate (``p_control``) over ``winback_pilot_months``.

    Returns
    -------
    dict ``outcome, n_per_arm, months, feasible, eligible, p_control, p_treated,
    predicted_uplift, go_uplift, alpha, power``.
    """
    alpha, power = sp.alpha, sp.power
    out: dict[str, Any] = {
        "outcome": outcome,
        "eligible": int(eligible),
        "alpha": alpha,
        "power": power,
        "go_uplift": sp.go_uplift,
    }
    if outcome == "churn":
        assert hazard0 is not None and hazard1 is not None
        best = None
        for m in range(min(3, sp.pilot_max_months), sp.pilot_max_months + 1):
            p0 = float(np.mean(-np.expm1(-m * hazard0)))
            p1 = float(np.mean(-np.expm1(-m * hazard1)))
            n = _n_per_arm(p0, p1, alpha, power)
            best = (m, p0, p1, n)
            if n is not None and 2 * n <= eligible:
                break
        assert best is not None
        m, p0, p1, n = best
        uplift = (p0 - p1) / p0 if p0 > 0 else None
    else:
        m = sp.winback_pilot_months
        p0, p1 = float(p_control or 0.0), float(p_treated or 0.0)
        n = _n_per_arm(p0, p1, alpha, power)
        uplift = (p1 - p0) / p0 if p0 > 0 else None
    out.update(
        n_per_arm=None if n is None else int(n),
        months=int(m),
        feasible=bool(n is not None and 2 * n <= eligible),
        p_control=p0,
        p_treated=p1,
        predicted_uplift=uplift,
    )
    return out


def readout(
    pilot: PilotEvidence | Mapping[str, Any],
    outcome: str = "churn",
    go_uplift: float = 0.20,
    alpha: float = 0.05,
) -> dict[str, Any]:
    """Test a pilot against the go/no-go rule.

    Parameters
    ----------
    pilot : ``treated, treated_events, control, control_events`` (churned customers for a
        churn pilot, reactivated ones for a win-back).
    outcome : ``churn`` (lower is better) or ``reactivation`` (higher is better).
    go_uplift : roll out when the relative improvement is at least this (0.20 = 20%).
    alpha : two-sided significance level; the uplift interval has coverage 1 - alpha.

    Returns
    -------
    dict ``treated_rate, control_rate, uplift, uplift_low, uplift_high, p_value, decision``
    with decision ``go`` (improvement >= the rule and significant), ``no_go`` (the whole
    interval below the rule) or ``extend`` (inconclusive: run longer or larger).
    """
    from scipy import stats
    from statsmodels.stats.proportion import proportions_ztest

    p = pilot if isinstance(pilot, PilotEvidence) else PilotEvidence.model_validate(dict(pilot))
    if outcome not in ("churn", "reactivation"):
        raise ValueError("outcome must be 'churn' or 'reactivation'")
    nt, kt, nc, kc = p.treated, p.treated_events, p.control, p.control_events
    pt, pc = kt / nt, kc / nc
    if kt + kc == 0 or kt + kc == nt + nc:
        p_value = 1.0
    else:
        p_value = float(proportions_ztest([kt, kc], [nt, nc], alternative="two-sided")[1])
    # Katz interval for the risk ratio (0.5 added to every cell when one is empty).
    add = 0.5 if min(kt, kc, nt - kt, nc - kc) == 0 else 0.0
    a, b = kt + add, kc + add
    n1, n2 = nt + 2 * add, nc + 2 * add
    rr = (a / n1) / (b / n2)
    se = math.sqrt(max(1 / a - 1 / n1 + 1 / b - 1 / n2, 0.0))
    z = float(stats.norm.ppf(1 - alpha / 2))
    lo, hi = rr * math.exp(-z * se), rr * math.exp(z * se)
    if outcome == "churn":
        uplift, u_lo, u_hi = 1 - rr, 1 - hi, 1 - lo
        better = pt < pc
    else:
        uplift, u_lo, u_hi = rr - 1, lo - 1, hi - 1
        better = pt > pc
    if better and uplift >= go_uplift and p_value < alpha:
        decision = "go"
    elif u_hi < go_uplift:
        decision = "no_go"
    else:
        decision = "extend"
    return {
        "outcome": outcome,
        "treated_rate": pt,
        "control_rate": pc,
        "uplift": uplift,
        "uplift_low": u_lo,
        "uplift_high": u_hi,
        "p_value": p_value,
        "decision": decision,
        "go_uplift": go_uplift,
        "alpha": alpha,
    }


def _pilot_hr_draws(
    p: PilotEvidence, rng: np.random.Generator, size: int
) -> tuple[float, np.ndarray]:
    """Point and drawn hazard ratios of a churn pilot (Jeffreys Beta posteriors per arm)."""

    def hr(pt: np.ndarray | float, pc: np.ndarray | float) -> np.ndarray:
        return np.log1p(-np.asarray(pt)) / np.log1p(-np.asarray(pc))

    jt = (p.treated_events + 0.5) / (p.treated + 1.0)
    jc = (p.control_events + 0.5) / (p.control + 1.0)
    dt_ = rng.beta(p.treated_events + 0.5, p.treated - p.treated_events + 0.5, size)
    dc = rng.beta(p.control_events + 0.5, p.control - p.control_events + 0.5, size)
    return float(hr(jt, jc)), hr(dt_, dc)
