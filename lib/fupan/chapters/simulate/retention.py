"""Pricing the retention scenarios: who is targeted, the model's features, the projection
of their coming year, the bootstrap, and each scenario's row."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from fupan.chapters.simulate.bootstrap import _bootstrap, _Replicates
from fupan.chapters.simulate.changes import Policy, apply_change
from fupan.chapters.simulate.common import (
    _ID,
    MONTHS_PER_YEAR,
    QUARTERS_PER_YEAR,
    SimulationError,
    _mean_by,
    _Priced,
    _row,
    _Run,
    _sensitivity,
)
from fupan.chapters.simulate.hazard import HazardModel
from fupan.chapters.simulate.model import _check_sample, _Fit, _fit, _model_info
from fupan.chapters.simulate.pilots import pilot_design
from fupan.chapters.simulate.projection import _expected, _Retention
from fupan.chapters.simulate.snapshots import (
    _feature_table,
    _fit_pairs,
    _more_features,
    _ns,
    _trajectory_pairs,
    _with_features,
    fit_dates,
    outcomes_known_until,
)
from fupan.chapters.simulate.targets import _health_bands, _recommended, _select
from fupan.chapters.simulate.values import _Costs, _retention_costs, customer_values
from fupan.core.scenarios import (
    LEVER_TABLES,
    Scenario,
)
from fupan.io import engine

# ---- retention: who, the model, the projection, the bootstrap ----------------------------


@dataclass
class _Frames:
    """The retention pricing's feature queries, as few as possible (see _feature_table):
    the fit's snapshots, the model check's sample, the health model's features now and,
    once the targets are known, the targeted customers' months."""

    wide: list[str]  # every feature any query asks for
    fit_pairs: pd.DataFrame
    check: pd.DataFrame  # the check sample's customers (customer_id, acquired_at)
    check_pairs: pd.DataFrame
    table: pd.DataFrame | None = None
    traj_pairs: pd.DataFrame | None = None


@dataclass
class _Projection:
    """The targets' coming year as their own last months (fixed across replicates)."""

    traj: pd.DataFrame  # the targets' monthly snapshots
    check_traj: pd.DataFrame  # the check sample's snapshots, for the model's level
    Z0: np.ndarray  # the model's design rows of ``traj``
    values: pd.Series  # CLV per customer
    spend: pd.Series | None  # trailing-year spend per customer, when the data has it
    policy: Policy


def _price_retention(run: _Run, scenarios: list[Scenario], out: _Priced) -> None:
    """Price the retention scenarios with the churn model refitted on this dataset."""
    retention = _with_tables(run, scenarios, out)
    if not retention:
        return
    frames = _frames(run, retention)
    retention = _health_bands_now(run, retention, frames, out)
    if any(s.change.retier for s in retention):
        live = run.live
        live["recommended"] = live.customer_id.map(_recommended(run.ds, run.now)).to_numpy()
    targets, retention = _targets(run, retention, out)
    if not retention:
        return
    names, proj_names = _model_features(run, retention)
    fit = _fit_churn_model(run, retention, targets, frames, names, out)
    if fit is None:
        return
    retention = _movable(retention, fit.model, out)
    if not retention:
        return
    proj = _projection(run, retention, targets, frames, proj_names, fit.model, out)
    tiers = run.cust.set_index("customer_id")["tier"]
    packs = []
    for s in retention:
        pack = _pack(run, s, targets[s.name], proj, tiers, fit.model, out)
        if pack is not None:
            packs.append(pack)
    reps = _bootstrap(run, fit, [p for p, _ in packs], proj.Z0)
    check_traj = proj.check_traj
    # At scale the targets' months run to ten million rows: the rows below need none.
    del proj
    out.model = _model_info(run.ds, fit, run.status, check_traj, reps.effects, run.sp.interval)
    for p, costs in packs:
        _retention_row(run, p, costs, reps, tiers, out)


def _with_tables(run: _Run, scenarios: list[Scenario], out: _Priced) -> list[Scenario]:
    """The scenarios whose levers the data can measure (the levers' tables present)."""
    kept = []
    for s in scenarios:
        missing = [LEVER_TABLES[f] for f in s.change.levers() if f not in run.avail]
        if missing:
            out.skip(s, "missing_table", table=missing[0])
        else:
            kept.append(s)
    return kept


def _frames(run: _Run, retention: list[Scenario]) -> _Frames:
    """The fit's snapshots and the check sample, and every feature any scenario needs."""
    sp, P = run.sp, run.P
    every_lever = sorted({f for s in retention for f in s.change.levers()})
    wide = [n for n in sp.features if n in run.avail]
    wide += [n for n in every_lever if n not in wide]
    wide = [n for n in dict.fromkeys([*wide, "spend_365d"]) if n in run.avail]
    fit_pairs = _fit_pairs(
        run.status,
        fit_dates(outcomes_known_until(P, run.ds), sp.fit_months),
        sp.max_fit_customers,
        P.seed,
    )
    check = _check_sample(run.live, P.seed)
    check_pairs = _trajectory_pairs(check, run.now, sp.projection_months)
    return _Frames(wide, fit_pairs, check, check_pairs)


