"""One retention scenario's projection: hazards without and with the change, the expected
metrics and one realised draw (common random numbers)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fupan.chapters.simulate.common import MONTHS_PER_YEAR, _mean_by, _money
from fupan.chapters.simulate.hazard import HazardModel
from fupan.core.scenarios import (
    Scenario,
)

# ---- retention scenarios ---------------------------------------------------------------


@dataclass
class _Retention:
    """One retention scenario's projection inputs (fixed across replicates)."""

    scenario: Scenario
    ids: np.ndarray  # targeted customers, sorted
    codes: np.ndarray  # trajectory row -> position in ids
    rows: np.ndarray  # the rows' positions in the baseline matrix
    moved: np.ndarray  # the rows (positions in ``rows``) the change moves
    Z1: np.ndarray  # their changed design rows
    clv: np.ndarray
    margin: np.ndarray  # annual margin per customer
    cost: float
    years: float
    extra_touches: float  # a year, all targeted customers

    def hazards(
        self, model: HazardModel, h0: np.ndarray, hr: float | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Each customer's mean monthly hazard without and with the change.

        ``h0`` is ``model.hazard`` of every baseline row (computed once for all scenarios);
        rows the change leaves as they were keep their hazard.
        """
        n = len(self.ids)
        h = h0[self.rows]
        lam0 = _mean_by(self.codes, h, n)
        if hr is not None:  # the effect rests on a pilot's hazard ratio
            return lam0, lam0 * hr
        h[self.moved] = model.hazard(self.Z1)
        return lam0, _mean_by(self.codes, h, n)


def _expected(
    r: _Retention,
    lam0: np.ndarray,
    lam1: np.ndarray,
    value_scale: float = 1.0,
    cost_scale: float = 1.0,
) -> dict[str, float]:
    """Expected metrics: churn a year, survival over the horizon, money."""
    p0 = -np.expm1(-MONTHS_PER_YEAR * lam0)
    p1 = -np.expm1(-MONTHS_PER_YEAR * lam1)
    h = MONTHS_PER_YEAR * r.years
    kept = np.exp(-h * lam1) - np.exp(-h * lam0)
    out = {"churn_before": float(p0.mean()), "churn_after": float(p1.mean())}
    out["churn_change"] = out["churn_after"] - out["churn_before"]
    out.update(_money(kept, p0 - p1, r.clv, r.margin, r.cost * cost_scale, value_scale))
    return out


def _realised(r: _Retention, lam0: np.ndarray, lam1: np.ndarray, u: np.ndarray) -> dict:
    """One draw of what the change would realise: each customer's fate with and without it
    decided by the same uniform ``u`` (common random numbers)."""
    h = MONTHS_PER_YEAR * r.years
    c0 = u < -np.expm1(-MONTHS_PER_YEAR * lam0)
    c1 = u < -np.expm1(-MONTHS_PER_YEAR * lam1)
    kept = (u < -np.expm1(-h * lam0)).astype(float) - (u < -np.expm1(-h * lam1))
    out = {"churn_before": float(c0.mean()), "churn_after": float(c1.mean())}
    out["churn_change"] = out["churn_after"] - out["churn_before"]
    out.update(_money(kept, c0.astype(float) - c1, r.clv, r.margin, r.cost))
    return out
