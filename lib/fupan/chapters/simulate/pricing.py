"""Price every scenario: :func:`simulate` and its steps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from fupan.chapters.simulate.common import _Priced, _Run
from fupan.chapters.simulate.result import SimulationResult
from fupan.chapters.simulate.retention import _price_retention
from fupan.chapters.simulate.roadmap import _ROADMAP_COLUMNS, roadmap
from fupan.chapters.simulate.snapshots import now_date
from fupan.chapters.simulate.targets import _customer_frame
from fupan.chapters.simulate.values import reference_spend
from fupan.chapters.simulate.winback import _price_winback
from fupan.core.scenarios import (
    Scenario,
    absent_tiers,
)
from fupan.io.dataset import Dataset
from fupan.measures import features as F
from fupan.measures import outcomes


def simulate(
    ds: Dataset,
    scenarios: Sequence[Scenario],
    status: pd.DataFrame | None = None,
    bootstrap: int | None = None,
) -> SimulationResult:
    """Price every scenario: churn change, customers kept, LTV retained, cost, ROI, payback.

    Parameters
    ----------
    ds : the run's dataset (``ds.params.simulation`` sets the method's knobs).
    scenarios : from :func:`fupan.core.scenarios.load`.
    status : :func:`fupan.measures.outcomes.churn_status` at ``as_of`` (computed when omitted).
    bootstrap : replicates (default ``simulation.bootstrap``).

    Returns
    -------
    :class:`SimulationResult`. Scenarios that cannot be priced (an optional table missing,
    no targeted customers) are listed in ``skipped`` with the reason.

    Raises
    ------
    SimulationError
        when retention scenarios are asked for and the history holds too few churns to fit
        the churn model.
    """
    run = _start(ds, status, bootstrap)
    out = _Priced()
    applicable = _applicable(run, scenarios, out)
    _price_retention(run, [s for s in applicable if s.kind == "retention"], out)
    _price_winback(run, [s for s in applicable if s.kind == "winback"], out)
    return _result(run, scenarios, out)


def _start(ds: Dataset, status: pd.DataFrame | None, bootstrap: int | None) -> _Run:
    """The run's dates and customers; status sorted so that every step sees one order."""
    P = ds.params
    sp = P.simulation
    B = int(sp.bootstrap if bootstrap is None else bootstrap)
    now = now_date(P)
    as_of = pd.Timestamp(P.as_of).normalize()
    status = outcomes.churn_status(ds) if status is None else status
    status = status.sort_values("customer_id", kind="stable").reset_index(drop=True)
    cust = _customer_frame(ds)
    cust = cust[pd.to_datetime(cust.acquired_at) <= as_of].reset_index(drop=True)
    churned_at = status.set_index("customer_id").churned_at
    live = cust[cust.customer_id.map(churned_at).isna().to_numpy()].reset_index(drop=True)
    avail = set(F.available(ds))
    ref = reference_spend(ds, as_of)
    return _Run(ds, B, now, as_of, status, cust, live, avail, ref)


def _applicable(run: _Run, scenarios: Sequence[Scenario], out: _Priced) -> list[Scenario]:
    """A scenario aimed only at tiers no customer holds is not applicable; the rest run."""
    present = sorted(str(t) for t in run.cust.tier.dropna().unique())
    applicable = []
    for s in scenarios:
        absent = absent_tiers(s, present)
        if s.target.tiers and len(absent) == len(s.target.tiers):
            out.skip(s, "tiers_absent", tiers=absent, present=present)
        else:
            applicable.append(s)
    return applicable


def _result(run: _Run, scenarios: Sequence[Scenario], out: _Priced) -> SimulationResult:
    """The priced scenarios ranked by ROI, with their roadmap, pilots and sensitivity."""
    table = pd.DataFrame(out.rows)
    if len(table):
        # ties (or undefined ROI) keep the scenarios file's order
        order = {s.name: i for i, s in enumerate(scenarios)}
        table["_o"] = table.name.map(order)
        table = (
            table.sort_values(
                ["roi", "_o"], ascending=[False, True], na_position="last", kind="stable"
            )
            .drop(columns="_o")
            .reset_index(drop=True)
        )
        table["rank"] = np.arange(1, len(table) + 1)
        rm = roadmap(table, run.sp)
        table = table.merge(rm[["name", "phase"]], on="name", how="left")
        pilot_df = pd.DataFrame(out.pilots).set_index("name").loc[table.name].reset_index()
        sens_df = pd.DataFrame(out.sens).set_index("name").loc[table.name].reset_index()
    else:
        rm = pd.DataFrame(columns=_ROADMAP_COLUMNS)
        pilot_df, sens_df = pd.DataFrame(), pd.DataFrame()
    return SimulationResult(
        table=table,
        draws=out.draws,
        sensitivity=sens_df,
        pilots=pilot_df,
        roadmap=rm,
        winback=out.winback,
        per_customer=out.per_customer,
        skipped=out.skipped,
        model=out.model,
        info={
            "bootstrap": run.B,
            "interval": run.sp.interval,
            "now": run.now,
            "as_of": run.as_of,
            "value_model": out.value_model,
            "projection_months": run.sp.projection_months,
            "reference_spend": run.ref,
        },
    )
