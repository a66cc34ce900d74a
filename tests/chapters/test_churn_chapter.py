"""Chapter 2 end to end: lost-customer reasons, the at-risk list, the notebook and deck, and
the acceptance checks against the demo generator's known truth.

Unit tests use hand-made frames and the tiny dataset. Tests marked slow run a review of
00_data_check and 02_churn_root_cause with the notebooks executed in this process
(``tests/inprocess.py``: no kernel start or package import per notebook; the runner's own
path is covered by the session review and ``tests/run``) or generate demo data.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import inprocess
import numpy as np
import pandas as pd
import pytest
import tiny
from conftest import ROOT
from fupan.chapters import atrisk, churn, lost, signals
from fupan.chapters.slide import Slide
from fupan.core import chapter_params, i18n
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.models import health

NOTEBOOK = ROOT / "notebooks" / "02_churn_root_cause.ipynb"


# --------------------------------------------------------------------------------------
# Lost customers


def _lost_frame():
    return pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "tier": ["gold", "gold", "silver", "silver"],
            "churned_at": pd.to_datetime(["2026-01-01"] * 4),
            "source": ["recorded", "recorded", "recorded", "dormancy"],
            "reasons": [["price"], ["price", "service"], ["service"], [lost.UNRECORDED]],
            "competitor": ["X", None, "Y", None],
            "lost_value": [100.0, 300.0, 50.0, 10.0],
            "value_source": ["recorded"] * 4,
        }
    )


def test_attribution_pareto_and_tiers_by_hand():
    lf = _lost_frame()
    att = lost.attribution(lf)
    assert att.weight.sum() == pytest.approx(4.0)
    assert att.value.sum() == pytest.approx(460.0)
    known = att[att.reason != lost.UNRECORDED]
    by_count = lost.pareto(known, "count").set_index("reason")
    assert by_count.loc["price", "count"] == pytest.approx(1.5)
    assert by_count.loc["service", "count"] == pytest.approx(1.5)
    by_value = lost.pareto(known, "value")
    # price: 100 + 150 = 250; service: 150 + 50 = 200
    assert by_value.reason.tolist() == ["price", "service"]
    assert by_value.share.tolist() == pytest.approx([250 / 450, 200 / 450])
    assert by_value.cum_share.iloc[-1] == pytest.approx(1.0)
    t = lost.by_tier(known, ["gold", "silver"])
    assert t.loc["price", "gold"] == pytest.approx(0.75) and t.loc["service", "silver"] == 1.0
    comp = lost.competitor_share(lf)
    assert comp["to_competitor"] == 2 and comp["share"] == pytest.approx(0.5)
    assert comp["value_share"] == pytest.approx(150 / 460)
    assert comp["low"] < 0.5 < comp["high"]


def test_model_reasons_and_stated_vs_model():
    contrib = pd.DataFrame(
        {
            "median_first_response_days": [0.9, -0.2, 0.1],
            "spend_change_qoq": [0.1, 0.5, -0.3],
            "touches_90d": [0.0, 0.0, -0.1],
        },
        index=["a", "b", "c"],
    )
    rf = {
        "service": ["median_first_response_days"],
        "price": ["spend_change_qoq"],
        "no_contact": ["days_since_touch"],
    }
    mr = lost.model_reasons(
        contrib, rf, groups={"touches_90d": ["touches_90d", "days_since_touch"]}
    )
    assert mr.tolist() == ["service", "price", "service"]
    t, summary = lost.stated_vs_model(_lost_frame(), mr)
    # a stated price, model service; b stated price+service, model price; c stated service, model service
    assert summary["customers"] == 3 and summary["agreement"] == pytest.approx(2 / 3)
    t = t.set_index("reason")
    assert t.loc["service", "stated_share"] == pytest.approx(1.5 / 3)
    assert t.loc["service", "model_share"] == pytest.approx(2 / 3)
    assert t.loc["price", "gap"] == pytest.approx(1 / 3 - 1.5 / 3)


def test_lost_customers_on_tiny(tmp_path):
    d = tiny.write(tmp_path / "d")
    ds = fdata.load(fparams.load(tiny.params_file(tmp_path, d)))
    try:
        lf = lost.lost_customers(ds, "2025-01-01", "2026-10-31").set_index("customer_id")
    finally:
        ds.close()
    # C2 recorded (service, CompA, 70,000); C3 and C4 dormant, valued at their last year's spend
    assert sorted(lf.index) == ["C2", "C3", "C4"]
    assert lf.loc["C2", "reasons"] == ["service"] and lf.loc["C2", "lost_value"] == 70_000
    assert lf.loc["C2", "value_source"] == "recorded" and lf.loc["C2", "competitor"] == "CompA"
    assert lf.loc["C3", "reasons"] == [lost.UNRECORDED]
    assert lf.loc["C3", "lost_value"] == 12_000 and lf.loc["C4", "lost_value"] == 3_000
    assert lf.loc["C3", "churned_at"] == pd.Timestamp("2025-02-14")


# --------------------------------------------------------------------------------------
# At-risk list


def test_reasons_in_words_use_labels_and_units():
    rng = np.random.default_rng(0)
    n = 3000
    df = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "median_first_response_days": rng.gamma(2, 1.5, n),
            "weeks_without_login": rng.integers(0, 12, n).astype(float),
            "spend_change_qoq": rng.uniform(-1, 1, n),
        }
    )
    eta = (
        -3
        + 0.5 * df.median_first_response_days
        + 0.2 * df.weeks_without_login
        - 1.0 * df.spend_change_qoq
    )
    y = rng.random(n) < 1 / (1 + np.exp(-eta))
    m = health.LearnedHealth(
        ["median_first_response_days", "weeks_without_login", "spend_change_qoq"]
    )
    m.fit(df, y, df.customer_id)
    worst = df.iloc[[int(np.argmax(eta))]]
    zh = atrisk.reasons_in_words(m, worst, "zh", i18n.Fmt("zh"))[0]
    en = atrisk.reasons_in_words(m, worst, "en", i18n.Fmt("en"))[0]
    assert "首次响应时长中位数" in zh and " 天" in zh
    assert "Median first-response time" in en and "days" in en
    assert en.count(";") == 2  # three reasons
    assert re.search(r"Spend change quarter on quarter: [+-]\d+%", en)


@pytest.mark.slow
def test_at_risk_list_on_generated_data(tmp_path, demo_small):
    p = fparams.load(tiny.params_file(tmp_path, demo_small))
    ds = fdata.load(p)
    try:
        model = atrisk.train(ds, months=12)
        red = atrisk.at_risk_list(ds, model=model)
        everyone = atrisk.at_risk_list(ds, model=model, bands=("red", "amber", "green"), lang="en")
    finally:
        ds.close()
    assert list(red.columns) == atrisk.COLUMNS
    assert (red.band == "red").all() and red.score.is_monotonic_increasing
    assert red.reasons.str.len().min() > 0 and red.account_manager.notna().all()
    # the red share of live customers is near the alert volume chosen on the snapshots
    assert 0.03 < len(red) / len(everyone) < 0.25
    assert set(red.customer_id) <= set(everyone.customer_id)
    assert everyone.churn_probability.between(0, 1).all()


# --------------------------------------------------------------------------------------
# Labels


#: The modules that word chapter 2's slides and draw its charts (the notebook calls them).
WORDING = [
    ROOT / "lib" / "fupan" / "chapters" / f"{m}.py" for m in ("churn", "signals", "lost", "atrisk")
] + [ROOT / "lib" / "fupan" / "report" / "plots" / "churn.py"]


def test_every_label_the_notebook_uses_exists_in_both_languages():
    src = "\n".join("".join(c["source"]) for c in json.loads(NOTEBOOK.read_text())["cells"])
    src += "\n".join(p.read_text(encoding="utf-8") for p in WORDING)
    src = re.sub(r"\bch\.t\(|\bt\(|i18n\.t\(", "nb.t(", src)
    keys = set(re.findall(r'nb\.t\(\s*"([a-z0-9_.]+)"', src))
    recorded = set(re.findall(r'nb\.record\(\s*"([a-z0-9_.]+)"', src))
    keys |= set(re.findall(r'"(churn\.[a-z0-9_.]+)"', src)) - recorded
    cat = i18n.catalogue()
    missing = sorted(k for k in keys if k.startswith("churn.") and k not in cat)
    assert not missing, missing
    # keys built from parts: every value they can take
    for prefix, values in {
        "churn.band.": ("red", "amber", "green"),
        "churn.nps.": ("promoter", "passive", "detractor", "none"),
        "churn.hand.": tuple(chapter_params.ChurnParams().hand_weights),
        "churn.rule.": tuple(chapter_params.ChurnParams().rules),
        "churn.reason.": (*fparams.ChurnDefinition().reasons, lost.UNRECORDED),
        "churn.acol.": tuple(atrisk.COLUMNS),
        "churn.col.": ("rule", "flagged", "precision", "lift", "recall", "lead", "churners"),
        "churn.dcol.": ("rank", "feature", "or", "hr", "gbm", "ranks", "verdict"),
        "churn.svm.col.": ("reason", "stated_share", "model_share", "gap"),
    }.items():
        for v in values:
            for lang in ("zh", "en"):
                assert i18n.t(prefix + v, lang)


def test_notebook_is_committed_without_outputs_and_with_the_model_parameters():
    nb = json.loads(NOTEBOOK.read_text())
    model = json.loads((ROOT / "notebooks" / "00_data_check.ipynb").read_text())
    params = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    model_params = [
        c for c in model["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])
    ]
    assert "".join(params[0]["source"]) == "".join(model_params[0]["source"])
    for c in nb["cells"]:
        if c["cell_type"] == "code":
            assert not c.get("outputs") and c.get("execution_count") is None


# --------------------------------------------------------------------------------------
# The slides' words


def test_a_slide_that_cannot_be_made_records_its_title_and_why():
    s = Slide("No drivers", "The history is too short.", skip="drivers")
    assert s.reason == "No drivers. The history is too short."
    assert not s.made
    assert Slide("Title only", None, skip="x").reason == "Title only"

    class Results:
        def __init__(self):
            self.recorded, self.skipped = {}, []

        def record(self, key, value):
            self.recorded[key] = value

        def skip(self, section, key, why):
            self.skipped.append((section, key, why))

    r = Results()
    s.records = {"churn.x": 1}
    s.skips = {"y": "No surveys were given."}
    s.record(r, "churn")
    assert r.recorded == {"churn.x": 1}
    assert r.skipped == [
        ("churn", "y", "No surveys were given."),
        ("churn", "drivers", "No drivers. The history is too short."),
    ]


def test_review_on_tiny_data_says_why_each_model_slide_cannot_be_made(tmp_path):
    d = tiny.write(tmp_path / "d")
    ds = fdata.load(fparams.load(tiny.params_file(tmp_path, d, extra="lang: en\n")))
    try:
        ch = churn.review(ds)
        res = ch.results()
        # five customers: no model can be fitted, and every headline says so in words
        assert not ch.can_model and not ch.can_drivers
        assert res["health_auc"] is None and res["top_drivers"] is None
        assert res["drivers_skipped"]["reason"] in ("history", "events")
        o = churn.overview(ch)
        assert o.slide.skip == "health" and not o.tiles
        assert str(churn.MIN_EVENTS) in o.slide.title
        assert o.bullets == [
            i18n.t("churn.overview.b_drivers_skipped", "en", why=churn.drivers_why(ch))
        ]
        for s, key in (
            (churn.weights_slide(ch), "health_weights"),
            (churn.forest_slide(ch), "drivers"),
        ):
            assert s.skip == key and len(s.finding.split()) >= 3
        km, s = signals.survival_by_tier(ch)
        assert (km is None) == bool(s.skip)
        sat = signals.satisfaction(ch)
        assert signals.satisfaction_slide(ch, None).missing == "surveys"
        assert signals.satisfaction_slide(ch, sat).skip in (None, "satisfaction")
        lr = lost.review(ds, ch.status)
        slide = lost.pareto_slide(lr, ds, i18n.Fmt("en"))
        assert lr.has_reasons == (slide.skip is None)
    finally:
        ds.close()


def test_rules_slide_never_calls_a_rule_without_lift_a_warning():
    ch = _FakeReview(
        pd.DataFrame(
            {
                "rule": ["a", "b"],
                "available": [True, True],
                "precision": [0.05, 0.08],
                "lift": [0.9, 1.0],
                "warning": [False, False],
                "precision_low": [0.02, 0.04],
                "precision_high": [0.1, 0.15],
                "flagged_share": [0.2, 0.3],
                "recall": [0.3, 0.5],
                "median_lead_days": [40.0, float("nan")],
                "churners_flagged": [3, 5],
                "churners": [10, 10],
            }
        )
    )
    s = signals.rules_slide(ch)
    assert s.title == i18n.t("churn.signals.title_no_warning", "en", n=2) and s.skip is None
    # the table shows every backtested rule, a rule that is no warning sign said so
    assert list(s.table.rule) == ["a", "b"] and s.columns["lift"] == i18n.t("churn.col.lift", "en")
    assert all(i18n.t("churn.signals.not_warning", "en") in v for v in s.table.lift)
    assert s.table.lead.iloc[1] == i18n.t("churn.value.none_flagged", "en")
    ch.rules.loc[1, ["lift", "warning"]] = [2.0, True]
    s = signals.rules_slide(ch)
    assert "2.0" in s.title and "b" in s.title and len(s.table) == 2


class _FakeReview:
    """What the rule slides read from a :class:`fupan.chapters.churn.ChurnReview`."""

    lang, horizon, base_rate, n_dates = "en", 90, 0.05, 12
    fmt = i18n.Fmt("en")
    params = fparams.Params.model_construct(churn=chapter_params.ChurnParams())

    def __init__(self, rules):
        self.rules = rules

    backtested = churn.ChurnReview.backtested
    warnings = churn.ChurnReview.warnings

    def t(self, key, **v):
        return i18n.t(key, "en", **v)

    def rule_label(self, rule):
        return rule

    lead_text = churn.ChurnReview.lead_text


def test_trend_needs_two_surveyed_months():
    trend = pd.DataFrame({"nps": [np.nan, 10.0], "churn_rate": [0.1, 0.2]})
    s = signals.trend_slide(_FakeReview(pd.DataFrame()), trend)
    assert s.skip == "nps_trend"


def test_competitor_slide_without_lost_value_and_without_competitors():
    comp = {"share": 0.0, "low": 0.0, "high": 0.2, "value_share": float("nan"), "by_competitor": []}
    f = i18n.Fmt("en")
    s = lost.competitor_slide(comp, "en", f)
    want = i18n.t(
        "churn.tier_reasons.title_novalue",
        "en",
        share=f.pct(0.0),
        lo=f.pct(0.0),
        hi=f.pct(0.2),
        vshare="",
    )
    assert s.title == want
    assert s.finding == i18n.t("churn.tier_reasons.finding_none", "en")


def test_at_risk_words_quote_count_share_and_cut_off():
    model = type("M", (), {"thresholds_": {"red": 12.4}})()
    title, finding = atrisk.list_words(
        pd.DataFrame({"x": range(5)}), 50, model, "en", i18n.Fmt("en")
    )
    assert title == i18n.t("churn.atrisk.title", "en", n="5", share=i18n.Fmt("en").pct(0.1))
    assert "12" in finding


# --------------------------------------------------------------------------------------
# End to end


def _review(work: Path, data: Path, lang: str = "zh", extra: str = "") -> inprocess.InProcessRun:
    work.mkdir(parents=True, exist_ok=True)
    pf = work / "params.yaml"
    pf.write_text(
        f"name: churn test\nas_of: 2026-10-31\nperiod_start: 2025-11-01\nlang: {lang}\nseed: 42\n"
        f"benchmarks_file: null\ndata:\n  source: {data}\n"
        "notebooks:\n  - 00_data_check\n  - 02_churn_root_cause\n" + extra,
        encoding="utf-8",
    )
    return inprocess.review(pf, work / "reports")


def _chapter_text(deck_path: Path) -> str:
    deck = deck_path.read_text(encoding="utf-8")
    start = deck.index('id="s-02_churn_root_cause"')
    return re.sub(r"<[^>]+>", " ", deck[start:])


@pytest.mark.slow
def test_tiny_data_runs_and_says_what_it_skips(tmp_path):
    data = tiny.write(tmp_path / "d")
    res = _review(tmp_path / "run", data, "en")
    c = res.results["churn"]
    assert c["at_risk_count"] is None and c["top_drivers"] is None  # too few events to model
    assert len(c["signal_backtest"]) == 6
    text = _chapter_text(res.deck)
    assert "Too few churn events" in text


@pytest.mark.slow
def test_missing_optional_tables_are_said_on_their_slides(tmp_path):
    data = tiny.write(tmp_path / "d", drop=("surveys", "churn_events", "activity", "touches"))
    res = _review(tmp_path / "run", data, "zh")
    text = _chapter_text(res.deck)
    for table in ("surveys", "churn_events", "activity", "touches"):
        name = i18n.t(f"table.{table}", "zh")
        assert f"缺少可选数据表「{name}」" in text, table
    rules = {r["rule"]: r for r in res.results["churn"]["signal_backtest"]}
    assert not rules["no_login_weeks"]["available"] and not rules["detractor"]["available"]
    assert rules["spend_down"]["available"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, demo_default):
    data = demo_default
    run = _review(tmp_path_factory.mktemp("run"), data, "zh")
    return run, json.loads((data / "truth.json").read_text(encoding="utf-8"))


@pytest.mark.slow
def test_acceptance_top_drivers_match_the_planted_truth(demo_run):
    run, truth = demo_run
    c = run.results["churn"]
    assert set(c["top_drivers"]) == set(truth["effect_ranking"][:3])
    assert not set(c["top_drivers"]) & set(truth["null_features"])
    table = {r["feature"]: r for r in c["driver_table"]}
    for f in c["top_drivers"]:
        direction = np.sign(truth["effects"][f]["log_hazard_ratio"])
        assert table[f]["direction"] == direction


@pytest.mark.slow
def test_acceptance_health_score_judged_on_a_later_period(demo_run):
    run, _ = demo_run
    c = run.results["churn"]
    train_end = pd.Timestamp(c["snapshots"]["train_period"][1])
    test_start = pd.Timestamp(c["snapshots"]["test_period"][0])
    # every training label window ends before the test period starts
    assert train_end + pd.Timedelta(days=c["snapshots"]["horizon_days"]) <= test_start
    assert (
        0.5 < c["health_auc"] <= 1
        and c["health_auc_ci"][0] < c["health_auc"] < c["health_auc_ci"][1]
    )
    assert c["health_precision_at_alert"] > c["snapshots"]["base_rate"]
    assert c["median_lead_days"] > 0
    text = _chapter_text(run.deck)
    said = "学习权重优于人工权重" in text
    assert said == c["learned_beats_hand"]
    if not c["learned_beats_hand"]:
        assert "并未显著优于" in text or "不如人工权重" in text
    for r in c["signal_backtest"]:
        assert {"precision", "recall", "lift", "median_lead_days", "churners_flagged"} <= set(r)


@pytest.mark.slow
def test_sampled_models_state_the_sample_and_its_precision(tmp_path, demo_small):
    run = _review(tmp_path, demo_small, "en", "churn:\n  max_model_customers: 800\n")
    c = run.results["churn"]
    assert c["snapshots"]["sampled"] is True
    text = " ".join(_chapter_text(run.deck).split())
    low, high = c["health_auc_ci"]
    assert "a random sample of 800 of 1,500 customers" in text
    assert (
        f"AUC on the held-out months is {c['health_auc']:.2f} (95% interval {low:.2f}–{high:.2f})"
        in text
    )


@pytest.mark.slow
def test_acceptance_at_risk_export(demo_run):
    run, _ = demo_run
    c = run.results["churn"]
    exports = run.run_dir / "exports"
    csv = pd.read_csv(exports / "at_risk.csv", encoding="utf-8-sig")
    xlsx = pd.read_excel(exports / "at_risk.xlsx")
    assert len(csv) == len(xlsx) == c["at_risk_count"] > 0
    assert i18n.t("churn.acol.reasons", "zh") in csv.columns


# a value shown in place of a number: "–" standing alone (ranges like 0.64–0.73 are fine),
# or a Python/NumPy missing value written out
_PLACEHOLDER = re.compile(r"(?:^|[\s(:：])–(?:$|[\s),，。.])|\bnan\b|\bNone\b|\binf\b")


@pytest.mark.slow
def test_orders_only_log_runs_and_says_why_in_words(tmp_path):
    # a two-table transaction log (orders + key-only customers, no churn_events); industry
    # is a 10-level column assigned at random, region a planted driver
    import orders_only

    data, as_of = orders_only.write(tmp_path / "d", n=1500, seed=0)
    work = tmp_path / "run"
    work.mkdir()
    pf = orders_only.params_file(
        work,
        data,
        as_of,
        "lang: en\nseed: 1\nnotebooks:\n  - 00_data_check\n  - 02_churn_root_cause\n",
    )
    res = inprocess.review(pf, work / "reports")
    c = res.results["churn"]
    assert c["driver_sample"]["dormancy_windows"] is True
    assert c["top_drivers"] and "industry" not in c["top_drivers"]
    assert "industry" in c["unsupported_drivers"]
    table = {r["feature"]: r for r in c["driver_table"]}
    assert table["industry"]["supported"] is False and table["industry"]["levels"] == 10
    weights = {r["group"] for r in c["health_weights"]}
    assert "industry" not in weights
    text = " ".join(_chapter_text(res.deck).split())
    assert not _PLACEHOLDER.findall(text), _PLACEHOLDER.findall(text)
    assert "a customers.tier column with two or more tiers would enable" in text.lower()
    assert "Satisfaction vs churn: no surveys" in text
