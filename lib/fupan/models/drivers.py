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

Kaplan-Meier survival by group (with a log-rank test) lives here too.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy import special, stats
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from fupan.core import progress
from fupan.io import engine
from fupan.measures import features as F

METHODS = ("logit", "cox", "gbm")
_T = TypeVar("_T", bound=Callable[..., Any])


def single_threaded(fn: _T) -> _T:
    """Run ``fn`` with one BLAS/OpenMP thread.

    These fits are small; on a machine shared by several processes, thread
    oversubscription made them ten times slower, and one thread keeps results bit-stable.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def renamed_arguments(**renames: str) -> Callable[[_T], _T]:
    """Accept an argument's old keyword (``old="new"``) for one release, with a warning.

    For public functions whose arguments took scikit-learn's names (``clusters`` became
    ``groups``, ``seed`` became ``random_state``): a call with the old keyword still works
    and raises a :class:`DeprecationWarning` naming the new one.
    """

    def decorate(fn: _T) -> _T:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__qualname__}() got both {old}= and {new}=")
                    warnings.warn(
                        f"{fn.__qualname__}(): {old}= is deprecated and will be removed in "
                        f"the next release; use {new}=",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorate


_MISSING_LEVEL = "(missing)"
_OTHER_LEVEL = "(other)"


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


class RankAUC:
    """Area under the ROC curve of one fixed score, under any number of row weightings.

    The score is sorted once; each weighting then costs two weighted counts per distinct
    score value. Tied scores count half, exactly as in scikit-learn's ``roc_auc_score``
    (the trapezoid through every distinct threshold), which a cluster bootstrap would
    otherwise call hundreds of times, re-validating and re-sorting the same scores.

    Parameters
    ----------
    y : binary outcome per row.
    score : higher = more likely positive; must be finite.
    """

    def __init__(self, y: Sequence[bool], score: Sequence[float]):
        y = np.asarray(y, dtype=bool)
        s = np.asarray(score, dtype=float)
        if y.shape != s.shape or y.ndim != 1:
            raise ValueError("y and score must be 1-d and of the same length")
        if not np.isfinite(s).all():
            raise ValueError("score contains NaN or infinity")
        order = np.argsort(s, kind="stable")
        ss = s[order]
        first = np.r_[True, ss[1:] != ss[:-1]] if len(ss) else np.zeros(0, dtype=bool)
        rank = np.empty(len(s), dtype=np.intp)
        rank[order] = np.cumsum(first) - 1
        self.n_levels = int(first.sum())
        self.y = y
        self._pos_level = rank[y]
        self._neg_level = rank[~y]

    def __call__(self, weights: np.ndarray | None = None) -> float:
        """AUC with optional non-negative row weights (NaN when a class has no weight)."""
        m = self.n_levels
        if weights is None:
            pos = np.bincount(self._pos_level, minlength=m).astype(float)
            neg = np.bincount(self._neg_level, minlength=m).astype(float)
        else:
            w = np.asarray(weights, dtype=float)
            pos = np.bincount(self._pos_level, weights=w[self.y], minlength=m)
            neg = np.bincount(self._neg_level, weights=w[~self.y], minlength=m)
        n_pos, n_neg = pos.sum(), neg.sum()
        if not (n_pos > 0 and n_neg > 0):
            return float("nan")
        below = np.cumsum(neg) - neg  # negative weight at strictly lower scores
        return float(pos @ (below + 0.5 * neg) / (n_pos * n_neg))


def auc(y: np.ndarray, risk: np.ndarray) -> float:
    """Area under the ROC curve of ``risk`` for binary ``y`` (NaN when y has one class)."""
    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    risk = np.asarray(risk, dtype=float)
    if not np.isfinite(risk).all():
        # scikit-learn names the problem (NaN or infinity in the input)
        return float(roc_auc_score(y, risk))
    return RankAUC(y, risk)()


# --------------------------------------------------------------------------------------
# Design matrix


class Design(TransformerMixin, BaseEstimator):
    """Impute, winsorise, standardise numeric features; one-hot and standardise categoricals.

    A scikit-learn transformer from a frame to a frame of design columns.

    Parameters
    ----------
    numeric, categorical : feature names.
    winsor : lower and upper quantiles numeric features are clipped to (heavy tails such as
        spend would otherwise dominate an SD).
    min_level_share : categorical levels rarer than this are pooled into one level.

    Attributes
    ----------
    columns_ : design column names (numeric names, then ``feature=level`` dummies).
    feature_of_ : design column -> feature.
    numeric_, categorical_ : the features kept (constant ones are dropped).
    reference_ : categorical feature -> its reference (most frequent) level.
    """

    def __init__(
        self,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        winsor: tuple[float, float] = (0.01, 0.99),
        min_level_share: float = 0.01,
    ):
        # stored as given (scikit-learn's convention, so that clone() works)
        self.numeric = numeric
        self.categorical = categorical
        self.winsor = winsor
        self.min_level_share = min_level_share

    def clean(self, df: pd.DataFrame) -> pd.DataFrame:
        """Numeric features winsorised and imputed as fitted (not standardised)."""
        return self._clean_numeric(df)

    def _clean_numeric(self, df: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for n in self.numeric_:
            v = pd.to_numeric(df[n], errors="coerce").astype(float)
            out[n] = v.clip(self.lo_[n], self.hi_[n]).fillna(self.median_[n])
        return pd.DataFrame(out, index=df.index)

    def _levels(self, df: pd.DataFrame, n: str) -> pd.Series:
        v = df[n].astype(object).where(df[n].notna(), _MISSING_LEVEL).astype(str)
        return v.where(v.isin(self.levels_[n]), _OTHER_LEVEL)

    def _level_index(self, df: pd.DataFrame, n: str) -> np.ndarray:
        """Per row, the position of its level in ``levels_[n]`` (-1: a level not kept)."""
        position = {L: i for i, L in enumerate(self.levels_[n])}
        codes, uniques = pd.factorize(df[n], use_na_sentinel=True)
        if all(isinstance(u, str) for u in uniques):
            # Text values: each distinct value is looked up once. Mixed types take the
            # general path: factorize merges 1 and 1.0 (equal keys), different as text.
            names = [*uniques, _MISSING_LEVEL]  # code -1 (missing) takes the last
        else:
            codes, names = pd.factorize(self._levels(df, n))
        other = position.get(_OTHER_LEVEL, -1)
        lookup = np.array([position.get(x, other) for x in names], dtype=np.intp)
        return lookup[codes]

    def fit(self, X: pd.DataFrame, y: Any = None) -> Design:
        """Clipping range, median, levels, mean and SD of each feature in ``X`` (``y`` is
        ignored)."""
        df = X
        self.lo_, self.hi_, self.median_ = {}, {}, {}
        self.numeric_ = []
        for n in self.numeric:
            v = pd.to_numeric(df[n], errors="coerce").astype(float)
            if v.notna().sum() == 0:
                continue
            lo, hi = np.nanquantile(v, self.winsor)
            if not hi > lo:
                # A feature that is almost always one value still varies; keep its real range.
                lo, hi = np.nanmin(v), np.nanmax(v)
            if not hi > lo:
                continue
            self.lo_[n], self.hi_[n] = float(lo), float(hi)
            self.median_[n] = float(np.nanmedian(v.clip(lo, hi)))
            self.numeric_.append(n)
        self.levels_, self.reference_ = {}, {}
        self.categorical_ = []
        for n in self.categorical:
            v = df[n].astype(object).where(df[n].notna(), _MISSING_LEVEL).astype(str)
            share = v.value_counts(normalize=True)
            keep = share[share >= self.min_level_share].index.tolist()
            if len(keep) < len(share):
                keep.append(_OTHER_LEVEL)
            if len(keep) < 2:
                continue
            self.levels_[n] = keep
            self.categorical_.append(n)
            counts = v.where(v.isin(keep), _OTHER_LEVEL).value_counts()
            self.reference_[n] = str(counts.sort_values(ascending=False, kind="stable").index[0])
        raw = self._raw(df)
        self.mean_ = raw.mean()
        self.sd_ = raw.std(ddof=0).replace(0.0, np.nan)
        keep_cols = [c for c in raw.columns if np.isfinite(self.sd_[c])]
        self.columns_ = keep_cols
        self.feature_of_ = {c: c.split("=", 1)[0] for c in keep_cols}
        return self

    def _raw(self, df: pd.DataFrame) -> pd.DataFrame:
        parts = [self._clean_numeric(df)]
        for n in self.categorical_:
            lev = self._levels(df, n)
            dummies = {
                f"{n}={L}": (lev == L).astype(float)
                for L in self.levels_[n]
                if L != self.reference_[n]
            }
            parts.append(pd.DataFrame(dummies, index=df.index))
        return pd.concat(parts, axis=1)

    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Standardised design matrix (mean 0, SD 1 on the fitting data)."""
        check_is_fitted(self)
        # The columns of _raw written straight into one array, then standardised with the
        # same element-wise arithmetic: no frame per feature, no alignment, no object
        # comparisons per dummy.
        where = {c: i for i, c in enumerate(self.columns_)}
        z = np.zeros((len(df), len(self.columns_)), order="F")
        for n in self.numeric_:
            if n in where:
                v = pd.to_numeric(df[n], errors="coerce").astype(float)
                z[:, where[n]] = v.clip(self.lo_[n], self.hi_[n]).fillna(self.median_[n])
        for n in self.categorical_:
            index = self._level_index(df, n)
            for i, L in enumerate(self.levels_[n]):
                c = f"{n}={L}"
                if L != self.reference_[n] and c in where:
                    z[:, where[c]] = index == i
        z -= self.mean_[self.columns_].to_numpy()
        z /= self.sd_[self.columns_].to_numpy()
        return pd.DataFrame(z, index=df.index, columns=self.columns_)

    def fit_transform(self, X: pd.DataFrame, y: Any = None) -> pd.DataFrame:
        return self.fit(X).transform(X)

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """The design column names (``columns_``)."""
        check_is_fitted(self)
        return np.asarray(self.columns_, dtype=object)

    def features(self) -> list[str]:
        seen: list[str] = []
        for c in self.columns_:
            f = self.feature_of_[c]
            if f not in seen:
                seen.append(f)
        return seen


