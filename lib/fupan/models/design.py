"""What every churn model shares: the design matrix, groups of metrics, and judging a score.

Used by the driver models (:mod:`fupan.models.drivers`, :mod:`~fupan.models.logit`,
:mod:`~fupan.models.hazard`, :mod:`~fupan.models.trees`), the learned health score
(:mod:`fupan.models.health`) and the strategy simulation's churn model:

* :class:`Design` turns features into standardised design columns (winsorised, imputed
  numerics; one-hot categoricals with rare levels pooled);
* :func:`correlated_groups`, :func:`representatives` and :func:`independent_columns` choose
  the columns a model sees, one per group of metrics that move together;
* :class:`RankAUC` and :func:`auc` judge a score (sorted once, reweighted cheaply for a
  cluster bootstrap);
* the plumbing of the statsmodels fits: one thread (:func:`single_threaded`), renamed
  keywords (:func:`renamed_arguments`), cluster codes, Newton with a BFGS fallback, and the
  ratio table a logit and a Cox fit both report.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy import stats
from scipy.cluster import hierarchy
from scipy.spatial.distance import squareform
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.metrics import roc_auc_score
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

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


MISSING_LEVEL = "(missing)"
OTHER_LEVEL = "(other)"


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
        # Ties share one level whatever their order, so the unstable (vectorised) sort
        # gives the same levels as a stable one, several times faster.
        order = np.argsort(s)
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


def pair_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUC of finite scores split by class: the share of (positive, negative) pairs in
    which the positive scores higher, ties counting half.

    Both classes are sorted and the smaller one is looked up in the larger (sorted keys
    make the lookups a merge), which costs less than ranking all rows together. The count
    of pairs is an integer (twice it, for the ties), so the result is the number
    :class:`RankAUC` gives, bit for bit.
    """
    pos, neg = np.sort(np.asarray(pos, dtype=float)), np.sort(np.asarray(neg, dtype=float))
    n_pos, n_neg = len(pos), len(neg)
    if not (n_pos and n_neg):
        return float("nan")
    if n_pos <= n_neg:
        # per positive: negatives below it (left) and at or below it (right)
        lo, hi = np.searchsorted(neg, pos, "left"), np.searchsorted(neg, pos, "right")
        twice = int(lo.sum()) + int(hi.sum())
    else:
        # per negative: positives below it and at or below it; the positive wins the rest
        lo, hi = np.searchsorted(pos, neg, "left"), np.searchsorted(pos, neg, "right")
        twice = 2 * n_pos * n_neg - int(lo.sum()) - int(hi.sum())
    return float(0.5 * twice / (float(n_pos) * float(n_neg)))


def auc(y: np.ndarray, risk: np.ndarray) -> float:
    """Area under the ROC curve of ``risk`` for binary ``y`` (NaN when y has one class)."""
    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        return float("nan")
    risk = np.asarray(risk, dtype=float)
    if not np.isfinite(risk).all():
        # scikit-learn names the problem (NaN or infinity in the input)
        return float(roc_auc_score(y, risk))
    return pair_auc(risk[y], risk[~y])


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
        out = {n: self._winsorised(df, n) for n in self.numeric_}
        return pd.DataFrame(out, index=df.index)

    def _winsorised(self, df: pd.DataFrame, n: str) -> np.ndarray:
        """Feature ``n`` clipped to its fitted range, a missing value imputed with its median."""
        a = pd.to_numeric(df[n], errors="coerce").astype(float).to_numpy()
        # pandas' clip and fillna, element for element (a value below the range becomes its
        # lower end, NaN stays NaN until imputed), without a Series per step: those cost
        # ~3 ms a feature on every transform, hundreds of times a chapter
        a = np.where(a < self.lo_[n], self.lo_[n], a)
        a = np.where(a > self.hi_[n], self.hi_[n], a)
        return np.where(np.isnan(a), self.median_[n], a)

    def _levels(self, df: pd.DataFrame, n: str) -> pd.Series:
        v = df[n].astype(object).where(df[n].notna(), MISSING_LEVEL).astype(str)
        return v.where(v.isin(self.levels_[n]), OTHER_LEVEL)

    def _level_index(self, df: pd.DataFrame, n: str) -> np.ndarray:
        """Per row, the position of its level in ``levels_[n]`` (-1: a level not kept)."""
        position = {L: i for i, L in enumerate(self.levels_[n])}
        codes, uniques = pd.factorize(df[n], use_na_sentinel=True)
        if all(isinstance(u, str) for u in uniques):
            # Text values: each distinct value is looked up once. Mixed types take the
            # general path: factorize merges 1 and 1.0 (equal keys), different as text.
            names = [*uniques, MISSING_LEVEL]  # code -1 (missing) takes the last
        else:
            codes, names = pd.factorize(self._levels(df, n))
        other = position.get(OTHER_LEVEL, -1)
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
            v = df[n].astype(object).where(df[n].notna(), MISSING_LEVEL).astype(str)
            share = v.value_counts(normalize=True)
            keep = share[share >= self.min_level_share].index.tolist()
            if len(keep) < len(share):
                keep.append(OTHER_LEVEL)
            if len(keep) < 2:
                continue
            self.levels_[n] = keep
            self.categorical_.append(n)
            counts = v.where(v.isin(keep), OTHER_LEVEL).value_counts()
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
                z[:, where[n]] = self._winsorised(df, n)
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


def _codes(ids: Sequence[Any]) -> np.ndarray:
    return pd.factorize(pd.Series(ids))[0]


def fit_with_fallback(fit: Callable[..., Any], **kwargs: Any) -> Any:
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


def group_codes(groups: Sequence[Any] | None, n: int) -> np.ndarray:
    """Cluster codes per row; without ``groups`` every row is its own cluster."""
    return np.arange(n) if groups is None else _codes(groups)


def ratio_table(
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
