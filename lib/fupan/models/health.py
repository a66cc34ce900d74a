"""Customer health score 0-100: weights learned from churn, beside a hand-weighted score.

:class:`LearnedHealth` is a ridge-penalised logistic regression of the H-day churn label
on standardised metrics, each weight constrained to the metric's own direction. Metrics that move together (|Spearman rho| above a threshold) are
first averaged into one composite per group, so a weight belongs to an idea ("purchase
activity") rather than being split arbitrarily between near-duplicates. The penalty is
chosen by cross-validation with folds split by customer (a customer's monthly snapshots
never sit on both sides of a fold).

:class:`HandHealth` is the score a team writes down: dimensions (need fit, resolution
efficiency, relationship intimacy, ...) with weights from params, each the average of its
metrics' percentiles against a reference population.

Both map to 0-100 where 100 is healthiest. The learned score is the percentile of
*safety* against the reference (training) snapshots: a score of 10 means 90% of the
reference customer-months looked safer. Bands (green / amber / red) are thresholds on the
score chosen on the reference period for an alert volume or a target precision, then
applied unchanged to the later period they are judged on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted

from fupan.core import progress
from fupan.measures.outcomes import rate_with_ci
from fupan.models.design import (
    Design,
    RankAUC,
    correlated_groups,
    renamed_arguments,
    single_threaded,
)
from fupan.models.logit import ALPHA, screen_categoricals

BANDS = ("red", "amber", "green")


def nan_percentile(a: Any, q: Any, axis: int | None = None) -> Any:
    """np.nanpercentile, NaN (without a warning) where every replicate is NaN."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanpercentile(a, q, axis=axis)


