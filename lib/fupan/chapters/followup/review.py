"""The chapter in one call: :func:`follow_up` grades last year's forecasts, and
:class:`Followup` is what it shows and records.
"""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from fupan.chapters.followup.cut import (
    MONTHS,
    Source,
    cut_date,
    data_span_problem,
    find_previous,
    load_settings,
)
from fupan.chapters.followup.forecasts import (
    Forecast,
    backtest_forecast,
    from_previous_run,
    recorded_forecast,
)
from fupan.chapters.followup.grades import (
    outcomes_since,
    pilot_readouts,
    probability_and_spend_grades,
    red_list_grades,
)
from fupan.chapters.followup.headline import findings_then_and_now, headline_rows
from fupan.io.dataset import Dataset
from fupan.report import results as fresults

# --------------------------------------------------------------------------------------
# The chapter in one call

#: A red list holding at least this share of the live customers grades nothing: its
#: precision is the base rate and its lift 1 by construction.
FLAGS_EVERYONE = 0.9
#: The red list's grades, dropped from results.json when the list flags everyone.
RED_LIST_KEYS = ("at_risk_precision", "at_risk_recall", "at_risk_lift", "median_lead_days")
#: The figures results.json ``followup`` holds or explains under ``skipped``.
HEADLINE_KEYS = tuple(fresults.HEADLINE["followup"])  # one list, kept in fupan.report.results


def _prune(node: Any) -> Any:
    """Drop null leaves from dicts (a record row keeps its other fields)."""
    if isinstance(node, dict):
        return {k: _prune(v) for k, v in node.items() if v is not None}
    if isinstance(node, list):
        return [_prune(v) for v in node if v is not None]
    return node


@dataclass
class Followup:
    """Everything the chapter shows and records (see :func:`follow_up`)."""

    source: Source | None
    as_of_then: dt.date | None
    problem: dict[str, Any] | None
    forecast: Forecast | None = None
    graded: pd.DataFrame | None = None
    red: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None
    clv: dict[str, Any] | None = None
    pilots: pd.DataFrame | None = None
    headline: list[dict[str, Any]] = field(default_factory=list)
    headline_skipped: dict[str, str] = field(default_factory=dict)
    findings: pd.DataFrame | None = None
    pilots_not_run: list[str] = field(default_factory=list)

    def record(self, lang: str = "en") -> dict[str, Any]:
        """results.json ``followup``: figures that exist, and under ``skipped`` the reason
        (in ``lang``) for each headline figure that does not; never a null or NaN."""
        from fupan.report.results import to_jsonable

        r, c, v = self.red or {}, self.calibration or {}, self.clv or {}
        fc = self.forecast
        out = {
            "source": self.source,
            "as_of_then": self.as_of_then,
            "problem": self.problem,
            "method": fc.method if fc else None,
            "notes": fc.notes if fc else None,
            "at_risk_then": r.get("flagged"),
            "at_risk_count_then_recorded": fc.flagged_count_then if fc else None,
            "at_risk_precision": r.get("precision"),
            "at_risk_recall": r.get("recall"),
            "at_risk_lift": r.get("lift"),
            "base_rate": r.get("base_rate"),
            "median_lead_days": r.get("median_lead_days"),
            "red_list": r or None,
            "brier": c.get("brier"),
            "calibration": dict(c) or None,
            "clv_bias": v.get("bias"),
            "clv_mae": v.get("mae"),
            "clv": {k: x for k, x in v.items() if k != "customers_frame"} or None,
            "pilots": self.pilots,
            "pilots_not_run": list(self.pilots_not_run),
            "headline": self.headline or None,
            "findings": self.findings,
        }
        if self.problem and self.problem["reason"] == "flags_everyone":
            out.update(dict.fromkeys(RED_LIST_KEYS), red_list=None)
        clean = _prune(to_jsonable(out))
        skipped = {k: self.why(k, lang) for k in HEADLINE_KEYS if k not in clean}
        for metric in self.headline_skipped:
            skipped[f"headline_{metric}"] = self.why(f"headline_{metric}", lang)
        if skipped:
            clean["skipped"] = skipped
        return clean

    def why(self, key: str, lang: str) -> str:
        """Why ``key`` of :meth:`record` is missing, in words."""
        from fupan.core import i18n

        def t(k: str, **v: Any) -> str:
            return i18n.t(k, lang, **v)

        p, then = self.problem or {}, str(self.as_of_then)
        if key == "pilots":
            return t("fu.pilot.none")
        if key == "findings":
            return t("fu.find.backtest" if self.source == "backtest" else "fu.find.none")
        if p.get("reason") == "no_follow_up":
            return t("fu.short.no_follow_up", then=then)
        if p.get("reason") == "short_history":
            key_ = "fu.short.short_history" if p.get("first_order") else "fu.short.no_orders"
            return t(key_, then=then, need=MONTHS + 1, first=str(p.get("first_order")),
                     months=p.get("months"))  # fmt: skip
        notes = self.forecast.notes if self.forecast else {}
        if p.get("reason") == "flags_everyone" and key in RED_LIST_KEYS:
            return t("fu.red.everyone", share=f"{100 * p['share']:.0f}%", then=then)
        if key in ("brier", "calibration"):
            return t(f"fu.cal.none.{notes.get('calibration', 'rules')}")
        if key in ("clv", "clv_bias", "clv_mae"):
            return t(f"fu.clv.none.{notes.get('clv', 'model_failed')}")
        if key.startswith("headline_"):
            return self.headline_reason(key.removeprefix("headline_"), lang)
        if key == "headline":
            return " ".join(self.headline_reason(m, lang) for m in self.headline_skipped) or t(
                "fu.head.none"
            )
        if key == "pilots_not_run":
            return t("fu.pilot.all_run")
        if self.red is not None and self.red["flagged"] == 0:
            return t("fu.red.none_flagged")
        if key in ("at_risk_lift", "median_lead_days") and self.red and self.red["churned"]:
            return t("fu.red.no_flagged_churner")
        return t("fu.overview.no_churn", then=then, graded=(self.red or {}).get("graded", 0))

    def headline_reason(self, metric: str, lang: str) -> str:
        """Why the headline forecast ``metric`` was not graded, in words."""
        from fupan.core import i18n
        from fupan.measures import segments

        then = self.as_of_then
        code = self.headline_skipped.get(metric, "model_failed")
        return i18n.t(
            f"fu.head.none.{code}",
            lang,
            what=i18n.t(f"fu.head.{metric}", lang),
            then=str(then),
            cohort=str(segments.years_before(then)) if then else "",
        )

    def export_frame(self) -> pd.DataFrame:
        """``exports/followup_at_risk.csv``: every graded customer with the forecast and
        the outcome."""
        g = self.graded
        cols = ["customer_id", "score", "churn_probability", "flagged", "churned", "churned_at"]
        out = g[cols].copy()
        out["churned_at"] = out.churned_at.dt.date
        return out.sort_values(["flagged", "customer_id"], ascending=[False, True])


