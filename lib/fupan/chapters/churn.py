"""Chapter 2, churn root cause: the chapter's computation once, and its slides' words.

:func:`review` computes what every slide of the chapter is made from, in one call (the
notebook ``02_churn_root_cause`` then shows one slide per cell): the monthly as-of
snapshots (:func:`fupan.measures.features.snapshots`), the driver analysis by three methods
(:mod:`fupan.models.drivers`), the learned and the hand-weighted health scores fitted on
the earlier snapshots and judged on the later ones (:mod:`fupan.models.health`), the warning
rules backtested (:func:`fupan.chapters.signals.backtest_rules`) and the at-risk list
(:mod:`fupan.chapters.atrisk`). The functions below word the overview, health-score and
driver slides from it, quoting its numbers; the warning-sign, survival and satisfaction
slides are in :mod:`fupan.chapters.signals`, the lost customers' in :mod:`fupan.chapters.lost`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from fupan.chapters import atrisk
from fupan.chapters.signals import (
    backtest_rules,
    best_warning,
    feature_label,
    finite,
    iso_day,
    lead_times,
    rule_label,
)
from fupan.chapters.slide import Slide
from fupan.core import i18n
from fupan.io.dataset import Dataset
from fupan.measures import features as F
from fupan.measures import outcomes
from fupan.models import drivers, health, logit

#: Fewest churn events in the fitting snapshots for any model of the chapter.
MIN_EVENTS = atrisk.MIN_EVENTS
_NOT_FEATURES = ("customer_id", "snapshot_date", "label", "label_churned_at", "label_complete")


@dataclass
class HealthCheck:
    """The learned and hand-weighted health scores, judged on the later period."""

    learned: Any
    hand: Any
    hand_thresholds: dict
    learned_score: np.ndarray  # health of the later period's rows, learned weights
    hand_score: np.ndarray
    backtest: dict  # :func:`fupan.models.health.backtest` of the learned score's red band
    hand_backtest: dict
    versus: dict  # :func:`fupan.models.health.compare_auc`, learned minus hand
    lead_times: pd.DataFrame  # :func:`lead_times` of the red band on the later months
    lead: float  # median lead time of the flagged churners (NaN: none flagged)


@dataclass
class ChurnReview:
    """What chapter 2's slides are made from (:func:`review`)."""

    ds: Dataset
    status: pd.DataFrame
    dates: list
    snap_all: pd.DataFrame
    snap: pd.DataFrame
    train: pd.DataFrame
    test: pd.DataFrame
    test_start: pd.Timestamp
    n_customers: int
    can_model: bool
    feature_names: list[str]
    driver_data: drivers.DriverData
    dr: drivers.DriverResult | None
    health: HealthCheck | None
    rules: pd.DataFrame
    at_risk_model: Any
    at_risk: pd.DataFrame
    at_risk_dropped: int | None  # listed customers not live by the churn status (dropped)
    n_live: int

    @property
    def params(self) -> Any:
        return self.ds.params

    @property
    def lang(self) -> str:
        return self.params.lang

    @property
    def fmt(self) -> i18n.Fmt:
        return i18n.Fmt.from_params(self.params)

    def t(self, key: str, **values: Any) -> str:
        return i18n.t(key, self.lang, **values)

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.params.as_of)

    @property
    def horizon(self) -> int:
        return self.params.churn.horizon_days

    @property
    def sampled(self) -> bool:
        return self.n_customers > self.params.churn.max_model_customers

    @property
    def base_rate(self) -> float:
        return float(self.snap.label.mean()) if len(self.snap) else float("nan")

    @property
    def n_dates(self) -> int:
        """Dates with live customers (a date before the data has none)."""
        return int(self.snap.snapshot_date.nunique())

    @property
    def churned_at(self) -> pd.Series:
        return self.status.set_index("customer_id").churned_at

    @property
    def can_drivers(self) -> bool:
        return self.dr is not None

    @property
    def top(self) -> list[str] | None:
        return self.dr.top if self.dr is not None else None

    @property
    def backtested(self) -> pd.DataFrame:
        """The rules that could be backtested and have a precision."""
        r = self.rules
        return r[r.available & r.precision.notna()] if "precision" in r else r.iloc[0:0]

    @property
    def warnings(self) -> pd.DataFrame:
        """Backtested rules that raise churn risk (lift > 1): only these are warning signs."""
        ok = self.backtested
        return ok[ok.warning.astype(bool)] if "warning" in ok else ok.iloc[0:0]

    @property
    def rules_missing(self) -> list[str]:
        """The tables rules could not be backtested without (once per table)."""
        gone = self.rules[~self.rules.available] if "available" in self.rules else self.rules
        tables = dict.fromkeys(
            F.feature(r.feature).source.split(",")[-1].strip() for r in gone.itertuples()
        )
        return [t for t in tables if not self.ds.has(t)]

    def feature_label(self, name: str) -> str:
        return feature_label(name, self.lang)

    def names(self, fs: Sequence[str]) -> str:
        """Feature labels joined in the deck's language."""
        return ("、" if self.lang == "zh" else ", ").join(self.feature_label(x) for x in fs)

    def rule_label(self, rule: str) -> str:
        return rule_label(rule, self.params.churn.rules[rule], self.lang)

    def lead_text(self, v: float) -> str:
        return self.fmt.days(v, 0) if finite(v) else self.t("churn.value.none_flagged")

    def results(self) -> dict[str, Any]:
        """What results.json records under ``churn`` from the chapter's computation."""
        out = {**_snapshot_results(self), **_driver_results(self), **_health_results(self)}
        out["signal_backtest"] = self.rules
        if self.at_risk_dropped is not None:
            out["at_risk_churned_dropped"] = self.at_risk_dropped
        out["at_risk_count"] = int(len(self.at_risk)) if self.can_model else None
        return out

    def skipped(self) -> dict[str, str]:
        """Headline figures the computation could not give, with why in words."""
        out = {}
        if self.dr is not None and not self.dr.top:
            out["top_drivers"] = self.t("churn.overview.b_drivers_none")
        if self.health is not None and not finite(self.health.lead):
            out["median_lead_days"] = self.t("churn.lead.none_why")
        return out


