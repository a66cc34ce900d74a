"""Who a scenario targets: tiers, health bands, segments, re-tiering."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters.simulate.common import SimulationError
from fupan.core.scenarios import (
    Scenario,
)
from fupan.io import engine
from fupan.io.dataset import Dataset

# ---- targets -----------------------------------------------------------------------------


def _customer_frame(ds: Dataset) -> pd.DataFrame:
    c = ds["customers"]
    out = engine.to_pandas(c).sort_values("customer_id", kind="stable").reset_index(drop=True)
    if "tier" not in out:  # a transaction log assigns no tier
        out["tier"] = None
    return out


def _select(base: pd.DataFrame, scenario: Scenario, order: Sequence[str]) -> np.ndarray:
    """Which rows of ``base`` a scenario targets (re-tiering: only customers whose spend
    earns a better tier than the one assigned)."""
    t = scenario.target
    keep = np.ones(len(base), bool)
    if t.tiers:
        keep &= base["tier"].isin(t.tiers).to_numpy()
    if t.health_bands:
        keep &= base["band"].isin(t.health_bands).to_numpy()
    for col, values in t.segments.items():
        if col not in base.columns:
            raise SimulationError(
                f"scenario '{scenario.name}': segment column '{col}' is not in the customers table"
            )
        keep &= base[col].astype(str).isin([str(v) for v in values]).to_numpy()
    if scenario.change.retier:
        rank = {x: i for i, x in enumerate(order)}
        better = [
            r in rank and a in rank and rank[r] < rank[a]
            for r, a in zip(base["recommended"], base["tier"], strict=True)
        ]
        keep &= np.asarray(better, bool)
    return keep


def _health_bands(model: Any, feats: pd.DataFrame) -> pd.Series:
    """Chapter 2's learned health band (``model``: :func:`fupan.chapters.atrisk.train`) of each
    customer in ``feats`` (one row per customer, features as of the projection date)."""
    return pd.Series(model.band(feats), index=feats.customer_id.to_numpy())


def _recommended(ds: Dataset, now: pd.Timestamp) -> pd.Series:
    """The tier each customer's trailing-12-month spend earns (chapter 1's re-tiering rule)."""
    from fupan.measures import segments

    feats = segments.customer_features_as_of(
        ds, (now - pd.Timedelta(days=1)).date(), engagement=False
    )
    rt = segments.retier(feats, ds.params)
    return pd.Series(rt.recommended.to_numpy(), index=rt.customer_id.to_numpy())
