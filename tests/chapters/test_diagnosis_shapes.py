"""01_diagnosis on data shapes the demo generator never makes (issue 17).

Each shape is built by :mod:`diag_shapes` from a few lines of arithmetic and the notebook's
cells run in this process (no kernel). Every slide's text is scanned for placeholders,
every chart must hold data, and a slide that cannot be made must say why and be recorded
in results.json under ``diagnosis.skipped``. The helpers behind those slides are unit
tested on hand-built frames below.
"""

from __future__ import annotations

import datetime as dt
import warnings

import diag_shapes as shapes
import numpy as np
import pandas as pd
import paramfile
import pytest
from fupan.chapters import diagnosis, funnel
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.measures import segments

# --------------------------------------------------------------------------------------
# The shape matrix, in process


@pytest.fixture(scope="module")
def decks(tmp_path_factory):
    """Each shape's deck, built once for the module."""
    out = {}
    for shape in shapes.SHAPES:
        base = tmp_path_factory.mktemp(shape)
        data, extra, supplied = shapes.build(shape, base / "data")
        pf = shapes.params_file(base, data, extra)
        out[shape] = shapes.run_diagnosis(pf, base / "run", supplied=None if supplied else False)
    return out


@pytest.mark.parametrize("shape", shapes.SHAPES)
def test_every_slide_tells_the_truth(decks, shape):
    deck = decks[shape]
    assert len(deck.slides) >= 10
    for text in deck.texts():
        assert not shapes.bad_text(text), (shape, text[:200])
    assert not deck.empty_charts, (shape, deck.empty_charts)
    skipped = deck.results.get("diagnosis", {}).get("skipped", {})
    titles = [s["title"] for s in deck.slides]
    for s in deck.slides:
        kinds = [k for k, _ in s["items"]]
        assert len(kinds) > 1, f"{shape}: nothing on '{s['title'][:80]}'"
        if "cannot" in s["title"]:
            # says why, in words, with the table, column or history that would enable it
            notes = [d["text/plain"] for k, d in s["items"] if k == "missing"]
            assert notes and any(
                w in n for n in notes for w in ("customers.", "tiers", "history", "table", "months")
            ), (shape, s["title"], notes)
    assert all(isinstance(v, str) and v for v in skipped.values())
    # one slide may explain several figures (results.json keeps a reason per figure): each
    # slide that cannot be made is explained in results.json, and each reason is on a slide
    cannot_titles = [t for t in titles if "cannot" in t]
    assert bool(cannot_titles) == bool(skipped), (shape, cannot_titles, skipped)
    shown = " ".join(deck.texts())
    squash = lambda x: " ".join(x.split())  # noqa: E731 - a slide wraps lines
    for figure, reason in skipped.items():
        assert squash(reason) in squash(shown), (shape, figure, reason)


def _cannot(deck) -> set[str]:
    return set(deck.results["diagnosis"].get("skipped", {}))


def test_each_shape_skips_what_its_data_cannot_show(decks):
    # no touches or tickets anywhere: one slide per section, not three
    for deck in decks.values():
        assert {"touches", "tickets"} <= _cannot(deck)
    assert {"churn_by_group", "tier_matrix", "tier_effort"} <= _cannot(decks["orders_only"])
    assert {"churn_by_group", "tier_matrix", "tier_effort"} <= _cannot(decks["one_tier"])
    short = _cannot(decks["short_history"])
    assert {"churn_rate", "churn_by_group", "top_n_renewal", "net_revenue_retention"} <= short
    # shapes with enough history and several tiers show the headline, groups and NRR
    for shape in ("n30", "one_day", "no_churn", "churn90"):
        assert not {"churn_rate", "churn_by_group", "net_revenue_retention"} & _cannot(
            decks[shape]
        ), shape


def test_tiers_not_supplied_say_so(decks):
    texts = " ".join(decks["orders_only"].texts())
    assert "Tiers were not supplied" in texts
    assert "the recommended tier is the only tier" in texts
    # and a shape with tiers supplied does not
    assert "Tiers were not supplied" not in " ".join(decks["churn90"].texts())


def test_no_superlative_over_one_group_or_a_tie(decks):
    for shape, deck in decks.items():
        for s in deck.slides:
            if s["title"].startswith("Highest churn"):
                n = int(s["title"].split("|")[-1].split(" of ")[1].split()[0])
                assert n >= 2, shape
    assert any(t.startswith("No single group churns most") for t in decks["no_churn"].texts())