def review(ds: Dataset) -> ChurnReview:
    """Chapter 2's computation: monthly snapshots, the driver analysis, the health scores
    judged on a later period, the warning rules backtested and the at-risk list.

    Features come from data strictly before each snapshot date, labels from the churn
    definition after it (:func:`fupan.measures.features.snapshots`); the models are fitted
    on the earlier snapshots and judged on the later ones.
    """
    p = ds.params
    cp, horizon = p.churn, p.churn.horizon_days
    status = outcomes.churn_status(ds)
    dates = F.monthly_snapshot_dates(p.as_of, cp.snapshot_months, horizon)
    snap_all = F.snapshots(
        ds, dates, horizon, max_customers=cp.max_model_customers, random_state=p.seed
    )
    snap = snap_all[snap_all.label_complete].reset_index(drop=True)
    if snap.snapshot_date.nunique() >= 2:
        train, test, test_start = F.split(snap, cp.test_months, horizon)
    else:  # too short a history to fit on one period and judge on a later one
        train, test, test_start = snap.iloc[0:0], snap, pd.Timestamp(dates[-1])
    can_model = (
        int(train.label.sum()) >= MIN_EVENTS
        and int(test.label.sum()) >= 5
        and not train.label.all()
        and not test.label.all()
    )
    names = [c for c in snap.columns if c not in _NOT_FEATURES]
    dd = drivers.driver_data(
        ds,
        status,
        train,
        test,
        p,
        max_customers=cp.max_model_customers,
        random_state=p.seed,
        min_events=MIN_EVENTS,
    )
    dr = _drivers(dd, names, p) if dd.reason is None else None
    as_of = pd.Timestamp(p.as_of)
    checked = _health_check(snap, train, test, test_start, status, dr, p) if can_model else None
    rules = backtest_rules(
        snap,
        cp.rules,
        status.set_index("customer_id").churned_at,
        cp.lead_window_days,
        cp.bootstrap,
        p.seed,
    )
    # the model chapters 4 and 5 score with: trained once per run on these same snapshots
    model = atrisk.train(ds, snapshots=snap_all) if can_model else None
    listed = atrisk.at_risk_list(ds, model=model) if can_model else pd.DataFrame()
    # one churn status per customer: the list holds only customers live at as_of
    live = status.customer_id[~status.churned]
    dropped = int((~listed.customer_id.isin(live)).sum()) if len(listed) else None
    if len(listed):
        listed = listed[listed.customer_id.isin(live)].reset_index(drop=True)
    return ChurnReview(
        ds=ds,
        status=status,
        dates=list(dates),
        snap_all=snap_all,
        snap=snap,
        train=train,
        test=test,
        test_start=test_start,
        n_customers=int((status.acquired_at < as_of).sum()),
        can_model=can_model,
        feature_names=names,
        driver_data=dd,
        dr=dr,
        health=checked,
        rules=rules,
        at_risk_model=model,
        at_risk=listed,
        at_risk_dropped=dropped,
        n_live=int(len(live)),
    )