def follow_up(
    ds: Dataset,
    previous: str | Path | None = None,
    months: int = MONTHS,
    results_now: dict[str, Any] | None = None,
) -> Followup:
    """Grade last year's forecasts: ``previous`` run's red list when given, else a backtest
    as of ``as_of - months``. Never raises for data that cannot be graded: ``problem``
    says why (``short_history``, ``no_follow_up``, ``no_churn``, ``flags_everyone``).

    ``results_now`` is this run's results so far (chapter 1's findings and, for a
    backtest, chapter 4's scenarios are quoted from it when present).
    """
    seed = ds.params.seed
    results_now = results_now or {}
    if previous is not None:
        fc = from_previous_run(previous)
        then = fc.as_of_then
        problem = data_span_problem(ds, then)
    else:
        then = cut_date(ds.params.as_of, months)
        problem = data_span_problem(ds, then)
        fc = None if problem else backtest_forecast(ds, months)
    fu = Followup("previous_run" if previous is not None else "backtest", then, problem, fc)
    then_results = fc.results_then if fc is not None else {}
    sim = (then_results if previous is not None else results_now).get("simulation") or {}
    fu.pilots = pilot_readouts(ds, sim.get("scenarios"))
    run = set(fu.pilots.pilot) if fu.pilots is not None else set()
    designed = (then_results.get("simulation") or {}).get("pilots") or []
    fu.pilots_not_run = [d["name"] for d in designed if d.get("name") not in run]
    fu.findings = findings_then_and_now(then_results, results_now)
    if problem or fc is None:
        return fu
    fu.graded = outcomes_since(ds, then, fc)
    if not fu.graded.churned.any():
        fu.problem = {"reason": "no_churn", "graded": len(fu.graded)}
    fu.red = red_list_grades(fu.graded, seed)
    share = fu.red["flagged"] / max(fu.red["graded"], 1)
    if share >= FLAGS_EVERYONE:
        # a list of (nearly) everyone has the base rate as its precision by construction
        fu.problem = {"reason": "flags_everyone", "share": share, "graded": fu.red["graded"]}
    model = fc
    if fc.source == "previous_run":
        # its own per-customer forecasts when it recorded them; else (an older run, whose
        # exports hold only the red list) the same models rerun on the data as it stood then
        model = recorded_forecast(Path(previous), fc.results_then)
        try:
            model = model or backtest_forecast(ds, months, cut=then)
        except (ValueError, RuntimeError) as exc:
            warnings.warn(f"follow-up: models not rerun as of {then} ({exc})", stacklevel=2)
    # calibration and CLV grade what was forecast then: a backtest's or a previous run's
    # recorded per-customer forecasts, never models rerun today in a previous run's name
    said = model if model is not None and (model is fc or model.recorded) else None
    if said is not None:
        fu.calibration, fu.clv = probability_and_spend_grades(ds, fu.graded, said, months, seed)
        for key, grade in (("calibration", fu.calibration), ("clv", fu.clv)):
            if grade is not None:
                fc.notes.pop(key, None)
    fu.headline, fu.headline_skipped = headline_rows(ds, fu.graded, fc, model, seed)
    return fu


def resolve_previous(
    params_file: str | Path, run_dir: str | Path, as_of: dt.date, recorded: str | None = None
) -> Path | None:
    """The previous run to grade: ``recorded`` (the run's ``run.previous`` in results.json,
    set by ``fupan review --previous``), else ``followup.previous`` from the params file,
    else (with ``auto_previous``) the newest earlier annual run beside this run's folder,
    else none."""
    if recorded:
        return Path(recorded)
    s = load_settings(params_file)
    if s.previous:
        return Path(s.previous)
    if not s.auto_previous or not run_dir:
        return None
    here = Path(run_dir).resolve()
    return find_previous(here.parent, as_of, s.months, exclude=here)