def test_churned_counts_reconcile(decks):
    """One churn status at as_of behind every churned count; each says its population."""
    for shape in ("churn90", "n30", "orders_only"):
        d = decks[shape].results["diagnosis"]
        c = d["churn_counts"]
        assert c["churned_by_as_of"] == (
            c["churned_before_period"] + c["churned_in_period"] + c["new_churned_in_period"]
        )
        # the headline's count and denominator
        assert d["churned_customers"] == c["churned_in_period"]
        assert d["churn_at_risk"] == c["at_start"]
        # the funnel's churned stage is everyone lost by as_of
        funnel_churned = next(r for r in d["funnel"] if r["stage"] == "churned")["customers"]
        assert funnel_churned == c["churned_by_as_of"]
        # the churn failure point counts the headline's customers
        for cand in d["failure_point_candidates"]:
            if cand["key"] == "churn":
                assert cand["customers"] == c["churned_in_period"]
        # and the deck says which population each count is
        texts = " ".join(decks[shape].texts())
        assert f"Churned counts all {c['churned_by_as_of']:,} customers lost by" in texts
        assert (
            f"{c['churned_in_period']:,} of the {c['at_start']:,} customers on the books" in texts
        )


def test_funnel_at_risk_stage_is_not_empty_by_construction(decks):
    # params: dormancy 180 days, stage_at_risk_days 180 (the default): derived to 90
    for shape in ("churn90", "n30"):
        d = decks[shape].results["diagnosis"]
        assert d["stage_at_risk_days"] == 90
        assert any("half the dormancy" in t for t in decks[shape].texts())


# --------------------------------------------------------------------------------------
# The helpers, on hand-built frames


def _params(tmp_path, extra: str = "") -> fparams.Params:
    return fparams.load(paramfile.write(tmp_path, tmp_path, extra, name="t", as_of="2026-10-31"))