def _drivers(dd: drivers.DriverData, names: list[str], p: Any) -> drivers.DriverResult:
    """Logistic regression, Cox PH and boosted trees on the rows whose churn can happen in
    their interval (orders-only data: dates one dormancy apart, see
    :func:`fupan.models.drivers.driver_data`)."""
    numeric, categorical = drivers.model_features(names, p, for_drivers=True)
    return drivers.analyse(
        dd.train,
        dd.test,
        numeric,
        categorical,
        definitional=drivers.definitional_features(p),
        group_correlation=p.churn.group_correlation,
        permutation_rows=p.churn.permutation_rows,
        random_state=p.seed,
        step_days=dd.step_days,
    )


def _health_check(
    snap: pd.DataFrame,
    train: pd.DataFrame,
    test: pd.DataFrame,
    test_start: pd.Timestamp,
    status: pd.DataFrame,
    dr: drivers.DriverResult | None,
    p: Any,
) -> HealthCheck:
    """Health scores learned on the earlier snapshots, judged on the later ones; the hand
    weights from params beside them."""
    cp, seed = p.churn, p.seed
    # a candidate the driver analysis does not support gets no weight in the score
    learned = health.fit_health_model(train, p, exclude=dr.unsupported if dr is not None else ())
    hand = health.HandHealth.from_params(p).fit(train)
    hand_th = health.choose_thresholds(
        hand.health(train), train.label, cp.alert_volume, cp.amber_volume, cp.target_precision
    )
    h_learned, h_hand = learned.health(test), hand.health(test)
    red = health.band(h_learned, learned.thresholds_) == "red"
    bt = health.backtest(h_learned, test.label, red, test.customer_id, cp.bootstrap, seed)
    bt_hand = health.backtest(
        h_hand,
        test.label,
        health.band(h_hand, hand_th) == "red",
        test.customer_id,
        cp.bootstrap,
        seed,
    )
    vs = health.compare_auc(h_learned, h_hand, test.label, test.customer_id, cp.bootstrap, seed)
    oos = snap[snap.snapshot_date > train.snapshot_date.max()]
    lt = lead_times(
        oos,
        learned.band(oos) == "red",
        status.set_index("customer_id").churned_at,
        cp.lead_window_days,
        start=test_start,
        end=pd.Timestamp(p.as_of),
    )
    lead = float(lt[lt.flagged].lead_days.median()) if lt.flagged.any() else float("nan")
    return HealthCheck(learned, hand, hand_th, h_learned, h_hand, bt, bt_hand, vs, lt, lead)


def _snapshot_results(ch: ChurnReview) -> dict[str, Any]:
    train, test, snap = ch.train, ch.test, ch.snap
    return {
        "snapshots": {
            "dates": [iso_day(x) for x in ch.dates],
            "rows": len(snap),
            "customers": int(snap.customer_id.nunique()),
            "sampled": ch.sampled,
            "horizon_days": ch.horizon,
            "base_rate": ch.base_rate,
            "train_period": [iso_day(train.snapshot_date.min()), iso_day(train.snapshot_date.max())]
            if len(train)
            else None,
            "test_period": [iso_day(ch.test_start), iso_day(test.snapshot_date.max())]
            if len(test)
            else None,
        }
    }


