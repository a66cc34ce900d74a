"""Why customers leave: churn drivers by three methods, compared in standard-deviation units.

Three models are fitted on the *earlier* snapshots (:func:`fupan.measures.features.snapshots`) and
judged on the later ones:

* a logistic regression (statsmodels) of the H-day churn label: odds ratios per SD with
  95% confidence intervals, standard errors clustered by customer (a customer appears in
  many monthly snapshots, so rows are not independent);
* a Cox proportional-hazards model (statsmodels ``PHReg``) on the same snapshots as
  time-varying covariates in counting-process form (each snapshot opens an interval that
  runs to the next snapshot or to churn): hazard ratios per SD, robust standard errors;
* a gradient-boosted classifier (scikit-learn) with permutation importance (drop in AUC)
  on the later period.

Metrics that move together (|Spearman rho| above ``group_correlation``) are grouped and
each group enters the models through one representative, the member most associated with
churn on the training snapshots; otherwise correlated metrics split one effect between them
and rankings become arbitrary. A feature's importance in a linear model is the standard
deviation of its contribution to the linear predictor (|coefficient| for a standardised
numeric feature; for a categorical one, the SD of its dummies' joint contribution), so
numeric and categorical features rank on one scale. Features that are part of the churn
definition (e.g. recency under a dormancy rule) are kept in the models as adjustments but
never ranked as drivers.

The models live in their own modules: the design matrix and grouping in
:mod:`fupan.models.design`, the logit and its tests in :mod:`~fupan.models.logit`, the Cox
model (and Kaplan-Meier curves) in :mod:`~fupan.models.hazard`, the boosted trees in
:mod:`~fupan.models.trees`. This module chooses the rows and features they learn from,
runs them side by side (:func:`analyse`) and decides which ranked features the data
supports.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from fupan.io import engine
from fupan.measures import features as F
from fupan.models.design import (
    Design,
    RankAUC,
    auc,
    correlated_groups,
    independent_columns,
    pair_auc,
    renamed_arguments,
    representatives,
    single_threaded,
)
from fupan.models.hazard import counting_process, fit_cox
from fupan.models.logit import ALPHA, fit_logit, holm, joint_wald
from fupan.models.trees import fit_gbm

METHODS = ("logit", "cox", "gbm")


def definitional_features(params: Any) -> list[str]:
    """Features that are part of the churn definition for this business model.

    They decide when churn can happen (recency under a dormancy rule, contract end under a
    contractual one), so the driver models adjust for them; they are never ranked.
    """
    chosen = params.churn.definitional_features
    if chosen is not None:
        return list(chosen)
    if params.business_model == "contractual":
        return ["days_to_renewal"]
    return ["recency_days", "order_gap_ratio"]


def driver_excluded(params: Any) -> list[str]:
    """Features the driver models leave out: signs of churn already under way.

    A contract ended unrenewed is leaving as it shows up in the contracts table, not a
    reason for it. Under a non-contractual definition, contracts are side records that a
    leaving customer lets lapse, so their timing (whose missing values are the lapses) is
    left out as well; under a contractual one it is the definition and is adjusted for.
    """
    chosen = params.churn.driver_exclude
    if chosen is not None:
        return list(chosen)
    if params.business_model == "contractual":
        return ["no_running_contract"]
    return ["days_to_renewal", "no_running_contract"]


def model_features(
    available: Sequence[str], params: Any, for_drivers: bool = False
) -> tuple[list[str], list[str]]:
    """(numeric, categorical) features the models use: available minus ``exclude_features``.

    With ``for_drivers``, :func:`driver_excluded` features are left out too: signs of churn
    already under way predict churn but do not explain it, and a model that adjusts for a
    consequence of the outcome distorts every other effect.
    """
    excluded = set(params.churn.exclude_features)
    if for_drivers:
        excluded |= set(driver_excluded(params))
    names = [n for n in available if n not in excluded]
    kinds = F.kinds(names)
    return (
        [n for n in names if kinds[n] != "categorical"],
        [n for n in names if kinds[n] == "categorical"],
    )


def open_rows(snap: pd.DataFrame, params: Any) -> pd.Series:
    """Snapshot rows whose outcome is still open, not already implied by the churn definition.

    Under a dormancy rule (non-contractual) a customer whose last order is more than
    ``dormancy_days - horizon_days`` days old churns within the horizon unless they order
    again: the label is then mostly the rule itself. Drivers are estimated on the other
    rows, where churn within the horizon is a customer's decision. Contractual data keeps
    every row (renewal timing is adjusted for through ``days_to_renewal``).
    """
    if params.business_model == "contractual" or "recency_days" not in snap.columns:
        return pd.Series(True, index=snap.index)
    limit = params.churn_definition.dormancy_days - params.churn.horizon_days
    return snap.recency_days.astype(float) <= limit


def driver_rows(
    snap: pd.DataFrame, status: pd.DataFrame, params: Any, step_days: int = 31
) -> tuple[pd.Series, dict]:
    """The snapshot rows the driver models are fitted on, and what was left out.

    When the data records churn (``churn_events``), customers whose churn is only inferred
    from dormancy are left out: the rule dates their churn a year after they stopped
    buying, so their snapshots in between look like live customers showing every sign of
    having left, and would teach the models that those signs mean staying. Without any
    recorded churn, every customer is kept and only :func:`open_rows` are used.

    Under the contractual definition churn happens when a contract ends unrenewed, so a
    customer-month can only show it when a contract ends before the next snapshot: the
    drivers are estimated on those renewal-due rows (the renewal decision), not on months
    in which the outcome is fixed by the contract's dates.

    Parameters
    ----------
    snap : snapshot frame.
    status : :func:`fupan.measures.outcomes.churn_status` at the dataset's as-of date.
    step_days : the interval to the next snapshot.

    Returns
    -------
    (boolean mask over ``snap``, {"inferred_churners_left_out": n, "open_rows_only": bool,
    "renewal_due_only": bool})
    """
    info = {"inferred_churners_left_out": 0, "open_rows_only": False, "renewal_due_only": False}
    if (status.source == "recorded").any():
        inferred = set(status.customer_id[status.source == "dormancy"])
        mask = pd.Series(~engine.isin(snap.customer_id, inferred), index=snap.index)
        info["inferred_churners_left_out"] = len(inferred)
    else:
        mask = open_rows(snap, params)
        info["open_rows_only"] = params.business_model != "contractual"
    if params.business_model == "contractual" and "days_to_renewal" in snap.columns:
        due = pd.to_numeric(snap.days_to_renewal, errors="coerce") < step_days
        mask = mask & due
        info["renewal_due_only"] = True
    return mask, info


@dataclass
class DriverData:
    """The rows the driver models are fitted and judged on, or why there are none.

    Attributes
    ----------
    train, test : snapshot rows (fitting period, later period).
    info : what was left out and how the rows were chosen (:func:`driver_rows`' keys and
        ``dormancy_windows``: True when the rows are dates one dormancy apart).
    step_days : the interval each row's event is counted over (None: to the next snapshot).
    reason : None when the models can be fitted; else ``history`` (too short for two
        dormancy windows) or ``events`` (too few churn events).
    values : the numbers that sentence quotes (``need``, ``have``, ``events``, ``min`` ...).
    """

    train: pd.DataFrame
    test: pd.DataFrame
    info: dict
    step_days: int | None = None
    reason: str | None = None
    values: dict = field(default_factory=dict)


@renamed_arguments(seed="random_state")
def driver_data(
    ds: Any,
    status: pd.DataFrame,
    train: pd.DataFrame,
    test: pd.DataFrame,
    params: Any,
    max_customers: int | None = None,
    random_state: int = 0,
    min_events: int = 20,
    min_test_events: int = 5,
) -> DriverData:
    """Choose the driver models' rows for this business model and data.

    Recorded churn or a contractual definition: the chapter's monthly snapshots filtered
    by :func:`driver_rows`. A non-contractual business without recorded churn learns churn
    from orders alone: a month-long interval can only end in churn for customers whose
    dormancy clock is about to run out, so each row is instead a live customer on a date of
    :func:`fupan.measures.features.dormancy_snapshot_dates`, and the event is churn before the next
    such date (the dormancy completing without a new order). The latest date is held out to
    judge on.

    Parameters
    ----------
    ds : the dataset (snapshots on the dormancy dates are computed from it).
    status : :func:`fupan.measures.outcomes.churn_status` at the dataset's as-of date.
    train, test : the chapter's monthly snapshots (:func:`fupan.measures.features.split`).
    max_customers, random_state : the seeded customer sample for new snapshots.
    min_events, min_test_events : churn events the fitting and the later period need.
    """
    empty = train.iloc[0:0]
    recorded = bool((status.source == "recorded").any())
    step: int | None = None
    if params.business_model != "contractual" and not recorded:
        dormancy = int(params.churn_definition.dormancy_days)
        firsts = [status.acquired_at.min(), status.first_order.min()]
        firsts = [x for x in firsts if pd.notna(x)]
        first = min(firsts) if firsts else pd.Timestamp(params.as_of)
        dates = F.dormancy_snapshot_dates(first, params.as_of, dormancy)
        info = {
            "inferred_churners_left_out": 0,
            "open_rows_only": False,
            "renewal_due_only": False,
            "dormancy_windows": True,
            "dates": [d.strftime("%Y-%m-%d") for d in dates],
        }
        if len(dates) < 2:
            have = int((pd.Timestamp(params.as_of) - pd.Timestamp(first)).days) + 1
            need = F.QUARTER + 2 * dormancy
            return DriverData(empty, empty, info, dormancy, "history", {"need": need, "have": have})
        snap = F.snapshots(
            ds, dates, dormancy, max_customers=max_customers, random_state=random_state
        )
        snap = snap[snap.label_complete.astype(bool)]
        if snap.snapshot_date.nunique() < 2:
            have = int((pd.Timestamp(params.as_of) - pd.Timestamp(first)).days) + 1
            need = F.QUARTER + 2 * dormancy
            return DriverData(empty, empty, info, dormancy, "history", {"need": need, "have": have})
        tr, te, _ = F.split(snap, 1, dormancy)
        step = dormancy
    else:
        mask_tr, info = driver_rows(train, status, params)
        mask_te, _ = driver_rows(test, status, params)
        info["dormancy_windows"] = False
        tr, te = train[mask_tr], test[mask_te]
    ev_tr = int(counting_process(tr, step).event.sum()) if len(tr) else 0
    ev_te = int(counting_process(te, step).event.sum()) if len(te) else 0
    values = {"events": ev_tr, "min": min_events, "test_events": ev_te, "min_test": min_test_events}
    # a model needs both outcomes in both periods
    if ev_tr < min_events or ev_te < min_test_events or ev_tr == len(tr) or ev_te == len(te):
        return DriverData(tr, te, info, step, "events", values)
    return DriverData(tr, te, info, step, None, values)


# --------------------------------------------------------------------------------------
# Which ranked features the data supports as drivers

PERMUTATIONS = 199


def heldout_permutation_test(
    Z: pd.DataFrame,
    coef: pd.Series,
    y: np.ndarray,
    columns_of: dict[str, list[str]],
    n_permutations: int = PERMUTATIONS,
    max_rows: int = 20_000,
    random_state: int = 0,
) -> pd.DataFrame:
    """Does a feature's fitted effect predict churn in the later period? A permutation test.

    For each feature, its columns of the later period's design are shuffled together
    across rows (breaking only its link with the outcome) and the AUC of the fitted linear
    predictor recomputed, ``n_permutations`` times. The p-value is the share of shuffles
    that do as well as the real column, ``(1 + #{AUC_perm >= AUC}) / (n + 1)``: under no
    effect the real AUC is one more draw from the same distribution.

    Returns
    -------
    DataFrame indexed by feature: ``auc_drop`` (AUC minus the mean shuffled AUC), ``p``.
    """
    y = np.asarray(y, dtype=bool)
    rng = np.random.default_rng(random_state)
    idx = np.arange(len(y))
    if len(y) > max_rows:
        pos, neg = np.flatnonzero(y), np.flatnonzero(~y)
        n_pos = min(len(pos), max_rows // 2)
        idx = np.sort(
            np.r_[
                rng.choice(pos, n_pos, replace=False),
                rng.choice(neg, min(len(neg), max_rows - n_pos), replace=False),
            ]
        )
    y = y[idx]
    X = Z[coef.index].to_numpy(float)[idx]
    b = coef.to_numpy(float)
    lin = X @ b
    rows = {}
    if y.all() or not y.any():
        return pd.DataFrame(
            {"auc_drop": np.nan, "p": 1.0}, index=pd.Index(list(columns_of), dtype=object)
        )
    base = RankAUC(y, lin)()
    position = {c: i for i, c in enumerate(coef.index)}
    pos, neg = np.flatnonzero(y), np.flatnonzero(~y)

    def shuffled_auc(rest: np.ndarray, part: np.ndarray) -> float:
        score = rest + part[rng.permutation(len(y))]
        return pair_auc(score[pos], score[neg])  # RankAUC's number, without a full sort

    for f, cols in columns_of.items():
        j = [position[c] for c in cols]
        part = X[:, j] @ b[j]
        rest = lin - part
        aucs = np.array([shuffled_auc(rest, part) for _ in range(n_permutations)])
        rows[f] = {
            "auc_drop": float(base - aucs.mean()),
            "p": float((1 + np.sum(aucs >= base)) / (n_permutations + 1)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def support(
    logit_p: pd.Series,
    cox_p: pd.Series,
    gbm_importance: pd.Series,
    gbm_sd: pd.Series,
    permutation_p: pd.Series,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Which candidate drivers the three methods support.

    A method supports a feature when its joint test survives Holm's correction over all
    candidates (logit, Cox), or when its permutation importance on the later period
    exceeds twice the spread of its shuffles (boosted trees). A feature is a *supported*
    driver when at least two methods support it and its fitted logit effect passes the
    later-period permutation test (:func:`heldout_permutation_test`) at ``alpha``: only
    then does it rank among the top drivers, weigh in the health score, or reach the
    summary and the at-risk reasons.

    Returns
    -------
    DataFrame indexed by feature: ``logit_p_holm, cox_p_holm, logit_supports,
    cox_supports, gbm_supports, methods_supporting, supported``.
    """
    f = logit_p.index
    out = pd.DataFrame(index=f)
    out["logit_p_holm"] = holm(logit_p)
    out["cox_p_holm"] = holm(cox_p.reindex(f))
    out["logit_supports"] = out.logit_p_holm < alpha
    out["cox_supports"] = out.cox_p_holm < alpha
    imp, sd = gbm_importance.reindex(f).fillna(0.0), gbm_sd.reindex(f).fillna(0.0)
    out["gbm_supports"] = (imp > 0) & (imp > 2 * sd)
    out["methods_supporting"] = out[["logit_supports", "cox_supports", "gbm_supports"]].sum(axis=1)
    out["supported"] = (out.methods_supporting >= 2) & (
        permutation_p.reindex(f).fillna(1.0) < alpha
    )
    return out


def rank_drivers(importance: dict[str, pd.Series], exclude: Sequence[str] = ()) -> pd.DataFrame:
    """Rank features by each method and by their mean rank (agreement across methods).

    Returns
    -------
    DataFrame indexed by feature: ``rank_<method>`` per method, ``mean_rank``, ``rank``
    (1 = strongest), sorted by ``rank``. Ties in mean rank break on the logit rank.
    """
    frame = pd.DataFrame(importance)
    frame = frame.drop(index=[f for f in exclude if f in frame.index])
    ranks = frame.rank(ascending=False, method="min")
    ranks.columns = [f"rank_{m}" for m in frame.columns]
    ranks["mean_rank"] = ranks.mean(axis=1)
    first = ranks.columns[0]
    ranks = ranks.sort_values(["mean_rank", first], kind="stable")
    ranks["rank"] = np.arange(1, len(ranks) + 1)
    return ranks


@dataclass
class DriverResult:
    """Everything the drivers slides and results.json need.

    Attributes
    ----------
    table : per ranked feature: group members, direction, OR/HR per SD with CI, GBM
        importance, ranks, the joint tests (``logit_p``, ``cox_p`` and their Holm-adjusted
        ``*_holm``), the later-period permutation test (``heldout_auc_drop``,
        ``heldout_p``), ``methods_supporting`` and ``supported`` (:func:`support`): False
        marks a feature the data does not support as a driver, which every consumer (top
        drivers, health weights, summary, at-risk reasons) must skip
        (``churn.driver_table``). Supported features come first.
    top : up to ``top_n`` supported features by mean rank (``churn.top_drivers``); may be
        shorter, or empty.
    forest : per design column: odds ratio per SD and 95% CI (the forest plot).
    groups : representative -> members of its correlated group.
    adjusted_for : definitional features kept in the models but not ranked.
    auc : test-period AUC per method.
    sample_rows : rows the models were fitted on; ``permutation_rows`` rows for importance.
    """

    table: pd.DataFrame
    top: list[str]
    forest: pd.DataFrame
    groups: dict[str, list[str]]
    adjusted_for: list[str]
    auc: dict[str, float]
    train_rows: int
    test_rows: int
    permutation_rows: int
    design: Design | None = None
    logit: pd.DataFrame | None = None
    cox: pd.DataFrame | None = None
    agreement: list[str] = field(default_factory=list)

    @property
    def unsupported(self) -> list[str]:
        """Ranked candidates the data does not support as drivers (``supported`` False)."""
        if "supported" not in self.table:
            return []
        return self.table.feature[~self.table.supported.astype(bool)].tolist()


@single_threaded
def analyse(
    train: pd.DataFrame,
    test: pd.DataFrame,
    numeric: list[str],
    categorical: list[str],
    definitional: Sequence[str] = (),
    group_correlation: float = 0.7,
    top_n: int = 3,
    permutation_rows: int = 20_000,
    random_state: int = 0,
    step_days: int | None = None,
) -> DriverResult:
    """Fit the three driver models on ``train`` snapshots and judge them on ``test``.

    The event is churn before the next monthly snapshot: the logit is a discrete-time
    hazard model (pooled logistic regression), the Cox model uses the same intervals, and
    the boosted trees classify the same event, so the three rank the same quantity.

    Parameters
    ----------
    train, test : snapshot frames (:func:`fupan.measures.features.snapshots`) with complete labels;
        ``test`` must be later than ``train``. Pass :func:`driver_rows` of them.
    numeric, categorical : candidate features.
    definitional : features adjusted for but never ranked.
    group_correlation : |Spearman rho| above which metrics are grouped.
    top_n : how many top drivers to report.
    step_days : the interval a row's event is counted over (default: to the next snapshot;
        :class:`DriverData`'s ``step_days``).
    """
    # The event is churn before the next snapshot (a discrete-time hazard): drivers explain
    # churn from what was measured just before it, and the logit then estimates the same
    # quantity as the Cox model's intervals.
    cp = counting_process(train, step_days)
    y_tr = cp.event.to_numpy(bool)
    y_te = counting_process(test, step_days).event.to_numpy(bool)
    cols = _driver_columns(
        train, test, y_tr, numeric, categorical, definitional, group_correlation, random_state
    )
    fits = _fit_methods(train, test, cp, y_te, cols, permutation_rows, random_state)
    ranking, columns_of, sup, perm = _rank_and_test(
        cols, fits, y_te, definitional, permutation_rows, random_state
    )
    table = _driver_table(ranking, columns_of, cols, fits, sup, perm)
    top = table.feature[table.supported].head(top_n).tolist()
    per_method_top = [set(table.nsmallest(top_n, f"rank_{m}").feature) for m in METHODS]
    agreement = [f for f in top if all(f in s for s in per_method_top)]
    return DriverResult(
        table=table,
        top=top,
        forest=_forest(fits.logit, cols, definitional),
        groups=cols.groups,
        adjusted_for=[f for f in definitional if f in cols.feature_of.values()],
        auc=fits.auc,
        train_rows=len(train),
        test_rows=len(test),
        permutation_rows=fits.permutation_rows,
        design=cols.design,
        logit=fits.logit,
        cox=fits.cox,
        agreement=agreement,
    )


@dataclass
class _DriverColumns:
    """The design columns the three driver models share (a step of :func:`analyse`)."""

    design: Design
    groups: dict[str, list[str]]  # representative -> members of its correlated group
    keep: list[str]  # design columns entering the models
    feature_of: dict[str, str]  # kept design column -> feature
    train: pd.DataFrame  # standardised design of the fitting rows, kept columns
    test: pd.DataFrame  # the same for the later period


@dataclass
class _DriverFits:
    """The three models' fits and importances (a step of :func:`analyse`)."""

    logit: pd.DataFrame
    cox: pd.DataFrame
    importance: dict[str, pd.Series]  # method -> importance per feature
    gbm_sd: pd.Series
    auc: dict[str, float]  # test-period AUC per method
    permutation_rows: int


def _driver_columns(
    train: pd.DataFrame,
    test: pd.DataFrame,
    y_tr: np.ndarray,
    numeric: list[str],
    categorical: list[str],
    definitional: Sequence[str],
    group_correlation: float,
    random_state: int,
) -> _DriverColumns:
    """Design fitted on ``train``; one representative per correlated group of metrics."""
    design = Design(numeric, categorical).fit(train)
    Z_tr = design.transform(train)
    # Definitional features are adjustments: each kept as is, never grouped away.
    num_cols = [
        c
        for c in design.columns_
        if design.feature_of_[c] in design.numeric_ and c not in definitional
    ]
    groups = correlated_groups(Z_tr[num_cols], group_correlation, random_state=random_state)
    reps = representatives(groups, Z_tr[num_cols], y_tr)
    keep_cols = [
        c
        for c in design.columns_
        if c in reps or c in definitional or design.feature_of_[c] in design.categorical_
    ]
    keep_cols = independent_columns(Z_tr[keep_cols])
    return _DriverColumns(
        design=design,
        groups=reps,
        keep=keep_cols,
        feature_of={c: design.feature_of_[c] for c in keep_cols},
        train=Z_tr[keep_cols],
        test=design.transform(test)[keep_cols],
    )


def _fit_methods(
    train: pd.DataFrame,
    test: pd.DataFrame,
    cp: pd.DataFrame,
    y_te: np.ndarray,
    cols: _DriverColumns,
    permutation_rows: int,
    random_state: int,
) -> _DriverFits:
    """Logit, Cox and boosted trees on the same columns, each judged on the later period."""
    y_tr = cp.event.to_numpy(bool)
    Z_tr, Z_te, feature_of, design = cols.train, cols.test, cols.feature_of, cols.design
    ids = train.customer_id.to_numpy()
    logit = fit_logit(Z_tr, y_tr, ids)
    lin_te = Z_te.to_numpy() @ logit.coef.to_numpy()
    # Cox PH on the same snapshots as time-varying covariates
    cox = fit_cox(Z_tr, cp, ids)
    cox_lin_te = Z_te.to_numpy() @ cox.coef.to_numpy()
    # Gradient boosting on the same representatives, judged on the later period
    rep_num = [f for f in dict.fromkeys(feature_of.values()) if f in design.numeric_]
    rep_cat = [f for f in dict.fromkeys(feature_of.values()) if f in design.categorical_]
    # The trees see the same cleaned values as the linear models (missing values imputed,
    # tails clipped), so no method learns from a pattern of missingness the others cannot.
    gbm_train = pd.concat([design.clean(train)[rep_num], train[rep_cat]], axis=1)
    gbm_test = pd.concat([design.clean(test)[rep_num], test[rep_cat]], axis=1)
    gbm_imp, gbm_sd, gbm_auc, perm_rows = fit_gbm(
        gbm_train,
        y_tr,
        gbm_test,
        y_te,
        rep_num,
        rep_cat,
        permutation_rows=permutation_rows,
        random_state=random_state,
    )
    return _DriverFits(
        logit=logit,
        cox=cox,
        importance={
            "logit": _feature_importance(logit.coef, Z_tr, feature_of),
            "cox": _feature_importance(cox.coef, Z_tr, feature_of),
            "gbm": gbm_imp,
        },
        gbm_sd=gbm_sd,
        auc={"logit": auc(y_te, lin_te), "cox": auc(y_te, cox_lin_te), "gbm": gbm_auc},
        permutation_rows=perm_rows,
    )


def _rank_and_test(
    cols: _DriverColumns,
    fits: _DriverFits,
    y_te: np.ndarray,
    definitional: Sequence[str],
    permutation_rows: int,
    random_state: int,
) -> tuple[pd.DataFrame, dict[str, list[str]], pd.DataFrame, pd.DataFrame]:
    """Ranks by mean rank with supported drivers first; the joint and held-out tests.

    Returns
    -------
    (ranking, design columns per ranked feature, :func:`support`,
    :func:`heldout_permutation_test`)
    """
    ranking = rank_drivers(fits.importance, exclude=definitional)
    columns_of = {f: [c for c in cols.keep if cols.feature_of[c] == f] for f in ranking.index}
    logit_joint = joint_wald(fits.logit, columns_of)
    cox_joint = joint_wald(fits.cox, columns_of)
    perm = heldout_permutation_test(
        cols.test,
        fits.logit.coef,
        y_te,
        columns_of,
        max_rows=permutation_rows,
        random_state=random_state,
    )
    sup = support(logit_joint, cox_joint, fits.importance["gbm"], fits.gbm_sd, perm.p)
    sup = sup.assign(logit_p=logit_joint, cox_p=cox_joint)
    # supported drivers first (by mean rank), then the rest: a feature the data does not
    # support never outranks one it does
    ranking = ranking.assign(_unsupported=~sup.supported.reindex(ranking.index).astype(bool))
    ranking = ranking.sort_values(["_unsupported", "mean_rank", ranking.columns[0]], kind="stable")
    ranking["rank"] = np.arange(1, len(ranking) + 1)
    return ranking, columns_of, sup, perm


def _driver_table(
    ranking: pd.DataFrame,
    columns_of: dict[str, list[str]],
    cols: _DriverColumns,
    fits: _DriverFits,
    sup: pd.DataFrame,
    perm: pd.DataFrame,
) -> pd.DataFrame:
    """One row per ranked feature (:attr:`DriverResult.table`)."""
    logit, cox = fits.logit, fits.cox
    imp_logit, imp_cox = fits.importance["logit"], fits.importance["cox"]
    gbm_imp, gbm_sd = fits.importance["gbm"], fits.gbm_sd
    direction = _signed_direction(logit.coef, cols.feature_of)
    rows = []
    for f, r in ranking.iterrows():
        c = columns_of[f]
        one = c[0] if len(c) == 1 else None
        rows.append(
            {
                "feature": f,
                "rank": int(r["rank"]),
                "group": cols.groups.get(f, [f]),
                "direction": float(direction.get(f, 0.0)),
                "logit_sd_effect": float(imp_logit[f]),
                "odds_ratio_per_sd": float(logit.odds_ratio[one]) if one else None,
                "or_low": float(logit.or_low[one]) if one else None,
                "or_high": float(logit.or_high[one]) if one else None,
                "logit_p": float(sup.logit_p[f]),
                "logit_p_holm": float(sup.logit_p_holm[f]),
                "cox_sd_effect": float(imp_cox[f]),
                "hazard_ratio_per_sd": float(cox.hazard_ratio[one]) if one else None,
                "hr_low": float(cox.hr_low[one]) if one else None,
                "hr_high": float(cox.hr_high[one]) if one else None,
                "cox_p": float(sup.cox_p[f]),
                "cox_p_holm": float(sup.cox_p_holm[f]),
                "gbm_importance": float(gbm_imp[f]),
                "gbm_importance_sd": float(gbm_sd[f]),
                "rank_logit": int(r["rank_logit"]),
                "rank_cox": int(r["rank_cox"]),
                "rank_gbm": int(r["rank_gbm"]),
                "levels": len(c) + 1 if one is None else 1,
                "heldout_auc_drop": float(perm.auc_drop[f]),
                "heldout_p": float(perm.p[f]),
                "methods_supporting": int(sup.methods_supporting[f]),
                "supported": bool(sup.supported[f]),
            }
        )
    return pd.DataFrame(rows)


def _forest(logit: pd.DataFrame, cols: _DriverColumns, definitional: Sequence[str]) -> pd.DataFrame:
    """Odds ratio per SD and 95% CI per design column, largest effect first (not the
    definitional adjustments)."""
    feature_of = cols.feature_of
    forest = logit.loc[[c for c in cols.keep if feature_of[c] not in definitional]].copy()
    forest["feature"] = [feature_of[c] for c in forest.index]
    return forest.reindex(forest.coef.abs().sort_values(ascending=False).index)


def _feature_importance(coef: pd.Series, Z: pd.DataFrame, feature_of: dict[str, str]) -> pd.Series:
    """SD of each feature's contribution to the linear predictor."""
    out = {}
    for f in dict.fromkeys(feature_of[c] for c in coef.index):
        cols = [c for c in coef.index if feature_of[c] == f]
        contrib = Z[cols].to_numpy() @ coef[cols].to_numpy()
        out[f] = float(np.std(contrib))
    return pd.Series(out)


def _signed_direction(coef: pd.Series, feature_of: dict[str, str]) -> pd.Series:
    out = {}
    for f in dict.fromkeys(feature_of[c] for c in coef.index):
        cols = [c for c in coef.index if feature_of[c] == f]
        out[f] = float(np.sign(coef[cols].iloc[0])) if len(cols) == 1 else 0.0
    return pd.Series(out)


def contributions(result: DriverResult, df: pd.DataFrame) -> pd.DataFrame:
    """Per row and ranked feature: log-odds of churn added by it in the driver logit
    (versus an average customer of the fitting period). Definitional features are left out.
    """
    if result.design is None or result.logit is None:
        raise ValueError("the driver result holds no fitted model")
    cols = list(result.logit.index)
    Z = result.design.transform(df)[cols]
    out: dict[str, np.ndarray] = {}
    for c in cols:
        f = result.design.feature_of_[c]
        if f in result.adjusted_for:
            continue
        out[f] = out.get(f, 0.0) + Z[c].to_numpy() * float(result.logit.coef[c])
    return pd.DataFrame(out, index=df.index)
