"""fupan.models.ltv against the published literature, and parameter recovery from simulations.

Published numbers are in ``tests/results/ltv_cdnow.py`` (with their sources); the
tolerances are here, next to the checks; the default is 0.5%.

Data: the CDNOW sample (2,357 customers who first bought in Q1 1997, 78 weeks of
purchases), as distributed in the data folder of the ``lifetimes`` 0.11.3 wheel and
originally by Fader and Hardie. ``tests/data/cdnow/``:

- ``cdnow_customers_summary.csv``: ID, frequency, recency, T (weeks, 39-week calibration);
- ``cdnow_customers_summary_with_transactions.csv``: the same plus ``zbar``, the mean value
  of each customer's repeat purchases in the calibration period (the spend data);
- ``CDNOW_sample.txt``: the raw order log (master id, sample id, yyyymmdd, CDs, dollars).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fupan.models.ltv import (
    BetaGeo,
    GammaGamma,
    ParetoNBD,
    ShiftedBetaGeometric,
    bgnbd_loglik,
    holdout_by_frequency,
    simulate_bgnbd,
    simulate_gamma_gamma,
    simulate_pareto_nbd,
    simulate_sbg,
    summary_from_orders,
)
from results.ltv_cdnow import (
    BGNBD_EXAMPLE,
    BGNBD_LL,
    BGNBD_PUBLISHED,
    GG_N_REPEAT,
    GG_PUBLISHED,
    PNBD_LL,
    PNBD_PUBLISHED,
    SBG_COHORTS,
)

DATA = Path(__file__).parents[1] / "data" / "cdnow"
RTOL = 0.005


@pytest.fixture(scope="module")
def cdnow() -> pd.DataFrame:
    return pd.read_csv(DATA / "cdnow_customers_summary.csv")


@pytest.fixture(scope="module")
def cdnow_spend() -> pd.DataFrame:
    return pd.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv")


@pytest.fixture(scope="module")
def cdnow_orders() -> pd.DataFrame:
    raw = pd.read_csv(
        DATA / "CDNOW_sample.txt",
        sep=r"\s+",
        header=None,
        names=["master_id", "customer_id", "date", "cds", "amount"],
        dtype={"date": str},
    )
    raw["order_date"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    return raw[["customer_id", "order_date", "amount"]]


@pytest.fixture(scope="module")
def cdnow_holdout(cdnow_orders: pd.DataFrame) -> pd.DataFrame:
    # calibration 1997-01-01 .. 1997-09-30 (39 weeks), holdout 1997-10-01 .. 1998-06-30
    return summary_from_orders(
        cdnow_orders, as_of="1998-07-01", freq="W", calibration_end="1997-10-01"
    )


def assert_params(got: dict, published: dict, rtol: float) -> None:
    for key, value in published.items():
        assert got[key] == pytest.approx(value, rel=rtol), (key, got[key], value)


# -- published estimates --------------------------------------------------------------------
def test_bgnbd_cdnow(cdnow: pd.DataFrame) -> None:
    model = BetaGeo().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"], time_unit="W")
    assert_params(model.params_, BGNBD_PUBLISHED, RTOL)
    assert model.log_likelihood_ == pytest.approx(BGNBD_LL, rel=RTOL)
    assert model.log_likelihood_ == pytest.approx(BGNBD_LL, abs=0.05)
    ll_at_published = bgnbd_loglik(
        BGNBD_PUBLISHED, cdnow["frequency"], cdnow["recency"], cdnow["T"]
    ).sum()
    assert ll_at_published == pytest.approx(BGNBD_LL, abs=0.1)
    assert model.n_obs_ == 2357
    assert model.expected_purchases(39, 2, 30.43, 38.86) == pytest.approx(BGNBD_EXAMPLE, rel=RTOL)
    assert list(model.summary_.columns) == ["param", "estimate", "se", "ci_low", "ci_high"]
    assert (model.summary_["ci_low"] < model.summary_["estimate"]).all()


def test_bgnbd_cdnow_compressed_weights(cdnow: pd.DataFrame) -> None:
    rows = cdnow.groupby(["frequency", "recency", "T"]).size().rename("n").reset_index()
    assert len(rows) < len(cdnow)
    model = BetaGeo().fit(rows, weights="n", time_unit="W")
    assert_params(model.params_, BGNBD_PUBLISHED, RTOL)
    assert model.log_likelihood_ == pytest.approx(BGNBD_LL, abs=0.05)
    assert model.n_obs_ == 2357


def test_pareto_nbd_cdnow(cdnow: pd.DataFrame) -> None:
    model = ParetoNBD().fit(cdnow["frequency"], cdnow["recency"], cdnow["T"], time_unit="W")
    assert_params(model.params_, PNBD_PUBLISHED, 0.01)
    assert model.log_likelihood_ == pytest.approx(PNBD_LL, rel=RTOL)
    # the published point sits on the alpha < beta branch of the 2F1 expression
    assert model.params_["alpha"] < model.params_["beta"]


def test_gamma_gamma_cdnow(cdnow_spend: pd.DataFrame) -> None:
    model = GammaGamma().fit(cdnow_spend["x"], cdnow_spend["zbar"])
    assert model.n_obs_ == GG_N_REPEAT
    assert model.n_excluded_ == 2357 - GG_N_REPEAT
    assert_params(model.params_, GG_PUBLISHED, 0.01)
    p, q, v = (GG_PUBLISHED[k] for k in "pqv")
    assert model.population_mean_spend() == pytest.approx(p * v / (q - 1), rel=0.01)


def test_summary_from_orders_reproduces_cdnow_summary(
    cdnow_holdout: pd.DataFrame, cdnow_spend: pd.DataFrame
) -> None:
    ref = cdnow_spend.set_index("ID")
    got = cdnow_holdout.loc[ref.index]
    assert len(cdnow_holdout) == 2357
    np.testing.assert_array_equal(got["frequency"], ref["x"])
    # the published files round to 2 decimals
    np.testing.assert_allclose(got["recency"], ref["t_x"], atol=0.0051)
    np.testing.assert_allclose(got["T"], ref["T"], atol=0.0051)
    np.testing.assert_allclose(got["monetary"], ref["zbar"], atol=0.0051)
    assert (cdnow_holdout["duration_holdout"] == 39).all()


@pytest.mark.parametrize("name", list(SBG_COHORTS))
def test_sbg_published(name: str) -> None:
    survivors, published = SBG_COHORTS[name]
    model = ShiftedBetaGeometric().fit(survivors, initial=1000, time_unit="Y")
    assert_params(model.params_, published, RTOL)
    assert model.n_obs_ == 1000
    # fitted survival reproduces the calibration data closely (FH 2007, Figure 4)
    fitted = model.survival_curve(7).to_numpy()[1:] * 1000
    np.testing.assert_allclose(fitted, survivors, rtol=0.03)


# -- CDNOW holdout: 39 weeks calibration, 39 weeks holdout ----------------------------------
def test_cdnow_holdout_by_frequency(cdnow_holdout: pd.DataFrame) -> None:
    """Tolerance, and why.

    Both models under-forecast CDNOW's holdout in aggregate (here BG/NBD 1,653 and
    Pareto/NBD 1,666 repeat purchase days against 1,882 actual; the published tracking plots
    show the same shortfall), so the checks are: the bucket means move together
    (correlation >= 0.99 across frequencies 0..7+), every bucket is within 0.4 purchases
    (about 3 standard errors of the actual mean for the well-populated buckets 1-2,
    under 1 for the thin 5-7+ buckets), and the total is within 15%. A broken conditional
    expectation (e.g. a lost P(alive) factor) misses the 7+ bucket by more than a purchase.
    """
    for model in (BetaGeo().fit(cdnow_holdout), ParetoNBD().fit(cdnow_holdout)):
        table = holdout_by_frequency(model, cdnow_holdout, max_freq=7)
        assert table["frequency"].tolist() == list(range(8))
        assert table["n_customers"].sum() == 2357
        assert table.attrs["total_actual"] == 1882
        assert table.attrs["correlation"] >= 0.99
        assert table["error"].abs().max() <= 0.4, table
        assert table.attrs["total_predicted"] == pytest.approx(1882, rel=0.15)


# -- parameter recovery (50,000 simulated customers each, fixed seeds) ---------------------
def _within_two_se(model, truth: dict) -> None:
    for key, value in truth.items():
        z = (model.params_[key] - value) / model.standard_errors_[key]
        assert abs(z) < 2, (key, model.params_[key], value, model.standard_errors_[key])


def _ages(n: int, rng: np.random.Generator) -> np.ndarray:
    # customers acquired over 26 weeks, observed to week 52, whole days
    return 26 + rng.integers(0, 183, n) / 7


def test_recover_bgnbd() -> None:
    truth = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
    rng = np.random.default_rng(101)
    data = simulate_bgnbd(50_000, truth, _ages(50_000, rng), rng)
    _within_two_se(BetaGeo().fit(data, time_unit="W"), truth)


def test_recover_pareto_nbd() -> None:
    # 50,000 customers fit in about 2.5 s: no need to use fewer
    truth = {"r": 0.55, "alpha": 10.0, "s": 0.6, "beta": 12.0}
    rng = np.random.default_rng(102)
    data = simulate_pareto_nbd(50_000, truth, _ages(50_000, rng), rng)
    _within_two_se(ParetoNBD().fit(data, time_unit="W"), truth)


def test_recover_pareto_nbd_alpha_above_beta() -> None:
    # the other branch of the hypergeometric expression
    truth = {"r": 1.5, "alpha": 20.0, "s": 0.8, "beta": 4.0}
    rng = np.random.default_rng(103)
    data = simulate_pareto_nbd(20_000, truth, _ages(20_000, rng), rng)
    model = ParetoNBD().fit(data, time_unit="W")
    assert model.params_["alpha"] > model.params_["beta"]
    _within_two_se(model, truth)


def test_recover_gamma_gamma() -> None:
    truth = {"p": 6.0, "q": 3.7, "v": 15.0}
    rng = np.random.default_rng(104)
    data = simulate_gamma_gamma(50_000, truth, 1 + rng.poisson(2.0, 50_000), rng)
    _within_two_se(GammaGamma().fit(data), truth)


def test_recover_sbg() -> None:
    truth = {"alpha": 0.7, "beta": 1.2}
    survivors = simulate_sbg(50_000, truth, periods=8, random_state=105)
    _within_two_se(ShiftedBetaGeometric().fit(survivors, initial=50_000), truth)