def _driver_results(ch: ChurnReview) -> dict[str, Any]:
    dr, dd = ch.dr, ch.driver_data
    if dr is None:
        return {
            "top_drivers": None,
            "driver_table": None,
            "drivers_skipped": {"reason": dd.reason, **dd.values},
        }
    return {
        "top_drivers": dr.top,
        "driver_table": dr.table,
        # candidates the three methods do not support: never a top driver, health weight or
        # at-risk reason
        "unsupported_drivers": dr.unsupported,
        "driver_auc": dr.auc,
        "driver_agreement": dr.agreement,
        "driver_sample": {
            **dd.info,
            "train_rows": dr.train_rows,
            "test_rows": dr.test_rows,
            "permutation_rows": dr.permutation_rows,
            "adjusted_for": dr.adjusted_for,
        },
    }


def _health_results(ch: ChurnReview) -> dict[str, Any]:
    h = ch.health
    if h is None:
        return dict.fromkeys(("health_auc", "health_precision_at_alert", "median_lead_days"))
    bt, bt_hand = h.backtest, h.hand_backtest
    return {
        "health_auc": bt["auc"],
        "health_auc_ci": [bt["auc_low"], bt["auc_high"]],
        "hand_auc": bt_hand["auc"],
        "hand_auc_ci": [bt_hand["auc_low"], bt_hand["auc_high"]],
        "health_vs_hand": h.versus,
        "learned_beats_hand": h.versus["better"],
        "health_precision_at_alert": bt["precision"],
        "health_precision_at_alert_ci": [bt["precision_low"], bt["precision_high"]],
        "health_recall_at_alert": bt["recall"],
        "health_backtest": bt,
        "health_thresholds": h.learned.thresholds_,
        "median_lead_days": h.lead,
        "health_churners_flagged": {
            "churners": len(h.lead_times),
            "flagged": int(h.lead_times.flagged.sum()),
        },
        "health_weights": h.learned.weights_[["group", "members", "weight", "direction"]],
    }


def period_text(ch: ChurnReview) -> str:
    """The fitting and the judging period, in words ("" when no model could be fitted)."""
    if not ch.can_model:
        return ""
    return ch.t(
        "churn.periods",
        train_start=iso_day(ch.train.snapshot_date.min()),
        train_end=iso_day(ch.train.snapshot_date.max()),
        test_start=iso_day(ch.test_start),
        test_end=iso_day(ch.test.snapshot_date.max()),
    )


def drivers_why(ch: ChurnReview) -> str:
    """Why the drivers cannot be estimated, in words ("" when they can)."""
    if ch.can_drivers:
        return ""
    dd = ch.driver_data
    return ch.t(
        f"churn.drivers.none_{dd.reason}",
        dormancy=ch.params.churn_definition.dormancy_days,
        **{k: ch.fmt.int(v) for k, v in dd.values.items()},
    )


def health_why(ch: ChurnReview) -> str:
    """Why no health score could be fitted and judged, in words."""
    events = int(ch.train.label.sum())
    return ch.t(
        "churn.overview.finding_small",
        rows=ch.fmt.int(len(ch.snap)),
        n=ch.n_dates,
        horizon=ch.horizon,
        events=ch.fmt.int(events),
        test_events=ch.fmt.int(int(ch.test.label.sum())),
        min=MIN_EVENTS,
    )


@dataclass
class Overview:
    """The overview slide: words, KPI tiles (label, value, status), bullets and a note."""

    slide: Slide
    tiles: list[tuple[str, str, str | None]]
    bullets: list[str]
    note: str | None


def _drivers_line(ch: ChurnReview) -> str:
    if not ch.can_drivers:
        return ch.t("churn.overview.b_drivers_skipped", why=drivers_why(ch))
    if not ch.top:
        return ch.t("churn.overview.b_drivers_none")
    return ch.t("churn.overview.b_drivers", names=ch.names(ch.top), n=len(ch.dr.agreement))


