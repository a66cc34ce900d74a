"""fupan.measures.segments: features, RFM, spend tiers, re-tiering, value x potential, clustering.

Hand-checked against the tiny dataset (as_of 2026-10-31, trailing year 2025-11-01..2026-10-31)
and, for clustering, against simulated segments with a known truth.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tiny
from conftest import assign_by_frame
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.measures import segments
from hypothesis import given, settings
from hypothesis import strategies as st


@pytest.fixture
def tiny_ds(tiny_params):
    ds = fdata.load(fparams.load(tiny_params))
    yield ds
    ds.close()


@pytest.fixture
def feats(tiny_ds):
    return segments.customer_features_as_of(tiny_ds).set_index("customer_id")


def test_windows():
    import datetime as dt

    assert segments.trailing_start(dt.date(2026, 10, 31)) == dt.date(2025, 11, 1)
    assert segments.trailing_start(dt.date(2024, 2, 29)) == dt.date(2023, 3, 1)
    assert segments.years_before(dt.date(2024, 2, 29)) == dt.date(2023, 2, 28)


def test_features_by_hand(feats):
    c1 = feats.loc["C1"]
    # orders 120k (2023-01-10), 80k (2024-06-01), 150k (2026-09-15), refund -5k (2026-10-01)
    assert c1.orders_total == 4
    assert c1.revenue_total == pytest.approx(345_000)
    assert c1.orders_12m == 2
    assert c1.spend_12m == pytest.approx(145_000)
    assert c1.spend_prior_12m == pytest.approx(0)
    assert c1.spend_first_12m == pytest.approx(
        120_000
    )  # only the 2023-01-10 order is in its first year
    assert (c1.spend_h1, c1.spend_h2) == (
        pytest.approx(0),
        pytest.approx(145_000),
    )  # H2 starts 2026-05-01
    assert c1.recency_days == 30 and c1.tenure_days == 1390
    assert (c1.touches_12m, c1.responses_12m, c1.responded_known_12m) == (2, 1, 2)
    assert (c1.tickets_12m, c1.logins_12m) == (1, 8)
    c5 = feats.loc["C5"]
    assert (c5.spend_12m, c5.spend_prior_12m, c5.spend_first_12m) == (11_000, 9_000, 9_000)
    assert feats.loc["C2"].recency_days == 649  # last order 2025-01-20
    assert feats.loc["C4"].touches_12m == 0


def test_features_use_nothing_after_the_snapshot(tiny_ds):
    f = segments.customer_features_as_of(tiny_ds, "2025-10-31").set_index("customer_id")
    assert f.loc["C1"].orders_total == 2  # the 2026 orders are in the future
    assert f.loc["C1"].spend_12m == 0
    assert f.loc["C5"].spend_12m == 9_000
    assert "C5" in f.index and len(f) == 5
    early = segments.customer_features_as_of(tiny_ds, "2024-12-31")
    assert set(early.customer_id) == {"C1", "C2", "C3", "C4"}  # C5 was acquired in 2025


def test_features_without_optional_tables(tmp_path):
    data = tiny.write(tmp_path / "d", drop=("touches", "tickets", "activity"))
    ds = fdata.load(fparams.load(tiny.params_file(tmp_path, data)))
    f = segments.customer_features_as_of(ds)
    assert not {"touches_12m", "tickets_12m", "logins_12m"} & set(f.columns)
    assert len(segments.behaviour_matrix(f).columns) <= 4
    ds.close()


def test_quantile_score_ties_and_direction():
    s = pd.Series([10, 20, 30, 40, 50])
    assert segments.quantile_score(s, 5).tolist() == [1, 2, 3, 4, 5]
    assert segments.quantile_score(s, 5, higher_is_better=False).tolist() == [5, 4, 3, 2, 1]
    tied = segments.quantile_score(pd.Series([0, 0, 0, 0, 100]), 5)
    assert tied.iloc[:4].nunique() == 1 and tied.iloc[4] == 5
    assert segments.quantile_score(pd.Series([], dtype=float)).empty


def test_rfm_and_grid(feats):
    f = feats.reset_index()
    r = segments.rfm_scores(f, 5).set_index("customer_id")
    assert (
        r.loc["C5", "r"] == 5 and r.loc["C3", "r"] == 1
    )  # 11 days vs 989 days since the last order
    assert r.loc["C1", "m"] == 5
    grid = segments.rfm_grid(f, r.reset_index())
    assert grid.customer_share.sum() == pytest.approx(1.0)
    assert grid.revenue_share.sum() == pytest.approx(1.0)


def test_spend_tier_bands_and_dormancy():
    order, floors = ["platinum", "gold", "silver", "attention"], [200_000, 50_000, 10_000, 0]
    spend = pd.Series([250_000, 200_000, 199_999, 50_000, 10_000, 9_999, -50, 300_000])
    recency = pd.Series([10, 10, 10, 10, 10, 10, 10, 365])
    got = segments.spend_tier(spend, recency, order, floors, dormant_days=365).tolist()
    assert got == [
        "platinum",
        "platinum",
        "gold",
        "gold",
        "silver",
        "attention",
        "attention",
        "attention",
    ]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e4, 1e6, allow_nan=False), min_size=1, max_size=40))
def test_spend_tier_rules_are_mutually_exclusive(spends):
    order, floors = ["platinum", "gold", "silver", "attention"], [200_000, 50_000, 10_000, 0]
    spend = pd.Series(spends)
    tiers = segments.spend_tier(spend, pd.Series([0] * len(spend)), order, floors, 365)
    rules = segments.spend_tier_rules(order, floors, 365)
    for s, t in zip(spend, tiers, strict=True):
        hits = rules[(s >= rules.spend_from) & (s < rules.spend_below)]
        assert hits.tier.tolist() == [t]


def _params(tmp_path, extra=""):
    data = tiny.write(tmp_path / "d")
    return fparams.load(tiny.params_file(tmp_path, data, extra=extra))


def test_misclassification_rule(tmp_path):
    p = _params(tmp_path)
    f = pd.DataFrame(
        {
            "customer_id": [
                "grew",
                "exactly_x4",
                "x3",
                "no_tier_gap",
                "from_nothing",
                "lost",
                "fell",
            ],
            "tier": ["attention", "attention", "attention", "gold", "silver", "attention", "gold"],
            "acquired_at": pd.to_datetime(["2023-01-01"] * 7),
            "spend_12m": [60_000, 40_000, 30_000, 150_000, 60_000, 60_000, 1_000],
            "spend_first_12m": [10_000, 10_000, 10_000, 10_000, 0, 10_000, 80_000],
            "recency_days": [5] * 7,
        }
    )
    r = segments.retier(f, p, churned=pd.Series([False] * 5 + [True, False])).set_index(
        "customer_id"
    )
    assert r.loc["grew", "recommended"] == "gold" and r.loc["grew", "gap"] == 2
    assert r.loc["grew", "growth"] == pytest.approx(5.0)
    assert r.misclassified.to_dict() == {
        "grew": True,
        "exactly_x4": True,
        "x3": False,
        "no_tier_gap": False,
        "from_nothing": True,
        "lost": False,
        "fell": False,
    }
    assert np.isinf(r.loc["from_nothing", "growth"])
    assert r.loc["fell", "gap"] == -2
    looser = _params(tmp_path / "b", extra="diagnosis:\n  misclassification_growth: 1.5\n")
    assert segments.retier(f, looser).set_index("customer_id").misclassified["x3"]


def test_tier_matrix_in_tier_order(feats, tmp_path):
    p = _params(tmp_path)
    r = segments.retier(feats.reset_index(), p)
    m = segments.tier_matrix(r, p.tiers.order)
    assert list(m.columns) == p.tiers.order
    assert m.to_numpy().sum() == 5
    assert m.loc["platinum", "gold"] == 1  # C1: 145k this year earns gold


def test_value_potential_quadrants(feats):
    vp, cuts = segments.value_potential(feats.reset_index(), value_quantile=0.5)
    q = vp.set_index("customer_id").quadrant
    # spenders: C1 145k, C5 11k -> median 78k; both spent only in the newer half-year
    assert cuts["value_cut"] == pytest.approx(78_000)
    assert q["C1"] == "star" and q["C5"] == "grow" and q["C2"] == "develop"
    summary = segments.quadrant_summary(vp)
    assert summary.customers.sum() == 5
    assert summary.revenue_share.sum() == pytest.approx(1.0)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(-1e3, 1e6, allow_nan=False), st.floats(-1, 1, allow_nan=False)),
        min_size=1,
        max_size=30,
    ),
    st.floats(0, 1e6, allow_nan=False),
    st.sampled_from([-1.0, -0.5, 0.0, 0.25, 1.0]),
)
def test_value_potential_rules_are_mutually_exclusive(rows, value_cut, potential_cut):
    frame = pd.DataFrame(rows, columns=["value", "potential"])
    # boundary values on purpose
    frame.loc[len(frame)] = [value_cut, potential_cut]
    rules = segments.value_potential_rules(value_cut, potential_cut)
    hits = sum(r.predicate(frame).astype(int) for r in rules)
    assert (hits == 1).all()
    assert segments.assign_rules(frame, rules).isin(segments.QUADRANTS).all()


def test_assign_rules_refuses_overlaps():
    frame = pd.DataFrame({"x": [1, 2]})
    rules = [
        segments.SegmentRule("a", lambda d: d.x >= 1),
        segments.SegmentRule("b", lambda d: d.x >= 2),
    ]
    with pytest.raises(ValueError, match="mutually exclusive"):
        segments.assign_rules(frame, rules)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.integers(0, 5)), max_size=20),
    st.lists(st.integers(0, 6), min_size=1, max_size=4),
    st.sampled_from(["range", "shuffled", "text"]),
    st.booleans(),
)
def test_assign_rules_equals_the_frame_version(xs, cuts, index, int_codes):
    frame = pd.DataFrame({"x": pd.array(xs, dtype="Int64")})
    if index == "shuffled":
        frame.index = np.random.default_rng(len(xs)).permutation(len(xs)) * 3
    elif index == "text":
        frame.index = [f"r{i}" for i in range(len(xs))]
    # bands [cut_i, cut_i+1): gaps, overlaps (repeated cuts give empty bands) and NA rows
    bounds = [*sorted(cuts), 99]
    rules = [
        segments.SegmentRule(
            i if int_codes else f"band{i}", lambda d, lo=lo, hi=hi: (d.x >= lo) & (d.x < hi)
        )
        for i, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:], strict=True))
    ]
    rules.append(segments.SegmentRule("low", lambda d, lo=bounds[0]: d.x < lo))
    try:
        expected = assign_by_frame(frame, rules)
    except ValueError as err:
        with pytest.raises(ValueError) as got:
            segments.assign_rules(frame, rules)
        assert str(got.value) == str(err)
        return
    pd.testing.assert_series_equal(segments.assign_rules(frame, rules), expected)


def test_assign_rules_refuses_repeated_codes():
    rules = [
        segments.SegmentRule("a", lambda d: d.x >= 1),
        segments.SegmentRule("a", lambda d: d.x < 1),
    ]
    with pytest.raises(ValueError, match="repeat"):
        segments.assign_rules(pd.DataFrame({"x": [1, 2]}), rules)


def test_growth_trend():
    f = pd.DataFrame({"spend_h1": [0.0, 100, 100, 0], "spend_h2": [100.0, 0, 300, 0]})
    assert segments.growth_trend(f).tolist() == [1.0, -1.0, 0.5, 0.0]


def test_tier_effort_shares(feats):
    e = segments.tier_effort(feats.reset_index(), ["platinum", "gold", "silver", "attention"])
    assert list(e.tier) == ["platinum", "gold", "silver", "attention"]
    for col in ("customers_share", "revenue_share", "touches_share", "tickets_share"):
        assert e[col].sum() == pytest.approx(1.0)
    assert e.set_index("tier").loc["platinum", "touches_share"] == pytest.approx(2 / 3)


def _blobs(n_per: int = 150, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [6, 6, 0, 0], [0, 6, 6, 6]])
    x = np.vstack([c + rng.normal(size=(n_per, 4)) for c in centres])
    truth = np.repeat([0, 1, 2], n_per)
    return pd.DataFrame(x, columns=["a", "b", "c", "d"]), truth


def test_clustering_recovers_known_segments():
    from sklearn.metrics import adjusted_rand_score

    x, truth = _blobs()
    value = pd.Series(np.select([truth == 0, truth == 1], [1.0, 100.0], 10.0))
    m = segments.BehaviouralSegments((2, 6), random_state=3).fit(x, value=value)
    assert m.k_ == 3
    assert adjusted_rand_score(truth, m.labels_) > 0.98
    # numbered by value per customer: the richest simulated group is segment 0
    assert np.bincount(m.labels_[truth == 1]).argmax() == 0
    assert set(m.silhouettes_) == {2, 3, 4, 5, 6}
    assert m.profile_.shape == (3, 4)
    np.testing.assert_array_equal(m.predict(x), m.labels_)


def test_clustering_is_seeded():
    x, _ = _blobs(60, seed=1)
    a = segments.BehaviouralSegments((3, 5), random_state=11).fit(x)
    b = segments.BehaviouralSegments((3, 5), random_state=11).fit(x)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    assert a.silhouettes_ == b.silhouettes_


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["p", "g", "s", "b", "x"])), max_size=30),
    st.lists(st.sampled_from(["p", "g", "s", "b", "p"]), max_size=5),
    st.sampled_from(["str", "object"]),
)
def test_tier_index_equals_map(tiers, order, dtype):
    s = pd.Series(tiers, dtype=dtype, name="tier", index=np.arange(len(tiers)) * 2)
    expected = s.map({code: i for i, code in enumerate(order)}).astype(float)
    pd.testing.assert_series_equal(segments.tier_index(s, order), expected)


def test_clustering_on_threads_equals_one_at_a_time():
    rng = np.random.default_rng(5)
    x = pd.DataFrame(rng.gamma(2.0, 1.0, size=(4000, 5)), columns=list("abcde"))
    value = pd.Series(rng.gamma(1.0, 100.0, size=len(x)))
    one = segments.BehaviouralSegments((2, 7), random_state=4, n_jobs=1).fit(x, value=value)
    two = segments.BehaviouralSegments((2, 7), random_state=4, n_jobs=2).fit(x, value=value)
    assert one.k_ == two.k_ and one.silhouettes_ == two.silhouettes_
    np.testing.assert_array_equal(one.labels_, two.labels_)
    np.testing.assert_array_equal(one.kmeans_.cluster_centers_, two.kmeans_.cluster_centers_)
    pd.testing.assert_frame_equal(one.profile_, two.profile_, check_exact=True)


def test_clustering_needs_customers():
    with pytest.raises(ValueError, match="at least 3"):
        segments.BehaviouralSegments().fit(pd.DataFrame({"a": [1.0, 2.0]}))


def test_describe_segments():
    f = pd.DataFrame(
        {
            "spend_12m": [100.0, 200, 50_000, 60_000],
            "recency_days": [400, 500, 10, 20],
            "orders_12m": [1, 1, 10, 12],
        }
    )
    labels = np.array([1, 1, 0, 0])
    profile = pd.DataFrame(
        {"recency": [-1.0, 1.0], "frequency": [0.5, -0.4], "monetary": [3.0, -3.0]}
    )
    d = segments.describe_segments(
        f, labels, revenue=[0, 100, 700, 200], churned=[True, True, False, False], profile=profile
    )
    assert d.customer_share.tolist() == [0.5, 0.5]
    assert d.revenue_share.tolist() == [0.9, 0.1]
    assert d.churn_rate.tolist() == [0.0, 1.0]
    assert d.value.tolist() == ["high", "low"] and d.activity.tolist() == ["active", "lapsed"]
    assert d.trait.tolist() == ["recency.lo", "recency.hi"]  # spend itself is never the trait


def test_silhouettes_equal_sklearns_with_one_shared_sample():
    # every k is scored on one sample whose distances are computed once: the scores must
    # be sklearn's silhouette_score with the same sample size and seed, exactly
    from sklearn.cluster import KMeans
    from sklearn.metrics import silhouette_score

    rng = np.random.default_rng(7)
    z = rng.normal(size=(1200, 4)) + rng.integers(0, 4, size=(1200, 1))
    model = segments.BehaviouralSegments((3, 5), random_state=11, silhouette_sample=500)
    model.fit(pd.DataFrame(z, columns=list("abcd")))
    zs = model.scaler_.transform(z)
    for k, score in model.silhouettes_.items():
        labels = KMeans(n_clusters=k, n_init=model.n_init, random_state=11).fit(zs).labels_
        assert score == float(silhouette_score(zs, labels, sample_size=500, random_state=11))
