"""Unit tests for fupan.models.ltv: data summary, units, input checks, predictions, CLV, sBG."""

from __future__ import annotations

import ibis
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
    normalize_unit,
    pareto_nbd_loglik,
    simulate_bgnbd,
    simulate_pareto_nbd,
    summary_from_orders,
    to_model_time,
)
from fupan.models.ltv.data import OrderHistory
from scipy import integrate
from scipy.special import gammaln, hyp2f1

BG = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
PNBD = {"r": 0.55, "alpha": 10.0, "s": 0.6, "beta": 12.0}


# -- summary_from_orders on a hand-computed fixture ----------------------------------------
@pytest.fixture
def orders() -> pd.DataFrame:
    rows = [
        # A: same-day duplicate on Jan 1, an order with a time of day, a same-day refund on
        # Jan 21 and a refund-only day on Feb 10 (not a purchase, but it lowers monetary)
        ("A", "2024-01-01", 100.0),
        ("A", "2024-01-01", 50.0),
        ("A", "2024-01-11 15:30", 30.0),
        ("A", "2024-01-21", 20.0),
        ("A", "2024-01-21", -5.0),
        ("A", "2024-02-10", -10.0),
        # B: a single purchase
        ("B", "2024-02-01", 40.0),
        # C: refunds outweigh the repeat purchase: monetary < 0
        ("C", "2024-01-15", 10.0),
        ("C", "2024-01-20", -50.0),
        ("C", "2024-01-25", 5.0),
        # D: only an order on the as_of day itself, which is excluded
        ("D", "2024-03-01", 99.0),
        # E: a purchase on the last observed day (recency == T)
        ("E", "2024-01-30", 8.0),
        ("E", "2024-02-29", 12.0),
    ]
    frame = pd.DataFrame(rows, columns=["customer_id", "order_date", "amount"])
    frame["order_date"] = pd.to_datetime(frame["order_date"], format="ISO8601")
    return frame


# as_of 2024-03-01 (exclusive): last observed day 2024-02-29
EXPECTED_DAYS = pd.DataFrame(
    {
        "frequency": [2, 0, 1, 1],
        "recency": [20.0, 0.0, 10.0, 30.0],
        "T": [59.0, 28.0, 45.0, 30.0],
        "monetary": [(30 + 20 - 5 - 10) / 2, 0.0, -50.0 + 5.0, 12.0],
    },
    index=pd.Index(["A", "B", "C", "E"], name="customer_id"),
)
# calibration ends 2024-02-01 (exclusive): B first buys on that day and is left out
EXPECTED_CAL = pd.DataFrame(
    {
        "frequency": [2, 1, 0],
        "recency": [20.0, 10.0, 0.0],
        "T": [30.0, 16.0, 1.0],
        "monetary": [(30 + 20 - 5) / 2, -45.0, 0.0],
        "frequency_holdout": [0, 0, 1],
        "duration_holdout": [29.0, 29.0, 29.0],
    },
    index=pd.Index(["A", "C", "E"], name="customer_id"),
)


def _as_input(orders: pd.DataFrame, path: str):
    if path == "pandas":
        return orders
    con = ibis.duckdb.connect()
    return con.create_table("orders", orders)


@pytest.mark.parametrize("path", ["pandas", "ibis"])
def test_summary_from_orders_days(orders: pd.DataFrame, path: str) -> None:
    got = summary_from_orders(_as_input(orders, path), as_of="2024-03-01", freq="D")
    pd.testing.assert_frame_equal(got, EXPECTED_DAYS, check_dtype=False)
    assert got["frequency"].dtype == np.int64
    assert got.attrs["time_unit"] == "D"


@pytest.mark.parametrize("path", ["pandas", "ibis"])
def test_summary_from_orders_weeks_with_holdout(orders: pd.DataFrame, path: str) -> None:
    got = summary_from_orders(
        _as_input(orders, path), as_of="2024-03-01", freq="W", calibration_end="2024-02-01"
    )
    expected = EXPECTED_CAL.copy()
    for col in ("recency", "T", "duration_holdout"):
        expected[col] = expected[col] / 7
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)
    assert got.attrs == {"time_unit": "W", "as_of": "2024-03-01", "calibration_end": "2024-02-01"}


def test_summary_from_orders_options_and_errors(orders: pd.DataFrame) -> None:
    renamed = orders.rename(columns={"customer_id": "cid", "order_date": "d"})
    got = summary_from_orders(renamed, "2024-03-01", "M", "cid", "d", amount_col=None)
    assert "monetary" not in got.columns
    assert got.loc["C", "frequency"] == 2  # without amounts every order day is a purchase
    assert got.loc["A", "T"] == pytest.approx(59 / (365.25 / 12))
    with pytest.raises(ValueError, match="lacks column"):
        summary_from_orders(orders, "2024-03-01", customer_col="client")
    with pytest.raises(ValueError, match="after as_of"):
        summary_from_orders(orders, "2024-03-01", calibration_end="2024-04-01")
    with pytest.raises(ValueError, match="time unit"):
        summary_from_orders(orders, "2024-03-01", freq="fortnight")
    with pytest.raises(ValueError, match="not a time of day"):
        summary_from_orders(orders, "2024-03-01 12:00")
    broken = orders.copy()
    broken.loc[2, "order_date"] = pd.NaT
    with pytest.raises(ValueError, match="order_date has 1 empty"):
        summary_from_orders(broken, "2024-03-01")


