"""What each slide of notebook 03 says and shows, from one :class:`ValuationSlides`.

:func:`valuation_slides` runs the chapter once (:func:`fupan.chapters.clv.review`, the churn chapter's
scores, the value at risk) and each method of :class:`ValuationSlides` returns one
:class:`fupan.chapters.slide.Slide`: its title and finding in the run's language, the figures
it records into results.json, the reasons it records for what it cannot show, its tiles,
table, chart frame, notes and exports. The notebook shows it with ``nb.show`` (title,
missing table, tiles, table, chart, notes); the chart frames are drawn by :mod:`fupan.report.plots.ltv`. Every sentence quotes computed
numbers; a slide that cannot be made says why in words.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters.clv.groups import breakdown_gap, clv_by_group, customer_attributes
from fupan.chapters.clv.loss import loss_by, material, top_lost
from fupan.chapters.clv.review import Review, model_parameters, params_record, review
from fupan.chapters.clv.risk import at_risk, churn_scores
from fupan.chapters.clv.valuation import CONTRACTS, POOLED, TRANSACTIONS, UNRECORDED
from fupan.chapters.slide import Slide
from fupan.core import i18n
from fupan.io import exports
from fupan.io.dataset import Dataset
from fupan.measures.outcomes import churn_status


def valuation_slides(
    ds: Dataset,
    fmt: i18n.Fmt,
    run_dir: str = "",
    mask: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
) -> ValuationSlides:
    """Run chapter 3 on ``ds`` and return its slides' maker.

    A review the data cannot support (too little to fit a model) does not raise: the slides'
    ``error`` says why and its headline slide states it. ``mask`` hides PII in the tables
    shown and exported (the notebook's ``nb.mask``); ``run_dir`` is where chapter 2's
    at-risk list of this run is read from.
    """
    status = churn_status(ds)
    try:
        rv, error = review(ds, status), None
    except ValueError as exc:  # too little data to fit: the chapter says so and the run goes on
        rv, error = None, str(exc)
    return ValuationSlides(ds, fmt, status, rv, error, run_dir, mask or (lambda df: df))


class ValuationSlides:
    """Chapter 3's slides from one review (see :func:`valuation_slides`); ``ok`` is False when the review
    could not be made (only :meth:`headline` then has a slide)."""

    def __init__(
        self,
        ds: Dataset,
        fmt: i18n.Fmt,
        status: pd.DataFrame,
        rv: Review | None,
        error: str | None,
        run_dir: str,
        mask: Callable[[pd.DataFrame], pd.DataFrame],
    ) -> None:
        self.ds, self.f, self.status, self.rv, self.error = ds, fmt, status, rv, error
        self.P, self.L, self.mask = ds.params, ds.params.ltv, mask
        self.ok = rv is not None
        self.attrs = customer_attributes(ds, status)
        # tiers the business assigned, or the spend floors' recommendation filled in by the loader
        self.tiers_assigned = exports.supplied(ds, "customers", "tier")
        self.period = {"start": self.P.period_start, "end": self.P.as_of}
        self.records = {"ltv.model": rv.model if rv else None, "ltv.error": error}
        if rv is None:
            return
        self.model_label = self.t(f"ltv.model.{rv.model.replace('+', '_')}")
        active = status.customer_id[~status.churned]
        self.scores, source = churn_scores(ds, self.P.as_of, run_dir)
        self.risk = at_risk(rv.now, active, self.L, self.scores)
        risk_source = "churn_scores" if self.scores is not None else f"model_{rv.kind}"
        L, cur, loss = self.L, rv.current, rv.loss
        self.total, self.lost, self.rate = float(cur.clv.sum()), loss.lost, loss.rate
        self.bench = self.P.benchmarks.lost_ltv_rate
        self.gap = self.rate - self.bench
        self.material = material(loss.lost, loss.base)
        self.at_risk_ltv = float(self.risk.ltv_at_risk.sum())
        settings = {"margin": L.margin, "discount_rate_annual": L.discount_rate_annual,
                    "horizon_years": L.horizon_years, "time_unit": L.time_unit}  # fmt: skip
        self.records |= {
            "ltv.kind": rv.kind,
            "ltv.fallback": rv.fallback,
            "ltv.params": params_record(rv.now),
            "ltv.snapshots": [s.date() for s in rv.snapshots],
            "ltv.settings": settings,
        }
        self._scores_status, self._risk_source = source, risk_source

    # ---- words ------------------------------------------------------------------------

    def t(self, key: str, **values: Any) -> str:
        return i18n.t(key, self.P.lang, **values)

    def tier(self, code: Any) -> str:
        return self.t("ltv.unrecorded") if code == UNRECORDED else self.P.tier_label(str(code))

    def label(self, prefix: str, value: Any) -> str:
        """A data value's label from the catalogue, or the value itself when it has none."""
        if value == UNRECORDED:
            return self.t("ltv.unrecorded")
        try:
            return self.t(f"{prefix}.{value}")
        except i18n.MissingLabelError:
            return str(value)

    def gap_note(self, reason: str, what: str, column: str, table: pd.DataFrame) -> str:
        """Why a breakdown cannot be shown, in words (see :func:`breakdown_gap`)."""
        if reason == "not_supplied":
            return self.t("ltv.gap.not_supplied", what=self.t(f"ltv.what.{what}"), column=column)
        groups = [g for g in table.group if g != UNRECORDED] or list(table.group)
        name = self.tier(groups[0]) if what == "tier" else self.label(f"ltv.{what}_name", groups[0])
        return self.t(
            "ltv.gap.one_group",
            what=self.t(f"ltv.what.{what}"),
            group=name,
            rate=self.f.pct(self.rate),
        )

    def _recommended(self, slide: Slide) -> Slide:
        if not self.tiers_assigned:
            slide.notes.append(self.t("ltv.tiers.recommended"))
        return slide

    # ---- slides -----------------------------------------------------------------------

    def headline(self) -> Slide:
        """The base's value, the value churn took, against the benchmark."""
        if not self.ok:
            text = self.t("ltv.error.finding", error=self.error)
            return Slide(self.t("ltv.error.title"), text, skips={"*": text})
        f, L, rv, loss = self.f, self.L, self.rv, self.rv.loss
        cur = rv.current
        mean_clv = float(cur.clv.mean()) if len(cur) else None
        records = {
            "ltv.total_clv": self.total, "ltv.customers_valued": len(cur),
            "ltv.customers_not_valued": len(rv.not_valued), "ltv.mean_clv": mean_clv,
            "ltv.lost_ltv": loss.lost, "ltv.base_ltv": loss.base, "ltv.lost_ltv_rate": loss.rate,
            "ltv.benchmark_lost_ltv_rate": self.bench, "ltv.lost_ltv_gap": self.gap,
            "ltv.lost_ltv_material": self.material, "ltv.lost_customers": loss.churned,
            "ltv.lost_customers_not_valued": loss.churned_not_valued,
            "ltv.base_customers": loss.base_customers, "ltv.at_risk_ltv": self.at_risk_ltv,
            "ltv.at_risk_customers": len(self.risk), "ltv.at_risk_source": self._risk_source,
            "ltv.at_risk_scores_status": self._scores_status,
        }  # fmt: skip
        key = "ltv.headline.title_above" if self.gap > 0 else "ltv.headline.title_below"
        rate_s, bench_s = f.pct_apart(self.rate, self.bench)
        if rate_s == bench_s:  # equal to every digit shown: level with the benchmark
            key = "ltv.headline.title_at"
        if (
            not self.material
        ):  # nothing (worth a figure) lost: say so rather than "$0, 10 pts below"
            key = "ltv.headline.title_none"
        years = f.num(L.horizon_years, 0)
        slide = Slide(
            self.t(key, lost=f.money(self.lost), rate=rate_s, bench=bench_s,
                   gap=f.pts(abs(self.gap)).lstrip("+")),
            self.t("ltv.headline.finding", n=f.int(len(cur)), total=f.money(self.total), years=years,
                   model=self.model_label, churned=f.int(loss.churned), **self.period),
            records,
            tiles=[
                (self.t("ltv.tile.total", years=years), f.money(self.total), None),
                (self.t("ltv.tile.mean"), f.money(mean_clv), None),
                (self.t("ltv.tile.lost"), f.money(self.lost), None),
                (self.t("ltv.tile.rate", bench=f.pct(self.bench)), f.pct(self.rate),
                 "red" if self.gap > 0 else "green"),
                (self.t("ltv.tile.at_risk"), f.money(self.at_risk_ltv), None),
            ],
        )  # fmt: skip
        if not self.material and loss.churned and self.P.business_model == "non_contractual":
            slide.notes.append(
                self.t("ltv.headline.none_note", days=self.P.churn_definition.dormancy_days)
            )
        if rv.fallback == "no_contracts":
            slide.notes.append(self.t("ltv.note.no_contracts"))
        slide.notes.append(
            self.t("ltv.headline.note", margin=f.pct(L.margin, 0),
                   rate=f.pct(L.discount_rate_annual, 0), years=years)
        )  # fmt: skip
        return slide

    def model(self) -> Slide:
        """The model's fitted parameters, with what the fit could not estimate in words."""
        f, L, rv = self.f, self.L, self.rv
        table, info = model_parameters(rv.now), rv.now.info
        if rv.kind == TRANSACTIONS:
            slide = Slide(
                self.t("ltv.model.title_transactions", model=self.model_label,
                       n=f.int(info["fit_customers"]), spend=f.money(info["population_spend"])),
                self.t("ltv.model.finding_transactions", unit=self.t(f"ltv.unit.{L.time_unit}"),
                       end=self.P.as_of),
                {"ltv.spend_imputed_customers": info["spend_imputed"],
                 "ltv.one_time_buyers": info["one_time_buyers"],
                 "ltv.population_spend": info["population_spend"]},
            )  # fmt: skip
            slide.notes = self._transaction_notes(table, info)
        else:
            pooled = sorted(
                self.tier(s)
                for s, used in info["segments"].items()
                if used == POOLED and s != POOLED
            )
            slide = Slide(
                self.t("ltv.model.title_contracts", n=f.int(info["chains"]),
                       ended=f.int(info["chains_ended"]), years=f.num(info["period_years"], 1)),
                self.t(f"ltv.model.finding_contracts_{L.sbg_segment}", end=self.P.as_of),
                {"ltv.sbg_pooled_segments": pooled,
                 "ltv.contract_period_years": info["period_years"]},
            )  # fmt: skip
            slide.notes = self._contract_notes(pooled)
        slide.table, slide.columns = self._parameter_table(table)
        return slide

    def _parameter_table(self, table: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, str]]:
        f, seg = self.f, self.L.sbg_segment
        shown = table.assign(
            model=table.model.map(lambda m: self.t(f"ltv.model.short.{m}")),
            segment=table.segment.map(lambda s: self.t("ltv.segment.all") if s == POOLED
                                      else (self.tier(s) if seg == "tier" else str(s))),
        )  # fmt: skip
        cols = ["model", "segment", "param", "estimate", "se", "ci_low", "ci_high"]

        # a standard error or interval the fit cannot give (a boundary estimate, or one so
        # wide that its bound runs past 10^9) is said in words
        def num(v: float) -> str:
            if not np.isfinite(v) or abs(v) >= 1e9:
                return self.t("ltv.param.not_estimable")
            return f.num(v, 3) if abs(v) < 1000 else f.num(v, 0)

        # formatted here: the table renderer shows a missing value as a dash, this says why
        shown = shown.assign(
            **{c: shown[c].astype(float).map(num) for c in ("estimate", "se", "ci_low", "ci_high")}
        )
        return shown[cols], {c: self.t(f"ltv.col.{c}") for c in cols}

    def _transaction_notes(self, table: pd.DataFrame, info: dict[str, Any]) -> list[str]:
        f, notes = self.f, []
        if info["spend_imputed"]:
            notes.append(self.t("ltv.note.spend_imputed", n=f.int(info["spend_imputed"]),
                                spend=f.money(info["population_spend"])))  # fmt: skip
        if self.L.transaction_model == "bgnbd" and info["one_time_buyers"]:
            notes.append(self.t("ltv.note.one_time_buyers", n=f.int(info["one_time_buyers"])))
        if not np.isfinite(table[["se", "ci_low", "ci_high"]].to_numpy(dtype=float)).all():
            notes.append(self.t("ltv.note.not_estimable"))
        return notes

    def _contract_notes(self, pooled: list[str]) -> list[str]:
        f, L, notes = self.f, self.L, []
        sep = "、" if self.P.lang == "zh" else ", "
        if pooled:
            notes.append(self.t("ltv.note.pooled", segments=sep.join(pooled), n=L.sbg_min_chains,
                                k=L.sbg_min_churned))  # fmt: skip
        # a boundary fit (alpha, beta -> infinity) is a constant renewal rate: say so, in words
        sbg = self.rv.now.models["sbg"]
        flat = {s: m.params_ for s, m in sbg.items() if m.params_["alpha"] > 1000}
        if flat:
            names = [self.t("ltv.segment.all") if s == POOLED else self.tier(s) for s in flat]
            rates = [f.pct(p_["beta"] / (p_["alpha"] + p_["beta"])) for p_ in flat.values()]
            notes.append(self.t("ltv.note.sbg_homogeneous", segments=sep.join(names),
                                rates=sep.join(rates)))  # fmt: skip
        return notes

    def check(self) -> Slide:
        """The model's forecast for the review period against what customers did."""
        f, rv = self.f, self.rv
        chk, m = rv.check, rv.check.attrs
        records: dict[str, Any] = {"ltv.check": {"table": chk, **m}}
        if rv.kind == TRANSACTIONS and len(chk):
            pred, act = m["total_predicted"], m["total_actual"]
            err = (pred - act) / act if act else None
            records["ltv.check_total_error"] = err
            corr = m["correlation"]
            corr_s = f.num(corr, 2) if corr == corr else self.t("ltv.check.corr_none")
            return Slide(
                self.t("ltv.check.title", predicted=f.int(pred), actual=f.int(act), error=f.pct(err)),
                self.t("ltv.check.finding", mae=f.num(m["mae"], 2), corr=corr_s, **self.period),
                records, chart=chk,
                notes=[self.t("ltv.check.note", n=f.int(int(chk.n_customers.sum())))],
            )  # fmt: skip
        if rv.kind == CONTRACTS and len(chk):
            pred = m["total_predicted"] / m["decisions"]
            act = m["total_actual"] / m["decisions"]
            records |= {"ltv.check_renewal_predicted": pred, "ltv.check_renewal_actual": act}
            return Slide(
                self.t("ltv.check.title_contracts", predicted=f.pct(pred), actual=f.pct(act),
                       n=f.int(m["decisions"])),
                self.t("ltv.check.finding_contracts", mae=f.pts(m["weighted_mae"]), **self.period),
                records, chart=chk,
            )  # fmt: skip
        return Slide(
            self.t("ltv.check.title_none"), self.t("ltv.check.finding_none", **self.period), records
        )

    def tiers(self) -> Slide:
        """What customers are worth, by tier (box plot of CLV, labelled with the mean)."""
        f, P, cur, attrs = self.f, self.P, self.rv.current, self.attrs
        by_tier = clv_by_group(cur, attrs, "tier", P.tiers.order)
        core_share = float(by_tier[by_tier.group.isin(P.tiers.core)].share.sum())
        best = by_tier.iloc[0]
        sep = "、" if P.lang == "zh" else ", "
        core_names = sep.join(self.tier(t) for t in P.tiers.core)
        finding = self.t("ltv.tiers.finding", core=core_names, n=f.int(len(cur)))
        mean, name = f.money(best["mean"]), self.tier(best.group)
        if len(by_tier) == 1:  # one tier: no share to compare, no "core" claim
            title, finding = (
                self.t("ltv.tiers.title_one", n=f.int(len(cur)), tier=name, mean=mean),
                None,
            )
        elif not by_tier.group.isin(P.tiers.core).any():
            title = self.t("ltv.tiers.title_nocore", core=core_names, tier=name, mean=mean)
        else:
            title = self.t("ltv.tiers.title", share=f.pct(core_share), tier=name, mean=mean)
        merged = cur[["clv"]].join(attrs.set_index("customer_id")["tier"])
        merged["tier"] = merged.tier.astype(object).where(merged.tier.notna(), UNRECORDED)
        chart = by_tier.assign(
            label=[self.tier(g) for g in by_tier.group],
            values=[
                merged.clv[(merged.tier == g) & (merged.clv > 0)].to_numpy() for g in by_tier.group
            ],
        )
        # the 5th percentile sets the log axis' floor: whiskers stop there too
        chart["p5"] = [np.percentile(v, 5) if len(v) else np.nan for v in chart["values"]]
        values_out = (
            cur.rename_axis("customer_id").reset_index().merge(attrs, on="customer_id", how="left")
        )
        values_out = exports.drop_unsupplied(values_out, self.ds)
        slide = Slide(
            title, finding, {"ltv.clv_by_tier": by_tier, "ltv.core_clv_share": core_share},
            chart=chart, notes=[self.t("ltv.tiers.note")],
            exports={"ltv_customer_values": values_out.drop(columns=["reason", "competitor", "lost_value"])},
        )  # fmt: skip
        return self._recommended(slide)

    def lost_by_tier(self) -> Slide:
        """LTV lost to churn by tier: loss rate against the benchmark."""
        f, rv = self.f, self.rv
        lost_tier = loss_by(rv.ledger, self.attrs, "tier", self.P.tiers.order)
        with_base = lost_tier[lost_tier.base_clv > 0]
        tier_gap = breakdown_gap(self.ds, lost_tier)
        records = {"ltv.lost_by_tier": lost_tier, "ltv.lost_by_tier_skipped": tier_gap}
        gap_text = self.gap_note(tier_gap, "tier", "tier", lost_tier) if tier_gap else None
        skips = {"lost_by_tier": gap_text} if tier_gap else {}
        if not self.material:
            return Slide(self.t("ltv.lost_tier.title_none"), None, records, skips,
                         notes=[self.t("ltv.none_note")])  # fmt: skip
        if tier_gap == "one_group":
            what = self.t("ltv.what.tier")
            return self._recommended(
                Slide(self.t("ltv.gap.title", what=what), gap_text, records, skips)
            )
        worst = with_base.sort_values("rate", ascending=False).iloc[0]
        loss = rv.loss
        slide = Slide(
            self.t("ltv.lost_tier.title", tier=self.tier(worst.group), rate=f.pct(worst.rate),
                   lost=f.money(worst.lost_ltv), bench=f.pct(self.bench)),
            self.t("ltv.lost_tier.finding", n=f.int(int((with_base.rate > self.bench).sum())),
                   k=len(with_base)),
            records, skips, chart=with_base.assign(label=[self.tier(g) for g in with_base.group]),
            notes=[self.t("ltv.lost.note", base=f.money(loss.base), n=f.int(loss.base_customers))],
        )  # fmt: skip
        return self._recommended(slide)

    def _bars(self, table: pd.DataFrame, name: str, prefix: str) -> dict[str, Any]:
        """The chart frame (top ten groups, labelled) and export of a loss-by-group bar chart."""
        chart = table.head(10).assign(label=[self.label(prefix, g) for g in table.group.head(10)])
        return {"chart": chart, "exports": {f"ltv_lost_by_{name}": table}}

    def lost_by_reason(self) -> Slide:
        """LTV lost to churn by recorded churn reason."""
        f, loss = self.f, self.rv.loss
        lost_reason = loss_by(self.rv.ledger, self.attrs, "reason")
        records = {"ltv.lost_by_reason": lost_reason}
        recorded = lost_reason[lost_reason.group != UNRECORDED]
        has_events = self.ds.has("churn_events")
        if has_events and len(recorded) and self.material and recorded.lost_ltv.sum() > 0:
            top_r = recorded.iloc[0]
            slide = Slide(
                self.t("ltv.reason.title" if len(recorded) > 1 else "ltv.reason.title_one",
                       reason=self.label("ltv.reason_name", top_r.group), share=f.pct(top_r.share),
                       lost=f.money(top_r.lost_ltv)),
                self.t("ltv.reason.finding", n=f.int(int(recorded.churned.sum())),
                       total=f.int(loss.churned)),
                records, **self._bars(lost_reason, "reason", "ltv.reason_name"),
            )  # fmt: skip
            unrec = lost_reason[lost_reason.group == UNRECORDED]
            if len(unrec) and self.P.business_model == "non_contractual":
                slide.notes.append(
                    self.t("ltv.reason.unrecorded_note", n=f.int(int(unrec.churned.iloc[0])),
                           share=f.pct(float(unrec.share.iloc[0])),
                           days=self.P.churn_definition.dormancy_days)
                )  # fmt: skip
            return slide
        none_note = self.t("ltv.reason.none_note")
        why = (
            none_note
            if has_events
            else self.t("deck.missing_table", table=self.t("table.churn_events"))
        )
        return Slide(
            self.t("ltv.reason.title_none"), None, records, {"lost_by_reason": why},
            missing=None if has_events else "churn_events", notes=[none_note] if has_events else [],
        )  # fmt: skip

    def lost_by_industry(self) -> Slide:
        """LTV lost to churn by industry: the highest loss rate against the benchmark."""
        f = self.f
        lost_ind = loss_by(self.rv.ledger, self.attrs, "industry")
        rated = lost_ind[lost_ind.base_clv > 0].sort_values("rate", ascending=False)
        ind_gap = breakdown_gap(self.ds, lost_ind, "industry")
        records = {"ltv.lost_by_industry": lost_ind, "ltv.lost_by_industry_skipped": ind_gap}
        skips = {}
        if ind_gap:
            skips["lost_by_industry"] = (
                self.gap_note(ind_gap, "industry", "industry", lost_ind)
                if ind_gap != "no_loss" else self.t("ltv.none_note")
            )  # fmt: skip
        if ind_gap in ("not_supplied", "one_group"):
            return Slide(self.t("ltv.gap.title", what=self.t("ltv.what.industry")),
                         self.gap_note(ind_gap, "industry", "industry", lost_ind), records, skips)  # fmt: skip
        if len(rated) and self.material and rated.lost_ltv.sum() > 0:
            w = rated.iloc[0]
            return Slide(
                self.t("ltv.industry.title", industry=self.label("ltv.industry_name", w.group),
                       rate=f.pct(w.rate), lost=f.money(w.lost_ltv), bench=f.pct(self.bench)),
                self.t("ltv.industry.finding", n=f.int(int((rated.rate > self.bench).sum())),
                       k=len(rated)),
                records, skips, **self._bars(lost_ind, "industry", "ltv.industry_name"),
            )  # fmt: skip
        return Slide(self.t("ltv.industry.title_none"), None, records, skips,
                     notes=[self.t("ltv.none_note")])  # fmt: skip

    def lost_by_cohort(self) -> Slide:
        """LTV lost to churn by acquisition cohort (year, else quarter or month)."""
        f, P, attrs = self.f, self.P, self.attrs
        lost_coh = loss_by(self.rv.ledger, attrs, "cohort")
        lost_coh = lost_coh.sort_values("group").reset_index(drop=True)
        rated = lost_coh[(lost_coh.base_clv > 0) & (lost_coh.group != UNRECORDED)]
        unit = attrs.attrs.get("cohort_unit")
        shown = len(rated) and self.material and rated.lost_ltv.sum() > 0
        coh_gap = ("one_cohort" if unit is None else "one_group" if len(rated) == 1
                   else None if shown else "no_loss")  # fmt: skip
        records = {"ltv.lost_by_cohort": lost_coh, "ltv.cohort_unit": unit,
                   "ltv.lost_by_cohort_skipped": coh_gap}  # fmt: skip
        first = pd.to_datetime(self.status.acquired_at).min()
        one_cohort = self.t("ltv.gap.one_cohort",
                            month=first.strftime("%Y-%m") if pd.notna(first) else P.as_of)  # fmt: skip
        skips = {}
        if coh_gap:
            skips["lost_by_cohort"] = (
                self.t("ltv.none_note") if coh_gap == "no_loss"
                else self.gap_note("one_group", "cohort", "acquired_at", rated)
                if coh_gap == "one_group" else one_cohort
            )  # fmt: skip
        ledger = exports.drop_unsupplied(
            self.rv.ledger.merge(attrs, on="customer_id", how="left"), self.ds
        )
        slide = Slide(self.t("ltv.cohort.title_none"), None, records, skips,
                      exports={"ltv_period_ledger": ledger})  # fmt: skip
        gap_title = self.t("ltv.gap.title", what=self.t("ltv.what.cohort"))
        if unit is None:  # everyone acquired in one month: no cohorts to compare
            slide.title, slide.finding = gap_title, one_cohort
        elif len(rated) < 2 and len(rated):
            slide.title = gap_title
            slide.finding = self.gap_note("one_group", "cohort", "acquired_at", rated)
        elif shown:
            w = rated.sort_values("rate", ascending=False).iloc[0]
            cohort_name = f"{w.group} 年" if unit == "year" and P.lang == "zh" else w.group
            slide.title = self.t("ltv.cohort.title_unit", year=cohort_name, rate=f.pct(w.rate),
                                 lost=f.money(w.lost_ltv))  # fmt: skip
            slide.finding = self.t(f"ltv.cohort.finding_unit.{unit}", bench=f.pct(self.bench))
            slide.chart = rated.assign(label=list(rated.group))
        else:
            slide.notes.append(self.t("ltv.none_note"))
        return slide

    def top_lost(self) -> Slide:
        """The largest lost accounts, with only the columns the data supplied."""
        f, L, ledger = self.f, self.L, self.rv.ledger
        top = top_lost(ledger, self.attrs, L.top_lost)
        shown = self.mask(top)
        cols = ["customer_id", "customer_name", "tier", "industry", "churned_at", "reason",
                "lost_ltv", "lost_value"]  # fmt: skip
        # columns the data did not supply (names, industries, recorded reasons or lost values)
        # are left out, not shown blank in every row
        cols = [c for c in cols if c not in exports.unsupplied(shown, self.ds)]
        if not self.ds.has("churn_events") or shown.reason.isna().all():
            cols.remove("reason")
        if shown.lost_value.isna().all():
            cols.remove("lost_value")
        records: dict[str, Any] = {"ltv.top_lost_accounts": shown[cols]}
        if not (len(top) and self.material):
            why = self.t("ltv.none_note")
            return Slide(self.t("ltv.lost_tier.title_none"), None, records,
                         {"top_lost_share": why}, notes=[why])  # fmt: skip
        lost_top = float(top.lost_ltv.sum())
        share = lost_top / self.lost
        records["ltv.top_lost_share"] = share
        first = shown.iloc[0]
        named = (
            "customer_name" in cols and isinstance(first.customer_name, str) and first.customer_name
        )
        # when every lost account is listed their share of the loss is 100% by construction: not said
        every = len(top) >= int(ledger[ledger.churned].lost_ltv.notna().sum())
        slide = Slide(
            self.t("ltv.top.title_all" if every else "ltv.top.title", n=len(top),
                   lost=f.money(lost_top), share=f.pct(share)),
            self.t("ltv.top.finding" if named else "ltv.top.finding_id",
                   name=str(first.customer_name if named else first.customer_id),
                   lost=f.money(float(top.lost_ltv.iloc[0]))),
            records, max_rows=L.top_lost, columns={c: self.t(f"ltv.col.{c}") for c in cols},
            formats={"lost_ltv": f.money},
        )  # fmt: skip
        shown = shown.assign(
            tier=shown.tier.map(self.tier),
            industry=shown.industry.map(lambda v: self.label("ltv.industry_name", v)),
            reason=shown.reason.map(
                lambda v: self.label("ltv.reason_name", v if isinstance(v, str) else UNRECORDED)
            ),
            churned_at=pd.to_datetime(shown.churned_at).dt.strftime("%Y-%m-%d"),
            lost_value=shown.lost_value.map(
                lambda v: f.money(v) if pd.notna(v) else self.t("ltv.unrecorded")
            ),
        )
        slide.table = shown[cols]
        if "lost_value" in cols:
            slide.notes.append(self.t("ltv.top.note"))
        return self._recommended(slide) if "tier" in cols else slide

    def at_risk(self) -> Slide:
        """The value at risk now, by tier, and the rule that says who is at risk."""
        f, L, risk = self.f, self.L, self.risk
        risk_attrs = risk.merge(self.attrs, on="customer_id", how="left")
        risk_tier = risk_attrs.assign(
            tier=risk_attrs.tier.astype(object).where(risk_attrs.tier.notna(), UNRECORDED)
        )
        risk_tier = risk_tier.groupby("tier").agg(
            customers=("customer_id", "size"), ltv_at_risk=("ltv_at_risk", "sum")
        )
        rank = {t: i for i, t in enumerate(self.P.tiers.order)}
        risk_tier = risk_tier.reset_index().sort_values(
            "tier", key=lambda s: s.map(lambda t: rank.get(t, len(rank)))
        )
        rule = (self.t("ltv.risk.rule_scores") if self.scores is not None else
                self.t(f"ltv.risk.rule_{self.rv.kind}", p=f.pct(L.at_risk_p_alive, 0),
                       days=L.at_risk_renewal_days))  # fmt: skip
        finding = (
            self.t("ltv.risk.finding", rule=rule)
            + " "
            + self.t("ltv.risk.population", date=self.P.as_of)
        )
        out = exports.drop_unsupplied(risk_attrs, self.ds)
        out = out.drop(columns=["reason", "competitor", "lost_value"])
        slide = Slide(
            self.t("ltv.risk.title_none"), finding, {"ltv.at_risk_by_tier": risk_tier},
            exports={"ltv_at_risk": self.mask(out)},
        )  # fmt: skip
        if len(risk) and self.total > 0:
            slide.title = self.t("ltv.risk.title", value=f.money(self.at_risk_ltv), n=f.int(len(risk)),
                                 share=f.pct(self.at_risk_ltv / self.total))  # fmt: skip
            if len(risk_tier) == 1:
                slide.notes.append(
                    self.t("ltv.risk.one_tier", tier=self.tier(risk_tier.tier.iloc[0]))
                )
            else:
                slide.chart = risk_tier.assign(label=[self.tier(t) for t in risk_tier.tier])
        if self.scores is None:
            slide.notes.append(self.t("ltv.risk.note_model"))
        return slide
