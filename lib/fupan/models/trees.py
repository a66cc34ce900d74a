"""Gradient-boosted trees of churn, with permutation importance on the later period.

The third driver method: a scikit-learn ``HistGradientBoostingClassifier`` fitted on the
earlier snapshots, each feature's importance the drop in AUC when its column is shuffled
on the later ones. :func:`_tree_permutation_importance` computes scikit-learn's numbers
while re-predicting only the trees that split on the shuffled feature.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fupan.core import progress
from fupan.models.design import MISSING_LEVEL, auc, single_threaded


def _gbm_frame(
    df: pd.DataFrame, numeric: list[str], categorical: list[str], categories: dict[str, list[str]]
) -> pd.DataFrame:
    out = {n: pd.to_numeric(df[n], errors="coerce").astype(float) for n in numeric}
    for n in categorical:
        v = df[n].astype(object).where(df[n].notna(), MISSING_LEVEL).astype(str)
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
            .where(train[n].notna(), MISSING_LEVEL)
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
