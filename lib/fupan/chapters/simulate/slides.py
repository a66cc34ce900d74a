"""What chapter 4's slides say: one method of :class:`ScenarioSlides` per slide.

:func:`chapter` prices the scenarios file (or says why it could not);
:class:`ScenarioSlides` turns the result into each slide's title, finding, tiles, table and
notes, in the run's language, quoting the computed numbers. The notebook shows them; the charts are in
:mod:`fupan.report.plots.simulate`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters.simulate.common import SimulationError
from fupan.chapters.simulate.pilots import readout
from fupan.chapters.simulate.pricing import simulate
from fupan.chapters.simulate.result import SimulationResult
from fupan.chapters.simulate.roadmap import funded_totals
from fupan.chapters.slide import Slide
from fupan.core import i18n
from fupan.core import scenarios as fsc
from fupan.core.scenarios import Scenario
from fupan.io.dataset import Dataset
from fupan.measures import outcomes

#: Features whose per-unit effect reads badly on the method slide (currency, long spans).
UNREADABLE_PER_UNIT = ("spend_365d", "tenure_days", "recency_days", "days_to_renewal")


def skip_reason(skip: Mapping[str, Any], lang: str, label: str, fmt: Any) -> str:
    """The sentence that says why a scenario was not priced (``SimulationResult.skipped``).

    Parameters
    ----------
    skip : one entry of ``skipped`` (``name, reason`` and the reason's details).
    lang : zh or en.
    label : the scenario's display name.
    fmt : a :class:`fupan.core.i18n.Fmt` for money and percentages.
    """
    from fupan.chapters.atrisk import feature_label
    from fupan.core import i18n

    why = skip["reason"]
    sep = "、" if lang == "zh" else ", "
    kw: dict[str, Any] = {"name": label}
    if why == "missing_table":
        kw["table"] = i18n.t(f"table.{skip.get('table', 'tickets')}", lang)
    elif why == "tiers_absent":
        kw["tiers"] = sep.join(skip["tiers"])
        kw["present"] = sep.join(skip["present"]) or i18n.t("sim.no_tiers", lang)
    elif why == "no_effect":
        kw["levers"] = sep.join(feature_label(f, lang) for f in skip["levers"])
    elif why == "no_uplift":
        kw.update(rate=fmt.pct(skip["rate"]), natural=fmt.pct(skip["natural"]))
    elif why == "none_worth":
        kw.update(
            offer=fmt.money(skip["offer"]),
            targets=fmt.int(skip["targets"]),
            best=fmt.money(skip["best_value"]),
        )
    elif why == "model":
        kw["detail"] = skip["detail"]
    elif why == "no_health_model":
        kw["events"] = skip["events"]
    return i18n.t(f"sim.skip.{why}", lang, **kw)


@dataclass
class Chapter:
    """The scenarios file and what pricing it gave: the result, or why there is none."""

    path: Path  # the scenarios file
    default: bool  # True: the example file fupan ships, no file of the run's own
    scenarios: list[Scenario]
    labels: dict[str, str]  # scenario name -> display name in the run's language
    result: SimulationResult | None
    error: str | None  # why the simulation could not run (``SimulationError``)

    @property
    def table(self) -> pd.DataFrame:
        return self.result.table if self.result is not None else pd.DataFrame()

    @property
    def priced(self) -> bool:
        """At least one scenario priced: the slides after the overview have something."""
        return self.result is not None and not self.table.empty

    def records(self) -> list[dict[str, Any]]:
        """``simulation.scenarios`` for results.json."""
        return self.result.records(self.labels) if self.result is not None else []


def chapter(ds: Dataset) -> Chapter:
    """Load the run's scenarios file and price every scenario (:func:`simulate`).

    A :class:`SimulationError` (too few churns to fit the churn model...) is kept as the
    chapter's ``error`` for the slides to say, not raised.
    """
    P = ds.params
    path, default = fsc.scenarios_path(P)
    scen = fsc.load(P, path)
    labels = {s.name: fsc.label(s, P.lang) for s in scen}
    status = outcomes.churn_status(ds)
    try:
        res, error = simulate(ds, scen, status=status), None
    except SimulationError as exc:
        res, error = None, str(exc)
    return Chapter(path, default, list(scen), labels, res, error)


class ScenarioSlides:
    """Chapter 4's slides in one language.

    Parameters
    ----------
    ch : :func:`chapter`'s result.
    params : the run's params (``simulation`` knobs, tier labels, language).
    fmt : number formats (:meth:`fupan.core.i18n.Fmt.from_params`).
    mask : hides PII in the tables exported (the notebook's ``nb.mask``; None: none).
    """

    def __init__(
        self,
        ch: Chapter,
        params: Any,
        fmt: i18n.Fmt,
        mask: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    ):
        self.ch, self.params, self.fmt = ch, params, fmt
        self.mask = mask or (lambda df: df)
        self.lang = params.lang
        self.sp = params.simulation
        self.level = fmt.pct(self.sp.interval, 0)

    # ---- words shared by the slides ---------------------------------------------------

    def t(self, key: str, **values: Any) -> str:
        return i18n.t(key, self.lang, **values)

    def name(self, n: str) -> str:
        return self.ch.labels.get(n, n)

    def pct0(self, x: float) -> str:
        return self.fmt.pct(x, 0)

    def ci(self, v: float, lo: float, hi: float, fn: Any) -> str:
        return f"{fn(v)} " + self.t("sim.interval", low=fn(lo), high=fn(hi))

    def change_cell(self, r: Any) -> str:
        """Churn change with its interval; a win-back shows the share of lost customers won
        back."""
        f = self.fmt
        if r.kind == "winback":
            return self.t(
                "sim.wb.cell", share=f.pct(-r.churn_change), low=f.pct(-r.churn_change_high),
                high=f.pct(-r.churn_change_low),
            )  # fmt: skip
        return self.ci(r.churn_change, r.churn_change_low, r.churn_change_high, f.pts)

    def months(self, x: float | None) -> str:
        if x is None or x != x or not np.isfinite(x):
            return self.t("sim.never")
        return self.t("sim.months", n=self.fmt.num(x, 1))

    def source(self, x: str) -> str:
        return self.t(f"sim.source.{x}")

    def method_note(self) -> str:
        """What the effects rest on: the churn model (retention), the prior or a pilot
        (win-back)."""
        table, res = self.ch.table, self.ch.result
        assert res is not None
        parts = []
        if (table.effect_source == "model").any():
            parts.append(self.t("sim.note.method_model", b=res.info["bootstrap"]))
        if (table.kind == "winback").any():
            parts.append(self.t("sim.note.method_prior", b=res.info["bootstrap"]))
        return ("" if self.lang == "zh" else " ").join(parts)

    # ---- the slides --------------------------------------------------------------------

    def overview(self) -> Slide:
        """Every scenario priced: the best ROI, the funded totals, the ranked table; or why
        nothing was priced. Notes: the example file, each skipped scenario, the costs."""
        ch, res = self.ch, self.ch.result
        if res is None:
            title = self.t("sim.error.title")
            s = Slide(title, notes=[str(ch.error)], skips={"*": f"{title}: {ch.error}"})
        elif ch.table.empty:
            why = self.t("sim.overview.empty_finding", file=ch.path.name)
            s = Slide(self.t("sim.overview.empty"), why, skips={"*": why})
        else:
            s = self._ranked()
        if ch.default:
            s.notes.append(self.t("sim.note.file_default", file=str(ch.path)))
        for sk in res.skipped if res is not None else []:
            why = skip_reason(sk, self.lang, self.name(sk["name"]), self.fmt)
            s.skips[f"scenarios.{sk['name']}"] = why
            s.notes.append(why)
        if ch.priced:
            s.notes += [self._costs_note(), self.method_note()]
        if s.table is not None:
            s.exports["scenarios"] = s.table
        return s

    def _ranked(self) -> Slide:
        table, f = self.ch.table, self.fmt
        best, one = table.iloc[0], len(table) == 1
        tot = funded_totals(table)
        if one:
            key = "sim.overview.title_one" if best.roi > 0 else "sim.overview.title_one_neg"
            sure = "sim.overview.sure_yes" if best.roi_low > 0 else "sim.overview.sure_no"
            finding = self.t(
                "sim.overview.finding_one", kept=f.num(best.customers_kept, 0),
                ltv=f.money(best.ltv_retained), cost=f.money(best.cost), sure=self.t(sure),
            )  # fmt: skip
        else:
            key = "sim.overview.title" if best.roi > 0 else "sim.overview.title_none"
            finding = (
                self.t(
                    "sim.overview.finding",
                    n=len(table),
                    sure=int((table.roi_low > 0).sum()),
                    kept=f.num(tot["customers_kept"], 0),
                    ltv=f.money(tot["ltv_retained"]),
                    cost=f.money(tot["cost"]),
                )  # fmt: skip
                if tot["n"]
                else self.t("sim.overview.finding_none_funded", n=len(table))
            )
        title = self.t(
            key, name=self.name(best["name"]), roi=self.pct0(best.roi),
            low=self.pct0(best.roi_low), high=self.pct0(best.roi_high), level=self.level,
        )  # fmt: skip
        shown, formats = self._scenario_table()
        return Slide(
            title, finding, tiles=self._tiles(best, one, tot), table=shown, formats=formats,
            records={"simulation.funded": tot, "simulation.best": best["name"]},
        )  # fmt: skip

    def _tiles(self, best: Any, one: bool, tot: Mapping[str, Any]) -> list:
        f, t = self.fmt, self.t
        key = "sim.tile.roi_one" if one else "sim.tile.best_roi"
        tiles = [
            (t(key, name=self.name(best["name"])), self.pct0(best.roi),
             "green" if best.roi_low > 0 else "amber"),
        ]  # fmt: skip
        if one:  # the table's own figures
            tiles += [
                (t("sim.tile.kept"), f.num(best.customers_kept, 0), None),
                (t("sim.tile.ltv"), f.money(best.ltv_retained), None),
                (t("sim.tile.cost"), f.money(best.cost), None),
            ]
        elif tot["n"]:  # the same sums as the table's rows whose phase is not "hold"
            n = tot["n"]
            tiles += [
                (t("sim.tile.funded_kept", n=n), f.num(tot["customers_kept"], 0), None),
                (t("sim.tile.funded_ltv", n=n), f.money(tot["ltv_retained"]), None),
                (t("sim.tile.funded_cost", n=n), f.money(tot["cost"]), None),
            ]
        return tiles

    def _scenario_table(self) -> tuple[pd.DataFrame, dict[str, Any]]:
        """The ranked scenarios as shown (and exported), and the formats of its columns."""
        table, f = self.ch.table, self.fmt
        roi = zip(table.roi, table.roi_low, table.roi_high, strict=True)
        shown = pd.DataFrame({
            "scenario": table.name.map(self.name),
            "targets": table.target_customers,
            "churn_change": [self.change_cell(r) for r in table.itertuples()],
            "kept": table.customers_kept,
            "ltv": table.ltv_retained,
            "cost": table.cost,
            "roi": [self.ci(a, b, c, self.pct0) for a, b, c in roi],
            "payback": table.payback_months.map(self.months),
            "source": table.effect_source.map(self.source),
            "phase": table.phase.map(lambda p: self.t(f"sim.phase.{p}")),
        })  # fmt: skip
        names = {c: self.t(f"sim.col.{c}", level=self.level) for c in shown.columns}
        formats = {
            "targets": f.int, "kept": lambda v: f.num(v, 0), "ltv": f.money, "cost": f.money
        }  # fmt: skip
        return shown.rename(columns=names), {names[k]: v for k, v in formats.items()}

    def _costs_note(self) -> str:
        if (self.ch.table.cost_basis == "file").all():
            return self.t("sim.note.costs_file")
        sh, res = fsc.DEFAULT_COST_SHARES, self.ch.result
        assert res is not None
        return self.t(
            "sim.note.costs_data", ref=self.fmt.money(res.info["reference_spend"]),
            pc=self.pct0(sh["per_customer"]), pt=self.pct0(sh["per_touch"]),
            fx=self.pct0(sh["fixed"]), offer=self.pct0(sh["offer_cost"]),
        )  # fmt: skip

    def roi(self) -> Slide:
        """ROI by scenario, with intervals (the chart draws ``chart``: the ranked table)."""
        table = self.ch.table
        key = "sim.roi.title_one" if len(table) == 1 else "sim.roi.title"
        return Slide(
            self.t(key, n=len(table), top=self.name(table.name.iloc[0])),
            self.t("sim.roi.finding", level=self.level),
            notes=[self.method_note()], chart=table,
        )  # fmt: skip

    def churn(self) -> Slide | None:
        """The targeted customers' churn today and with the change (retention scenarios);
        None when nothing was priced."""
        if not self.ch.priced:
            return None
        table, f = self.ch.table, self.fmt
        ret = table[table.kind == "retention"]
        if not len(ret):
            return Slide(self.t("sim.churn.title_none"), self.t("sim.churn.none"))
        big = ret.sort_values("churn_change").iloc[0]
        return Slide(
            self.t("sim.churn.title", name=self.name(big["name"]), before=f.pct(big.churn_before),
                   after=f.pct(big.churn_after)),
            self.t("sim.churn.finding_one" if len(ret) == 1 else "sim.churn.finding",
                   months=self.sp.projection_months, change=f.pts(big.churn_change),
                   low=f.pts(big.churn_change_low), high=f.pts(big.churn_change_high),
                   level=self.level),
            chart=ret,
        )  # fmt: skip

    def sensitivity(self) -> Slide:
        """How ROI moves with the effect size (``chart``: the tornado's rows, widest on top)."""
        res = self.ch.result
        assert res is not None
        sens, f, pct0 = res.sensitivity.copy(), self.fmt, self.pct0
        lo_m, hi_m = self.sp.sensitivity
        top = sens.iloc[0]
        be = top.break_even_effect
        title = (
            self.t("sim.sens.title", low=pct0(lo_m), name=self.name(top["name"]),
                   roi_low=pct0(top.roi_effect_low), be=pct0(be))
            if be == be
            else self.t("sim.sens.title_plain")
        )  # fmt: skip
        finding = self.t(
            "sim.sens.finding", low=f.num(lo_m, 1), high=f.num(hi_m, 1),
            name=self.name(top["name"]), cost_lo=pct0(top.roi_cost_high),
            cost_hi=pct0(top.roi_cost_low), value_lo=pct0(top.roi_value_low),
            value_hi=pct0(top.roi_value_high),
        )  # fmt: skip
        order = (sens.roi_effect_high - sens.roi_effect_low).abs().sort_values().index
        sep = "；" if self.lang == "zh" else "; "
        items = sep.join(
            f"{self.name(r.name)}: {self.source(r.effect_source)}"
            for r in self.ch.table.itertuples()
        )
        return Slide(
            title, finding, notes=[self.t("sim.sens.sources", items=items)],
            chart=sens.loc[order], records={"simulation.sensitivity": sens},
        )  # fmt: skip

    def winback(self) -> Slide | None:
        """The first win-back's economics (``chart``: its customers by expected value, highest
        first); None when nothing was priced."""
        ch, f, pct0 = self.ch, self.fmt, self.pct0
        if not ch.priced:
            return None
        assert ch.result is not None
        wb = ch.table[ch.table.kind == "winback"]
        if not len(wb):
            asked = any(s.kind == "winback" for s in ch.scenarios)
            why = self.t("sim.wb.none_priced_finding" if asked else "sim.wb.none")
            if asked:
                return Slide(self.t("sim.wb.none_priced"), why, skips={"winback": why})
            return Slide(why, skips={"winback": why})
        r = wb.iloc[0]
        frame = ch.result.winback[r["name"]].sort_values("expected_value", ascending=False)
        frame = frame.reset_index(drop=True)
        s = Slide(
            self.t("sim.wb.title", contacted=f.int(r.contacted), excluded=f.int(r.excluded)),
            self.t("sim.wb.finding", rate=f.pct(r.reactivation_rate - r.natural_return_rate),
                   prior=f.pct(r.reactivation_rate), natural=f.pct(r.natural_return_rate),
                   years=f.num(r.value_years, 1), cost=f.money(frame.cost.iloc[0]),
                   kept=f.num(r.customers_kept, 0), roi=pct0(r.roi), low=pct0(r.roi_low),
                   high=pct0(r.roi_high), level=self.level),
            chart=frame, records={"simulation.winback": self._winback_record(wb)},
        )  # fmt: skip
        if r.natural_return_basis == "dormancy" and r.effect_source != "pilot":
            s.notes.append(
                self.t("sim.wb.natural_dormancy", natural=f.pct(r.natural_return_rate),
                       n=f.int(r.natural_return_customers))
            )  # fmt: skip
        tier = frame.tier.map(lambda x: self.params.tier_label(x) if isinstance(x, str) else "")
        s.exports["winback"] = self.mask(frame.assign(tier=tier))
        return s

    @staticmethod
    def _winback_record(wb: pd.DataFrame) -> dict[str, dict[str, Any]]:
        return {
            x["name"]: {
                "targets": int(x.target_customers), "contacted": int(x.contacted),
                "excluded": int(x.excluded), "natural_return_rate": x.natural_return_rate,
                "reactivation_rate": x.reactivation_rate, "value_years": x.value_years,
            }
            for _, x in wb.iterrows()
        }  # fmt: skip

    def pilots(self) -> Slide:
        """Pilot design per scenario (the table) and the readout of pilots already run."""
        res, f, t, sp = self.ch.result, self.fmt, self.t, self.sp
        assert res is not None
        pl = res.pilots
        first = pl[pl.n_per_arm.notna() & pl.feasible]
        if len(first):
            p0 = first.iloc[0]
            title = t("sim.pilot.title", name=self.name(p0["name"]), n=f.int(p0.n_per_arm),
                      months=int(p0.months))  # fmt: skip
        else:
            title = t("sim.pilot.title_none")
        finding = t("sim.pilot.finding", power=self.pct0(sp.power), alpha=self.pct0(sp.alpha),
                    rule=self.pct0(sp.go_uplift))  # fmt: skip
        uplift = [
            self.pct0(u) if u is not None and u == u else t("sim.pilot.no_base")
            for u in pl.predicted_uplift
        ]
        n = [
            f.int(n) if n == n and n is not None else t("sim.pilot.undetectable")
            for n in pl.n_per_arm
        ]
        ok = zip(pl.feasible, pl.eligible, strict=True)
        shown = pd.DataFrame({
            "scenario": pl.name.map(self.name),
            "outcome": pl.outcome.map(lambda x: t(f"sim.outcome.{x}")),
            "control": pl.p_control,
            "treated": pl.p_treated,
            "uplift": uplift,
            "n": n,
            "months": pl.months.map(lambda m: t("sim.months", n=int(m))),
            "feasible": [t("sim.yes") if y else t("sim.no", eligible=f.int(e)) for y, e in ok],
        })  # fmt: skip
        cols = {c: t(f"sim.pcol.{c}") for c in shown.columns}
        # Scenarios that already carry a pilot's results: the pilot tested against the go rule.
        readouts = {
            s.name: readout(s.pilot, "reactivation" if s.kind == "winback" else "churn",
                            sp.go_uplift, sp.alpha)
            for s in self.ch.scenarios
            if s.pilot is not None
        }  # fmt: skip
        notes = [
            t("sim.readout.note", name=self.name(k), uplift=self.pct0(r["uplift"]),
              low=self.pct0(r["uplift_low"]), high=self.pct0(r["uplift_high"]),
              p=f"{r['p_value']:.3f}", decision=t(f"sim.decision.{r['decision']}"))
            for k, r in readouts.items()
        ]  # fmt: skip
        return Slide(
            title, finding, table=shown.rename(columns=cols), notes=notes,
            formats={cols["control"]: f.pct, cols["treated"]: f.pct},
            records={"simulation.pilots": pl, "simulation.pilot_readouts": readouts},
        )  # fmt: skip

    def roadmap(self) -> Slide:
        """Pilot -> rollout -> standardise (``chart``: the roadmap the Gantt chart draws)."""
        res = self.ch.result
        assert res is not None
        rm = res.roadmap
        n_pilot = int(rm.phase.isin(["pilot", "evaluate"]).sum())
        n_hold = int((rm.phase == "hold").sum())
        return Slide(
            self.t("sim.road.title", pilot=n_pilot, hold=n_hold), self.t("sim.road.finding"),
            chart=rm, records={"simulation.roadmap": rm},
        )  # fmt: skip

    def method(self) -> Slide | None:
        """What the churn model rests on (``chart``: its hazard ratios per unit, bottom up);
        None when there is nothing to say."""
        res, f, t = self.ch.result, self.fmt, self.t
        if res is None or res.model is None:
            if self.ch.priced:
                return Slide(t("sim.method.none"), t("sim.method.none_finding"))
            return None
        m = res.model
        eff = m.effects[~m.effects.column.str.contains("=")].copy()
        resp = eff[eff.column == "median_first_response_days"]
        title = (
            t("sim.method.title", hr=f.num(float(np.exp(resp.log_hr_per_unit.iloc[0])), 2))
            if len(resp)
            else t("sim.method.title_plain")
        )
        finding = t(
            "sim.method.finding", start=str(m.fit_start.date()), end=str(m.fit_end.date()),
            rows=f.int(m.rows), customers=f.int(m.customers), events=f.int(m.events),
            pred=f.pct(m.predicted_annual_churn), obs=f.pct(m.observed_annual_churn),
        )  # fmt: skip
        s = Slide(title, finding, chart=self._effects(eff), records={"simulation.model": {
            "fit_period": [str(m.fit_start.date()), str(m.fit_end.date())], "rows": m.rows,
            "customers": m.customers, "events": m.events,
            "inferred_left_out": m.inferred_left_out, "features": m.features,
            "effects": m.effects, "predicted_annual_churn": m.predicted_annual_churn,
            "observed_annual_churn": m.observed_annual_churn,
            "value_model": res.info["value_model"], "projection_months": self.sp.projection_months,
        }})  # fmt: skip
        if s.chart is not None and s.chart.empty:
            # every feature is in currency or a category: no per-unit effect reads well
            s.notes.append(t("sim.method.no_chart"))
            s.chart = None
        s.notes.append(t("sim.method.note"))
        if m.inferred_left_out:
            s.notes.append(t("sim.method.inferred", n=f.int(m.inferred_left_out)))
        return s

    def _effects(self, eff: pd.DataFrame) -> pd.DataFrame:
        """Hazard ratio per unit with its interval, for features whose unit reads well (days,
        counts; not currency), bottom up."""
        from fupan.chapters.atrisk import feature_label

        eff = eff[~eff.column.isin(UNREADABLE_PER_UNIT)].iloc[::-1]
        return pd.DataFrame({
            "label": [feature_label(c, self.lang) for c in eff.column],
            "hr": np.exp(eff.log_hr_per_unit), "low": np.exp(eff.low), "high": np.exp(eff.high),
        })  # fmt: skip