def _percentile(ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Mid-rank percentile (0-100) of ``x`` in the sorted reference ``ref``."""
    lo = np.searchsorted(ref, x, side="left")
    hi = np.searchsorted(ref, x, side="right")
    return 100.0 * (lo + hi) / (2.0 * len(ref))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def fit_nonnegative_logit(
    X: np.ndarray, y: np.ndarray, C: float, start: np.ndarray | None = None
) -> tuple[np.ndarray, float]:
    """Ridge-penalised logistic regression with coefficients >= 0 (intercept free).

    Minimises ``C * sum(log loss) + ||w||^2 / 2`` (scikit-learn's convention for ``C``)
    with L-BFGS-B under the bounds ``w >= 0``.

    Returns
    -------
    (coefficients, intercept)
    """
    from scipy.optimize import minimize

    # Column-major: both matrix-vector products per evaluation then stream whole columns,
    # over twice as fast single-threaded as row-major for these tall, narrow matrices.
    X = np.asarray(X, dtype=float, order="F")
    y = np.asarray(y, dtype=float)
    n, k = X.shape
    scale = 1.0 / (C * n)  # divide the objective by C*n: same optimum, better conditioned

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        b, w = theta[0], theta[1:]
        eta = b + X @ w
        # log(1 + exp(eta)) - y * eta, computed stably; np.logaddexp is the same formula
        # evaluated element by element, about 20 times slower than these vectorised calls
        loss = np.maximum(eta, 0.0) + np.log1p(np.exp(-np.abs(eta))) - y * eta
        r = _sigmoid(eta) - y
        f = loss.mean() + 0.5 * scale * (w @ w)
        g = np.empty(k + 1)
        g[0] = r.mean()
        g[1:] = X.T @ r / n + scale * w
        return float(f), g

    if start is None:
        p0 = np.clip(y.mean(), 1e-6, 1 - 1e-6)
        theta0 = np.r_[np.log(p0 / (1 - p0)), np.zeros(k)]
    else:
        theta0 = np.asarray(start, dtype=float)
    res = minimize(
        objective,
        theta0,
        jac=True,
        method="L-BFGS-B",
        bounds=[(None, None)] + [(0.0, None)] * k,
        options={"maxiter": 5000, "ftol": 1e-12, "gtol": 1e-8},
    )
    return res.x[1:], float(res.x[0])


class LearnedHealth(ClassifierMixin, BaseEstimator):
    """Health score with weights learned from churn outcomes.

    A scikit-learn classifier of churn within the horizon (``predict_proba`` column 1),
    with the 0-100 score (:meth:`health`) and its bands (:meth:`band`) on top.

    Parameters
    ----------
    numeric, categorical : features.
    group_correlation : |Spearman rho| above which numeric metrics share one weight.
    Cs : inverse penalty strengths tried.
    n_folds : cross-validation folds (split by customer).
    random_state : seed for the fold assignment and the correlation sample.
    screen_categorical : a categorical feature enters only if its levels jointly go with
        churn (:func:`fupan.models.logit.screen_categoricals`: clustered Wald test, Holm), so a
        column assigned at random gets no weight.
    alert_volume, amber_volume, target_precision : how the band thresholds are chosen on
        the fitting rows (:func:`choose_thresholds`): the bands belong to the reference
        period the score is fitted on, so they are fitted with it.

    Attributes
    ----------
    design_ : the fitted :class:`fupan.models.design.Design`.
    groups_ : group name -> member design columns (a categorical feature is one group).
    signs_ : design column -> +1/-1, its orientation inside its group's composite.
    orientation_ : +1/-1 per composite, the direction in which it goes with churn alone.
    coef_ : pd.Series, log-odds of churn per SD of each group composite (its sign always
        equals its orientation, or it is 0).
    intercept_ : float.
    C_ : the chosen inverse penalty.
    cv_loss_ : mean held-out log loss per penalty tried (empty without cross-validation).
    weights_ : DataFrame ``group, members, coef, weight`` (share of the summed |coef| x SD
        of each group's contribution) and ``direction`` (+1 = more of it, more risk).
    reference_ : sorted linear predictors of the fitting rows (the 0-100 scale).
    screened_out_ : categorical features the screen tested and left out (constant ones are
        never tested: they carry no information).
    thresholds_ : the band thresholds chosen on the fitting rows (:func:`choose_thresholds`).
    classes_ : ``[0, 1]`` (1 = churned within the horizon).
    """

    def __init__(
        self,
        numeric: Sequence[str] = (),
        categorical: Sequence[str] = (),
        group_correlation: float = 0.7,
        Cs: Sequence[float] = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
        n_folds: int = 5,
        random_state: int = 0,
        screen_categorical: bool = True,
        alert_volume: float = 0.10,
        amber_volume: float = 0.20,
        target_precision: float | None = None,
    ):
        # stored as given (scikit-learn's convention, so that clone() works)
        self.numeric = numeric
        self.categorical = categorical
        self.group_correlation = group_correlation
        self.Cs = Cs
        self.n_folds = n_folds
        self.random_state = random_state
        self.screen_categorical = screen_categorical
        self.alert_volume = alert_volume
        self.amber_volume = amber_volume
        self.target_precision = target_precision

    # composites ---------------------------------------------------------------------
    def _composites(self, Z: pd.DataFrame) -> pd.DataFrame:
        out = {}
        for g, cols in self.groups_.items():
            if g in self.design_.categorical_:
                for c in cols:
                    out[c] = Z[c]
                continue
            m = sum(self.signs_[c] * Z[c] for c in cols) / len(cols)
            out[g] = (m - self.comp_mean_[g]) / self.comp_sd_[g]
        return pd.DataFrame(out, index=Z.index)

    @renamed_arguments(clusters="groups")
    @single_threaded
    def fit(
        self, X: pd.DataFrame, y: Sequence[bool], groups: Sequence[Any] | None = None
    ) -> LearnedHealth:
        """Fit the score, its 0-100 reference and its bands.

        Parameters
        ----------
        X : one row per customer-snapshot, with the feature columns.
        y : churned within the horizon.
        groups : customer id per row; cross-validation folds and the categorical screen
            keep a customer's rows together (default: every row its own customer).
        """
        df = X
        y = np.asarray(y, dtype=int)
        self.classes_ = np.array([0, 1])
        self.design_ = Design(list(self.numeric), self._screen(df, y, groups)).fit(df)
        Z = self.design_.transform(df)
        self._fit_composites(Z)
        X = self._composites(Z)
        self.columns_ = list(X.columns)
        # Each composite is oriented so that more of it goes with more churn on its own,
        # and its weight is kept >= 0: a metric never enters the score against its own
        # plain-language direction (suppressor effects between correlated metrics would
        # otherwise give weights nobody can explain).
        Xv = X.to_numpy()
        yc = y - y.mean()
        cov = (Xv - Xv.mean(axis=0)).T @ yc
        self.orientation_ = pd.Series(np.where(cov < 0, -1.0, 1.0), index=self.columns_)
        Xo = Xv * self.orientation_.to_numpy()
        # selecting a fold's columns of the transpose gives the column-major rows the
        # solver wants without a second copy
        XoT = np.ascontiguousarray(Xo.T)
        self.C_, self.cv_loss_ = self._choose_penalty(XoT, y, groups)
        w, b = fit_nonnegative_logit(XoT.T, y, self.C_)
        self.coef_ = pd.Series(w * self.orientation_.to_numpy(), index=self.columns_)
        self.intercept_ = float(b)
        eta = self._eta(X)
        self.reference_ = np.sort(eta)
        self.weights_ = self._weights(X)
        self.thresholds_ = choose_thresholds(
            self.health(df),
            y.astype(bool),
            self.alert_volume,
            self.amber_volume,
            self.target_precision,
        )
        return self

    def _screen(self, df: pd.DataFrame, y: np.ndarray, groups: Any) -> list[str]:
        """The categorical features that enter; sets ``screened_out_``."""
        cats, self.screened_out_ = list(self.categorical), []
        if self.screen_categorical:
            adj = screen_categoricals(df, y, groups, list(self.categorical))
            cats = [c for c in self.categorical if c in adj.index and adj[c] < ALPHA]
            self.screened_out_ = [c for c in adj.index if c not in cats]
        return cats

    def _fit_composites(self, Z: pd.DataFrame) -> None:
        """Correlated numeric columns grouped into composites; sets ``groups_``, ``signs_``
        and each composite's mean and SD (``comp_mean_``, ``comp_sd_``)."""
        num_cols = [
            c for c in self.design_.columns_ if self.design_.feature_of_[c] in self.design_.numeric_
        ]
        clustered = correlated_groups(
            Z[num_cols], self.group_correlation, random_state=self.random_state
        )
        self.groups_ = {}
        self.signs_ = {}
        self.comp_mean_, self.comp_sd_ = {}, {}
        for g in clustered:
            name = g[0]
            self.groups_[name] = list(g)
            for c in g:
                r = np.corrcoef(Z[c], Z[g[0]])[0, 1] if c != g[0] else 1.0
                self.signs_[c] = 1.0 if not np.isfinite(r) or r >= 0 else -1.0
            m = sum(self.signs_[c] * Z[c] for c in g) / len(g)
            self.comp_mean_[name] = float(m.mean())
            self.comp_sd_[name] = float(m.std(ddof=0)) or 1.0
        for f in self.design_.categorical_:
            self.groups_[f] = [c for c in self.design_.columns_ if self.design_.feature_of_[c] == f]

    def _choose_penalty(
        self, XoT: np.ndarray, y: np.ndarray, groups: Any
    ) -> tuple[float, dict[float, float]]:
        """The penalty with the lowest cross-validated log loss (folds split by customer),
        and the loss per penalty (empty when there are too few customers or churners)."""
        codes = np.arange(len(y)) if groups is None else pd.factorize(pd.Series(groups))[0]
        n_groups = len(np.unique(codes))
        folds = min(self.n_folds, n_groups)
        best_c, best_loss = self.Cs[-1], np.inf
        cv_loss: dict[float, float] = {}
        if folds >= 2 and y.sum() >= folds:
            # customers (not rows) are shuffled into folds, reproducibly
            perm = np.random.default_rng(self.random_state).permutation(n_groups)
            fold_of = perm[codes] % folds
            cv_loss = self._cv_losses(XoT, y, fold_of, folds, warm=True)
            ranked = sorted(v for v in cv_loss.values() if np.isfinite(v))
            if len(ranked) > 1 and ranked[1] - ranked[0] < 1e-6 * abs(ranked[0]):
                # Warm and cold starts stop at points that differ within the solver's
                # tolerance; when two penalties are that close, decide with cold starts.
                cv_loss = self._cv_losses(XoT, y, fold_of, folds, warm=False)
            for C in self.Cs:
                if cv_loss[C] < best_loss - 1e-9:
                    best_c, best_loss = C, cv_loss[C]
        return best_c, cv_loss

    def _cv_losses(
        self, XoT: np.ndarray, y: np.ndarray, fold_of: np.ndarray, folds: int, warm: bool
    ) -> dict[float, float]:
        """Mean held-out log loss per penalty.

        Folds outer, penalties inner: each fold's rows are copied once and, with ``warm``,
        each fit starts from the fold's solution at the previous (stronger) penalty, which
        is close, so the solver needs fewer steps to the same optimum.
        """
        losses: dict[float, list[float]] = {C: [] for C in self.Cs}
        for k in range(folds):
            tr, te = fold_of != k, fold_of == k
            if y[tr].min() == y[tr].max() or not te.any():
                continue
            X_tr, X_te, y_tr, y_te = XoT[:, tr].T, XoT[:, te].T, y[tr], y[te]
            start = None
            for C in self.Cs:
                w, b = fit_nonnegative_logit(X_tr, y_tr, C, start=start)
                start = np.r_[b, w] if warm else None
                p = np.clip(_sigmoid(b + X_te @ w), 1e-9, 1 - 1e-9)
                losses[C].append(-np.mean(y_te * np.log(p) + (1 - y_te) * np.log(1 - p)))
        return {C: float(np.mean(v)) if v else np.inf for C, v in losses.items()}

    def _eta(self, X: pd.DataFrame) -> np.ndarray:
        return self.intercept_ + X[self.columns_].to_numpy() @ self.coef_.to_numpy()

    def _weights(self, X: pd.DataFrame) -> pd.DataFrame:
        rows = []
        for g, cols in self.groups_.items():
            if g in self.design_.categorical_:
                keys = [c for c in cols if c in self.coef_.index]
                contrib = (
                    X[keys].to_numpy() @ self.coef_[keys].to_numpy() if keys else np.zeros(len(X))
                )
                size = float(np.std(contrib))
                coef, direction = float(np.nan), 0.0
                members = [g]
            else:
                coef = float(self.coef_[g])
                size = abs(coef)
                direction = float(np.sign(coef))
                members = [self.design_.feature_of_[c] for c in cols]
            rows.append(
                {
                    "group": self.design_.feature_of_.get(g, g),
                    "members": members,
                    "coef": coef,
                    "size": size,
                    "direction": direction,
                }
            )
        w = pd.DataFrame(rows)
        total = w["size"].sum()
        w["weight"] = w["size"] / total if total > 0 else 0.0
        return w.sort_values("weight", ascending=False).reset_index(drop=True)

    def band(self, df: pd.DataFrame) -> np.ndarray:
        """red / amber / green per row, by the thresholds chosen in :meth:`fit`."""
        return band(self.health(df), self.thresholds_)

    # scoring ------------------------------------------------------------------------
    def transform(self, df: pd.DataFrame) -> pd.DataFrame:
        """Group composites (standardised) for ``df``."""
        check_is_fitted(self)
        return self._composites(self.design_.transform(df))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of staying (column 0) and of churn within the horizon (column 1)."""
        p = 1.0 / (1.0 + np.exp(-self._eta(self.transform(X))))
        return np.column_stack([1.0 - p, p])

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """1 where churn within the horizon is more likely than not."""
        return self.classes_[(self.predict_proba(X)[:, 1] > 0.5).astype(int)]

    def health(self, df: pd.DataFrame) -> np.ndarray:
        """0-100, higher is healthier: 100 minus the risk percentile among reference rows."""
        eta = self._eta(self.transform(df))
        return np.round(100.0 - _percentile(self.reference_, eta), 1)

    def contributions(self, df: pd.DataFrame) -> pd.DataFrame:
        """Per row and group: added log-odds of churn versus an average customer."""
        X = self.transform(df)
        out = {}
        for g, cols in self.groups_.items():
            keys = [c for c in ([g] if g in X.columns else cols) if c in self.coef_.index]
            out[self.design_.feature_of_.get(g, g)] = (
                X[keys].to_numpy() @ self.coef_[keys].to_numpy()
            )
        return pd.DataFrame(out, index=df.index)


class HandHealth(BaseEstimator):
    """Hand-weighted health score from params.

    Parameters
    ----------
    dimensions : name -> (weight, {feature: +1 if higher is healthier else -1}).

    Attributes
    ----------
    used_ : dimension -> the metrics found in the fitting data.
    weights_ : dimension -> weight renormalised over the dimensions that have metrics.
    reference_ : metric -> sorted reference values.
    """

    def __init__(self, dimensions: Mapping[str, tuple[float, Mapping[str, int]]] | None = None):
        self.dimensions = dimensions

    @classmethod
    def from_params(cls, params: Any) -> HandHealth:
        return cls({k: (d.weight, dict(d.metrics)) for k, d in params.churn.hand_weights.items()})

    def fit(self, X: pd.DataFrame, y: Any = None) -> HandHealth:
        """Reference percentiles of each metric found in ``X`` (``y`` is ignored)."""
        df = X
        self.reference_, self.used_ = {}, {}
        for dim, (_, metrics) in (self.dimensions or {}).items():
            used = []
            for m in metrics:
                if m in df.columns:
                    v = pd.to_numeric(df[m], errors="coerce").dropna().to_numpy(float)
                    if len(v) and v.min() < v.max():
                        self.reference_[m] = np.sort(v)
                        used.append(m)
            if used:
                self.used_[dim] = used
        total = sum(self.dimensions[d][0] for d in self.used_)
        if not total:
            raise ValueError("none of the hand-weighted health metrics is in the data")
        self.weights_ = {d: self.dimensions[d][0] / total for d in self.used_}
        return self

    def dimension_scores(self, df: pd.DataFrame) -> pd.DataFrame:
        """0-100 per dimension: the mean of its metrics' oriented percentiles (missing = 50)."""
        check_is_fitted(self)
        out = {}
        for dim, metrics in self.used_.items():
            parts = []
            for m in metrics:
                v = pd.to_numeric(df[m], errors="coerce").to_numpy(float)
                pct = _percentile(self.reference_[m], v)
                if self.dimensions[dim][1][m] < 0:
                    pct = 100.0 - pct
                parts.append(np.where(np.isnan(v), 50.0, pct))
            out[dim] = np.mean(parts, axis=0)
        return pd.DataFrame(out, index=df.index)

    def health(self, df: pd.DataFrame) -> np.ndarray:
        dims = self.dimension_scores(df)
        score = sum(self.weights_[d] * dims[d].to_numpy() for d in self.used_)
        return np.round(np.asarray(score, dtype=float), 1)


# --------------------------------------------------------------------------------------
# Bands


def choose_thresholds(
    health: np.ndarray,
    y: np.ndarray,
    alert_volume: float,
    amber_volume: float,
    target_precision: float | None = None,
) -> dict:
    """Score thresholds for red and amber, chosen on the reference period.

    Red is the lowest ``alert_volume`` share of scores, or, with ``target_precision``,
    the largest share (1%-50% in 1% steps) whose churn rate among flagged rows reaches
    the target; amber is the next ``amber_volume`` share.

    Returns
    -------
    dict ``red`` (score <= red is red), ``amber``, ``volume`` (the red share used),
    ``rule`` (volume | precision) and ``target_met`` (None when no target was set).
    """
    health = np.asarray(health, dtype=float)
    y = np.asarray(y, dtype=bool)
    volume, rule, met = alert_volume, "volume", None
    if target_precision is not None:
        rule, met = "precision", False
        for v in np.arange(0.50, 0.0099, -0.01):
            t = np.quantile(health, v)
            flagged = health <= t
            if flagged.any() and y[flagged].mean() >= target_precision:
                volume, met = float(round(v, 2)), True
                break
    red = float(np.quantile(health, volume))
    amber = float(np.quantile(health, min(volume + amber_volume, 1.0)))
    return {"red": red, "amber": max(amber, red), "volume": volume, "rule": rule, "target_met": met}


def band(health: np.ndarray, thresholds: Mapping[str, float]) -> np.ndarray:
    """red / amber / green per score."""
    h = np.asarray(health, dtype=float)
    return np.where(
        h <= thresholds["red"], "red", np.where(h <= thresholds["amber"], "amber", "green")
    )


# --------------------------------------------------------------------------------------
# Backtest


@renamed_arguments(clusters="groups", seed="random_state")
def cluster_bootstrap_draws(
    groups: Sequence[Any], n_boot: int, random_state: int
) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """Cluster codes per row, and per bootstrap replicate how often each cluster was drawn.

    ``groups`` is the cluster (customer id) of each row. Row weights are ``draws[codes]``
    (:func:`cluster_bootstrap_weights`); a statistic that is a sum over rows can instead be
    summed per cluster once and weighted by ``draws``.
    """
    codes = pd.factorize(pd.Series(groups))[0]
    n = codes.max() + 1 if len(codes) else 0

    def draws() -> Iterator[np.ndarray]:
        rng = np.random.default_rng(random_state)
        for _ in range(n_boot):
            yield np.bincount(rng.integers(0, n, n), minlength=n)

    return codes, draws()


@renamed_arguments(clusters="groups", seed="random_state")
def cluster_bootstrap_weights(
    groups: Sequence[Any], n_boot: int, random_state: int
) -> Iterator[np.ndarray]:
    """Row weights for a cluster bootstrap (customers resampled with replacement)."""
    codes, draws = cluster_bootstrap_draws(groups, n_boot, random_state)
    for d in draws:
        yield d[codes].astype(float)


def _auc_of(y: np.ndarray, risk: np.ndarray) -> Callable[[np.ndarray | None], float]:
    """AUC of ``risk`` as a function of row weights: sorted once for every bootstrap draw."""
    if y.all() or not y.any():
        return lambda w=None: float("nan")
    if not np.isfinite(risk).all():
        # scikit-learn's error names the problem (NaN or infinity in the input)
        return lambda w=None: float(roc_auc_score(y, risk, sample_weight=w))
    return RankAUC(y, risk)


@renamed_arguments(clusters="groups", seed="random_state")
@single_threaded
def backtest(
    health: np.ndarray,
    y: np.ndarray,
    flagged: np.ndarray,
    groups: Sequence[Any],
    n_boot: int = 200,
    random_state: int = 0,
) -> dict:
    """AUC, precision and recall of a score on labelled snapshots, with 95% intervals.

    Intervals come from a cluster bootstrap over customers, because one customer's
    monthly snapshots are not independent.

    Parameters
    ----------
    health : scores (higher = healthier).
    y : churned within the horizon.
    flagged : rows raised as alerts (the red band).
    groups : customer id per row (the bootstrap's clusters).
    n_boot, random_state : bootstrap replicates and their seed.
    """
    y = np.asarray(y, dtype=bool)
    risk = -np.asarray(health, dtype=float)
    flagged = np.asarray(flagged, dtype=bool)
    base = float(y.mean()) if len(y) else float("nan")
    auc_of = _auc_of(y, risk)

    def stats_(w: np.ndarray | None) -> tuple[float, float, float]:
        w1 = np.ones(len(y)) if w is None else w
        a = auc_of(w)
        fw = w1[flagged].sum()
        prec = w1[flagged & y].sum() / fw if fw else np.nan
        pw = w1[y].sum()
        rec = w1[flagged & y].sum() / pw if pw else np.nan
        return a, prec, rec

    a, prec, rec = stats_(None)
    draws = progress.bar(
        cluster_bootstrap_weights(groups, n_boot, random_state), "bootstrap", total=n_boot
    )
    boots = np.array([stats_(w) for w in draws]) if n_boot else np.full((1, 3), np.nan)
    lo = nan_percentile(boots, 2.5, axis=0)
    hi = nan_percentile(boots, 97.5, axis=0)
    return {
        "rows": int(len(y)),
        "churned": int(y.sum()),
        "base_rate": base,
        "auc": a,
        "auc_low": float(lo[0]),
        "auc_high": float(hi[0]),
        "alert_share": float(flagged.mean()) if len(y) else float("nan"),
        "precision": float(prec),
        "precision_low": float(lo[1]),
        "precision_high": float(hi[1]),
        "recall": float(rec),
        "recall_low": float(lo[2]),
        "recall_high": float(hi[2]),
        "lift": float(prec / base) if base else float("nan"),
    }


@renamed_arguments(clusters="groups", seed="random_state")
@single_threaded
def compare_auc(
    health_a: np.ndarray,
    health_b: np.ndarray,
    y: np.ndarray,
    groups: Sequence[Any],
    n_boot: int = 200,
    random_state: int = 0,
) -> dict:
    """AUC(a) - AUC(b) on the same rows, with a paired cluster-bootstrap 95% interval."""
    y = np.asarray(y, dtype=bool)
    auc_a = _auc_of(y, -np.asarray(health_a, float))
    auc_b = _auc_of(y, -np.asarray(health_b, float))
    diff = auc_a(None) - auc_b(None)
    draws = progress.bar(
        cluster_bootstrap_weights(groups, n_boot, random_state), "bootstrap", total=n_boot
    )
    d = np.array([auc_a(w) - auc_b(w) for w in draws])
    lo, hi = nan_percentile(d, [2.5, 97.5]) if len(d) else (np.nan, np.nan)
    return {
        "diff": float(diff),
        "low": float(lo),
        "high": float(hi),
        "better": bool(lo > 0),
        "worse": bool(hi < 0),
    }


def calibration(p: np.ndarray, y: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Observed churn rate (Wilson 95% CI) by decile of predicted probability."""
    p = np.asarray(p, dtype=float)
    y = np.asarray(y, dtype=bool)
    q = (
        pd.qcut(pd.Series(p).rank(method="first"), bins, labels=False)
        if len(p) >= bins
        else pd.Series(np.zeros(len(p), dtype=int))
    )
    rows = []
    for b in sorted(q.unique()):
        m = (q == b).to_numpy()
        rate, lo, hi = rate_with_ci(int(y[m].sum()), int(m.sum()))
        rows.append(
            {
                "bin": int(b) + 1,
                "predicted": float(p[m].mean()),
                "observed": rate,
                "low": lo,
                "high": hi,
                "n": int(m.sum()),
            }
        )
    return pd.DataFrame(rows)


def rate_by_band(bands: np.ndarray, y: np.ndarray) -> pd.DataFrame:
    """Churn rate with Wilson 95% CI per band."""
    bands = np.asarray(bands)
    y = np.asarray(y, dtype=bool)
    rows = []
    for b in BANDS:
        m = bands == b
        rate, lo, hi = rate_with_ci(int(y[m].sum()), int(m.sum()))
        rows.append(
            {
                "band": b,
                "rows": int(m.sum()),
                "share": float(m.mean()) if len(m) else 0.0,
                "churned": int(y[m].sum()),
                "rate": rate,
                "low": lo,
                "high": hi,
            }
        )
    return pd.DataFrame(rows)


def fit_health_model(snap: pd.DataFrame, params: Any, exclude: Sequence[str] = ()) -> LearnedHealth:
    """The learned health score fitted on labelled snapshots, with band rules from params.

    Parameters
    ----------
    snap : snapshots with complete labels (every customer-month the model may learn from).
    params : run params (``churn`` section: grouping, alert volume, target precision).
    exclude : features to leave out as well, e.g. the candidates the driver analysis does
        not support (:attr:`fupan.models.drivers.DriverResult.unsupported`).
    """
    from fupan.models import drivers

    feats = [
        c
        for c in snap.columns
        if c not in ("customer_id", "snapshot_date", "label", "label_churned_at", "label_complete")
    ]
    numeric, categorical = drivers.model_features(feats, params)
    numeric = [n for n in numeric if n not in exclude]
    categorical = [n for n in categorical if n not in exclude]
    model = LearnedHealth(
        numeric,
        categorical,
        group_correlation=params.churn.group_correlation,
        random_state=params.seed,
        alert_volume=params.churn.alert_volume,
        amber_volume=params.churn.amber_volume,
        target_precision=params.churn.target_precision,
    )
    return model.fit(snap, snap.label.to_numpy(bool), snap.customer_id.to_numpy())