def test_at_risk_days(tmp_path):
    p = _params(tmp_path, "churn_definition:\n  dormancy_days: 180\n")
    with pytest.warns(UserWarning, match="half the dormancy"):
        assert funnel.at_risk_days(p) == (90, True)
    p = _params(tmp_path, "churn_definition:\n  dormancy_days: 365\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert funnel.at_risk_days(p) == (180, False)
    p = _params(
        tmp_path,
        "churn_definition:\n  dormancy_days: 100\ndiagnosis:\n  stage_at_risk_days: 400\n",
    )
    with pytest.warns(UserWarning):
        assert funnel.at_risk_days(p) == (50, True)


def test_stage_rules_use_the_derived_threshold(tmp_path):
    """A customer quiet for 120 days, dormancy 180: at risk, not 'repeat' by an empty rule."""
    p = _params(tmp_path, "churn_definition:\n  dormancy_days: 180\n")
    snap = pd.DataFrame(
        {
            "churned": [False, False, True],
            "days_since_order": [120, 10, 200],
            "orders_total": [3, 3, 3],
            "spend_recent": [1.0, 1.0, 0.0],
            "spend_before": [1.0, 1.0, 1.0],
            "orders_year": [3, 3, 1],
        }
    )
    stages = segments.assign_rules(snap, funnel.stage_rules(p))
    assert list(stages) == ["at_risk", "active", "churned"]


def test_stage_table_explains_its_blanks():
    counts = funnel.funnel_counts(pd.Series(["active", "active", "churned", "repeat"]))
    conv = pd.DataFrame(
        {
            "stage": list(funnel.STAGES[:-1]),
            "next": list(funnel.STAGES[1:]),
            "cohort": [0, 2, 3, 1, 0],
            "moved": [0, 1, 1, 0, 0],
            "rate": [np.nan, 0.5, 1 / 3, 0.0, np.nan],
            "forward": [True, True, False, False, False],
            "lost": [0, 1, 1, 0, 0],
        }
    )
    dwell = pd.DataFrame(
        {
            "stage": list(funnel.STAGES),
            "transitions": [0, 4, 5, 2, 0, 3],
            "p_stay": [np.nan, 1.0, 0.5, 0.0, np.nan, 1.0],
            "months": [np.nan, np.nan, 2.0, 1.0, np.nan, np.nan],
            "days": [np.nan, np.nan, 60.9, 30.4, np.nan, np.nan],
        }
    )
    t = funnel.stage_table(counts, conv, dwell).set_index("stage")
    why = lambda col: {k: (v if isinstance(v, str) else None) for k, v in t[col].items()}  # noqa: E731
    assert why("rate_why") == {
        "first_deal": "no_cohort",
        "repeat": None,
        "active": None,
        "declining": None,
        "at_risk": "no_cohort",
        "churned": "final",
    }
    assert why("days_why") == {
        "first_deal": "not_seen",
        "repeat": "never_left",
        "active": None,
        "declining": None,
        "at_risk": "not_seen",
        "churned": "final",
    }


def test_breakdown_status():
    assert diagnosis.breakdown_status(None) == ("none", [])
    assert diagnosis.breakdown_status(pd.Series([None, None], dtype=object)) == ("none", [])
    assert diagnosis.breakdown_status(pd.Series(["unknown"] * 3)) == ("one", ["unknown"])
    assert diagnosis.breakdown_status(pd.Series(["b", "a", None])) == ("ok", ["a", "b"])


def test_highest_needs_two_groups_and_a_strict_top():
    f = pd.DataFrame({"g": ["a", "b", "c"], "rate": [0.2, 0.5, np.nan]})
    assert diagnosis.highest(f, "rate").g == "b"
    assert diagnosis.lowest(f, "rate").g == "a"
    assert diagnosis.highest(f.iloc[[0, 2]], "rate") is None  # one rated group
    assert diagnosis.highest(f.assign(rate=[0.0, 0.0, 0.0]), "rate") is None  # a tie
    assert diagnosis.lowest(f.assign(rate=[0.3, 0.3, 0.9]), "rate") is None


def test_rfm_best_is_never_a_tautology():
    def grid(rows):
        g = pd.DataFrame(rows, columns=["r", "f", "customers", "revenue"])
        g["customer_share"] = g.customers / g.customers.sum()
        total = g.revenue.sum()
        g["revenue_share"] = g.revenue / total if total > 0 else np.nan
        return g

    share = segments.rfm_best(grid([(5, 5, 2, 60.0), (1, 1, 8, 40.0)]), 4)
    assert share == {"customer_share": 0.2, "revenue_share": 0.6, "kind": "share"}
    # the others brought nothing: say so, not "x% bring 100%"
    assert segments.rfm_best(grid([(5, 4, 3, 90.0), (1, 1, 7, 0.0)]), 4)["kind"] == "all_revenue"
    assert segments.rfm_best(grid([(5, 5, 10, 90.0)]), 4)["kind"] == "no_split"
    assert segments.rfm_best(grid([(5, 5, 3, 0.0), (1, 1, 3, 0.0)]), 4)["kind"] == "no_revenue"


def test_churn_counts_by_hand(tmp_path):
    p = _params(tmp_path, "period_start: 2025-11-01\n")
    status = pd.DataFrame(
        {
            "customer_id": list("abcdef"),
            "acquired_at": pd.to_datetime(["2024-01-01"] * 4 + ["2026-01-01", "2026-02-01"]),
            "tier": ["silver"] * 6,
            "churned_at": pd.to_datetime(
                ["2025-06-01", "2026-03-01", None, "2026-10-31", "2026-09-01", None]
            ),
        }
    )
    c = diagnosis.churn_counts(status, p)
    assert c == {
        "at_start": 3,
        "churned_in_period": 2,
        "churned_before_period": 1,
        "new_churned_in_period": 1,
        "churned_by_as_of": 4,
    }
    n_lost, _ = diagnosis.lost_revenue(
        status, pd.DataFrame({"customer_id": ["b"], "revenue": [5.0]}), p
    )
    assert n_lost == c["churned_in_period"]
    h = diagnosis.headline_churn(status, status[["customer_id"]], p)
    assert h.iloc[0].churned == c["churned_in_period"] and h.iloc[0].at_risk == c["at_start"]


def test_headline_churn_with_nobody_at_start_and_empty_dimensions(tmp_path):
    p = _params(tmp_path, "period_start: 2025-11-01\n")
    status = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "acquired_at": pd.to_datetime(["2026-03-01", "2026-04-01"]),
            "tier": ["silver", "gold"],
            "churned_at": pd.to_datetime([None, None]),
        }
    )
    dims = pd.DataFrame(
        {"customer_id": ["a", "b"], "industry": [None, None], "region": [None, None]}
    )
    h = diagnosis.headline_churn(status, dims, p)
    assert list(h.dimension) == ["overall", "core"]
    assert h.at_risk.tolist() == [0, 0]


