"""Strategy scenarios (chapter 4): what a change is, to whom, at what cost, from a YAML file.

A scenarios file (``params/scenarios.yaml`` by default, ``simulation.scenarios_file`` in the
run's params) lists the changes a review wants priced. Each scenario names

* its **target**: tiers, health bands (chapter 2's learned health score), segment filters
  on customer columns, and whether it addresses live customers or lost ones;
* its **change**: first response brought to N days, touches raised to N a quarter (or N
  more), re-tiering to the recommended tier with that tier's service policy, or a win-back
  offer with its cost and reactivation prior. (A follow-up after the first repeat purchase
  is not a lever here: for today's customers that purchase is history, so the projection of
  the existing base cannot price it.)
* its **cost model**: per targeted customer a year, per extra touch, fixed. Any amount left
  out is scaled from the data (:data:`DEFAULT_COST_SHARES`), in the data's own currency and
  scale; an amount written in the file always wins;
* its **horizon** in years, and optionally the **evidence** its effect rests on (the
  observational churn model by default, or a pilot's results).

The file is a contract like the params: unknown keys are rejected with the nearest valid
name and every problem is reported at once (:class:`fupan.core.params.ParamsError`).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fupan.core.params import Params, ParamsError, _read_yaml, packaged_default

__all__ = [
    "Target",
    "WinBack",
    "Change",
    "Cost",
    "PilotEvidence",
    "Scenario",
    "ScenarioFile",
    "load",
    "parse",
    "label",
    "absent_tiers",
    "check_against",
    "DEFAULT_COST_SHARES",
]

#: The features a change writes (the churn model must include them).
LEVERS = {
    "first_response_days": "median_first_response_days",
    "touches_per_quarter": "touches_90d",
    "extra_touches_per_quarter": "touches_90d",
}
#: The optional table each lever's feature is computed from.
LEVER_TABLES = {
    "median_first_response_days": "tickets",
    "touches_90d": "touches",
}
HEALTH_BANDS = ("green", "amber", "red")

#: Amounts a scenario leaves out are scaled from the data, never taken as constants in one
#: currency. ``M`` is the median net spend over the 365 days to ``as_of`` of the customers
#: who bought in that year (the median customer's annual value); ``M_lost`` the median net
#: spend of the targeted lost customers in their last 365 days as customers.
#:
#: * ``per_customer``: 10% of M a year per targeted customer (a service package);
#: * ``per_touch``: 2% of M per extra touch (a call or visit);
#: * ``fixed``: 2% of the targeted customers' own annual spend (retention: the targeted live
#:   customers' last year; win-back: the contacted lost customers' last year as customers);
#: * ``offer_cost`` (win-back): 10% of M_lost per contacted customer (an incentive).
DEFAULT_COST_SHARES = {
    "per_customer": 0.10,
    "per_touch": 0.02,
    "fixed": 0.02,
    "offer_cost": 0.10,
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Target(_Model):
    """Who a scenario addresses. Filters combine with AND; an empty filter keeps everyone."""

    status: Literal["live", "lost"] = Field(
        "live",
        description="live customers, or customers lost (churned) in the last lost_within_days",
    )
    lost_within_days: int = Field(
        365, gt=0, description="lost customers: churned within this many days before as_of"
    )
    tiers: list[str] = Field(default_factory=list, description="assigned tiers (tiers.order codes)")
    health_bands: list[Literal["green", "amber", "red"]] = Field(
        default_factory=list, description="chapter 2's learned health bands, scored as of as_of"
    )
    segments: dict[str, list[str]] = Field(
        default_factory=dict,
        description="customer column -> values kept, e.g. {region: [华东, 华南]}",
    )


class WinBack(_Model):
    """A win-back offer to lost customers.

    ``reactivation_rate`` is the prior share of contacted customers who come back after the
    offer; ``prior_customers`` says how much that prior weighs (a Beta prior worth that many
    customers), which sets its uncertainty. Customers whose expected value (reactivation
    rate beyond the observed natural return rate x the margin they would bring back) is
    below ``offer_cost`` are not contacted.
    """

    offer_cost: float | None = Field(
        None,
        ge=0,
        description="cost per contacted customer (discount, gift, visit); default: a share of "
        "the targeted lost customers' median annual spend (DEFAULT_COST_SHARES)",
    )
    reactivation_rate: float = Field(
        gt=0, lt=1, description="prior share of contacted customers won back"
    )
    prior_customers: float = Field(100, gt=0, description="weight of the prior, in customers")


class Change(_Model):
    """What the scenario changes. Several retention levers may combine; win-back stands alone."""

    first_response_days: float | Literal["tier_sla"] | None = Field(
        None, description="first response brought to at most N days (tier_sla: each tier's SLA)"
    )
    touches_per_quarter: float | Literal["tier_policy"] | None = Field(
        None, description="touches raised to at least N a quarter (tier_policy: the tier's policy)"
    )
    extra_touches_per_quarter: float | None = Field(
        None, gt=0, description="N more touches a quarter"
    )
    retier: bool = Field(
        False,
        description="customers whose trailing spend earns a better tier get that tier's SLA and "
        "touch policy (benchmarks.sla_first_response_days, touch_policy_per_quarter)",
    )
    winback: WinBack | None = None

    @model_validator(mode="after")
    def _check(self) -> Change:
        retention = (
            self.first_response_days is not None
            or self.touches_per_quarter is not None
            or self.extra_touches_per_quarter is not None
            or self.retier
        )
        if self.winback is not None and retention:
            raise ValueError(
                "a win-back scenario changes nothing else; split it into two scenarios"
            )
        if self.winback is None and not retention:
            raise ValueError("a scenario needs at least one change")
        if self.touches_per_quarter is not None and self.extra_touches_per_quarter is not None:
            raise ValueError("give touches_per_quarter or extra_touches_per_quarter, not both")
        if isinstance(self.first_response_days, float) and not self.first_response_days > 0:
            raise ValueError("first_response_days must be > 0")
        if isinstance(self.touches_per_quarter, float) and self.touches_per_quarter < 0:
            raise ValueError("touches_per_quarter must be >= 0")
        return self

    @property
    def kind(self) -> str:
        return "winback" if self.winback is not None else "retention"

    def levers(self) -> list[str]:
        """The churn-model features this change writes."""
        out = []
        if self.first_response_days is not None or self.retier:
            out.append("median_first_response_days")
        if (
            self.touches_per_quarter is not None
            or self.extra_touches_per_quarter is not None
            or self.retier
        ):
            out.append("touches_90d")
        return out


class Cost(_Model):
    """What the change costs, in the data's currency. Total = fixed + years x (per customer
    x targeted customers + per touch x extra touches); a win-back adds its offer cost per
    contacted customer. An amount left out (None) is scaled from the data
    (:data:`DEFAULT_COST_SHARES`); write 0 for "no such cost"."""

    per_customer: float | None = Field(None, ge=0, description="a year, per targeted customer")
    per_touch: float | None = Field(None, ge=0, description="per extra touch the change implies")
    fixed: float | None = Field(None, ge=0, description="one-off: systems, training, set-up")


class PilotEvidence(_Model):
    """A pilot's results, used instead of the observational model for the effect.

    Retention: customers and churned customers per arm over the pilot's window. Win-back:
    contacted and reactivated per arm. The pilot's relative effect (a hazard ratio for churn,
    the uplift in reactivation) replaces the model's; its uncertainty comes from the arms'
    Beta posteriors.
    """

    treated: int = Field(gt=0)
    treated_events: int = Field(ge=0, description="churned (retention) or reactivated (win-back)")
    control: int = Field(gt=0)
    control_events: int = Field(ge=0)
    months: float = Field(6, gt=0, description="how long the pilot observed its customers")

    @model_validator(mode="after")
    def _check(self) -> PilotEvidence:
        if self.treated_events > self.treated or self.control_events > self.control:
            raise ValueError("a pilot arm cannot have more events than customers")
        return self


class Scenario(_Model):
    """One priced change."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$", description="key in results.json")
    label: dict[Literal["zh", "en"], str] = Field(description="display name per language")
    description: dict[Literal["zh", "en"], str] = Field(default_factory=dict)
    target: Target = Field(default_factory=Target)
    change: Change
    cost: Cost = Field(default_factory=Cost)
    horizon_years: float | None = Field(
        None, gt=0, le=10, description="default: simulation.horizon_years"
    )
    pilot: PilotEvidence | None = Field(
        None, description="pilot results: the effect rests on them instead of the churn model"
    )

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if set(self.label) != {"zh", "en"}:
            raise ValueError(f"scenario '{self.name}' needs a label in zh and en")
        winback = self.change.winback is not None
        if winback and self.target.status != "lost":
            raise ValueError(f"scenario '{self.name}': a win-back targets status: lost")
        if not winback and self.target.status != "live":
            raise ValueError(f"scenario '{self.name}': a retention change targets status: live")
        if winback and self.target.health_bands:
            raise ValueError(f"scenario '{self.name}': lost customers have no health band")
        return self

    @property
    def kind(self) -> str:
        return self.change.kind