@pytest.mark.parametrize(
    "params",
    [
        BG,
        {"r": 3.7, "alpha": 15.5, "a": 5e4, "b": 5e6},
        {"r": 0.4, "alpha": 6.0, "a": 1.0, "b": 3.0},
    ],
)
def test_bgnbd_grid_equals_expected_purchases(params: dict[str, float]) -> None:
    """The grid (bracket per frequency and age, P(alive) per customer) gives exactly the
    values of one call per customer and horizon, also where 2F1 overflows (a in the
    thousands) and at the removable singularity a = 1."""
    rng = np.random.default_rng(5)
    n = 400
    T = rng.integers(1, 40, n) / 7.0  # customers share ages, so the bracket is reused
    x = np.where(rng.random(n) < 0.3, 0, rng.integers(1, 30, n)).astype(float)
    tx = np.where(x > 0, T * rng.random(n), 0.0)
    t = np.arange(1, 37) * (365.25 / 12 / 7)
    m = BetaGeo()
    m.params_, m.time_unit_ = dict(params), "W"
    got = m.expected_purchases_grid(t, x, tx, T)
    k = t.size
    want = m.expected_purchases(np.tile(t, n), np.repeat(x, k), np.repeat(tx, k), np.repeat(T, k))
    np.testing.assert_array_equal(got, np.asarray(want).reshape(n, k))
    assert m.expected_purchases_grid(t, x[:0], tx[:0], T[:0]).shape == (0, k)


@pytest.mark.parametrize(
    "series",
    [
        pd.Series([1.5, 2.0, 0.0], index=["a", "b", "c"]),
        pd.Series([1, 2, 3], index=pd.Index(["x", "y", "z"], dtype=object)),
        pd.Series([1, 2, 3], dtype="Int64"),
        pd.Series([True, False]),
        pd.Series([1.0, 2.0], dtype="float32"),
    ],
)
def test_as_float_array_of_a_series_is_numpys(series: pd.Series) -> None:
    """Series are read through their values (no lookup among the index labels): the same
    array numpy makes of the Series itself."""
    from fupan.models.ltv._core import as_float_array

    got = as_float_array(series, "x")
    np.testing.assert_array_equal(got, np.asarray(series, dtype=float))
    assert got.dtype == np.float64
    np.testing.assert_array_equal(as_float_array(pd.Index(series), "x"), got)


def test_as_float_array_errors_on_series() -> None:
    from fupan.models.ltv._core import as_float_array

    with pytest.raises(ValueError, match="must be numeric"):
        as_float_array(pd.Series(["a", "b"]), "x")
    with pytest.raises(ValueError, match="1 missing"):
        as_float_array(pd.Series([1, None], dtype="Int64"), "x")
    with pytest.raises(ValueError, match="1 missing"):
        as_float_array(pd.Series([1.0, np.nan]), "x")


def test_unique_rows_finds_the_distinct_rows() -> None:
    from fupan.models.ltv._core import unique_rows

    rng = np.random.default_rng(11)
    n = 5000
    cols = [
        rng.integers(0, 6, n).astype(float),
        rng.integers(0, 4, n) / 7.0,
        np.where(rng.random(n) < 0.01, np.nan, rng.integers(1, 5, n) * 1.5),
    ]
    first, inverse = unique_rows(*cols)
    for c in cols:
        np.testing.assert_array_equal(c[first][inverse], c)
    assert np.array_equal(np.sort(first), first)  # in order of appearance
    rows = np.nan_to_num(np.column_stack(cols), nan=-1.0)  # NaN as one more value
    assert first.size == len(np.unique(rows, axis=0))
    assert len({tuple(r) for r in rows[first]}) == first.size
    one_first, one_inv = unique_rows(np.array([2.0, 1.0, 2.0]))
    assert one_first.tolist() == [0, 1] and one_inv.tolist() == [0, 1, 0]


def test_compress_rows_sums_the_weights_a_group_by_sums() -> None:
    from fupan.models.ltv._core import compress_rows

    rng = np.random.default_rng(12)
    n = 4000
    cols = [rng.integers(0, 5, n).astype(float), rng.integers(0, 3, n) * 2.5]
    w = rng.integers(0, 4, n).astype(float)  # a quarter of the rows weigh nothing
    got_cols, got_w = compress_rows(*cols, weights=w)
    want = (
        pd.DataFrame({"a": cols[0], "b": cols[1], "w": w})[w > 0]
        .groupby(["a", "b"], sort=False)["w"]
        .sum()
    )
    got = pd.Series(got_w, index=pd.MultiIndex.from_arrays(got_cols, names=["a", "b"]))
    pd.testing.assert_series_equal(got, want, check_names=False)  # same rows, same order
    assert got_w.sum() == w.sum()
    empty_cols, empty_w = compress_rows(cols[0][:3], weights=np.zeros(3))
    assert empty_w.size == 0 and empty_cols[0].size == 0


