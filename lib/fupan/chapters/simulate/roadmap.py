"""The phased roadmap (pilot -> rollout -> standardise) and what the funded scenarios add up to."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from fupan.core.chapter_params import SimulationParams

# ---- ranking and roadmap -----------------------------------------------------------------

_ROADMAP_COLUMNS = [
    "name",
    "phase",
    "wave",
    "pilot_start",
    "pilot_end",
    "rollout_start",
    "standardise_start",
]

# --------------------------------------------------------------------------------------
# Roadmap


def roadmap(table: pd.DataFrame, sp: SimulationParams) -> pd.DataFrame:
    """Phase each scenario: pilot -> rollout -> standardise, in waves by evidence and ROI.

    * ``hold``: even the upper end of the ROI interval is at or below zero: not funded.
    * ``rollout``: the effect rests on a pilot and the whole ROI interval is above zero.
    * ``pilot``: the ROI interval is above zero but the effect rests on the observational
      model (or a prior): confirm it in a pilot first (wave 1).
    * ``evaluate``: the ROI interval includes zero: pilot after wave 1, when its results
      are known.

    Returns
    -------
    DataFrame per scenario (ranked order kept): ``name, phase, wave, pilot_start, pilot_end,
    rollout_start, standardise_start`` in months from the start of the programme (NaN when a
    step does not apply).
    """
    rows = []
    for r in table.itertuples():
        roi, lo, hi = r.roi, r.roi_low, r.roi_high
        if roi is None or (isinstance(roi, float) and math.isnan(roi)) or not (hi > 0):
            phase = "hold"
        elif r.effect_source == "pilot" and lo > 0:
            phase = "rollout"
        elif lo > 0:
            phase = "pilot"
        else:
            phase = "evaluate"
        months = r.pilot_months if r.pilot_months == r.pilot_months else sp.pilot_max_months
        rows.append({"name": r.name, "phase": phase, "pilot_months": float(months)})
    df = pd.DataFrame(rows, columns=["name", "phase", "pilot_months"])
    wave1_end = (
        float(df.loc[df.phase == "pilot", "pilot_months"].max())
        if (df.phase == "pilot").any()
        else 0.0
    )
    out = []
    for r in df.itertuples():
        nan = float("nan")
        if r.phase == "hold":
            out.append((r.name, r.phase, nan, nan, nan, nan, nan))
        elif r.phase == "rollout":
            out.append((r.name, r.phase, 0.0, nan, nan, 0.0, float(sp.rollout_months)))
        else:
            start = 0.0 if r.phase == "pilot" else wave1_end
            wave = 1.0 if r.phase == "pilot" else 2.0
            end = start + r.pilot_months
            out.append((r.name, r.phase, wave, start, end, end, end + sp.rollout_months))
    return pd.DataFrame(out, columns=_ROADMAP_COLUMNS)


def funded_totals(table: pd.DataFrame) -> dict[str, Any]:
    """What the funded scenarios (roadmap phase other than ``hold``) add up to.

    The overview's tiles quote these sums and its table lists every scenario with its
    phase, so a tile equals the table's figures for the scenarios it names.

    Returns
    -------
    dict ``n, names, customers_kept, ltv_retained, cost`` (sums over the funded scenarios).
    """
    funded = table[table.phase != "hold"] if len(table) else table
    return {
        "n": len(funded),
        "names": list(funded.name) if len(funded) else [],
        "customers_kept": float(funded.customers_kept.sum()) if len(funded) else 0.0,
        "ltv_retained": float(funded.ltv_retained.sum()) if len(funded) else 0.0,
        "cost": float(funded.cost.sum()) if len(funded) else 0.0,
    }