def _health_bands_now(
    run: _Run, retention: list[Scenario], frames: _Frames, out: _Priced
) -> list[Scenario]:
    """Every live customer's health band now, when a scenario targets bands."""
    if not any(s.target.health_bands for s in retention):
        return retention
    from fupan.chapters import atrisk

    try:
        hmodel = atrisk.train(run.ds)
    except ValueError:
        # too little churn to learn a health score: scenarios aimed at its bands have no one
        # to target, the others still run
        for s in [s for s in retention if s.target.health_bands]:
            out.skip(s, "no_health_model", events=atrisk.MIN_EVENTS)
        return [s for s in retention if not s.target.health_bands]
    live = run.live
    band_names = list(dict.fromkeys([*hmodel.numeric, *hmodel.categorical]))
    band_pairs = pd.DataFrame(
        {"customer_id": live.customer_id.to_numpy(), "snapshot_date": _ns(run.now, len(live))}
    )
    # the health model's extra features are asked for the band pairs' query only
    frames.table = _feature_table(
        run.ds,
        pd.concat([frames.fit_pairs[_ID], frames.check_pairs, band_pairs]),
        list(dict.fromkeys([*frames.wide, *band_names])),
    )
    feats = _with_features(band_pairs, frames.table, band_names)
    live["band"] = live.customer_id.map(_health_bands(hmodel, feats)).to_numpy()
    return retention


def _targets(
    run: _Run, retention: list[Scenario], out: _Priced
) -> tuple[dict[str, np.ndarray], list[Scenario]]:
    """Each scenario's targeted live customers (sorted ids); one with none is skipped."""
    targets: dict[str, np.ndarray] = {}
    kept = []
    for s in retention:
        keep = _select(run.live, s, run.P.tiers.order)
        if keep.any():
            targets[s.name] = np.sort(run.live.customer_id.to_numpy()[keep])
            kept.append(s)
        else:
            out.skip(s, "no_targets")
    return targets, kept


def _model_features(run: _Run, retention: list[Scenario]) -> tuple[list[str], list[str]]:
    """The churn model's features (the configured ones, then the levers), and those plus
    trailing spend that the projection reads."""
    levers = sorted({f for s in retention for f in s.change.levers()})
    names = [n for n in run.sp.features if n in run.avail]
    names += [n for n in levers if n not in names]
    proj_names = [n for n in dict.fromkeys([*names, "spend_365d"]) if n in run.avail]
    return names, proj_names


def _fit_churn_model(
    run: _Run,
    retention: list[Scenario],
    targets: dict[str, np.ndarray],
    frames: _Frames,
    names: list[str],
    out: _Priced,
) -> _Fit | None:
    """The churn model, its features queried together with the targets' months."""
    cust, sp = run.cust, run.sp
    wanted = np.unique(np.concatenate([targets[s.name] for s in retention]))
    projected = cust[
        engine.isin(cust.customer_id, wanted)
        & ~engine.isin(cust.customer_id, frames.check.customer_id)
    ]
    frames.traj_pairs = pd.concat(
        [
            frames.check_pairs,
            _trajectory_pairs(
                projected[["customer_id", "acquired_at"]], run.now, sp.projection_months
            ),
        ],
        ignore_index=True,
    )
    frames.table = _more_features(
        run.ds, frames.table, pd.concat([frames.fit_pairs[_ID], frames.traj_pairs]), frames.wide
    )
    try:
        return _fit(run.ds, run.status, names, frames.fit_pairs, frames.table)
    except SimulationError as exc:
        # the retention scenarios cannot be priced; a win-back rests on its prior and runs
        for s in retention:
            out.skip(s, "model", detail=str(exc))
        return None


def _movable(retention: list[Scenario], model: HazardModel, out: _Priced) -> list[Scenario]:
    """The scenarios whose levers the model kept (a lever constant in the fit has none)."""
    kept = []
    for s in retention:
        if any(f not in model.design.columns_ for f in s.change.levers()):
            out.skip(s, "constant_feature")
        else:
            kept.append(s)
    return kept


