"""fupan.chapters.diagnosis and funnel: the functions the 01_diagnosis notebook calls once per
slide (headline figures and tiles, behavioural segments, exposed customers, the ranked
failure points and their findings, the lifecycle funnel and its table in words).

Hand-checked on small frames and on the tiny dataset (tests/tiny.py).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tiny
from fupan.chapters import diagnosis, funnel
from fupan.core import i18n
from fupan.core import params as fparams
from fupan.core.i18n import Fmt
from fupan.io import data as fdata

EN = Fmt("en", "$")


def _churn(overall_at_risk: int = 10, core_at_risk: int = 4) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "dimension": ["overall", "core"],
            "group": ["all", "core"],
            "at_risk": [overall_at_risk, core_at_risk],
            "churned": [3, 1],
            "rate": [0.3, 0.25],
            "ci_low": [0.1, 0.05],
            "ci_high": [0.6, 0.7],
            "gap": [0.18, 0.17],
        }
    )


RENEWAL = {"n": 20, "due": 10, "renewed": 8, "rate": 0.8, "target": 0.9}
SERVICE = pd.Series({"median_first_response_days": 2.5, "sla_compliance": 0.7})


def test_headline_figures_by_hand(tiny_params):
    p = fparams.load(tiny_params)
    churn = _churn()
    h = diagnosis.headline_figures(churn, RENEWAL, SERVICE, p)
    assert h["churn_rate"] == 0.3 and h["churn_rate_ci"] == [0.1, 0.6]
    assert h["core_churn_rate"] == 0.25 and h["core_churn_gap"] == 0.17
    assert h["churn_at_risk"] == 10 and h["churned_customers"] == 3
    assert h["benchmark_churn_rate"] == p.benchmarks.churn_rate
    assert h["top_n"] == p.diagnosis.top_n and h["top_n_renewal_rate"] == 0.8
    assert h["median_first_response_days"] == 2.5 and h["sla_compliance"] == 0.7
    assert h["churn_by_group"] is churn and h["top_n_renewal"] is RENEWAL
    # nothing at risk, no core customer, no renewal due, no ticket: None, not a number
    none = diagnosis.headline_figures(_churn(0, 0), {**RENEWAL, "due": 0}, None, p)
    for key in (
        "churn_rate",
        "churn_rate_ci",
        "churn_gap",
        "core_churn_rate",
        "core_churn_gap",
        "top_n_renewal_rate",
        "median_first_response_days",
        "sla_compliance",
    ):
        assert none[key] is None, key
    assert none["top_n_renewal_target"] == 0.9


def test_headline_tiles_and_bars(tiny_params):
    p = fparams.load(tiny_params)
    h = diagnosis.headline_figures(_churn(), RENEWAL, SERVICE, p)
    tiles = diagnosis.headline_tiles(h, 20, p, EN)
    assert [v for _, v, _ in tiles] == ["30.0%", "25.0%", "80.0%", "2.5 days"]
    worse_fr = 2.5 > p.benchmarks.first_response_days
    assert [c for *_, c in tiles] == ["red", "red", "red", "red" if worse_fr else "green"]
    assert tiles[2][0] == i18n.t(
        "diag.tile.top_n_renewal", "en", n=20, target=EN.pct(RENEWAL["target"])
    )
    h = diagnosis.headline_figures(_churn(10, 0), {**RENEWAL, "due": 0}, None, p)
    assert len(diagnosis.headline_tiles(h, 20, p, EN)) == 1  # only what was measured
    bars = diagnosis.headline_bars((0.3, 0.12), None, (0.8, 0.9))
    assert list(bars.metric) == ["churn", "top_n_renewal"]
    assert list(bars.lower_is_better) == [True, False]
    assert diagnosis.headline_bars(None, None, None).empty


def test_reason_words_reads_tier_codes():
    got = diagnosis.reason_words(("diag.cannot.one_tier", {"tier": "gold"}), "en", str.upper)
    assert got == i18n.t("diag.cannot.one_tier", "en", tier="GOLD")
    assert diagnosis.reason_words(None, "en") is None


def test_tier_rules_name_every_tier(tiny_params):
    p = fparams.load(tiny_params)
    text = diagnosis.tier_rules(p, EN)
    assert text.startswith(i18n.t("diag.tiers.rules", "en"))
    assert text.count("; ") == len(p.tiers.order) - 1
    for code in p.tiers.order:
        assert p.tier_label(code) in text
    assert EN.money(p.tiers.spend_floors[0]) in text
    assert "；" in diagnosis.tier_rules(p, Fmt("zh"))


def _at_start() -> tuple[pd.DataFrame, pd.DataFrame]:
    at_start = pd.DataFrame(
        {
            "customer_id": list("abcdef"),
            "tier": ["t"] * 6,
            "churned_in_period": [True, True, False, False, False, False],
        }
    )
    revenue = pd.DataFrame({"customer_id": list("abcdefg"), "revenue": [1, 2, 3, 4, 5, 6, 100.0]})
    return at_start, revenue


def test_failure_points_rank_every_candidate():
    at_start, revenue = _at_start()
    now = {
        "service": ("sla_compliance", 0.5, {"c", "g"}),  # exposed then: 2/3 churned vs 0/3
        "lifecycle": ("declining_or_at_risk_customers", 1, {"d"}),  # no excess: dropped
    }
    then = {"service": {"a", "b", "c"}, "lifecycle": {"d", "e", "f"}, "tiering": {"a"}}
    top = pd.DataFrame(
        {
            "due": [True, True, True, False],
            "renewed": [True, False, False, False],
            "revenue": [10.0, 40.0, -5.0, 99.0],
        }
    )
    ranked, cands = diagnosis.failure_points(
        now, then, at_start, revenue, (4, 1000.0), churn=(0.24, 0.12), renewal=(top, 1 / 3, 0.9)
    )
    assert [c["key"] for c in cands] == ["service", "lifecycle", "churn", "renewal"]
    assert cands[0]["revenue_at_stake"] == pytest.approx(103.0 * 2 / 3)
    assert cands[2]["revenue_at_stake"] == pytest.approx(500.0)
    # two not renewed, revenue 40 + 0 (a negative one counts as nothing); excess share of
    # the non-renewal 2/3 over 10%: (2/3 - 0.1) / (2/3)
    renewal = cands[3]
    assert renewal["customers"] == 2 and renewal["revenue_exposed"] == 40.0
    assert renewal["revenue_at_stake"] == pytest.approx(40.0 * (2 / 3 - 0.1) / (2 / 3))
    assert list(ranked.key) == ["churn", "service", "renewal"]
    assert list(ranked["rank"]) == [1, 2, 3]
    pd.testing.assert_frame_equal(ranked, diagnosis.rank_failure_points(cands))
    ranked, cands = diagnosis.failure_points({}, then, at_start, revenue, (0, 0.0))
    assert cands == [] and ranked.empty


def test_failure_findings_and_table_quote_the_figures():
    at_start, revenue = _at_start()
    ranked, _ = diagnosis.failure_points(
        {"service": ("sla_compliance", 0.5, {"c", "g"})},
        {"service": {"a", "b", "c"}},
        at_start,
        revenue,
        (4, 1000.0),
        churn=(0.24, 0.12),
    )
    extra = {"churn": {"bench": "12.0%"}, "service": {"median": "2.0 days"}}
    findings = diagnosis.failure_findings(ranked, EN, extra)
    assert [x["key"] for x in findings] == ["churn", "service"]
    first = ranked.iloc[0]
    assert findings[0]["title"] == i18n.t(
        "diag.finding.churn",
        "en",
        value="24.0%",
        revenue=EN.money(first.revenue_at_stake),
        exposed=EN.money(first.revenue_exposed),
        excess=EN.pts(first.excess_churn),
        customers="4",
        bench="12.0%",
    )
    assert findings[1]["customers"] == 2
    table = diagnosis.findings_table(findings, EN)
    assert list(table["rank"]) == [1, 2]
    assert list(table.value) == ["24.0%", "50.0%"]
    assert list(table.point) == [i18n.t(f"diag.point.{k}", "en") for k in ("churn", "service")]
    assert table.revenue_at_stake.tolist() == pytest.approx(list(ranked.revenue_at_stake))


def test_behaviour_segments_find_three_known_groups(tiny_params):
    p = fparams.load(tiny_params)
    assert p.diagnosis.segment_k_range[0] == 3
    rng = np.random.default_rng(1)
    n = 150  # 50 each: frequent recent big spenders, cooling mid ones, rare lapsed small ones
    group = np.arange(n) // 50
    pick = lambda *v: np.choose(group, v)  # noqa: E731
    features = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "recency_days": pick(10, 200, 600) + rng.integers(0, 5, n),
            "orders_12m": pick(30, 6, 1),
            "spend_12m": pick(50_000.0, 5_000.0, 300.0) * rng.uniform(0.95, 1.05, n),
            "tenure_days": np.full(n, 900),  # constant: left out of the clustering
        }
    )
    churned = (group == 2) & (np.arange(n) % 2 == 0)  # half the lapsed ones churned
    at_start = pd.DataFrame({"customer_id": features.customer_id, "churned_in_period": churned})
    revenue = features[["customer_id"]].assign(revenue=features.spend_12m)
    model, seg, fewest = diagnosis.behaviour_segments(features, at_start, revenue, p)
    assert fewest == 30
    assert model.k_ == 3
    assert (pd.crosstab(model.labels_, group) > 0).sum().tolist() == [1, 1, 1]  # recovered
    rows = seg.set_index("segment")
    lapsed, big = rows.loc[model.labels_[-1]], rows.loc[model.labels_[0]]
    assert lapsed.churn_rate == pytest.approx(0.5) and lapsed.value == "low"
    assert big.churn_rate == 0.0 and big.value == "high"
    assert big.revenue_share == pytest.approx(
        features.spend_12m[group == 0].sum() / features.spend_12m.sum()
    )
    # names in the run's language, one per segment and all different
    assert seg.name.nunique() == 3
    assert seg.name.iloc[0].startswith(i18n.t("diag.seg.name", p.lang, i=1, value="", trait="")[:2])
    model, seg, _ = diagnosis.behaviour_segments(features.head(5), at_start, revenue, p)
    assert model is None and seg.empty


@pytest.fixture
def tiny_ds(tmp_path):
    folder = tiny.write(tmp_path / "d")
    return fdata.load(fparams.load(tiny.params_file(tmp_path, folder)))


def test_lifecycle_and_exposed_at_start(tiny_ds):
    from fupan.measures import segments

    p = tiny_ds.params
    start, _ = diagnosis.review_window(p)
    life = funnel.lifecycle(tiny_ds, p.as_of, start, 3)
    assert sorted(life.snapshots.cut.unique()) == [
        pd.Timestamp(d) for d in sorted(set(funnel.month_end_dates(p.as_of, 3)) | {start})
    ]
    assert life.counts.customers.sum() == len(life.now) == 5
    pd.testing.assert_frame_equal(
        life.stages, funnel.stage_table(life.counts, life.conversion, life.dwell)
    )
    summary = life.break_summary()
    assert set(summary) == {"stage", "next", "cohort", "lost", "rate", "forward"}
    assert isinstance(summary["lost"], int)
    words = funnel.stage_table_words(life.stages, EN)
    assert list(words.columns) == [
        "stage",
        "customers",
        "share",
        "cohort",
        "moved_label",
        "rate",
        "days",
    ]
    churned = words.stage == i18n.t("diag.stage.churned", "en")
    assert (words[churned].moved_label == i18n.t("diag.stages.why.final", "en")).all()

    feats = segments.customer_features_as_of(tiny_ds, start)
    then = diagnosis.exposed_at_start(tiny_ds, feats, life.snapshots, start, p)
    assert set(then) == {"tiering", "lifecycle", "touches", "service"}
    at = life.snapshots[life.snapshots.cut == pd.Timestamp(start)]
    assert then["lifecycle"] == set(at[at.stage.isin(["declining", "at_risk"])].customer_id)
    for ids in then.values():
        assert ids <= set(feats.customer_id) | set(at.customer_id)


def _mix(rates, known=(10, 10, 10)) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "channel": ["email", "phone", "visit"],
            "share": [0.6, 0.3, 0.1],
            "known": list(known),
            "response_rate": rates,
        }
    )


def test_channel_headline_names_best_and_worst_only_when_they_stand_out():
    from fupan.chapters import touches

    title, finding = touches.channel_headline(_mix([0.1, 0.3, 0.5]), EN)
    name = lambda c: diagnosis.label("diag.channel", c, "en")  # noqa: E731
    assert title == i18n.t(
        "diag.ch.title",
        "en",
        best=name("visit"),
        best_rate="50.0%",
        worst=name("email"),
        worst_rate="10.0%",
    )
    assert finding == i18n.t("diag.ch.finding", "en", top=name("email"), share="60.0%")
    # every channel equal: no best nor worst, the most used one and how many were judged
    title, finding = touches.channel_headline(_mix([0.2, 0.2, 0.2]), EN)
    assert title == i18n.t("diag.ch.title_even", "en", top=name("email"), share="60.0%", n=3)
    assert finding is None
    title, _ = touches.channel_headline(_mix([np.nan] * 3, known=(0, 0, 0)), EN)
    assert title == i18n.t("diag.ch.title_noresp", "en", top=name("email"), share="60.0%", n=0)


def _life(lost: int, forward: bool, conv_rate: float, active_days: float) -> funnel.Lifecycle:
    brk = pd.Series(
        {
            "stage": "active",
            "next": "declining",
            "cohort": 40,
            "lost": lost,
            "rate": lost / 40,
            "forward": forward,
        }
    )
    counts = pd.DataFrame({"stage": ["active", "churned"], "customers": [30, 10]})
    conv = pd.DataFrame({"stage": ["at_risk"], "rate": [conv_rate]})
    dwell = pd.DataFrame({"stage": ["active"], "days": [active_days]})
    return funnel.Lifecycle(
        pd.DataFrame(), pd.DataFrame(), counts, conv, dwell, pd.DataFrame(), brk
    )


def test_funnel_and_stages_headlines():
    import datetime as dt

    start = dt.date(2025, 10, 31)
    t = lambda k, **v: i18n.t(k, "en", **v)  # noqa: E731
    got = funnel.funnel_headline(_life(10, False, 0.3, 200.0), start, EN)
    first = t("diag.stage.active")
    assert got == t(
        "diag.funnel.title_slide",
        step=t("diag.funnel.step", a=first, b=t("diag.stage.declining")),
        lost="10",
        cohort="40",
        share="25.0%",
        date=start,
        first=first,
    )
    assert funnel.funnel_headline(_life(0, True, 0.3, 200.0), start, EN) == t(
        "diag.funnel.title_none", n="40"
    )
    both = funnel.stages_headline(_life(10, False, 0.3, 200.0), EN)
    assert both == t("diag.stages.sep").join(
        [
            t("diag.stages.title_active", active_days="200 days"),
            t("diag.stages.title_risk", risk_rate="30.0%"),
        ]
    )
    assert funnel.stages_headline(_life(10, False, np.nan, np.nan), EN) == t(
        "diag.stages.title_plain"
    )
