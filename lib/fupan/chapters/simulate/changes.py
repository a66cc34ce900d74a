"""What a scenario changes: the lever features of the targeted customers' months."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fupan.core.scenarios import (
    Scenario,
)


@dataclass
class Policy:
    """Service policy by tier (from benchmarks) and each customer's recommended tier."""

    order: list[str]
    sla: dict[str, float]
    touches: dict[str, float]
    recommended: pd.Series | None = None  # customer_id -> tier code


def apply_change(
    traj: pd.DataFrame, scenario: Scenario, tiers: pd.Series, policy: Policy
) -> tuple[pd.DataFrame, np.ndarray]:
    """The trajectory rows with the scenario's change applied, and extra touches per row.

    Parameters
    ----------
    traj : trajectory rows of the targeted customers (:func:`trajectories`).
    tiers : customer_id -> assigned tier.
    policy : the tiers' SLA and touch policy; ``recommended`` tiers for re-tiering.

    Returns
    -------
    (changed copy, extra touches a quarter per row). A missing value stays missing: the
    model imputes it as it did before the change, so the change does not move it.
    """
    ch = scenario.change
    out = traj.copy()
    tier = traj["customer_id"].map(tiers).to_numpy(dtype=object)
    n = len(out)
    before_touch = (
        out["touches_90d"].to_numpy(dtype=float).copy() if "touches_90d" in out else np.zeros(n)
    )

    def lookup(values: dict[str, float], codes: np.ndarray) -> np.ndarray:
        return np.array([values.get(c, np.nan) for c in codes], dtype=float)

    if ch.first_response_days is not None:
        cap = (
            lookup(policy.sla, tier)
            if ch.first_response_days == "tier_sla"
            else np.full(n, float(ch.first_response_days))
        )
        x = out["median_first_response_days"].to_numpy(dtype=float)
        out["median_first_response_days"] = np.where(np.isnan(cap), x, np.minimum(x, cap))
    if ch.touches_per_quarter is not None:
        floor = (
            lookup(policy.touches, tier)
            if ch.touches_per_quarter == "tier_policy"
            else np.full(n, float(ch.touches_per_quarter))
        )
        x = out["touches_90d"].to_numpy(dtype=float)
        out["touches_90d"] = np.where(np.isnan(floor), x, np.maximum(x, floor))
    if ch.extra_touches_per_quarter is not None:
        out["touches_90d"] = out["touches_90d"] + float(ch.extra_touches_per_quarter)
    if ch.retier:
        if policy.recommended is None:
            raise ValueError("re-tiering needs each customer's recommended tier")
        rec = traj["customer_id"].map(policy.recommended).to_numpy(dtype=object)
        rank = {t: i for i, t in enumerate(policy.order)}
        better = np.array(
            [r in rank and t in rank and rank[r] < rank[t] for r, t in zip(rec, tier, strict=True)]
        )
        cap = np.where(better, lookup(policy.sla, rec), np.nan)
        x = out["median_first_response_days"].to_numpy(dtype=float)
        out["median_first_response_days"] = np.where(np.isnan(cap), x, np.minimum(x, cap))
        floor = np.where(better, lookup(policy.touches, rec), np.nan)
        x = out["touches_90d"].to_numpy(dtype=float)
        out["touches_90d"] = np.where(np.isnan(floor), x, np.maximum(x, floor))
    after_touch = out["touches_90d"].to_numpy(dtype=float) if "touches_90d" in out else np.zeros(n)
    extra = np.nan_to_num(after_touch - before_touch, nan=0.0)
    return out, np.maximum(extra, 0.0)