def _random_orders(seed: int, customers: int = 300) -> pd.DataFrame:
    """Orders with what the summary must get right: several orders a day, refunds on a
    purchase day, refund-only days (before and after the first purchase), orders with a time
    of day, orders on the snapshot dates themselves, and ids whose text order is not their
    numeric or case-blind order."""
    rng = np.random.default_rng(seed)
    ids = [f"c{i}" for i in range(customers)] + ["Z", "a", "é", "10", "9", "中"]
    n = 6000
    day = pd.Timestamp("2023-06-01") + pd.to_timedelta(rng.integers(0, 640, n), unit="D")
    on_snap = rng.random(n) < 0.05
    day = day.where(~on_snap, pd.Timestamp("2024-01-01"))
    hour = pd.to_timedelta(rng.integers(0, 24, n) * (rng.random(n) < 0.1), unit="h")
    amount = np.round(rng.gamma(2.0, 40.0, n), 2)
    amount = np.where(rng.random(n) < 0.12, -np.round(rng.gamma(1.5, 20.0, n), 2), amount)
    frame = pd.DataFrame(
        {"customer_id": rng.choice(ids, n), "order_date": day + hour, "amount": amount}
    )
    # a same-day duplicate of some orders
    return pd.concat([frame, frame.sample(300, random_state=seed)], ignore_index=True)


DATES = ["2023-09-01", "2024-01-01", "2024-02-01", "2024-02-02", "2024-06-01", "2025-01-01"]


@pytest.mark.parametrize("path", ["pandas", "ibis"])
@pytest.mark.parametrize("freq", ["D", "W"])
def test_order_history_equals_summary_from_orders(path: str, freq: str) -> None:
    orders = _as_input(_random_orders(1 if freq == "D" else 2), path)
    history = OrderHistory(orders, reversed(DATES), freq=freq)
    asked = [(d, None) for d in DATES] + [
        (DATES[-1], DATES[0]),
        (DATES[3], DATES[1]),
        (DATES[4], DATES[3]),
    ]
    for as_of, cal_end in asked:
        want = summary_from_orders(orders, as_of, freq=freq, calibration_end=cal_end)
        got = history.summary(as_of, calibration_end=cal_end)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert got.attrs == want.attrs
    renamed = _random_orders(3).rename(columns={"customer_id": "cid", "order_date": "d"})
    bare = OrderHistory(renamed, DATES, "M", "cid", "d", amount_col=None)
    want = summary_from_orders(renamed, DATES[2], "M", "cid", "d", amount_col=None)
    pd.testing.assert_frame_equal(bare.summary(DATES[2]), want, check_exact=True)


def test_order_history_errors(orders: pd.DataFrame) -> None:
    history = OrderHistory(orders, ["2024-02-01", "2024-03-01"], freq="D")
    with pytest.raises(ValueError, match="not one of the history's dates"):
        history.summary("2024-02-15")
    with pytest.raises(ValueError, match="after as_of"):
        history.summary("2024-02-01", calibration_end="2024-03-01")
    with pytest.raises(ValueError, match="would be empty"):
        history.summary("2024-03-01", calibration_end="2024-03-01")
    broken = orders.copy()
    broken.loc[2, "amount"] = np.nan
    with pytest.raises(ValueError, match="amount has 1 empty"):
        OrderHistory(broken, ["2024-03-01"])


def test_gamma_gamma_rejects_refund_dominated(orders: pd.DataFrame) -> None:
    summary = summary_from_orders(orders, as_of="2024-03-01", freq="D")
    with pytest.raises(ValueError, match=r"1 customers .*\(1 negative.*'C'"):
        GammaGamma().fit(summary)
    # callers filter and go on; frequency-0 customers are excluded automatically
    keep = (summary["frequency"] == 0) | (summary["monetary"] > 0)
    model = GammaGamma().fit(summary[keep].pipe(_grow, 30))
    assert model.n_excluded_ == 30


def _grow(summary: pd.DataFrame, k: int) -> pd.DataFrame:
    """Replicate rows with jitter so a three-parameter model has something to fit."""
    rng = np.random.default_rng(0)
    rep = pd.concat([summary] * k, ignore_index=True)
    rep["monetary"] = rep["monetary"] * rng.uniform(0.5, 1.5, len(rep))
    rep.loc[rep["frequency"] > 0, "frequency"] += rng.integers(0, 3, (rep["frequency"] > 0).sum())
    return rep


# -- units ----------------------------------------------------------------------------------
def test_units() -> None:
    assert normalize_unit("weeks") == "W"
    assert to_model_time("12M", "W") == pytest.approx(365.25 / 7)
    assert to_model_time((2, "W"), "D") == pytest.approx(14)
    assert to_model_time(3.5, "W") == 3.5
    with pytest.raises(ValueError, match="time unit"):
        normalize_unit("Q")
    with pytest.raises(ValueError, match="number followed by a unit"):
        to_model_time("M", "W")


def test_fit_requires_time_unit_and_checks_it() -> None:
    data = simulate_bgnbd(500, BG, 30.0, random_state=1)
    with pytest.raises(ValueError, match="time_unit is required"):
        BetaGeo().fit(data)
    data.attrs["time_unit"] = "W"
    assert BetaGeo().fit(data).time_unit_ == "W"
    with pytest.raises(ValueError, match="contradicts"):
        BetaGeo().fit(data, time_unit="D")


