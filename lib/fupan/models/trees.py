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


def _leaves_and_paths(
    tree: Any, data: np.ndarray, known_cat_bitsets: Any, f_idx_map: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``data``, the leaf of ``tree`` it reaches; per node, the preprocessed
    columns split on between the root and it.

    The leaves come from the tree's own prediction routine run on a copy whose node values
    are the node numbers, so missing values and category sets are routed exactly as in
    :meth:`predict`.
    """
    nodes = tree.nodes.copy()
    nodes["value"] = np.arange(len(nodes))
    probe = type(tree)(nodes, tree.binned_left_cat_bitsets, tree.raw_left_cat_bitsets)
    leaf = probe.predict(data, known_cat_bitsets, f_idx_map, 1).astype(np.intp)
    path = np.zeros((len(nodes), data.shape[1]), dtype=bool)
    stack = [0]
    while stack:
        k = stack.pop()
        if nodes["is_leaf"][k]:
            continue
        for child in (int(nodes["left"][k]), int(nodes["right"][k])):
            path[child] = path[k]
            path[child, nodes["feature_idx"][k]] = True
            stack.append(child)
    return leaf, path


def _tree_permutation_importance(
    est: Any, X: pd.DataFrame, y: np.ndarray, n_repeats: int, random_state: int
) -> Any | None:
    """scikit-learn's ``permutation_importance`` (AUC scoring) for a fitted
    ``HistGradientBoostingClassifier``, re-predicting only the rows whose path through a
    tree meets a split on the permuted feature.

    A row whose path through a tree never splits on the shuffled column takes the same
    path, to the same leaf, whatever that column holds: its prediction is kept, and only
    the other rows of the trees that split on the column are recomputed (about a quarter
    of them on the churn snapshots). The raw score is then summed tree by tree in the
    estimator's own order, so it equals ``decision_function`` bit for bit. The shuffles are
    scikit-learn's (one seed drawn from ``random_state``, then per column a fresh
    generator whose shuffles compound over the repeats), so the importances are the same
    numbers. Returns None, and the caller uses scikit-learn, when the estimator's
    internals are not as expected or the recomputed baseline differs from
    ``decision_function``.
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
        routes = [_leaves_and_paths(t, Xp, known_cat_bitsets, f_idx_map) for t in trees]
        for t, part, (leaf, _) in zip(trees, contrib, routes, strict=True):
            if not np.array_equal(t.nodes["value"][leaf], part):
                return None

        def raw_score(parts: np.ndarray) -> np.ndarray:
            raw = np.zeros(len(X)) + baseline_raw[0]
            for row in parts:
                raw += row
            return raw

        raw = raw_score(contrib)
        if not np.array_equal(raw, np.asarray(est.decision_function(X), dtype=float)):
            return None
        position = _preprocessed_position(est, X.shape[1])
    except (AttributeError, KeyError, TypeError, ValueError, IndexError):
        return None
    y = np.asarray(y, dtype=bool)
    baseline = auc(y, raw)
    seed = check_random_state(random_state).randint(np.iinfo(np.int32).max + 1)
    scores = np.empty((X.shape[1], n_repeats))
    for j in progress.bar(range(X.shape[1]), "permutation importance", unit="feature"):
        col = position[j]
        # per tree, the rows whose path splits on this column (and their other values)
        rows = {i: np.flatnonzero(path[leaf, col]) for i, (leaf, path) in enumerate(routes)}
        rows = {i: r for i, r in rows.items() if len(r)}
        sub = {i: Xp[r] for i, r in rows.items()}
        rng = check_random_state(seed)
        shuffle = np.arange(len(X))
        values = Xp[:, col].copy()
        parts = contrib.copy()
        for r in range(n_repeats):
            rng.shuffle(shuffle)
            values = values[shuffle]
            if not rows:
                scores[j, r] = baseline
                continue
            for i, idx in rows.items():
                sub[i][:, col] = values[idx]
                parts[i, idx] = tree_predict(trees[i], sub[i])
            scores[j, r] = auc(y, raw_score(parts))
    importances = baseline - scores
    return Bunch(
        importances_mean=np.mean(importances, axis=1),
        importances_std=np.std(importances, axis=1),
        importances=importances,
    )


def _preprocessed_position(est: Any, n_columns: int) -> np.ndarray:
    """Original column -> column of the estimator's preprocessed matrix (categoricals move
    first)."""
    if est._preprocessor is None:
        return np.arange(n_columns)
    is_cat = np.asarray(est.is_categorical_, dtype=bool)
    enc = est._preprocessor.output_indices_["encoder"]
    num = est._preprocessor.output_indices_["numerical"]
    position = np.empty(n_columns, dtype=int)
    position[is_cat] = np.arange(enc.start, enc.stop)
    position[~is_cat] = np.arange(num.start, num.stop)
    return position
