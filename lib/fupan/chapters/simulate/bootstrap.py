"""Uncertainty: bootstrap refits on resampled customers, each replicate re-projected and its
fates drawn."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from fupan.chapters.simulate.common import _in_order, _Run, _seed
from fupan.chapters.simulate.hazard import _Refit
from fupan.chapters.simulate.model import _Fit
from fupan.chapters.simulate.pilots import _pilot_hr_draws
from fupan.chapters.simulate.projection import _expected, _realised, _Retention
from fupan.core import progress


@dataclass
class _Replicates:
    """The bootstrap's answers: point hazards, then per replicate and scenario the
    expected and the realised metrics, and the model's per-unit effects."""

    point: dict[str, tuple[np.ndarray, np.ndarray]]
    expected: dict[str, list[dict]]
    realised: dict[str, list[dict]]
    effects: list[np.ndarray]


def _bootstrap(run: _Run, fit: _Fit, packs: list[_Retention], Z0: np.ndarray) -> _Replicates:
    """Customers resampled (all their snapshots), the model refitted and recalibrated, the
    targets re-projected; each replicate also draws every targeted customer's fate with and
    without the change from one uniform (chance)."""
    P, B, model = run.P, run.B, fit.model
    hr_draws: dict[str, tuple[float, np.ndarray]] = {
        p.scenario.name: _pilot_hr_draws(
            p.scenario.pilot, _seed(P.seed, "pilot", p.scenario.name), B
        )
        for p in packs
        if p.scenario.pilot is not None
    }
    h0 = model.hazard(Z0)
    point = {
        p.scenario.name: p.hazards(
            model, h0, hr_draws[p.scenario.name][0] if p.scenario.name in hr_draws else None
        )
        for p in packs
    }
    from fupan.models.health import cluster_bootstrap_weights

    realised: dict[str, list[dict]] = {p.scenario.name: [] for p in packs}
    expected: dict[str, list[dict]] = {p.scenario.name: [] for p in packs}
    fates = {p.scenario.name: _seed(P.seed, "fate", p.scenario.name) for p in packs}
    eff_reps: list[np.ndarray] = []
    sd = model.design.sd_[model.design.columns_].to_numpy(dtype=float)
    refit = _Refit(fit.frame, model, fit.coef, model.matrix(fit.frame))
    weights = cluster_bootstrap_weights(fit.frame.customer_id.to_numpy(), B, P.seed)

    def replicate(b: int, w: np.ndarray) -> tuple[np.ndarray, list[tuple]]:
        mb = refit.fit(w)
        hb = mb.hazard(Z0)
        lams = []
        for p in packs:
            name = p.scenario.name
            lams.append(p.hazards(mb, hb, hr_draws[name][1][b] if name in hr_draws else None))
        return mb.beta / sd, lams  # per unit, as HazardModel.per_unit

    with threadpool_limits(limits=1):  # once: entering it costs ~15 ms
        refits = _in_order(replicate, enumerate(weights))
        for eff, lams in progress.bar(refits, "bootstrap refits", total=B, unit="refit"):
            eff_reps.append(eff)
            for p, (lam0, lam1) in zip(packs, lams, strict=True):
                name = p.scenario.name
                u = fates[name].random(len(p.ids))  # drawn in replicate order
                expected[name].append(_expected(p, lam0, lam1))
                realised[name].append(_realised(p, lam0, lam1, u))
    return _Replicates(point, expected, realised, eff_reps)