def test_input_validation() -> None:
    model = BetaGeo()
    with pytest.raises(ValueError, match="recency must not exceed T"):
        model.fit([1, 2], [5.0, 11.0], [10.0, 10.0], time_unit="W")
    with pytest.raises(ValueError, match="recency must be 0 when frequency is 0"):
        model.fit([0, 2], [1.0, 3.0], [10.0, 10.0], time_unit="W")
    with pytest.raises(ValueError, match="whole number"):
        model.fit([0.5, 2], [0.0, 3.0], [10.0, 10.0], time_unit="W")
    with pytest.raises(ValueError, match="missing or infinite"):
        model.fit([np.nan, 2], [0.0, 3.0], [10.0, 10.0], time_unit="W")
    with pytest.raises(ValueError, match="negative"):
        model.fit([1, 2], [1.0, 3.0], [10.0, 10.0], weights=[1, -1], time_unit="W")
    with pytest.raises(RuntimeError, match="not fitted"):
        BetaGeo().probability_alive(1, 1, 2)


@pytest.mark.parametrize(
    "cls,params,simulate", [(BetaGeo, BG, simulate_bgnbd), (ParetoNBD, PNBD, simulate_pareto_nbd)]
)
def test_weights_equal_expanded_rows(cls, params, simulate) -> None:
    data = simulate(3000, params, 20.0, random_state=2)
    data["recency"] = np.round(data["recency"])
    compressed = data.groupby(["frequency", "recency", "T"]).size().rename("n").reset_index()
    full = cls().fit(data, time_unit="W")
    small = cls().fit(compressed, weights="n", time_unit="W")
    assert small.log_likelihood_ == pytest.approx(full.log_likelihood_, rel=1e-10)
    for key in params:
        assert small.params_[key] == pytest.approx(full.params_[key], rel=1e-5)
    assert small.n_obs_ == full.n_obs_ == 3000
    assert full.n_unique_ == len(compressed)


# -- BG/NBD and Pareto/NBD predictions ----------------------------------------------------
@pytest.fixture(scope="module")
def bg_sim() -> tuple[BetaGeo, pd.DataFrame]:
    rng = np.random.default_rng(7)
    data = simulate_bgnbd(40_000, BG, 20 + rng.integers(0, 140, 40_000) / 7, rng, holdout=26)
    data.attrs["time_unit"] = "W"
    return BetaGeo().fit(data), data


@pytest.fixture(scope="module")
def pnbd_sim() -> tuple[ParetoNBD, pd.DataFrame]:
    rng = np.random.default_rng(8)
    # 20,000 rather than 40,000: the Pareto/NBD likelihood (two 2F1 per row) is the slow one
    data = simulate_pareto_nbd(20_000, PNBD, 20 + rng.integers(0, 140, 20_000) / 7, rng, holdout=26)
    data.attrs["time_unit"] = "W"
    return ParetoNBD().fit(data), data


@pytest.mark.parametrize("which", ["bg_sim", "pnbd_sim"])
def test_conditional_predictions_match_simulated_holdout(which, request) -> None:
    """On data drawn from the model itself, mean predicted holdout purchases per calibration
    frequency match the simulated ones within 4 standard errors of the bucket mean, and
    mean P(alive) matches the simulated share of active customers (and the holdout total
    within 4 standard errors of the simulated total)."""
    model, data = request.getfixturevalue(which)
    table = holdout_by_frequency(model, data, max_freq=7)
    bucket = np.minimum(data["frequency"], 7)
    se = data.groupby(bucket)["frequency_holdout"].sem().to_numpy()
    assert (table["error"].abs().to_numpy() <= 4 * se + 1e-3).all(), table
    total_se = data["frequency_holdout"].std() * np.sqrt(len(data))
    assert abs(table.attrs["total_predicted"] - table.attrs["total_actual"]) <= 4 * total_se
    alive = model.probability_alive(data["frequency"], data["recency"], data["T"])
    for mask in (data["frequency"] == 0, data["frequency"] > 0):
        share, n = data.loc[mask, "alive"].mean(), mask.sum()
        assert alive[mask].mean() == pytest.approx(share, abs=4 * np.sqrt(share * (1 - share) / n))


@pytest.mark.parametrize("which", ["bg_sim", "pnbd_sim"])
def test_unconditional_expectation_matches_simulation(which, request) -> None:
    model, _ = request.getfixturevalue(which)
    simulate = simulate_bgnbd if isinstance(model, BetaGeo) else simulate_pareto_nbd
    sim = simulate(200_000, model.params_, 39.0, random_state=11)
    se = sim["frequency"].std() / np.sqrt(len(sim))
    assert model.expected_purchases_new(39) == pytest.approx(sim["frequency"].mean(), abs=4 * se)
    assert model.expected_purchases_new("39W") == model.expected_purchases_new(39)
    assert model.expected_purchases_new(0) == pytest.approx(0, abs=1e-12)


def test_probability_alive_zero_repeat(bg_sim, pnbd_sim) -> None:
    bg, _ = bg_sim
    pn, _ = pnbd_sim
    # BG/NBD: exactly 1 by definition for frequency 0
    assert bg.probability_alive(0, 0, 100.0) == 1.0
    p = pn.probability_alive([0, 0, 0], [0, 0, 0], [5.0, 30.0, 100.0])
    assert (p < 1).all() and (np.diff(p) < 0).all()
    # a long silence after many purchases means likely gone, for both models
    for model in (bg, pn):
        recent, stale = model.probability_alive([10, 10], [49.0, 5.0], [50.0, 50.0])
        assert recent > 0.9 and stale < 0.1