class ScenarioFile(_Model):
    scenarios: list[Scenario]

    @model_validator(mode="after")
    def _unique(self) -> ScenarioFile:
        names = [s.name for s in self.scenarios]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"scenario names must be unique; repeated: {dup}")
        return self


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The schema class that owns the field at ``loc`` (list indices and optionals skipped)."""
    model: type[BaseModel] = ScenarioFile
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        found = None
        todo = [field.annotation]
        while todo:
            ann = todo.pop()
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                found = ann
                break
            todo.extend(get_args(ann))
        if found is None:
            return None
        model = found
    return model


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: {err.error_count()} problem(s) in the scenarios"]
    for e in err.errors():
        loc = tuple(e["loc"])
        where = ".".join(str(p) for p in loc) or "(top level)"
        if e["type"] == "extra_forbidden":
            model = _model_at(loc)
            options = list(model.model_fields) if model else []
            near = difflib.get_close_matches(str(loc[-1]), options, n=1, cutoff=0.5)
            hint = (
                f" — did you mean '{near[0]}'?"
                if near
                else (f" — valid keys: {', '.join(sorted(options))}" if options else "")
            )
            lines.append(f"  - unknown key '{where}'{hint}")
        else:
            got = e.get("input")
            got_s = "" if isinstance(got, dict) else f" (got {got!r})"
            lines.append(f"  - {where}: {e['msg']}{got_s}")
    return "\n".join(lines)


def parse(raw: dict[str, Any], params: Params, source: str = "scenarios") -> list[Scenario]:
    """Validate a scenarios mapping against the schema.

    Target tiers are not checked here: a scenario aimed at tiers the data does not hold is
    reported as not applicable by :func:`fupan.chapters.simulate.simulate` while the others run, and
    :func:`check_against` lists such references for validation before a run.

    Raises
    ------
    ParamsError
        listing every problem (unknown keys with the nearest valid name, bad values).
    """
    try:
        parsed = ScenarioFile.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_error(err, source)) from None
    return parsed.scenarios


#: The scenarios a 2026 review tests, shipped with the project.
PROJECT_DEFAULT = packaged_default("scenarios.yaml")


def scenarios_path(params: Params) -> tuple[Path, bool]:
    """The run's scenarios file and whether it is the project default used as a fallback.

    ``simulation.scenarios_file`` is resolved beside the params file. When it was left at
    its default name and no such file is there, the project's ``params/scenarios.yaml`` is
    used (the deck says so); a file named explicitly must exist.
    """
    sim = params.simulation
    name = sim.scenarios_file
    if not name:
        raise ParamsError("simulation.scenarios_file is empty: name the scenarios YAML to price")
    path = params.context.scenarios_file  # resolved once, beside the params file
    if path is not None and path.exists():
        return path, False
    explicit = "scenarios_file" in sim.model_fields_set
    if not explicit and PROJECT_DEFAULT.exists():
        return PROJECT_DEFAULT, True
    raise ParamsError(
        f"scenarios file not found: {path} (simulation.scenarios_file); copy params/scenarios.yaml "
        "beside the params file or name an existing file"
    )


def load(params: Params, path: str | Path | None = None) -> list[Scenario]:
    """Read and validate the run's scenarios file (or ``path``)."""
    p = Path(path) if path is not None else scenarios_path(params)[0]
    raw = _read_yaml(p)
    return parse(raw, params, str(p))


