"""fupan.models.health: the constrained logistic fit against scikit-learn, the learned score on a
simulation with known truth, the hand score by hand, bands, backtest and calibration."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fupan.models import health
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def _sim(n_customers=1500, months=6, seed=0):
    """Customers x months; churn log-odds = -3 + 1.2*x1 - 0.8*x2 + 0*x_null, x3 ~ x1 (rho .9)."""
    rng = np.random.default_rng(seed)
    rows = n_customers * months
    cid = np.repeat([f"c{i}" for i in range(n_customers)], months)
    u = np.repeat(rng.normal(size=n_customers), months)  # customer-level component
    x1 = 0.6 * u + 0.8 * rng.normal(size=rows)
    x3 = 0.9 * x1 + np.sqrt(1 - 0.81) * rng.normal(size=rows)
    x2 = rng.normal(size=rows)
    xn = rng.normal(size=rows)
    eta = -3 + 1.2 * x1 - 0.8 * x2
    y = rng.random(rows) < 1 / (1 + np.exp(-eta))
    df = pd.DataFrame({"customer_id": cid, "x1": x1, "x2": x2, "x3": x3, "x_null": xn, "label": y})
    return df, eta


def test_nonnegative_logit_equals_sklearn_when_bounds_do_not_bind():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(4000, 3))
    y = (rng.random(4000) < 1 / (1 + np.exp(-(-1 + X @ [0.8, 0.5, 0.3])))).astype(int)
    for C in (0.01, 1.0):
        w, b = health.fit_nonnegative_logit(X, y, C)
        ref = LogisticRegression(C=C, max_iter=5000, tol=1e-10).fit(X, y)
        np.testing.assert_allclose(w, ref.coef_[0], atol=1e-4)
        assert b == pytest.approx(ref.intercept_[0], abs=1e-4)


def test_nonnegative_logit_zeroes_a_negative_effect():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(4000, 2))
    y = (rng.random(4000) < 1 / (1 + np.exp(-(-1 + X @ [0.8, -0.6])))).astype(int)
    w, _ = health.fit_nonnegative_logit(X, y, 1.0)
    assert w[0] > 0.5 and w[1] == 0.0


def test_learned_health_recovers_the_simulated_truth():
    df, eta = _sim()
    train, test = df.iloc[: len(df) * 2 // 3], df.iloc[len(df) * 2 // 3 :]
    m = health.LearnedHealth(["x1", "x2", "x3", "x_null"], random_state=0)
    m.fit(train, train.label, train.customer_id)
    # x1 and x3 (rho 0.9) share one weight; x2 enters with its own (negative) direction.
    groups = {tuple(sorted(v)) for v in m.groups_.values()}
    assert ("x1", "x3") in groups
    w = m.weights_.set_index("group")
    assert w.index[0] == "x1" and w.loc["x1", "direction"] == 1
    assert w.loc["x2", "direction"] == -1
    assert w.loc["x_null", "weight"] < 0.05
    # AUC on held-out rows close to the oracle's
    auc = roc_auc_score(test.label, -m.health(test))
    oracle = roc_auc_score(test.label, eta[len(df) * 2 // 3 :])
    assert auc > oracle - 0.03
    # the score is a 0-100 percentile of safety on the training rows
    h = m.health(train)
    assert h.min() >= 0 and h.max() <= 100
    assert np.mean(h <= 10) == pytest.approx(0.10, abs=0.01)
    # probabilities are calibrated in the large
    assert m.predict_proba(test)[:, 1].mean() == pytest.approx(test.label.mean(), abs=0.01)
    # contributions add up to the linear predictor
    c = m.contributions(test)
    p_hat = m.predict_proba(test)[:, 1]
    eta_hat = np.log(p_hat / (1 - p_hat))
    np.testing.assert_allclose(c.sum(axis=1) + m.intercept_, eta_hat, atol=1e-8)


def test_learned_health_is_deterministic():
    df, _ = _sim(n_customers=400, months=4)
    a = health.LearnedHealth(["x1", "x2", "x3"], random_state=5).fit(df, df.label, df.customer_id)
    b = health.LearnedHealth(["x1", "x2", "x3"], random_state=5).fit(df, df.label, df.customer_id)
    np.testing.assert_array_equal(a.health(df), b.health(df))


def test_hand_health_by_hand():
    ref = pd.DataFrame({"good": [1.0, 2.0, 3.0, 4.0], "bad": [10.0, 20.0, 30.0, 40.0]})
    hh = health.HandHealth(
        {"d1": (3.0, {"good": 1}), "d2": (1.0, {"bad": -1}), "d3": (1.0, {"absent": 1})}
    ).fit(ref)
    assert hh.used_ == {"d1": ["good"], "d2": ["bad"]}
    assert hh.weights_ == {"d1": 0.75, "d2": 0.25}
    x = pd.DataFrame({"good": [4.0, np.nan], "bad": [10.0, 25.0]})
    dims = hh.dimension_scores(x)
    # mid-rank percentile of 4 among [1,2,3,4] = (3+4)/2/4 = 87.5; missing = 50
    assert dims.d1.tolist() == [87.5, 50.0]
    # 'bad' is reversed: 10 -> 100 - 12.5; 25 -> 100 - 50
    assert dims.d2.tolist() == [87.5, 50.0]
    np.testing.assert_allclose(hh.health(x), [87.5, 50.0])


def test_thresholds_for_volume_and_precision():
    rng = np.random.default_rng(3)
    h = rng.uniform(0, 100, 20000)
    y = rng.random(20000) < np.where(h < 20, 0.5, 0.05)
    th = health.choose_thresholds(h, y, 0.1, 0.2)
    assert np.mean(h <= th["red"]) == pytest.approx(0.10, abs=0.002)
    assert np.mean(h <= th["amber"]) == pytest.approx(0.30, abs=0.002)
    th2 = health.choose_thresholds(h, y, 0.1, 0.2, target_precision=0.45)
    assert th2["rule"] == "precision" and th2["target_met"]
    # precision at volume v > 0.2 is (0.2*0.5 + (v-0.2)*0.05)/v >= 0.45 <=> v <= 0.225
    assert th2["volume"] == pytest.approx(0.22, abs=0.01)
    flagged = h <= th2["red"]
    assert y[flagged].mean() >= 0.45
    th3 = health.choose_thresholds(h, y, 0.1, 0.2, target_precision=0.9)
    assert not th3["target_met"] and th3["volume"] == 0.1
    b = health.band(np.array([5, 15, 50]), {"red": 10, "amber": 30})
    assert b.tolist() == ["red", "amber", "green"]


def test_backtest_auc_equals_mann_whitney_by_hand():
    # risk = -health; pairs (churner, stayer): churners at health 1 and 3, stayers at 2, 4, 5
    hl = np.array([1.0, 3.0, 2.0, 4.0, 5.0])
    y = np.array([1, 1, 0, 0, 0], bool)
    bt = health.backtest(hl, y, hl <= 1.5, ["a", "b", "c", "d", "e"], n_boot=50, random_state=0)
    # concordant pairs: churner 1 below all three stayers (3), churner 3 below 4 and 5 (2) -> 5/6
    assert bt["auc"] == pytest.approx(5 / 6)
    assert bt["precision"] == 1.0 and bt["recall"] == 0.5
    assert bt["alert_share"] == pytest.approx(0.2)
    assert bt["lift"] == pytest.approx(1.0 / 0.4)


def test_cluster_bootstrap_resamples_customers():
    ids = ["a", "a", "b", "c", "c", "c"]
    for w in health.cluster_bootstrap_weights(ids, 20, random_state=1):
        # rows of one customer always share a weight
        assert w[0] == w[1] and w[3] == w[4] == w[5]
        assert w.sum() == pytest.approx(sum(w[i] for i in (0, 1, 2, 3, 4, 5)))


def test_compare_auc_and_calibration():
    rng = np.random.default_rng(4)
    y = rng.random(3000) < 0.2
    good = np.where(y, rng.normal(0, 1, 3000), rng.normal(1, 1, 3000))
    noise = rng.normal(size=3000)
    ids = np.arange(3000)
    same = health.compare_auc(good, good, y, ids, n_boot=30)
    assert same["diff"] == 0 and not same["better"]
    better = health.compare_auc(good, noise, y, ids, n_boot=60)
    assert better["better"] and better["low"] > 0
    p = np.full(3000, 0.2)
    cal = health.calibration(p, y, bins=5)
    assert len(cal) == 5 and cal.n.sum() == 3000
    assert (cal.low <= cal.observed).all() and (cal.observed <= cal.high).all()
    rb = health.rate_by_band(np.where(good < 0, "red", "green"), y)
    assert rb.set_index("band").loc["amber", "rows"] == 0


def test_warm_started_cross_validation_matches_cold_starts():
    """Warm starts along the penalty path move each held-out loss only within the solver's
    tolerance, so the penalty chosen is the one independent cold-started fits choose."""
    df, _ = _sim(n_customers=800, months=5, seed=3)
    m = health.LearnedHealth(["x1", "x2", "x3", "x_null"], random_state=2)
    m.fit(df, df.label, df.customer_id)
    X = m.transform(df).to_numpy() * m.orientation_.to_numpy()
    XoT = np.ascontiguousarray(X.T)
    y = df.label.to_numpy(int)
    codes = pd.factorize(df.customer_id)[0]
    fold_of = np.random.default_rng(2).permutation(codes.max() + 1)[codes] % m.n_folds
    warm = m._cv_losses(XoT, y, fold_of, m.n_folds, warm=True)
    cold = m._cv_losses(XoT, y, fold_of, m.n_folds, warm=False)
    for C in m.Cs:
        assert warm[C] == pytest.approx(cold[C], rel=1e-6)
    assert m.C_ == min(m.Cs, key=lambda C: (cold[C], m.Cs.index(C)))


@pytest.mark.parametrize("seed", range(4))
def test_a_random_categorical_gets_no_health_weight(seed):
    # Known truth: churn follows x1, x2 and a 2-level segment (log-OR 0.9); noise10 is a
    # 10-level column assigned at random per customer. The screen keeps the segment and
    # leaves the noise out on every seed, so it never carries weight.
    df, _ = _sim(n_customers=1500, months=6, seed=seed)
    rng = np.random.default_rng(100 + seed)
    ids = df.customer_id.unique()
    seg = pd.Series(rng.choice(["a", "b"], len(ids)), index=ids)
    noise = pd.Series(rng.choice([f"L{k}" for k in range(10)], len(ids)), index=ids)
    df["segment"] = df.customer_id.map(seg).to_numpy()
    df["noise10"] = df.customer_id.map(noise).to_numpy()
    eta = -3 + 1.2 * df.x1 - 0.8 * df.x2 + 0.9 * (df.segment == "b")
    df["label"] = rng.random(len(df)) < 1 / (1 + np.exp(-eta))
    m = health.LearnedHealth(["x1", "x2"], ["segment", "noise10"], random_state=0)
    m.fit(df, df.label, df.customer_id)
    assert m.screened_out_ == ["noise10"]
    w = m.weights_.set_index("group")
    assert "noise10" not in w.index and w.loc["segment", "weight"] > 0.05
    # an all-missing or single-level column never enters
    df["empty"], df["one"] = None, "x"
    m2 = health.LearnedHealth(["x1"], ["empty", "one"], random_state=0)
    m2.fit(df, df.label, df.customer_id)
    assert m2.design_.categorical_ == [] and m2.screened_out_ == []


# --------------------------------------------------------------------------------------
# scikit-learn conventions (issue 22)


def test_learned_health_follows_scikit_learn_conventions():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    df, _ = _sim(n_customers=300, months=4, seed=3)
    numeric = ["x1", "x2", "x3"]
    m = health.LearnedHealth(numeric, Cs=[0.1, 1.0], alert_volume=0.2, target_precision=None)
    # arguments stored as given: the very objects, so clone() accepts the estimator
    assert m.numeric is numeric and m.get_params()["Cs"] == [0.1, 1.0]
    with pytest.raises(NotFittedError):
        check_is_fitted(m)
    with pytest.raises(NotFittedError):
        m.predict_proba(df)
    c = clone(m)
    assert c is not m and c.get_params() == m.get_params()
    # get_params / set_params round trip
    c.set_params(**{**m.get_params(), "n_folds": 3})
    assert c.n_folds == 3 and clone(c).get_params()["n_folds"] == 3
    m.fit(df, df.label, groups=df.customer_id)
    check_is_fitted(m)
    assert not hasattr(clone(m), "coef_")  # a clone is unfitted
    p = m.predict_proba(df)
    assert p.shape == (len(df), 2)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=0, atol=1e-15)
    assert set(np.unique(m.predict(df))) <= {0, 1}
    # the bands are fitted with the score, on the same rows
    th = health.choose_thresholds(m.health(df), df.label.to_numpy(bool), 0.2, 0.2, None)
    assert m.thresholds_ == th
    assert np.mean(m.band(df) == "red") == pytest.approx(0.2, abs=0.02)
    # every fitted attribute is set in fit and ends in "_"
    fitted = {k for k in vars(m) if k not in m.get_params()}
    assert fitted and all(k.endswith("_") for k in fitted), sorted(fitted)


def test_learned_health_old_clusters_keyword_warns_and_gives_the_same_fit():
    df, _ = _sim(n_customers=200, months=4, seed=4)
    new = health.LearnedHealth(["x1", "x2"], Cs=[1.0]).fit(df, df.label, groups=df.customer_id)
    with pytest.warns(DeprecationWarning, match="groups="):
        old = health.LearnedHealth(["x1", "x2"], Cs=[1.0]).fit(
            df, df.label, clusters=df.customer_id
        )
    pd.testing.assert_series_equal(new.coef_, old.coef_)
    with pytest.warns(DeprecationWarning, match="random_state="):
        list(health.cluster_bootstrap_weights(df.customer_id, 2, seed=1))
    with pytest.raises(TypeError, match="both"):
        health.backtest([1.0], [True], [True], ["a"], clusters=["a"], groups=["a"])


def test_hand_health_follows_scikit_learn_conventions():
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    dims = {"activity": (2.0, {"x1": -1}), "care": (1.0, {"x2": 1, "absent": 1})}
    h = health.HandHealth(dims)
    assert h.dimensions is dims
    with pytest.raises(NotFittedError):
        check_is_fitted(h)
    assert clone(h).get_params() == h.get_params()
    df, _ = _sim(n_customers=100, months=2, seed=5)
    h.fit(df)
    check_is_fitted(h)
    assert h.weights_ == pytest.approx({"activity": 2 / 3, "care": 1 / 3})
    assert {k for k in vars(h) if k not in h.get_params()} == {"reference_", "used_", "weights_"}
