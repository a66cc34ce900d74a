"""Does a feature raise the odds of churn? The driver logit and the tests on its coefficients.

:class:`DriverLogit` is a logistic regression on standardised design columns with standard
errors clustered by customer (a customer appears in many monthly snapshots, so rows are not
independent): odds ratios per SD with 95% confidence intervals. :func:`joint_wald` tests a
feature's columns jointly (one test for all levels of a categorical one) on a logit or a
Cox fit, :func:`holm` corrects for the number of candidates, and
:func:`screen_categoricals` applies both to categorical features before the health score
weighs them. :data:`ALPHA` is the level every driver test is judged at.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import special, stats
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from fupan.models.design import (
    Design,
    fit_with_fallback,
    group_codes,
    independent_columns,
    ratio_table,
    renamed_arguments,
    single_threaded,
)

#: Significance level of the driver tests (joint Wald after Holm, held-out permutation).
ALPHA = 0.05


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
        res = fit_with_fallback(
            model.fit,
            disp=0,
            maxiter=self.maxiter,
            cov_type="cluster",
            cov_kwds={"groups": group_codes(groups, len(Z))},
        )
        coef = pd.Series(res.params[1:], index=Z.columns)
        se = pd.Series(res.bse[1:], index=Z.columns)
        p = pd.Series(res.pvalues[1:], index=Z.columns)
        out = ratio_table(coef, se, p, "odds_ratio", "or").assign(intercept=float(res.params[0]))
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


def joint_wald(fit: pd.DataFrame, columns_of: dict[str, list[str]]) -> pd.Series:
    """p-value per feature of the Wald test that all its coefficients are 0.

    A categorical feature enters as one test over all its levels (one column per level
    but the reference), so a feature with many levels gets no extra chances to look
    significant. ``fit`` is :func:`fit_logit` or :func:`fupan.models.hazard.fit_cox`
    output; the covariance is its clustered (robust) one, so repeated rows of a customer do
    not inflate the evidence.
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