def _projection(
    run: _Run,
    retention: list[Scenario],
    targets: dict[str, np.ndarray],
    frames: _Frames,
    proj_names: list[str],
    model: HazardModel,
    out: _Priced,
) -> _Projection:
    """The targets' and the check sample's months, their design rows, value and spend."""
    P = run.P
    traj_all = _with_features(frames.traj_pairs, frames.table, proj_names)
    # At a million customers the feature table, the pairs and the trajectories each hold
    # some ten million rows (every target's twelve months): keep one of them.
    frames.table = frames.traj_pairs = None
    tl = traj_all[engine.isin(traj_all.customer_id, frames.check.customer_id)]
    tl = tl.reset_index(drop=True)
    union = np.unique(np.concatenate([targets[s.name] for s in retention]))
    keep = engine.isin(traj_all.customer_id, union)
    traj = traj_all if keep.all() else traj_all[keep].reset_index(drop=True)
    del traj_all, keep
    Z0 = model.matrix(traj)
    values, out.value_model = customer_values(run.ds, run.now)
    last = traj.groupby("customer_id", sort=True).tail(1).set_index("customer_id")
    spend = last["spend_365d"].clip(lower=0.0) if "spend_365d" in last else None
    policy = Policy(
        order=list(P.tiers.order),
        sla=dict(P.benchmarks.sla_first_response_days),
        touches=dict(P.benchmarks.touch_policy_per_quarter),
        recommended=run.live.set_index("customer_id")["recommended"]
        if "recommended" in run.live
        else None,
    )
    return _Projection(traj, tl, Z0, values, spend, policy)


def _pack(
    run: _Run,
    s: Scenario,
    ids: np.ndarray,
    proj: _Projection,
    tiers: pd.Series,
    model: HazardModel,
    out: _Priced,
) -> tuple[_Retention, _Costs] | None:
    """One scenario's changed design rows, value, margin and cost; None (skipped) when the
    change moves no row and no pilot supplies the effect, or when it costs nothing."""
    P, sp = run.P, run.sp
    pos = pd.Series(np.arange(len(ids)), index=ids)
    sel = np.flatnonzero(engine.isin(proj.traj.customer_id, ids))
    sub = proj.traj.iloc[sel]
    changed, extra = apply_change(sub, s, tiers, proj.policy)
    codes = pos.reindex(sub.customer_id).to_numpy(dtype=np.int64)
    years = float(s.horizon_years or sp.horizon_years)
    extra_year = float(np.sum(_mean_by(codes, extra, len(ids)))) * QUARTERS_PER_YEAR
    own = proj.spend.reindex(ids).fillna(0.0) if proj.spend is not None else None
    costs = _retention_costs(
        s, run.ref, float(own.sum()) if own is not None else run.ref * len(ids)
    )
    cost = costs.fixed + years * (costs.per_customer * len(ids) + costs.per_touch * extra_year)
    margin = (P.ltv.margin * own).to_numpy(dtype=float) if own is not None else np.zeros(len(ids))
    Z1 = model.matrix(changed)
    moved = np.flatnonzero((Z1 != proj.Z0[sel]).any(axis=1))
    if not len(moved) and s.pilot is None:
        out.skip(s, "no_effect", levers=s.change.levers())
        return None
    if not cost > 0:
        out.skip(s, "zero_cost")
        return None
    pack = _Retention(
        scenario=s,
        ids=ids,
        codes=codes,
        rows=sel,
        moved=moved,
        Z1=Z1[moved],
        clv=proj.values.reindex(ids).fillna(0.0).to_numpy(dtype=float),
        margin=margin,
        cost=float(cost),
        years=years,
        extra_touches=extra_year,
    )
    return pack, costs


def _retention_row(
    run: _Run, p: _Retention, costs: _Costs, reps: _Replicates, tiers: pd.Series, out: _Priced
) -> None:
    """A priced retention scenario's row, pilot design, per-customer table, sensitivity."""
    s, sp = p.scenario, run.sp
    lam0, lam1 = reps.point[s.name]
    m0 = _expected(p, lam0, lam1)
    rep, exp_ = pd.DataFrame(reps.realised[s.name]), pd.DataFrame(reps.expected[s.name])
    out.draws[s.name] = rep
    source = "pilot" if s.pilot is not None else "model"
    row = _row(s, source, len(p.ids), m0, rep, exp_, sp.interval, p.years)
    design = pilot_design("churn", len(p.ids), sp, lam0, lam1)
    out.pilots.append({"name": s.name, **design})
    row.update(
        pilot_n_per_arm=design["n_per_arm"],
        pilot_months=design["months"],
        extra_touches_per_year=p.extra_touches,
        **costs.record(),
    )
    out.rows.append(row)
    out.per_customer[s.name] = pd.DataFrame(
        {
            "customer_id": p.ids,
            "tier": tiers.reindex(p.ids).to_numpy(),
            "churn_before": -np.expm1(-MONTHS_PER_YEAR * lam0),
            "churn_after": -np.expm1(-MONTHS_PER_YEAR * lam1),
            "clv": p.clv,
            "annual_margin": p.margin,
        }
    )

    def roi_at(mult: float, cost_scale: float = 1.0, value_scale: float = 1.0) -> float:
        lam = lam0 + mult * (lam1 - lam0)
        return _expected(p, lam0, lam, value_scale, cost_scale)["roi"]

    out.sens.append(_sensitivity(s.name, roi_at, m0["roi"], *run.effect_range))