def test_tiers_supplied(tmp_path):
    class Asks:
        def supplied(self, table, column):
            return (table, column) != ("customers", "tier")

    assert diagnosis.tiers_supplied(Asks()) is False
    import tiny

    data = tiny.write(tmp_path / "d")
    ds = fdata.load(fparams.load(tiny.params_file(tmp_path, data)))
    try:
        if not callable(getattr(ds, "supplied", None)):
            assert diagnosis.tiers_supplied(ds) is True  # tiny has a tier per customer
    finally:
        ds.close()


def test_retention_base_start():
    assert funnel.retention_base_start(dt.date(1998, 6, 30)) == dt.date(1996, 7, 1)


def test_group_breakdowns_say_why_a_dimension_is_left_out():
    feat = pd.DataFrame(
        {
            "customer_id": list("abcd"),
            "tier": ["gold", "gold", "silver", "silver"],
            "industry": [None] * 4,
            "region": ["unknown"] * 4,
        }
    )
    shown, why = diagnosis.group_breakdowns(feat, tiers_given=True)
    assert shown == ["tier"]
    assert why == [
        ("diag.cannot.no_column", {"column": "customers.industry"}),
        ("diag.cannot.one_value", {"column": "customers.region", "value": "unknown"}),
    ]
    shown, why = diagnosis.group_breakdowns(feat.drop(columns="industry"), tiers_given=False)
    assert shown == []
    assert why[0] == ("diag.cannot.tiers_not_supplied", {})
    assert why[1] == ("diag.cannot.no_column", {"column": "customers.industry"})


def test_tier_blocker():
    two = pd.Series(["gold", "silver"])
    one = pd.Series(["attention", "attention"])
    order = ["gold", "silver", "attention"]
    assert diagnosis.tier_blocker(True, order, two) is None
    assert diagnosis.tier_blocker(True, order, two, breakdown=True) is None
    assert diagnosis.tier_blocker(False, order, two)[0] == "diag.cannot.tiers_only_recommended"
    assert diagnosis.tier_blocker(True, ["member"], one) == (
        "diag.cannot.one_tier",
        {"tier": "member"},
    )
    assert diagnosis.tier_blocker(True, order, one.iloc[:0])[0] == "diag.cannot.no_current"
    # everyone in one assigned tier: the comparison with the recommended tier still holds,
    # a split by assigned tier does not
    assert diagnosis.tier_blocker(True, order, one) is None
    assert diagnosis.tier_blocker(True, order, one, breakdown=True) == (
        "diag.cannot.one_value_current",
        {"column": "customers.tier", "tier": "attention"},
    )


@pytest.mark.parametrize("shape", ["orders_only", "short_history"])
def test_chinese_deck_has_no_placeholders_either(tmp_path, shape):
    data, extra, supplied = shapes.build(shape, tmp_path / "data")
    pf = shapes.params_file(tmp_path, data, extra, lang="zh")
    deck = shapes.run_diagnosis(pf, tmp_path / "run", supplied=None if supplied else False)
    assert not [t for t in deck.texts() if shapes.bad_text(t)]
    assert not deck.empty_charts
    assert deck.results["diagnosis"]["skipped"]


def test_renewal_by_band():
    top = pd.DataFrame(
        {
            "rank": range(1, 9),
            "due": [True, True, False, True, True, True, True, True],
            "renewed": [True, False, False, True, True, True, False, False],
        }
    )
    b = diagnosis.renewal_by_band(top, bands=4)
    assert b.band.tolist() == [0, 1, 2, 3]
    assert b.due.tolist() == [2, 1, 2, 2]
    assert b.renewed.tolist() == [1, 1, 2, 0]
    assert b[["first", "last"]].values.tolist() == [[1, 2], [4, 4], [5, 6], [7, 8]]
    assert b.rate.tolist() == [0.5, 1.0, 1.0, 0.0]