def correlated_groups(
    Z: pd.DataFrame, threshold: float, max_rows: int = 50_000, random_state: int = 0
) -> list[list[str]]:
    """Group columns whose |Spearman rho| exceeds ``threshold`` (average-linkage clustering).

    Returns
    -------
    list of groups (lists of column names, in the order of ``Z``'s columns); singletons
    included.
    """
    cols = list(Z.columns)
    if len(cols) < 2:
        return [cols] if cols else []
    sample = (
        Z.sample(n=min(max_rows, len(Z)), random_state=random_state) if len(Z) > max_rows else Z
    )
    rho = sample.rank().corr().abs().fillna(0.0).to_numpy().copy()
    np.fill_diagonal(rho, 1.0)
    dist = np.clip(1.0 - rho, 0.0, None)
    tree = hierarchy.linkage(squareform(dist, checks=False), method="average")
    labels = hierarchy.fcluster(tree, t=1.0 - threshold, criterion="distance")
    groups: dict[int, list[str]] = {}
    for c, lab in zip(cols, labels, strict=True):
        groups.setdefault(int(lab), []).append(c)
    order = {c: i for i, c in enumerate(cols)}
    return sorted(groups.values(), key=lambda g: order[g[0]])


def representatives(
    groups: list[list[str]], Z: pd.DataFrame, y: np.ndarray
) -> dict[str, list[str]]:
    """One member per group: the one whose univariate AUC is furthest from 0.5.

    Returns
    -------
    representative -> all members of its group (itself first).
    """
    out: dict[str, list[str]] = {}
    for g in groups:
        if len(g) == 1:
            out[g[0]] = list(g)
            continue
        strength = {c: abs(auc(y, Z[c].to_numpy()) - 0.5) for c in g}
        best = max(g, key=lambda c: (strength[c], -g.index(c)))
        out[best] = [best, *[c for c in g if c != best]]
    return out


