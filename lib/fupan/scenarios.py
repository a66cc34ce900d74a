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
* its **cost model**: per targeted customer a year, per extra touch, fixed;
* its **horizon** in years, and optionally the **evidence** its effect rests on (the
  observational churn model by default, or a pilot's results).

The file is a contract like the params: unknown keys are rejected with the nearest valid
name and every problem is reported at once (:class:`fupan.params.ParamsError`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fupan.params import Params, ParamsError, _read_yaml

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

    offer_cost: float = Field(
        ge=0, description="cost per contacted customer (discount, gift, visit)"
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
    """What the change costs, in the params' currency. Total = fixed + years x (per customer
    x targeted customers + per touch x extra touches); a win-back adds its offer cost per
    contacted customer."""

    per_customer: float = Field(0.0, ge=0, description="a year, per targeted customer")
    per_touch: float = Field(0.0, ge=0, description="per extra touch the change implies")
    fixed: float = Field(0.0, ge=0, description="one-off: systems, training, set-up")


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
    """Validate a scenarios mapping against the schema and the run's params.

    Raises
    ------
    ParamsError
        listing every problem (unknown keys with the nearest valid name, unknown tiers).
    """
    try:
        parsed = ScenarioFile.model_validate(raw)
    except ValidationError as err:
        raise ParamsError(_format_error(err, source)) from None
    problems = []
    for s in parsed.scenarios:
        bad = [t for t in s.target.tiers if t not in params.tiers.order]
        if bad:
            problems.append(
                f"  - scenario '{s.name}': unknown tier(s) {bad}; "
                f"tiers.order is {params.tiers.order}"
            )
    if problems:
        raise ParamsError(
            f"{source}: {len(problems)} problem(s) in the scenarios\n" + "\n".join(problems)
        )
    return parsed.scenarios


#: The scenarios a 2026 review tests, shipped with the project.
PROJECT_DEFAULT = Path(__file__).resolve().parents[2] / "params" / "scenarios.yaml"


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
    path = Path(params.resolve(name))
    if path.exists():
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
