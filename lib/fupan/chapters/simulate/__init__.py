"""Chapter 4: what a change would buy. Scenarios priced with a churn model refitted here.

Method
------
**Churn model.** A discrete-time proportional-hazards model (binomial regression with the
complementary log-log link) of *churn before the next monthly snapshot* on catalogue
features (``simulation.features``) at monthly as-of snapshots. Its coefficients are log
hazard ratios, the scale :mod:`fupan.demo` plants its truth on. It is fitted inside this
module from the dataset, never from notebook state.

* Churn is the shared definition (:func:`fupan.measures.outcomes.churn_status`), dated where the
  relationship ended: a recorded churn or a contract end on its date; a churn inferred from
  dormancy on the customer's last order (the dormancy date is a year later, when the
  business could know, which is not when the customer decided).
* Only snapshots whose outcome month is fully known are used: the month must end before
  ``as_of - dormancy_days`` (``grace_days`` for contracts), so a customer who quietly left
  is never counted as a stayer. The latest ``simulation.fit_months`` such months are used.
* When the data records churn (``churn_events``), the slopes are estimated on customers
  whose churn is dated exactly (recorded, or still customers), as chapter 2 does; the
  level (intercept) is then calibrated on every customer, inferred churners included.

**Projection.** Each targeted customer's coming year is projected from her own last
``simulation.projection_months`` monthly snapshots: every month of the coming year is
assumed to look like an average month of the last year, so a customer whose response times
or touches vary keeps varying. A scenario rewrites the lever features of the targeted
customers in every one of those months (response capped at N days, touches raised to N a
quarter), everything else unchanged. Annual churn probability
is ``1 - exp(-12 x mean monthly cumulative hazard)``, with and without the change.

**Money.** Customers kept over the horizon are the change in survival summed over the
targeted customers; each kept customer is worth her CLV (:mod:`fupan.chapters.clv`, chapter 3's
model, which already discounts her future churn: a conservative value). ROI = (LTV retained
- cost) / cost; payback = cost / the monthly margin of the customers kept in the first year.

**Uncertainty.** ``simulation.bootstrap`` refits on customers resampled with replacement
(every snapshot of a drawn customer comes along), each replicate recalibrated and
re-projected. Each replicate also draws what the change would realise: every targeted
customer's fate with and without the change is decided by one uniform number (common
random numbers), so the interval of customers kept, churn change, ROI and payback covers
both the model's uncertainty and the chance of which customers stay; intervals are
percentiles (``simulation.interval``, 90%). The expected churn change and ROI also get an
interval from the refits alone (``*_model_low``/``_high``). An effect supplied from a pilot
replaces the model's hazard ratio, drawn from the arms' Beta posteriors. A win-back rests
on its reactivation prior (a Beta worth ``prior_customers``) or its pilot.

**What the projection cannot see.** Holding each customer's future to her own past, a
customer with no tickets last year gains nothing from a faster response, although some of
them will open tickets next year; and a model fitted on snapshots cannot credit effects that
run through other features (better service -> fewer detractors). On :mod:`fupan.demo`'s
counterfactual worlds the realised effect of the SLA change is larger than the projection:
treat model-based estimates as conservative and confirm them with a pilot.

Rooms
-----
:mod:`.pricing` (:func:`simulate`: the steps in order), :mod:`.snapshots` (churn dates, the
fitting snapshots, trajectories), :mod:`.hazard` (the cloglog model), :mod:`.model` (the
model fitted on a dataset and :class:`ModelInfo`), :mod:`.targets`, :mod:`.changes` (a
scenario's lever changes), :mod:`.projection` (one scenario's hazards and metrics),
:mod:`.bootstrap` (uncertainty), :mod:`.retention` and :mod:`.winback` (each family's
pricing), :mod:`.values` (money in the data's scale), :mod:`.pilots` (design, readout),
:mod:`.roadmap` (phases, funded totals), :mod:`.result`, :mod:`.common` (shared state and
helpers), :mod:`.slides` (what the chapter's slides say).
"""

from __future__ import annotations

from fupan.chapters.simulate.changes import Policy, apply_change
from fupan.chapters.simulate.common import (
    METRICS,
    MIN_EVENTS,
    MONTHS_PER_YEAR,
    QUARTERS_PER_YEAR,
    SimulationError,
)
from fupan.chapters.simulate.hazard import HazardModel, fit_hazard
from fupan.chapters.simulate.pilots import pilot_design, readout
from fupan.chapters.simulate.pricing import simulate
from fupan.chapters.simulate.result import ModelInfo, SimulationResult
from fupan.chapters.simulate.roadmap import funded_totals, roadmap
from fupan.chapters.simulate.slides import skip_reason
from fupan.chapters.simulate.snapshots import (
    effective_churn_dates,
    fit_dates,
    fit_frame,
    now_date,
    outcomes_known_until,
    trajectories,
)
from fupan.chapters.simulate.values import (
    annuity,
    customer_values,
    natural_return,
    reference_spend,
    spend_before,
)

__all__ = [
    "MIN_EVENTS",
    "MONTHS_PER_YEAR",
    "QUARTERS_PER_YEAR",
    "METRICS",
    "SimulationError",
    "HazardModel",
    "ModelInfo",
    "Policy",
    "effective_churn_dates",
    "outcomes_known_until",
    "fit_dates",
    "fit_frame",
    "fit_hazard",
    "now_date",
    "trajectories",
    "apply_change",
    "annuity",
    "customer_values",
    "spend_before",
    "pilot_design",
    "readout",
    "roadmap",
    "simulate",
    "SimulationResult",
    "reference_spend",
    "natural_return",
    "funded_totals",
    "skip_reason",
]