def independent_columns(Z: pd.DataFrame, tol: float = 1e-8) -> list[str]:
    """Columns in order, leaving out any that is a linear combination of those before it
    (an exact duplicate would make the models' information matrices singular)."""
    kept: list[str] = []
    basis = np.empty((len(Z), 0))
    for c in Z.columns:
        v = Z[c].to_numpy(float)
        if basis.shape[1]:
            v = v - basis @ (basis.T @ v)
        norm = np.linalg.norm(v)
        if norm > tol * max(1.0, np.sqrt(len(Z))):
            basis = np.column_stack([basis, v / norm])
            kept.append(c)
    return kept


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


def _codes(ids: Sequence[Any]) -> np.ndarray:
    return pd.factorize(pd.Series(ids))[0]


def _fit_with_fallback(fit: Callable[..., Any], **kwargs: Any) -> Any:
    """Newton's method, or BFGS when Newton's first steps overshoot into overflow.

    statsmodels' Newton iterations take full steps; with a large score and a flat start an
    early step can leave the range where exp(x'b) is finite, and every estimate is NaN.
    BFGS with a line search cannot.
    """
    import warnings

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            res = fit(method="newton", **kwargs)
            if np.all(np.isfinite(res.params)) and np.all(np.isfinite(res.bse)):
                return res
        except np.linalg.LinAlgError:
            pass  # an overshooting step made the Hessian singular
        return fit(method="bfgs", **{**kwargs, "maxiter": 2000, "gtol": 1e-8})


def _group_codes(groups: Sequence[Any] | None, n: int) -> np.ndarray:
    """Cluster codes per row; without ``groups`` every row is its own cluster."""
    return np.arange(n) if groups is None else _codes(groups)


def _ratio_table(
    coef: pd.Series, se: pd.Series, p: pd.Series, ratio: str, prefix: str
) -> pd.DataFrame:
    """Coefficients with their ratio (exp) and its 95% Wald interval: the summary a logit
    (odds ratios, ``or_*``) and a Cox fit (hazard ratios, ``hr_*``) both report."""
    z = stats.norm.ppf(0.975)
    return pd.DataFrame(
        {
            "coef": coef,
            "se": se,
            ratio: np.exp(coef),
            f"{prefix}_low": np.exp(coef - z * se),
            f"{prefix}_high": np.exp(coef + z * se),
            "p": p,
        }
    )


