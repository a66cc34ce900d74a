"""The executive summary quotes recorded figures and nothing else."""

from __future__ import annotations

from conftest import ROOT
from fupan.core import i18n
from fupan.core import params as fparams
from fupan.report import glossary, summary

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
        # summary, background, then the metric glossary (fupan.report.glossary)
        assert len(full[0].slides) == 2 + len(glossary.slides(RESULTS, _params(lang)))


def test_driver_names_are_labels_not_identifiers():
    res = {"churn": {"top_drivers": ["median_first_response_days", "no_touch_after_first_repeat"]}}
    for lang in ("zh", "en"):
        text = " ".join(summary.summary_items(res, _params(lang))["bullets"])
        assert (
            "median_first_response_days" not in text and "no_touch_after_first_repeat" not in text
        )


def _text(items) -> str:
    return " ".join(
        [items["headline"], *items["bullets"], *(f"{a} {b}" for a, b, _ in items["tiles"])]
    )


def _placeholders(text: str) -> list[str]:
    import re

    return re.findall(r"(?<![\w])(?:nan|None|inf|NaN)(?![\w])|–", text)


def test_summary_quotes_no_placeholder_for_a_figure_that_could_not_be_made():
    res = {
        "diagnosis": {
            "churn_rate": None,  # history too short: the chapter recorded None
            "core_churn_rate": float("nan"),
            "benchmark_churn_rate": 0.12,
        },
        "ltv": {"lost_ltv": float("inf"), "lost_ltv_rate": None, "at_risk_ltv": None},
        "simulation": {"scenarios": [{"name": "sla", "roi": 0.5, "roi_low": None}]},
    }
    for lang in ("zh", "en"):
        items = summary.summary_items(res, _params(lang))
        text = _text(items)
        assert not _placeholders(text), text
        assert not items["tiles"], "no tile for a figure that was not made"


def test_summary_leaves_out_drivers_chapter_2_does_not_support():
    table = [
        {"feature": "noise_10_levels", "supported": False},
        {"feature": "median_first_response_days", "supported": True},
        {"feature": "tenure_days", "unsupported": True},
        {"feature": "orders_12m"},
    ]
    res = {
        "churn": {
            "top_drivers": ["noise_10_levels", "median_first_response_days", "tenure_days"],
            "driver_table": table,
        }
    }
    assert summary.supported_drivers(res) == ["median_first_response_days"]
    text = " ".join(summary.summary_items(res, _params("en"))["bullets"])
    assert "noise" not in text and "One churn driver" in text and "top" not in text
    res["churn"]["top_drivers"].append("orders_12m")
    text = " ".join(summary.summary_items(res, _params("en"))["bullets"])
    assert "The top 2 churn drivers" in text
    # without a flag column (chapter 2 before its change) every top driver stays
    assert summary.supported_drivers({"churn": {"top_drivers": ["a", "b"]}}) == ["a", "b"]


def test_best_option_needs_an_effect_and_a_rival():
    zero = {"name": "winback", "roi": -1.0, "roi_low": -1.0, "roi_high": -1.0, "churn_change": 0.0}
    sla = {"name": "sla", "roi": 0.8, "roi_low": 0.2, "roi_high": 1.5, "churn_change": -0.02}
    res = {"simulation": {"scenarios": [zero, sla]}}
    text = " ".join(summary.summary_items(res, _params("en"))["bullets"])
    assert "Best option" not in text and "winback" not in text
    assert "The one option with an estimable effect: sla" in text
    flagged = {**sla, "name": "touch", "roi": 2.0, "estimable": False}
    res = {"simulation": {"scenarios": [sla, flagged, {**sla, "name": "b", "roi": 0.3}]}}
    text = " ".join(summary.summary_items(res, _params("en"))["bullets"])
    assert "Best option: sla" in text
    tie = {"simulation": {"scenarios": [sla, {**sla, "name": "b"}]}}
    text = " ".join(summary.summary_items(tie, _params("en"))["bullets"])
    assert "Best option" not in text and "tie" in text
