"""The churn model fitted on this dataset, and what it rests on (:class:`ModelInfo`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fupan.chapters.simulate.common import (
    MIN_EVENTS,
    MONTHS_PER_YEAR,
    SimulationError,
    _mean_by,
    _q,
    _seed,
)
from fupan.chapters.simulate.hazard import HazardModel, _fit_hazard
from fupan.chapters.simulate.result import ModelInfo
from fupan.chapters.simulate.snapshots import (
    _feature_table,
    _fit_pairs,
    _with_features,
    fit_dates,
    outcomes_known_until,
)
from fupan.io import engine
from fupan.io.dataset import Dataset
from fupan.measures import features as F
from fupan.measures import metrics


@dataclass
class _Fit:
    model: HazardModel
    frame: pd.DataFrame
    dates: list[pd.Timestamp]
    known: pd.Timestamp
    numeric: list[str]
    categorical: list[str]
    coef: np.ndarray  # the slope fit's [intercept, *slopes], before calibration


def _fit(
    ds: Dataset,
    status: pd.DataFrame,
    names: list[str],
    pairs: pd.DataFrame | None = None,
    table: pd.DataFrame | None = None,
) -> _Fit:
    """The churn model; ``pairs`` (:func:`_fit_pairs`) and a feature ``table`` holding
    them when the caller already has them."""
    P = ds.params
    sp = P.simulation
    kinds = F.kinds(names)
    numeric = [n for n in names if kinds[n] != "categorical"]
    categorical = [n for n in names if kinds[n] == "categorical"]
    known = outcomes_known_until(P, ds)
    dates = fit_dates(known, sp.fit_months)
    if pairs is None:
        pairs = _fit_pairs(status, dates, sp.max_fit_customers, P.seed)
    if table is None:
        table = _feature_table(ds, pairs, names)
    frame = _with_features(pairs, table, names)
    if not (status.source == "recorded").any():
        frame["exact"] = True  # no recorded churn: every churn is dated by the same rule
    events = int(frame["label"].sum()) if len(frame) else 0
    if events < MIN_EVENTS:
        end = (dates[-1] + pd.DateOffset(months=1)).date()
        raise SimulationError(
            f"only {events} churns in the {len(dates)} months whose outcomes are fully known "
            f"({dates[0].date()} to {end}); at least {MIN_EVENTS} are needed to fit the churn "
            "model: use a longer history or fewer fit months (simulation.fit_months)"
        )
    model, coef = _fit_hazard(frame, numeric, categorical)
    return _Fit(model, frame, dates, known, numeric, categorical, coef)


def _sample_ids(ids: np.ndarray, n: int, seed: int) -> np.ndarray:
    if len(ids) <= n:
        return ids
    return np.sort(_seed(seed, "sample").choice(np.sort(ids), size=n, replace=False))


def _check_sample(live: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The live customers whose projection checks the model's level (a seeded sample)."""
    ids = _sample_ids(live.customer_id.to_numpy(), 20_000, seed)
    return live[engine.isin(live.customer_id, ids)][["customer_id", "acquired_at"]]


def _model_info(
    ds: Dataset,
    fit: _Fit,
    status: pd.DataFrame,
    tl: pd.DataFrame,
    eff_reps: list[np.ndarray],
    level: float,
) -> ModelInfo:
    """``tl``: trajectories (:func:`trajectories`) of the check sample (:func:`_check_sample`)."""
    P = ds.params
    m = fit.model
    per_unit = m.per_unit()
    arr = np.vstack(eff_reps) if eff_reps else np.full((1, len(per_unit)), np.nan)
    bounds = [_q(arr[:, j], level) for j in range(len(per_unit))]
    effects = pd.DataFrame(
        {
            "column": per_unit.index,
            "feature": [m.design.feature_of_[c] for c in per_unit.index],
            "log_hr_per_unit": per_unit.to_numpy(),
            "low": [b[0] for b in bounds],
            "high": [b[1] for b in bounds],
        }
    )
    as_of = pd.Timestamp(P.as_of).normalize()
    obs = metrics.annual_churn(status, as_of)  # the catalogue's annual churn
    # The projection of the whole live base (a seeded sample of a large one), beside what
    # the shared definition measured over the last year: a check of the model's level.
    pred = float("nan")
    if len(tl):
        codes, uniq = pd.factorize(tl.customer_id)
        lam = _mean_by(codes, m.hazard(m.matrix(tl)), len(uniq))
        pred = float(np.mean(-np.expm1(-MONTHS_PER_YEAR * lam)))
    fr = fit.frame
    return ModelInfo(
        fit_start=fit.dates[0],
        fit_end=fit.dates[-1] + pd.DateOffset(months=1),
        known_until=fit.known,
        rows=len(fr),
        customers=int(fr.customer_id.nunique()),
        events=int(fr.label.sum()),
        slope_rows=int(fr.exact.sum()),
        inferred_left_out=int(fr.loc[~fr.exact, "customer_id"].nunique()),
        features=list(m.design.features()),
        effects=effects,
        predicted_annual_churn=pred,
        observed_annual_churn=obs["rate"],
    )