def overview(ch: ChurnReview) -> Overview:
    """The chapter's first slide: the health score's precision, lift and lead time, the
    drivers, the strongest warning rule and learned versus hand weights."""
    f, h = ch.fmt, ch.health
    if h is None:
        events = int(ch.train.label.sum())
        title = ch.t("churn.overview.title_small", events=events, min=MIN_EVENTS)
        return Overview(
            Slide(title, health_why(ch), skip="health"), [], [_drivers_line(ch)], _sampled_note(ch)
        )
    bt, auc = h.backtest, h.backtest["auc"]
    slide = Slide(
        ch.t(
            "churn.overview.title",
            precision=f.pct(bt["precision"]),
            lift=f.num(bt["lift"], 1),
            lead=f.num(h.lead, 0),
            horizon=ch.horizon,
        ),
        ch.t(
            "churn.overview.finding",
            rows=f.int(len(ch.snap)),
            n=ch.n_dates,
            period=period_text(ch),
            base=f.pct(ch.base_rate),
            auc=f.num(auc, 2),
        ),
    )
    count = int(len(ch.at_risk))
    tiles = [
        (ch.t("churn.tile.auc"), f.num(auc, 2), "green" if auc >= 0.7 else "amber"),
        (ch.t("churn.tile.precision"), f.pct(bt["precision"]), None),
        (ch.t("churn.tile.lead"), f.days(h.lead, 0), None),
        (ch.t("churn.tile.at_risk"), f.int(count), "red" if count else "green"),
    ]
    lines = [_drivers_line(ch)]
    if len(ch.warnings):
        best = best_warning(ch)
        lines.append(
            ch.t(
                "churn.overview.b_rule",
                rule=ch.rule_label(best.rule),
                lift=f.num(best.lift, 1),
                lead=ch.lead_text(best.median_lead_days),
            )
        )
    better = (
        "churn.overview.b_health_better" if h.versus["better"] else "churn.overview.b_health_not"
    )
    lines.append(ch.t(better, learned=f.num(auc, 2), hand=f.num(h.hand_backtest["auc"], 2)))
    return Overview(slide, tiles, lines, _sampled_note(ch))


def _sampled_note(ch: ChurnReview) -> str | None:
    if not ch.sampled:
        return None
    f, n = ch.fmt, ch.params.churn.max_model_customers
    if ch.health is None:
        return ch.t("churn.note.sampled", n=f.int(n), total=f.int(ch.n_customers))
    # the sample's cost in precision: the health score's AUC interval on the held-out months
    bt = ch.health.backtest
    return ch.t(
        "churn.note.sampled_precision",
        n=f.int(n),
        total=f.int(ch.n_customers),
        auc=f.num(bt["auc"], 2),
        low=f.num(bt["auc_low"], 2),
        high=f.num(bt["auc_high"], 2),
        level=f.pct(0.95, 0),
    )


def weights_slide(ch: ChurnReview) -> Slide:
    """The learned score's heaviest groups of metrics (or why there is no score)."""
    if ch.health is None:
        return Slide(ch.t("churn.weights.title_cannot"), health_why(ch), skip="health_weights")
    f, all_w = ch.fmt, ch.health.learned.weights_
    top3 = all_w[all_w.weight > 0].head(3)
    if len(top3) > 1:
        title = ch.t(
            "churn.weights.title",
            a=ch.feature_label(top3.group.iloc[0]),
            wa=f.pct(top3.weight.iloc[0], 0),
            b=ch.feature_label(top3.group.iloc[1]),
            wb=f.pct(top3.weight.iloc[1], 0),
        )
    elif len(top3) == 1:
        title = ch.t("churn.weights.title_one", a=ch.feature_label(top3.group.iloc[0]))
    else:
        title = ch.t("churn.weights.title_none")
    return Slide(
        title, ch.t("churn.weights.finding", groups=len(all_w), zero=int((all_w.weight == 0).sum()))
    )


def weights_note(ch: ChurnReview) -> str:
    """What the weights mean, and the features left out of the score."""
    notes = [ch.t("churn.weights.note")]
    left_out = [
        x for x in (ch.dr.unsupported if ch.dr is not None else []) if x in ch.feature_names
    ]
    left_out += [x for x in ch.health.learned.screened_out_ if x not in left_out]
    if left_out:
        notes.append(ch.t("churn.weights.note_unsupported", features=ch.names(left_out)))
    return " ".join(notes)


def roc_slide(ch: ChurnReview) -> Slide:
    """Learned versus hand-weighted score: AUC on the later period and their difference."""
    h, f = ch.health, ch.fmt
    bt, hb, vs = h.backtest, h.hand_backtest, h.versus
    key = (
        "churn.roc.title_better"
        if vs["better"]
        else ("churn.roc.title_worse" if vs["worse"] else "churn.roc.title_same")
    )
    return Slide(
        ch.t(
            key,
            learned=f.num(bt["auc"], 2),
            hand=f.num(hb["auc"], 2),
            diff=f.num(vs["diff"], 2),
            low=f.num(vs["low"], 2),
            high=f.num(vs["high"], 2),
        ),
        ch.t(
            "churn.roc.finding",
            period=period_text(ch),
            lo=f.num(bt["auc_low"], 2),
            hi=f.num(bt["auc_high"], 2),
            hlo=f.num(hb["auc_low"], 2),
            hhi=f.num(hb["auc_high"], 2),
        ),
    )