def label(scenario: Scenario, lang: str) -> str:
    """The scenario's display name in ``lang``."""
    return scenario.label[lang]  # type: ignore[index]


def absent_tiers(scenario: Scenario, tiers_present: Iterable[str]) -> list[str]:
    """The scenario's target tiers that no customer holds (``tiers_present``)."""
    present = {str(t) for t in tiers_present}
    return [t for t in scenario.target.tiers if t not in present]


def check_against(
    params: Params,
    tiers_present: Iterable[str],
    scenarios: Sequence[Scenario] | None = None,
) -> list[str]:
    """Problems between the run's scenarios and its data, for validation before a run.

    Parameters
    ----------
    params : the run's params (its scenarios file is read when ``scenarios`` is None).
    tiers_present : the tier codes the customers table holds (``customers.tier`` values;
        empty when the data has no tier column).
    scenarios : already loaded scenarios.

    Returns
    -------
    One sentence per problem, naming the scenario, the tiers it targets that no customer
    holds, and the fix; empty when every reference resolves. None of them stops chapter 4
    (the scenario is reported there as not applicable); validation decides how loud to be.
    """
    present = sorted({str(t) for t in tiers_present})
    scen = list(scenarios) if scenarios is not None else load(params)
    order = set(params.tiers.order)
    out = []
    for s in scen:
        missing = absent_tiers(s, present)
        if not missing:
            continue
        unknown = [t for t in missing if t not in order]
        where = (
            f"; {unknown} not in tiers.order {list(params.tiers.order)} either" if unknown else ""
        )
        shown = ", ".join(present) if present else "none: the data has no tier column"
        out.append(
            f"scenario '{s.name}' targets tier(s) {missing} that no customer holds "
            f"(tiers present: {shown}){where}; edit target.tiers in the scenarios file or "
            "drop the scenario (chapter 4 reports it as not applicable)"
        )
    return out