def test_predictions_keep_pandas_index(bg_sim) -> None:
    model, data = bg_sim
    head = data.head(5).set_axis(list("vwxyz"))
    out = model.expected_purchases(10, head["frequency"], head["recency"], head["T"])
    assert isinstance(out, pd.Series) and list(out.index) == list("vwxyz")
    scalar = model.expected_purchases(10, 1, 2.0, 5.0)
    assert isinstance(scalar, float)
    assert model.expected_purchases("10W", 1, 2.0, 5.0) == scalar
    assert model.expected_purchases("70D", 1, 2.0, 5.0) == pytest.approx(scalar)


def test_bgnbd_expectation_matches_direct_formula() -> None:
    """The Euler-transformed 2F1 equals FHL 2005 eq. 10 evaluated directly."""
    model = BetaGeo().fit(simulate_bgnbd(5000, BG, 30.0, random_state=3), time_unit="W")
    r, alpha, a, b = (model.params_[k] for k in ("r", "alpha", "a", "b"))
    for x, tx, T, t in [(0, 0.0, 30.0, 10.0), (3, 20.0, 30.0, 26.0), (12, 29.0, 30.0, 52.0)]:
        z = t / (alpha + T + t)
        bracket = 1 - ((alpha + T) / (alpha + T + t)) ** (r + x) * hyp2f1(
            r + x, b + x, a + b + x - 1, z
        )
        alive = (
            1.0 if x == 0 else 1 / (1 + a / (b + x - 1) * ((alpha + T) / (alpha + tx)) ** (r + x))
        )
        direct = (a + b + x - 1) / (a - 1) * bracket * alive
        assert model.expected_purchases(t, x, tx, T) == pytest.approx(direct, rel=1e-9)


@pytest.mark.parametrize(
    "params",
    [
        PNBD,
        {"r": 0.55, "alpha": 12.5, "s": 0.6, "beta": 3.7},
        {"r": 2, "alpha": 1.5, "s": 1.6, "beta": 30},
    ],
)
def test_pareto_nbd_likelihood_matches_quadrature(params) -> None:
    r, alpha, s, beta = (params[k] for k in ("r", "alpha", "s", "beta"))
    for x, tx, T in [(0, 0.0, 30.0), (3, 10.0, 30.0), (40, 29.0, 30.0), (5, 30.0, 30.0)]:
        head = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
        alive = (alpha + T) ** -(r + x) * (beta + T) ** -s
        died = integrate.quad(
            lambda u, x=x: (alpha + u) ** -(r + x) * (beta + u) ** -(s + 1),
            tx,
            T,
            epsabs=0,
            epsrel=1e-12,
        )[0]
        expected = head + np.log(alive + s * died)
        assert pareto_nbd_loglik(params, x, tx, T)[0] == pytest.approx(expected, rel=1e-9)


def _log_hyp2f1_series(a: float, b: float, c: float, z: float, terms: int = 40_000) -> float:
    """log 2F1(a, b; c; z) by summing its (positive) series in log space."""
    k = np.arange(terms - 1)
    log_ratio = np.log(a + k) + np.log(b + k) - np.log(c + k) - np.log(k + 1) + np.log(z)
    log_terms = np.concatenate([[0.0], np.cumsum(log_ratio)])
    top = log_terms.max()
    return float(top + np.log(np.exp(log_terms - top).sum()))


def test_large_frequencies_and_long_histories_are_stable() -> None:
    x = np.array([0, 1, 50, 500, 5000])
    tx = np.array([0.0, 100.0, 900.0, 990.0, 999.0])
    T = np.full(5, 1000.0)
    for loglik, params in ((bgnbd_loglik, BG), (pareto_nbd_loglik, PNBD)):
        assert np.isfinite(loglik(params, x, tx, T)).all()
    data = pd.DataFrame({"frequency": x, "recency": tx, "T": T})
    bg = BetaGeo().fit(
        pd.concat([data, simulate_bgnbd(3000, BG, 1000.0, random_state=4)]), time_unit="D"
    )
    pn = ParetoNBD().fit(
        pd.concat([data, simulate_pareto_nbd(3000, PNBD, 1000.0, random_state=4)]), time_unit="D"
    )
    t = 365.0
    for model in (bg, pn):
        pred = model.expected_purchases(t, x, tx, T)
        alive = model.probability_alive(x, tx, T)
        assert np.isfinite(pred).all() and (pred >= 0).all()
        assert ((alive >= 0) & (alive <= 1)).all()
    # BG/NBD eq. 10 with the original 2F1 summed term by term in log space
    r, alpha, a, b = (bg.params_[k] for k in ("r", "alpha", "a", "b"))
    for i in (2, 3, 4):
        xi, ti = x[i], tx[i]
        z = t / (alpha + 1000 + t)
        log_f = _log_hyp2f1_series(r + xi, b + xi, a + b + xi - 1, z)
        bracket = -np.expm1((r + xi) * np.log1p(-z) + log_f)
        odds = a / (b + xi - 1) * np.exp((r + xi) * np.log((alpha + 1000) / (alpha + ti)))
        direct = (a + b + xi - 1) / (a - 1) * bracket / (1 + odds)
        assert bg.expected_purchases(t, xi, ti, 1000.0) == pytest.approx(direct, rel=1e-7)
    # Pareto/NBD P(alive) against quadrature, scaled so nothing underflows
    r, alpha, s, beta = (pn.params_[k] for k in ("r", "alpha", "s", "beta"))
    for i in (2, 3, 4):
        xi, ti = x[i], tx[i]
        scaled = integrate.quad(
            lambda u, xi=xi: np.exp(
                -(r + xi) * np.log((alpha + u) / (alpha + 1000))
                - (s + 1) * np.log((beta + u) / (beta + 1000))
            ),
            ti,
            1000.0,
            epsabs=0,
            epsrel=1e-12,
        )[0]
        expected = 1 / (1 + s * scaled / (beta + 1000))
        assert pn.probability_alive(xi, ti, 1000.0) == pytest.approx(expected, rel=1e-8)