def roc_points(ch: ChurnReview) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ROC curve (false and true positive rates) of each score on the later period."""
    from sklearn.metrics import roc_curve

    h = ch.health
    out = {}
    for name, score in (("learned", h.learned_score), ("hand", h.hand_score)):
        fpr, tpr, _ = roc_curve(ch.test.label, -score)
        out[name] = (fpr, tpr)
    return out


def calibration(ch: ChurnReview) -> pd.DataFrame:
    """Observed churn by decile of the learned model's probability, later period."""
    return health.calibration(ch.health.learned.predict_proba(ch.test)[:, 1], ch.test.label)


def calibration_slide(ch: ChurnReview) -> Slide:
    predicted = float(ch.health.learned.predict_proba(ch.test)[:, 1].mean())
    return Slide(
        ch.t(
            "churn.calibration.title",
            predicted=ch.fmt.pct(predicted),
            observed=ch.fmt.pct(float(ch.test.label.mean())),
        ),
        ch.t("churn.calibration.finding", horizon=ch.horizon),
    )


def rate_by_band(ch: ChurnReview) -> pd.DataFrame:
    """Churn rate per band of the learned score on the later period."""
    h = ch.health
    return health.rate_by_band(health.band(h.learned_score, h.learned.thresholds_), ch.test.label)


def bands_slide(ch: ChurnReview, rb: pd.DataFrame) -> Slide:
    """Red versus green churn rate, with the bands' cut-offs, recall and lead time."""
    h, f = ch.health, ch.fmt
    th = h.learned.thresholds_
    r_red, r_green = rb.set_index("band").loc["red"], rb.set_index("band").loc["green"]
    ratio = r_red.rate / r_green.rate if r_green.rate > 0 else float("inf")
    # a ratio against a near-zero green rate says nothing a reader can use
    return Slide(
        ch.t(
            "churn.bands.title" if ratio < 50 else "churn.bands.title_plain",
            red=f.pct(r_red.rate),
            green=f.pct(r_green.rate),
            ratio=f.num(ratio, 1),
        ),
        ch.t(
            "churn.bands.finding",
            red_max=f.num(th["red"], 0),
            amber_max=f.num(th["amber"], 0),
            volume=f.pct(th["volume"], 0),
            recall=f.pct(h.backtest["recall"]),
            lead=f.num(h.lead, 0),
            flagged=int(h.lead_times.flagged.sum()),
            churners=len(h.lead_times),
        ),
    )


def bands_note(ch: ChurnReview) -> str | None:
    """Said when the bands could not reach the target precision of params."""
    target = ch.params.churn.target_precision
    if target is not None and not ch.health.learned.thresholds_["target_met"]:
        return ch.t("churn.bands.target_missed", target=ch.fmt.pct(target, 0))
    return None


def forest_slide(ch: ChurnReview) -> Slide:
    """Odds ratios per SD of the driver logit (or why the drivers cannot be estimated)."""
    if not ch.can_drivers:
        return Slide(ch.t("churn.drivers.title_none"), drivers_why(ch), skip="drivers")
    title = (
        ch.t("churn.forest.title", names=ch.names(ch.top))
        if ch.top
        else ch.t("churn.forest.title_none")
    )
    return Slide(title, ch.t("churn.forest.finding", auc=ch.fmt.num(ch.dr.auc["logit"], 2)))


