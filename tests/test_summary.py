"""The executive summary quotes recorded figures and nothing else."""

from __future__ import annotations

from conftest import ROOT
from fupan import i18n, summary
from fupan import params as fparams

RESULTS = {
    "data_check": {"customers": 5000, "orders": 85208},
    "diagnosis": {
        "churn_rate": 0.184,
        "core_churn_rate": 0.192,
        "benchmark_churn_rate": 0.12,
        "findings": [
            {
                "title": "Service: first response 6.8 days vs 3.5",
                "metric": "x",
                "value": 6.8,
                "revenue_at_stake": 1e6,
            },
            {
                "title": "Tiering: 212 customers under-tiered",
                "metric": "y",
                "value": 212,
                "revenue_at_stake": 5e5,
            },
            {
                "title": "Touches: 41% untouched in 90 days",
                "metric": "z",
                "value": 0.41,
                "revenue_at_stake": 2e5,
            },
            {"title": "a fourth one", "metric": "w", "value": 1, "revenue_at_stake": 1},
        ],
    },
    "ltv": {"lost_ltv": 12_345_678.0, "lost_ltv_rate": 0.137, "at_risk_ltv": 4_560_000.0},
    "simulation": {
        "scenarios": [
            {"name": "sla", "roi": 1.8, "roi_low": 0.9, "roi_high": 2.7},
            {"name": "touch", "roi": 0.4, "roi_low": -0.1, "roi_high": 0.8},
        ]
    },
    "kpi": {"status": {"nps": "red", "churn": "amber", "csat": "green", "sla": "red"}},
}


def _params(lang):
    return fparams.load(ROOT / "params" / "annual_review.yaml", lang=lang)


def test_summary_quotes_recorded_figures():
    p = _params("en")
    items = summary.summary_items(RESULTS, p)
    text = (
        items["headline"] + " ".join(items["bullets"]) + " ".join(v for _, v, _ in items["tiles"])
    )
    f = i18n.Fmt.from_params(p)
    for expected in (
        f.pct(0.184),
        f.pct(0.12),
        f.pct(0.192),
        f.money(12_345_678.0),
        f.money(4_560_000.0),
        "Service: first response 6.8 days vs 3.5",
        f.pct(1.8, 0),
        f.pct(0.9, 0),
        f.pct(2.7, 0),
        "2 red, 1 amber, 1 green",
    ):
        assert expected in text, expected
    assert "a fourth one" not in text, "three failure points, not more"
    assert "touch" not in " ".join(items["bullets"]).split("Best option")[1][:10]


def test_summary_without_chapters_says_so_and_both_languages_resolve():
    for lang in ("zh", "en"):
        secs = summary.sections({}, _params(lang))
        assert secs[0].slides[0].body and not secs[0].divider
        full = summary.sections(RESULTS, _params(lang))
        assert len(full[0].slides) == 2


def test_driver_names_are_labels_not_identifiers():
    res = {"churn": {"top_drivers": ["median_first_response_days", "no_touch_after_first_repeat"]}}
    for lang in ("zh", "en"):
        text = " ".join(summary.summary_items(res, _params(lang))["bullets"])
        assert (
            "median_first_response_days" not in text and "no_touch_after_first_repeat" not in text
        )