def test_summary_and_standard_errors(bg_sim) -> None:
    model, _ = bg_sim
    table = model.summary_
    assert table["param"].tolist() == ["r", "alpha", "a", "b"]
    assert (table["se"] > 0).all()
    assert np.allclose(table["se"], [model.standard_errors_[k] for k in table["param"]])
    assert ((table["ci_low"] < table["estimate"]) & (table["estimate"] < table["ci_high"])).all()
    assert np.allclose(np.sqrt(np.diag(model.covariance_)), table["se"])
    assert "BetaGeo(r=" in repr(model)
    assert model.aic_ == pytest.approx(8 - 2 * model.log_likelihood_)


# -- Gamma-Gamma and CLV --------------------------------------------------------------------
@pytest.fixture(scope="module")
def spend_model() -> GammaGamma:
    rng = np.random.default_rng(5)
    from fupan.models.ltv import simulate_gamma_gamma

    data = simulate_gamma_gamma(5000, {"p": 6.0, "q": 3.7, "v": 15.0}, rng.poisson(2, 5000), rng)
    return GammaGamma().fit(data)


def test_expected_spend(spend_model: GammaGamma) -> None:
    p, q, v = (spend_model.params_[k] for k in "pqv")
    got = spend_model.expected_spend([0, 1, 10], [0.0, 20.0, 20.0])
    assert got[0] == pytest.approx(spend_model.population_mean_spend())
    assert got[1] == pytest.approx(p * (v + 20.0) / (p + q - 1))
    # more purchases pull the estimate toward the customer's own mean
    assert abs(got[2] - 20) < abs(got[1] - 20)


def test_clv(bg_sim, spend_model: GammaGamma) -> None:
    model, data = bg_sim
    cust = data.head(50)
    args = (model, cust["frequency"], cust["recency"], cust["T"], np.full(50, 25.0))
    spend = spend_model.expected_spend(cust["frequency"], np.full(50, 25.0))
    # undiscounted: expected purchases over the whole horizon times spend
    flat = spend_model.clv(*args, time_unit="W", horizon=12, period="M")
    year_w = to_model_time("1Y", "W")
    purchases = model.expected_purchases(year_w, cust["frequency"], cust["recency"], cust["T"])
    np.testing.assert_allclose(flat, purchases * spend, rtol=1e-9)
    assert isinstance(flat, pd.Series) and flat.index.equals(cust.index)
    # the same year as one yearly period, and margin scales linearly
    yearly = spend_model.clv(*args, time_unit="weeks", horizon=1, period="Y", margin=0.3)
    np.testing.assert_allclose(yearly, 0.3 * flat, rtol=1e-9)
    # discounting: 12.68% a year is 1% a month
    monthly = spend_model.clv(*args, time_unit="W", horizon=12, discount_rate=0.01)
    annual = spend_model.clv(
        *args, time_unit="W", horizon=12, discount_rate=1.01**12 - 1, discount_period="Y"
    )
    np.testing.assert_allclose(monthly, annual, rtol=1e-9)
    assert (monthly < flat).all()
    manual = sum(
        (
            model.expected_purchases(k * year_w / 12, cust["frequency"], cust["recency"], cust["T"])
            - model.expected_purchases(
                (k - 1) * year_w / 12, cust["frequency"], cust["recency"], cust["T"]
            )
        )
        / 1.01**k
        for k in range(1, 13)
    )
    np.testing.assert_allclose(monthly, manual * spend, rtol=1e-9)


def test_clv_unit_checks(bg_sim, spend_model: GammaGamma) -> None:
    model, data = bg_sim
    args = (model, data["frequency"][:5], data["recency"][:5], data["T"][:5], np.full(5, 25.0))
    with pytest.raises(ValueError, match="fitted on data in 'W'"):
        spend_model.clv(*args, time_unit="D", horizon=12)
    with pytest.raises(ValueError, match="period="):
        spend_model.clv(*args, time_unit="W", horizon=12, period="quarter")
    with pytest.raises(ValueError, match="horizon"):
        spend_model.clv(*args, time_unit="W", horizon=2.5)
    with pytest.raises(ValueError, match="discount_rate"):
        spend_model.clv(*args, time_unit="W", horizon=12, discount_rate=-1.5)
    with pytest.raises(ValueError, match="fitted BetaGeo or ParetoNBD"):
        spend_model.clv(object(), *args[1:], time_unit="W", horizon=12)