def forest_notes(ch: ChurnReview) -> str | None:
    """How the driver rows were chosen and which features were adjusted for or left out."""
    dr, info, f, p = ch.dr, ch.driver_data.info, ch.fmt, ch.params
    dormancy, labels = p.churn_definition.dormancy_days, ch.feature_label
    notes = []
    if info["inferred_churners_left_out"]:
        notes.append(ch.t("churn.note.inferred", n=f.int(info["inferred_churners_left_out"])))
    if info["renewal_due_only"]:
        notes.append(ch.t("churn.note.renewal_due", rows=f.int(dr.train_rows)))
    if info.get("dormancy_windows"):
        notes.append(
            ch.t(
                "churn.note.dormancy_windows",
                dormancy=dormancy,
                dates=", ".join(info["dates"]),
                train=f.int(dr.train_rows),
                test=f.int(dr.test_rows),
            )
        )
    if info["open_rows_only"]:
        notes.append(ch.t("churn.note.open_rows", days=dormancy - ch.horizon))
    if dr.adjusted_for:
        notes.append(
            ch.t("churn.note.adjusted", features=", ".join(labels(x) for x in dr.adjusted_for))
        )
    left_out = [x for x in drivers.driver_excluded(p) if x in ch.feature_names]
    if left_out:
        notes.append(
            ch.t("churn.note.driver_excluded", features=", ".join(labels(x) for x in left_out))
        )
    excluded = [x for x in p.churn.exclude_features if x in ch.feature_names]
    if "tier" in excluded and ch.status.tier.dropna().nunique() >= 2:
        notes.append(ch.t("churn.note.tier"))
    others = [x for x in excluded if x != "tier"]
    if others:
        notes.append(ch.t("churn.note.excluded", features=", ".join(labels(x) for x in others)))
    return " ".join(notes) if notes else None


def methods_slide(ch: ChurnReview) -> Slide:
    """Whether the three methods agree on the top drivers."""
    dr, top, f = ch.dr, ch.top, ch.fmt
    agree = bool(top) and len(dr.agreement) == len(top)
    key = (
        "churn.methods.title_agree"
        if agree
        else ("churn.methods.title_partial" if top else "churn.methods.title_none")
    )
    return Slide(
        ch.t(key, names=ch.names(top), n=len(dr.agreement)),
        ch.t(
            "churn.methods.finding",
            logit=f.num(dr.auc["logit"], 2),
            cox=f.num(dr.auc["cox"], 2),
            gbm=f.num(dr.auc["gbm"], 2),
            rows=f.int(dr.permutation_rows),
        ),
        **methods_table(ch),
        notes=[methods_note(ch)],
    )


def methods_table(ch: ChurnReview) -> dict[str, Any]:
    """The methods slide's table (:class:`~fupan.chapters.slide.Slide` fields): the ten
    strongest candidates' OR and HR per SD, GBM importance, ranks, verdict."""
    t, f = ch.dr.table.head(10), ch.fmt

    def ci(v: Any, lo: Any, hi: Any, p: float, levels: int) -> str:
        # a categorical feature has one ratio per level: its evidence is the joint test over them
        if v is None or v != v:
            return ch.t("churn.dcol.joint", p=f"{p:.2g}", levels=int(levels))
        return f"{v:.2f} ({lo:.2f}–{hi:.2f})"

    shown = pd.DataFrame(
        {
            "rank": t["rank"],
            "feature": [ch.feature_label(x) for x in t.feature],
            "or": [
                ci(*x)
                for x in zip(
                    t.odds_ratio_per_sd, t.or_low, t.or_high, t.logit_p, t.levels, strict=True
                )
            ],
            "hr": [
                ci(*x)
                for x in zip(
                    t.hazard_ratio_per_sd, t.hr_low, t.hr_high, t.cox_p, t.levels, strict=True
                )
            ],
            "gbm": t.gbm_importance,
            "ranks": [
                f"{a} / {b} / {c}"
                for a, b, c in zip(t.rank_logit, t.rank_cox, t.rank_gbm, strict=True)
            ],
            "verdict": [
                ch.t("churn.dcol.supported" if s else "churn.dcol.unsupported", n=int(m))
                for s, m in zip(t.supported, t.methods_supporting, strict=True)
            ],
        }
    )
    return {
        "table": shown,
        "columns": {c: ch.t(f"churn.dcol.{c}") for c in shown.columns},
        "formats": {"gbm": lambda v: f.num(v, 3)},
        "max_rows": 10,
    }


def methods_note(ch: ChurnReview) -> str:
    return ch.t(
        "churn.methods.note_tests", alpha=ch.fmt.pct(logit.ALPHA, 0), perms=drivers.PERMUTATIONS
    )