class DriverLogit(ClassifierMixin, BaseEstimator):
    """Logistic regression on standardised columns; odds ratios per SD, clustered 95% CI.

    statsmodels' ``Logit`` with a covariance clustered by ``groups`` (a customer's monthly
    snapshots are not independent), Newton's method with a BFGS fallback.

    Parameters
    ----------
    maxiter : Newton iterations.

    Attributes
    ----------
    summary_ : DataFrame indexed by design column: ``coef, se, odds_ratio, or_low,
        or_high, p, intercept``; ``summary_.attrs["cov"]`` is ``cov_``.
    coef_ : pd.Series, log-odds per SD of each column.
    intercept_ : float.
    cov_ : DataFrame, the clustered covariance of the coefficients (for joint Wald tests).
    classes_ : ``[0, 1]``.
    """

    def __init__(self, maxiter: int = 200):
        self.maxiter = maxiter

    @single_threaded
    def fit(
        self, X: pd.DataFrame, y: Sequence[bool], groups: Sequence[Any] | None = None
    ) -> DriverLogit:
        # the model's own module: statsmodels.api would also import every other model family
        from statsmodels.discrete.discrete_model import Logit
        from statsmodels.tools.tools import add_constant

        Z = X
        design = add_constant(Z.to_numpy(), has_constant="add")
        model = Logit(np.asarray(y, dtype=float), design)
        res = _fit_with_fallback(
            model.fit,
            disp=0,
            maxiter=self.maxiter,
            cov_type="cluster",
            cov_kwds={"groups": _group_codes(groups, len(Z))},
        )
        coef = pd.Series(res.params[1:], index=Z.columns)
        se = pd.Series(res.bse[1:], index=Z.columns)
        p = pd.Series(res.pvalues[1:], index=Z.columns)
        out = _ratio_table(coef, se, p, "odds_ratio", "or").assign(intercept=float(res.params[0]))
        # the clustered covariance of the coefficients, for joint (Wald) tests over columns
        out.attrs["cov"] = pd.DataFrame(
            np.asarray(res.cov_params())[1:, 1:], index=Z.columns, columns=Z.columns
        )
        self.summary_ = out
        self.coef_ = coef
        self.intercept_ = float(res.params[0])
        self.cov_ = out.attrs["cov"]
        self.classes_ = np.array([0, 1])
        return self

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        """Log-odds of the event per row."""
        check_is_fitted(self)
        return self.intercept_ + X[self.coef_.index].to_numpy(float) @ self.coef_.to_numpy()

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of no event (column 0) and of the event (column 1)."""
        p = special.expit(self.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.classes_[(self.decision_function(X) > 0).astype(int)]


@renamed_arguments(clusters="groups")
def fit_logit(Z: pd.DataFrame, y: np.ndarray, groups: Sequence[Any] | None = None) -> pd.DataFrame:
    """:class:`DriverLogit`'s ``summary_``: odds ratios per SD with a clustered 95% CI.

    Returns
    -------
    DataFrame indexed by design column: ``coef, se, odds_ratio, or_low, or_high, p``.
    """
    return DriverLogit().fit(Z, y, groups).summary_


def counting_process(snap: pd.DataFrame, step_days: int | None = None) -> pd.DataFrame:
    """Entry, exit and event per snapshot row, for a Cox model with time-varying covariates.

    Each snapshot opens an interval ``[s, next snapshot)`` (or ``[s, s + step_days)``), ended
    early by churn on day ``d`` (exit ``d + 0.5``, event 1: during that day). Times are days
    since the first snapshot. Events at half days never coincide with the whole-day interval
    boundaries, where statsmodels would drop a customer whose interval is closed by
    censoring and reopened by the next snapshot from that moment's risk set.
    """
    dates = np.sort(snap.snapshot_date.unique())
    nxt = pd.Series(list(dates[1:]) + [pd.NaT], index=dates)
    if step_days is None:
        step_days = (
            int(np.median(np.diff(dates)).astype("timedelta64[D]").astype(int))
            if len(dates) > 1
            else 30
        )
    s = pd.to_datetime(snap.snapshot_date)
    end = pd.to_datetime(nxt.reindex(snap.snapshot_date.to_numpy()).to_numpy())
    end = pd.Series(end, index=snap.index).fillna(s + pd.Timedelta(days=step_days))
    churn = pd.to_datetime(snap.label_churned_at)
    event = churn.notna() & (churn < end)
    exit_ = end.where(~event, churn + pd.Timedelta(hours=12))
    origin = s.min()
    return pd.DataFrame(
        {
            "entry": (s - origin).dt.days.astype(float),
            "exit": (exit_ - origin) / pd.Timedelta(days=1),
            "event": event.astype(int),
        },
        index=snap.index,
    )


class _CoxRiskSets:
    """Breslow partial likelihood of a Cox model with delayed entry, on interval risk sets.

    A row is at risk at every distinct event time ``t`` with ``entry <= t <= exit`` (the
    convention of statsmodels' ``PHReg``). Sums over a risk set are differences of
    cumulative sums over the sorted event times, so a likelihood, score and information
    evaluation costs a few passes over the rows instead of a loop over event times.
    """

    def __init__(self, entry: np.ndarray, exit_: np.ndarray, event: np.ndarray, X: np.ndarray):
        event = np.asarray(event, dtype=bool)
        times = np.unique(exit_[event])
        self.X = np.ascontiguousarray(X, dtype=float)
        self.n_times = len(times)
        # rows are at risk at event-time indices first_..last_ (empty when first_ > last_)
        self.first_ = np.searchsorted(times, entry, side="left")
        self.last_ = np.searchsorted(times, exit_, side="right") - 1
        self.at_risk_ = self.first_ <= self.last_
        self.event_ = event
        self.event_time_ = np.searchsorted(times, exit_[event])
        self.deaths_ = np.bincount(self.event_time_, minlength=self.n_times).astype(float)
        self.x_events_ = self.X[event].sum(axis=0)

    def _risk_sums(self, v: np.ndarray) -> np.ndarray:
        """Sum of ``v`` (rows, or rows x columns) over each event time's risk set."""
        T = self.n_times
        a, b = self.first_[self.at_risk_], self.last_[self.at_risk_] + 1
        v = v[self.at_risk_]
        if v.ndim == 1:
            d = np.bincount(a, v, T + 1) - np.bincount(b, v, T + 1)
            return np.cumsum(d)[:T]
        d = np.stack(
            [
                np.bincount(a, v[:, j], T + 1) - np.bincount(b, v[:, j], T + 1)
                for j in range(v.shape[1])
            ],
            axis=1,
        )
        return np.cumsum(d, axis=0)[:T]

    def _over_risk_times(self, per_time: np.ndarray) -> np.ndarray:
        """Per row: the sum of ``per_time`` over the event times at which it is at risk."""
        c = np.cumsum(per_time, axis=0)
        c = np.concatenate([np.zeros((1, *per_time.shape[1:])), c])
        out = c[self.last_ + 1] - c[np.minimum(self.first_, self.last_ + 1)]
        return np.where(self.at_risk_.reshape(-1, *([1] * (per_time.ndim - 1))), out, 0.0)

    def evaluate(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, dict]:
        """Log partial likelihood, score, Hessian and the pieces the sandwich needs."""
        eta = self.X @ beta
        eta = eta - eta.max()  # exp() stays finite; the likelihood is unchanged
        r = np.exp(eta)
        s0 = self._risk_sums(r)
        s1 = self._risk_sums(r[:, None] * self.X)
        mean = s1 / s0[:, None]  # risk-weighted covariate mean per event time
        hazard = self.deaths_ / s0  # Breslow increment of the cumulative hazard
        loglike = float(eta[self.event_].sum() - self.deaths_ @ np.log(s0))
        score = self.x_events_ - self.deaths_ @ mean
        c = self._over_risk_times(hazard)
        info = (self.X * (r * c)[:, None]).T @ self.X - (mean * self.deaths_[:, None]).T @ mean
        return loglike, score, -info, {"r": r, "mean": mean, "hazard": hazard, "c": c}

    def score_residuals(self, parts: dict) -> np.ndarray:
        """Per row: its share of the score (sums to the score over all rows)."""
        r, mean, hazard, c = parts["r"], parts["mean"], parts["hazard"], parts["c"]
        out = -r[:, None] * (self.X * c[:, None] - self._over_risk_times(hazard[:, None] * mean))
        out[self.event_] += self.X[self.event_] - mean[self.event_time_]
        return out


def _cox_newton(
    risk: _CoxRiskSets, max_iter: int = 100, tol: float = 1e-10
) -> tuple[np.ndarray, np.ndarray, dict] | None:
    """Maximise the partial likelihood by Newton's method with step halving.

    Returns (coefficients, Hessian, pieces at the optimum), or None when it does not
    converge (a singular information matrix, or a likelihood that keeps rising: separation).
    """
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        return _cox_newton_steps(risk, max_iter, tol)


def _cox_newton_steps(
    risk: _CoxRiskSets, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, dict] | None:
    # A trial step may overflow; the step is then halved until the likelihood is finite
    # and has not fallen, which is what keeps Newton from the overshoot statsmodels hits.
    beta = np.zeros(risk.X.shape[1])
    ll, score, hess, parts = risk.evaluate(beta)
    for _ in range(max_iter):
        try:
            step = np.linalg.solve(-hess, score)
        except np.linalg.LinAlgError:
            return None
        if not np.all(np.isfinite(step)):
            return None
        t = 1.0
        for _ in range(30):
            new = beta + t * step
            out = risk.evaluate(new)
            if np.isfinite(out[0]) and out[0] >= ll - 1e-12 * abs(ll):
                break
            t *= 0.5
        else:
            return None
        beta, (ll, score, hess, parts) = new, out
        if np.max(np.abs(t * step)) < tol:
            return beta, hess, parts
    return None


class DriverCox(BaseEstimator):
    """Cox PH (Breslow ties) with delayed entry; hazard ratios per SD with robust 95% CI.

    The robust covariance is the sandwich of the information matrix around the score
    residuals summed per cluster (statsmodels' ``PHReg(...).fit(groups=...)``). When
    Newton's method does not converge, statsmodels fits the model instead. The outcome
    ``y`` is a counting-process frame (:func:`counting_process`): ``entry``, ``exit``,
    ``event`` per row of ``X``.

    Attributes
    ----------
    summary_ : DataFrame indexed by design column: ``coef, se, hazard_ratio, hr_low,
        hr_high, p``; ``summary_.attrs["cov"]`` is ``cov_``.
    coef_ : pd.Series, log hazard ratio per SD of each column.
    cov_ : DataFrame, the robust covariance of the coefficients.
    """

    @single_threaded
    def fit(
        self, X: pd.DataFrame, y: pd.DataFrame, groups: Sequence[Any] | None = None
    ) -> DriverCox:
        Z, cp = X, y
        Xv = Z.to_numpy(dtype=float)
        codes = _group_codes(groups, len(Z))
        risk = _CoxRiskSets(
            cp["entry"].to_numpy(float), cp["exit"].to_numpy(float), cp["event"].to_numpy(bool), Xv
        )
        fitted = _cox_newton(risk) if risk.n_times else None
        if fitted is None:
            params, bse, pvalues, cov = _fit_cox_statsmodels(Xv, cp, codes)
        else:
            params, hess, parts = fitted
            resid = risk.score_residuals(parts)
            per_cluster = np.stack(
                [np.bincount(codes, resid[:, j]) for j in range(resid.shape[1])], axis=1
            )
            h_inv = np.linalg.inv(hess)
            cov = h_inv @ (per_cluster.T @ per_cluster) @ h_inv
            bse = np.sqrt(np.diag(cov))
            pvalues = 2.0 * stats.norm.sf(np.abs(params / bse))
        coef = pd.Series(params, index=Z.columns)
        se = pd.Series(bse, index=Z.columns)
        out = _ratio_table(coef, se, pd.Series(pvalues, index=Z.columns), "hazard_ratio", "hr")
        out.attrs["cov"] = pd.DataFrame(np.asarray(cov), index=Z.columns, columns=Z.columns)
        self.summary_ = out
        self.coef_ = coef
        self.cov_ = out.attrs["cov"]
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Risk score per row: the log partial hazard ``X @ coef_`` (higher = sooner)."""
        check_is_fitted(self)
        return X[self.coef_.index].to_numpy(float) @ self.coef_.to_numpy()


@renamed_arguments(clusters="groups")
def fit_cox(Z: pd.DataFrame, cp: pd.DataFrame, groups: Sequence[Any] | None = None) -> pd.DataFrame:
    """:class:`DriverCox`'s ``summary_``: hazard ratios per SD with a robust 95% CI.

    Returns
    -------
    DataFrame indexed by design column: ``coef, se, hazard_ratio, hr_low, hr_high, p``.
    """
    return DriverCox().fit(Z, cp, groups).summary_


def _fit_cox_statsmodels(
    X: np.ndarray, cp: pd.DataFrame, codes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from statsmodels.duration.hazard_regression import PHReg

    model = PHReg(
        cp["exit"].to_numpy(),
        X,
        status=cp["event"].to_numpy(),
        entry=cp["entry"].to_numpy(),
        ties="breslow",
    )
    res = _fit_with_fallback(model.fit, groups=codes)
    return (
        np.asarray(res.params),
        np.asarray(res.bse),
        np.asarray(res.pvalues),
        np.asarray(res.cov_params()),
    )


def _gbm_frame(
    df: pd.DataFrame, numeric: list[str], categorical: list[str], categories: dict[str, list[str]]
) -> pd.DataFrame:
    out = {n: pd.to_numeric(df[n], errors="coerce").astype(float) for n in numeric}
    for n in categorical:
        v = df[n].astype(object).where(df[n].notna(), _MISSING_LEVEL).astype(str)
        out[n] = pd.Categorical(v, categories=categories[n])
    return pd.DataFrame(out, index=df.index)


@single_threaded
def fit_gbm(
    train: pd.DataFrame,
    y_train: np.ndarray,
    test: pd.DataFrame,
    y_test: np.ndarray,
    numeric: list[str],
    categorical: list[str],
    permutation_rows: int = 20_000,
    n_repeats: int = 5,
    random_state: int = 0,
) -> tuple[pd.Series, pd.Series, float, int]:
    """Gradient-boosted trees; permutation importance (AUC drop) on the later period.

    Returns
    -------
    (importance mean, importance SD, test AUC, rows used for the importance).
    """
    from sklearn.ensemble import HistGradientBoostingClassifier

    cats = {
        n: sorted(
            train[n]
            .astype(object)
            .where(train[n].notna(), _MISSING_LEVEL)
            .astype(str)
            .unique()
            .tolist()
        )
        for n in categorical
    }
    Xtr = _gbm_frame(train, numeric, categorical, cats)
    Xte = _gbm_frame(test, numeric, categorical, cats)
    est = HistGradientBoostingClassifier(
        learning_rate=0.05,
        max_iter=300,
        max_leaf_nodes=15,
        min_samples_leaf=40,
        l2_regularization=1.0,
        categorical_features="from_dtype",
        early_stopping=True,
        validation_fraction=0.15,
        n_iter_no_change=20,
        random_state=random_state,
    )
    est.fit(Xtr, np.asarray(y_train, dtype=int))
    return _gbm_importance(est, Xte, y_test, permutation_rows, n_repeats, random_state)


def _gbm_importance(
    est: Any,
    Xte: pd.DataFrame,
    y_test: np.ndarray,
    permutation_rows: int,
    n_repeats: int,
    random_state: int,
) -> tuple[pd.Series, pd.Series, float, int]:
    from sklearn.inspection import permutation_importance

    test_auc = auc(y_test, est.predict_proba(Xte)[:, 1])
    rows = min(permutation_rows, len(Xte))
    y_perm = np.asarray(y_test, dtype=bool)
    if rows < len(Xte):
        # AUC does not depend on the class mix, so sample within each class and keep as many
        # churners as possible: importance is measured on them.
        rng = np.random.default_rng(random_state)
        pos, neg = np.flatnonzero(y_perm), np.flatnonzero(~y_perm)
        n_pos = min(len(pos), rows // 2)
        idx = np.sort(
            np.r_[
                rng.choice(pos, n_pos, replace=False),
                rng.choice(neg, min(len(neg), rows - n_pos), replace=False),
            ]
        )
        Xte, y_perm = Xte.iloc[idx], y_perm[idx]
    imp = _tree_permutation_importance(est, Xte, y_perm, n_repeats, random_state)
    if imp is None:
        imp = permutation_importance(
            est,
            Xte,
            np.asarray(y_perm, dtype=int),
            scoring="roc_auc",
            n_repeats=n_repeats,
            random_state=random_state,
            n_jobs=1,
        )
    return (
        pd.Series(imp.importances_mean, index=Xte.columns),
        pd.Series(imp.importances_std, index=Xte.columns),
        test_auc,
        rows,
    )


def _tree_permutation_importance(
    est: Any, X: pd.DataFrame, y: np.ndarray, n_repeats: int, random_state: int
) -> Any | None:
    """scikit-learn's ``permutation_importance`` (AUC scoring) for a fitted
    ``HistGradientBoostingClassifier``, re-predicting only the trees that split on the
    permuted feature.

    Shuffling one column leaves every tree that never splits on it unchanged, so each
    tree's predictions are kept and only the affected trees are recomputed; the raw score
    is then summed tree by tree in the estimator's own order, so it equals
    ``decision_function`` bit for bit. The shuffles are scikit-learn's (one seed drawn from
    ``random_state``, then per column a fresh generator whose shuffles compound over the
    repeats), so the importances are the same numbers. Returns None, and the caller uses
    scikit-learn, when the estimator's internals are not as expected or the recomputed
    baseline differs from ``decision_function``.
    """
    from sklearn.utils import Bunch, check_random_state

    try:
        predictors = est._predictors
        if est.n_trees_per_iteration_ != 1 or not all(len(p) == 1 for p in predictors):
            return None
        Xp = est._preprocess_X(X, reset=False)
        known_cat_bitsets, f_idx_map = est._bin_mapper.make_known_categories_bitsets()
        trees = [p[0] for p in predictors]
        baseline_raw = np.asarray(est._baseline_prediction, dtype=float).reshape(-1)
        if baseline_raw.shape != (1,):
            return None

        def tree_predict(tree: Any, data: np.ndarray) -> np.ndarray:
            return tree.predict(data, known_cat_bitsets, f_idx_map, 1)

        contrib = np.stack([tree_predict(t, Xp) for t in trees]) if trees else np.zeros((0, len(X)))

        def raw_score(parts: np.ndarray) -> np.ndarray:
            raw = np.zeros(len(X)) + baseline_raw[0]
            for row in parts:
                raw += row
            return raw

        raw = raw_score(contrib)
        if not np.array_equal(raw, np.asarray(est.decision_function(X), dtype=float)):
            return None
        # original column -> column of the preprocessed matrix (categoricals move first)
        if est._preprocessor is None:
            position = np.arange(X.shape[1])
        else:
            is_cat = np.asarray(est.is_categorical_, dtype=bool)
            enc = est._preprocessor.output_indices_["encoder"]
            num = est._preprocessor.output_indices_["numerical"]
            position = np.empty(X.shape[1], dtype=int)
            position[is_cat] = np.arange(enc.start, enc.stop)
            position[~is_cat] = np.arange(num.start, num.stop)
        uses = []
        for t in trees:
            nodes = t.nodes
            uses.append(set(np.unique(nodes["feature_idx"][nodes["is_leaf"] == 0]).tolist()))
    except (AttributeError, KeyError, TypeError, ValueError):
        return None
    y = np.asarray(y, dtype=bool)
    baseline = auc(y, raw)
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max + 1)
    scores = np.empty((X.shape[1], n_repeats))
    for j in progress.bar(range(X.shape[1]), "permutation importance", unit="feature"):
        col = position[j]
        affected = [i for i, u in enumerate(uses) if col in u]
        rng = check_random_state(seed)
        shuffle = np.arange(len(X))
        values = Xp[:, col].copy()
        permuted = Xp.copy()
        parts = contrib.copy()
        for r in range(n_repeats):
            rng.shuffle(shuffle)
            values = values[shuffle]
            if not affected:
                scores[j, r] = baseline
                continue
            permuted[:, col] = values
            for i in affected:
                parts[i] = tree_predict(trees[i], permuted)
            scores[j, r] = auc(y, raw_score(parts))
    importances = baseline - scores
    return Bunch(
        importances_mean=np.mean(importances, axis=1),
        importances_std=np.std(importances, axis=1),
        importances=importances,
    )


# --------------------------------------------------------------------------------------
# Which ranked features the data supports as drivers

ALPHA = 0.05
PERMUTATIONS = 199


def joint_wald(fit: pd.DataFrame, columns_of: dict[str, list[str]]) -> pd.Series:
    """p-value per feature of the Wald test that all its coefficients are 0.

    A categorical feature enters as one test over all its levels (one column per level
    but the reference), so a feature with many levels gets no extra chances to look
    significant. ``fit`` is :func:`fit_logit` or :func:`fit_cox` output; the covariance is
    its clustered (robust) one, so repeated rows of a customer do not inflate the evidence.
    """
    cov = fit.attrs["cov"]
    out = {}
    for f, cols in columns_of.items():
        b = fit.coef[cols].to_numpy(float)
        V = cov.loc[cols, cols].to_numpy(float)
        if not (np.isfinite(b).all() and np.isfinite(V).all()):
            out[f] = 1.0
            continue
        df = max(1, int(np.linalg.matrix_rank(V)))
        out[f] = float(stats.chi2.sf(float(b @ np.linalg.pinv(V) @ b), df))
    return pd.Series(out, dtype=float)


def holm(p: pd.Series) -> pd.Series:
    """Holm's step-down adjusted p-values (family-wise error control).

    Holm rather than Benjamini-Hochberg: the top drivers steer actions (the summary, the
    at-risk reasons), so one noise feature among them is the costly error, and Holm holds
    under any dependence between the tests (features are correlated) where BH needs
    positive dependence; with the few dozen candidates of a review it costs little power.
    """
    v = p.fillna(1.0).to_numpy(float)
    m = len(v)
    adj = np.empty(m)
    running = 0.0
    for k, i in enumerate(np.argsort(v, kind="stable")):
        running = max(running, min(1.0, (m - k) * v[i]))
        adj[i] = running
    return pd.Series(adj, index=p.index)


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
    for f, cols in columns_of.items():
        j = [position[c] for c in cols]
        part = X[:, j] @ b[j]
        rest = lin - part
        aucs = np.array(
            [RankAUC(y, rest + part[rng.permutation(len(y))])() for _ in range(n_permutations)]
        )
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


@renamed_arguments(clusters="groups")
def screen_categoricals(
    df: pd.DataFrame,
    y: Sequence[bool],
    groups: Sequence[Any] | None,
    categorical: Sequence[str],
) -> pd.Series:
    """Holm-adjusted p-values of the categorical features whose levels vary: does a
    feature's level, taken jointly over all levels, go with the outcome?

    One logistic regression per feature on its level dummies, a joint Wald test with
    standard errors clustered by customer, Holm's correction over the features. Constant
    (single-level or all-missing) features are not tested and not in the result: they
    carry no information. Keep those below :data:`ALPHA`. A model that weighs features
    by their fit (the learned health score) cannot otherwise tell a column assigned at
    random from a real segment: nine level dummies fit noise nine ways.
    """
    if not categorical:
        return pd.Series(dtype=float)
    design = Design([], list(categorical)).fit(df)
    if not design.categorical_:
        return pd.Series(dtype=float)
    Z = design.transform(df)
    y = np.asarray(y, dtype=bool)
    ids = np.arange(len(df)) if groups is None else np.asarray(groups)
    pvals = {}
    for f in design.categorical_:
        cols = independent_columns(Z[[c for c in design.columns_ if design.feature_of_[c] == f]])
        if not cols or y.all() or not y.any():
            pvals[f] = 1.0
            continue
        pvals[f] = float(joint_wald(fit_logit(Z[cols], y, ids), {f: cols})[f])
    return holm(pd.Series(pvals, dtype=float))


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


# --------------------------------------------------------------------------------------
# Kaplan-Meier


def kaplan_meier(
    time: np.ndarray, event: np.ndarray, group: np.ndarray, entry: np.ndarray | None = None
) -> tuple[dict[Any, pd.DataFrame], float]:
    """Kaplan-Meier curves per group with 95% pointwise CI, and the log-rank p-value.

    Returns
    -------
    (group -> DataFrame ``time, surv, low, high, at_risk``, log-rank p-value across groups)
    """
    from statsmodels.duration.survfunc import SurvfuncRight, survdiff

    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=int)
    group = np.asarray(group)
    curves: dict[Any, pd.DataFrame] = {}
    for g in pd.unique(group):
        m = group == g
        sf = SurvfuncRight(time[m], event[m], entry=None if entry is None else entry[m])
        t = np.r_[0.0, sf.surv_times]
        s = np.r_[1.0, sf.surv_prob]
        se = np.r_[0.0, sf.surv_prob_se]
        # log(-log) interval: stays inside [0, 1]
        with np.errstate(divide="ignore", invalid="ignore"):
            lls = np.log(-np.log(s))
            half = 1.96 * se / (s * np.abs(np.log(s)))
            # log(-log S) falls as S rises: its upper limit gives the lower limit of S
            low = np.where(s < 1, np.exp(-np.exp(lls + half)), 1.0)
            high = np.where(s < 1, np.exp(-np.exp(lls - half)), 1.0)
        at_risk = np.r_[m.sum(), sf.n_risk]
        curves[g] = pd.DataFrame(
            {
                "time": t,
                "surv": s,
                "low": np.nan_to_num(low, nan=s),
                "high": np.nan_to_num(high, nan=s),
                "at_risk": at_risk,
            }
        )
    p = float("nan")
    if len(curves) > 1 and event.sum() > 0:
        _, p = survdiff(time, event, group, entry=entry)
        p = float(p)
    return curves, p


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