def test_holdout_by_frequency_checks(bg_sim) -> None:
    model, data = bg_sim
    with pytest.raises(ValueError, match="lacks"):
        holdout_by_frequency(model, data.drop(columns="frequency_holdout"))
    other = data.copy()
    other.attrs["time_unit"] = "D"
    with pytest.raises(ValueError, match="fitted on 'W'"):
        holdout_by_frequency(model, other)
    table = holdout_by_frequency(model, data, max_freq=3)
    assert table["frequency"].tolist() == [0, 1, 2, 3]
    assert {"mae", "correlation", "customer_mae", "total_actual"} <= set(table.attrs)


# -- sBG ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sbg() -> ShiftedBetaGeometric:
    return ShiftedBetaGeometric().fit([631, 468, 382, 326, 289, 262, 241], initial=1000)


def test_sbg_curves(sbg: ShiftedBetaGeometric) -> None:
    a, b = sbg.params_["alpha"], sbg.params_["beta"]
    r = sbg.retention_curve(10)
    assert r.index.tolist() == list(range(1, 11))
    np.testing.assert_allclose(r, (b + r.index - 1) / (a + b + r.index - 1))
    assert (np.diff(r) > 0).all()  # retention rises as the churn-prone leave
    s = sbg.survival_curve(10)
    assert s.iloc[0] == 1.0
    np.testing.assert_allclose(s.iloc[1:].to_numpy(), np.cumprod(r.to_numpy()))
    p = sbg.churn_probability(np.arange(1, 2000))
    assert p.iloc[0] == pytest.approx(a / (a + b))
    np.testing.assert_allclose(s.iloc[:-1].to_numpy() - s.iloc[1:].to_numpy(), p.iloc[:10])
    assert sbg.survival_curve([0, 3]).index.tolist() == [0, 3]


def test_sbg_lifetime_value(sbg: ShiftedBetaGeometric) -> None:
    m, d = 100.0, 0.1
    del_ = sbg.expected_lifetime_value(m, d)
    assert del_ == pytest.approx(sbg.expected_lifetime_value(m, d, periods=5000), rel=1e-9)
    s = sbg.survival_curve(4).to_numpy()
    assert sbg.expected_lifetime_value(m, d, periods=5) == pytest.approx(
        m * np.sum(s / (1 + d) ** np.arange(5))
    )
    # DERL of a new customer = (DEL - first payment), one period closer
    assert sbg.expected_lifetime_value(m, d, renewals=0) == pytest.approx((del_ - m) * (1 + d))
    derl = [sbg.expected_lifetime_value(m, d, renewals=n) for n in (0, 1, 4)]
    assert derl == sorted(derl)  # loyal customers are worth more
    assert derl[2] == pytest.approx(sbg.expected_lifetime_value(m, d, 5000, renewals=4), rel=1e-9)
    with pytest.raises(ValueError, match="discount_rate > 0"):
        sbg.expected_lifetime_value(m, 0.0)


def test_sbg_inputs() -> None:
    with pytest.raises(ValueError, match="initial .* is required"):
        ShiftedBetaGeometric().fit([631, 468, 382])
    with pytest.raises(ValueError, match="must not increase"):
        ShiftedBetaGeometric().fit([631, 700], initial=1000)
    one = ShiftedBetaGeometric().fit([631, 468, 382, 326], initial=1000)
    two = ShiftedBetaGeometric().fit([[631, 468, 382, 326]] * 2, initial=[1000, 1000])
    assert two.log_likelihood_ == pytest.approx(2 * one.log_likelihood_)
    assert two.params_["alpha"] == pytest.approx(one.params_["alpha"], rel=1e-5)
    mixed = ShiftedBetaGeometric().fit(
        [[631, 468, 382, 326, 289], [640, 470]], initial=[1000, 1000], time_unit="Y"
    )
    assert mixed.n_periods_ == 5 and mixed.n_obs_ == 2000 and mixed.time_unit_ == "Y"


# -- the fast fitting path: exact derivatives, warm start, row grouping --------------------
def _numeric_derivatives(fun, theta: np.ndarray, h: float = 1e-5) -> tuple[np.ndarray, np.ndarray]:
    eye = np.eye(theta.size)
    grad = np.array([(fun(theta + h * e) - fun(theta - h * e)) / (2 * h) for e in eye])
    hess = np.array(
        [
            [
                (
                    fun(theta + h * (ei + ej))
                    - fun(theta + h * (ei - ej))
                    - fun(theta - h * (ei - ej))
                    + fun(theta - h * (ei + ej))
                )
                / (4 * h * h)
                for ej in eye
            ]
            for ei in eye
        ]
    )
    return grad, hess


def test_bgnbd_exact_gradient_and_hessian_match_the_likelihood() -> None:
    # The Newton fit and the standard errors use hand-derived derivatives; check them
    # against central differences of the published per-customer log-likelihood.
    from fupan.models.ltv.bgnbd import _negll_hess

    data = simulate_bgnbd(2000, BG, 30.0, random_state=4)
    x, tx, T = (data[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    w = np.random.default_rng(1).uniform(0.5, 2.0, x.size)

    def negll(theta: np.ndarray) -> float:
        params = dict(zip(["r", "alpha", "a", "b"], np.exp(theta), strict=True))
        return -float(np.sum(w * bgnbd_loglik(params, x, tx, T)))

    theta = np.log([0.6, 3.5, 0.9, 2.0])
    f, g, H = _negll_hess(x, tx, T, w)(theta)
    g_num, H_num = _numeric_derivatives(negll, theta)
    assert f == pytest.approx(negll(theta), rel=1e-12)
    assert np.allclose(g, g_num, rtol=1e-6, atol=1e-4)
    assert np.allclose(H, H_num, rtol=1e-4, atol=1e-2)


def test_gamma_gamma_exact_gradient_and_hessian_match_the_likelihood() -> None:
    from fupan.models.ltv import gamma_gamma_loglik
    from fupan.models.ltv.gammagamma import _negll_hess

    rng = np.random.default_rng(3)
    x = rng.integers(1, 30, 2000).astype(float)
    z = rng.gamma(2.0, 50.0, 2000)
    w = rng.uniform(0.5, 2.0, 2000)

    def negll(theta: np.ndarray) -> float:
        params = dict(zip(["p", "q", "v"], np.exp(theta), strict=True))
        return -float(np.sum(w * gamma_gamma_loglik(params, x, z)))

    theta = np.log([2.0, 3.0, 40.0])
    f, g, H = _negll_hess(x, z, w)(theta)
    g_num, H_num = _numeric_derivatives(negll, theta)
    assert f == pytest.approx(negll(theta), rel=1e-12)
    assert np.allclose(g, g_num, rtol=1e-6, atol=1e-4)
    assert np.allclose(H, H_num, rtol=1e-4, atol=1e-2)


def test_large_fit_warm_start_reaches_the_full_data_optimum() -> None:
    # Above WARM_START_ROWS the Newton fit starts from a sample's optimum; the answer
    # must be the full data's maximum, the same as a fit started elsewhere.
    from fupan.models.ltv._core import WARM_START_ROWS

    n = WARM_START_ROWS + 10_000
    data = simulate_bgnbd(n, BG, 20 + np.arange(n) % 100 / 7, random_state=8)
    fast = BetaGeo().fit(data, time_unit="W")
    cold = BetaGeo(initial_params={"r": 0.1, "alpha": 1.0, "a": 0.5, "b": 0.5}).fit(
        data, time_unit="W"
    )
    assert fast.converged_ and cold.converged_
    assert fast.log_likelihood_ == pytest.approx(cold.log_likelihood_, rel=1e-10)
    for key in BG:
        assert fast.params_[key] == pytest.approx(cold.params_[key], rel=1e-4)
    # and its standard errors come from the exact Hessian: equal to a numerical one
    se_exact = np.array([fast.standard_errors_[k] for k in BG])
    theta = np.log([fast.params_[k] for k in BG])
    x, tx, T = (data[c].to_numpy(float) for c in ("frequency", "recency", "T"))

    def negll(th: np.ndarray) -> float:
        return -float(np.sum(bgnbd_loglik(dict(zip(BG, np.exp(th), strict=True)), x, tx, T)))

    _, H = _numeric_derivatives(negll, theta, 1e-4)
    se_num = np.exp(theta) * np.sqrt(np.diag(np.linalg.inv(H)))
    assert np.allclose(se_exact, se_num, rtol=1e-3)


def test_group_codes_match_numpy_unique() -> None:
    from fupan.models.ltv._core import group_codes

    rng = np.random.default_rng(0)
    for values in (
        rng.integers(0, 50, 1000).astype(float),  # counts: the counting path
        rng.integers(1, 10, 1000) * 1e9,  # whole but far larger than the row count
        rng.gamma(2.0, 3.0, 1000),  # fractional
        np.array([3.0]),
    ):
        uniq, codes = group_codes(values)
        ref_u, ref_c = np.unique(values, return_inverse=True)
        assert np.array_equal(uniq, ref_u) and np.array_equal(codes, ref_c)
        assert np.array_equal(uniq[codes], values)


def test_bgnbd_bracket_at_a_boundary_fit_is_the_poisson_limit():
    """r, alpha -> infinity at a fixed rate (a 30-customer fit reached r = 1e8): the bracket
    switches to its limit above R_LIMIT; it must join the exact form there (relative 1e-4)
    and stay finite and bounded beyond, where scipy's 2F1 returns NaN or garbage."""
    from fupan.models.ltv import bgnbd

    a, b, lam = 0.18, 2.66, 0.174
    x = np.array([0.0, 3.0, 20.0])
    t = np.array([156.0, 52.0, 10.0])
    T = np.array([10.0, 40.0, 80.0])

    def bracket(r):
        return bgnbd._cond_bracket(a, b, r, x, r / lam + T, t)

    below = bracket(bgnbd.R_LIMIT * (1 - 1e-9))  # exact form
    above = bracket(bgnbd.R_LIMIT * (1 + 1e-9))  # limit
    np.testing.assert_allclose(above, below, rtol=1e-4)
    far = bracket(1e8)
    assert np.isfinite(far).all()
    # the rate no longer varies: expected purchases cannot exceed the rate times the horizon
    assert ((a + b + x - 1) * far <= lam * t * 1.001).all()
    np.testing.assert_allclose(far, above, rtol=1e-3)
