"""Chapter 3's slides (fupan.chapters.clv.slides): each quotes the review's numbers, records
what it shows, and a slide that cannot be made says why in words."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import tiny
from fupan.chapters import clv
from fupan.chapters.slide import Slide
from fupan.core import i18n
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io.dataset import Dataset
from fupan.measures.outcomes import churn_status
from fupan.report import show

warnings.filterwarnings("ignore", message=".*infer_string.*")


def _connect(folder: Path, data_dir: Path) -> Dataset:
    folder.mkdir(parents=True, exist_ok=True)
    pf = tiny.params_file(folder, data_dir, extra="lang: en\n")
    return fdata.connect(fparams.load(pf), str(folder / "run"))


@pytest.fixture(scope="module")
def demo300(tmp_path_factory: pytest.TempPathFactory) -> Path:
    demo = pytest.importorskip("fupan.demo")
    out = tmp_path_factory.mktemp("demo300") / "data"
    demo.generate(out, customers=300, seed=3)
    return out


@pytest.fixture(scope="module")
def valuation(tmp_path_factory: pytest.TempPathFactory, demo300: Path) -> clv.ValuationSlides:
    ds = _connect(tmp_path_factory.mktemp("slides"), demo300)
    # a mask that leaves a mark on the ids, to see which tables the slides mask
    mask = lambda df: df.assign(customer_id="masked-" + df.customer_id.astype(str))  # noqa: E731
    return clv.valuation_slides(ds, i18n.Fmt.from_params(ds.params), mask=mask)


def _slides(d: clv.ValuationSlides) -> dict[str, Slide]:
    names = ["headline", "model", "check", "tiers", "lost_by_tier", "lost_by_reason",
             "lost_by_industry", "lost_by_cohort", "top_lost", "at_risk"]  # fmt: skip
    return {n: getattr(d, n)() for n in names}


def test_every_slide_has_words_and_records_only_chapter_keys(valuation):
    assert valuation.ok
    for name, s in _slides(valuation).items():
        show.check_text(s.title, s.finding, *s.notes, *s.skips.values())  # no placeholders, nan
        assert s.title, name
        assert all(k.startswith("ltv.") for k in s.records), name


def test_headline_quotes_the_review(valuation):
    rv, s = valuation.rv, valuation.headline()
    assert s.records["ltv.total_clv"] == pytest.approx(float(rv.current.clv.sum()), rel=1e-12)
    assert s.records["ltv.lost_ltv_rate"] == pytest.approx(rv.loss.lost / rv.loss.base)
    assert s.records["ltv.lost_ltv_gap"] == pytest.approx(
        rv.loss.rate - valuation.P.benchmarks.lost_ltv_rate
    )
    assert s.records["ltv.at_risk_ltv"] == pytest.approx(float(valuation.risk.ltv_at_risk.sum()))
    tiles = dict((k, v) for k, v, _ in s.tiles)
    assert tiles[i18n.t("ltv.tile.lost", "en")] == valuation.f.money(rv.loss.lost)
    assert valuation.f.money(rv.loss.lost) in s.title or not valuation.material


def test_breakdown_charts_hold_the_rated_groups_labelled(valuation):
    s = valuation.lost_by_tier()
    table = s.records["ltv.lost_by_tier"]
    if s.chart is None:
        pytest.skip("no tier chart on this data")
    assert list(s.chart.group) == list(table[table.base_clv > 0].group)
    assert list(s.chart.label) == [valuation.tier(g) for g in s.chart.group]
    reason = valuation.lost_by_reason()
    if reason.chart is not None:
        assert len(reason.chart) <= 10
        assert set(reason.exports) == {"ltv_lost_by_reason"}


def test_tables_shown_and_exported_with_pii_are_masked(valuation):
    def masked(df):
        return df.customer_id.str.startswith("masked-").all()

    assert masked(valuation.at_risk().exports["ltv_at_risk"])
    top = valuation.top_lost()
    assert masked(top.records["ltv.top_lost_accounts"])
    assert top.table is None or masked(top.table)


def test_tier_chart_values_are_the_positive_clvs_of_each_tier(valuation):
    s = valuation.tiers()
    merged = valuation.rv.current[["clv"]].join(valuation.attrs.set_index("customer_id")["tier"])
    for r in s.chart.itertuples():
        want = merged.clv[(merged.tier == r.group) & (merged.clv > 0)].to_numpy()
        assert sorted(r.values) == pytest.approx(sorted(want))
    assert s.chart.customers.sum() == len(valuation.rv.current)


def test_a_review_that_cannot_be_made_says_why_on_the_headline(tmp_path, tiny_data):
    ds = _connect(tmp_path, tiny_data)
    status = churn_status(ds)
    d = clv.ValuationSlides(ds, i18n.Fmt.from_params(ds.params), status, None, "too few repeat buyers", "",
                 lambda df: df)  # fmt: skip
    s = d.headline()
    assert not d.ok
    assert d.records == {"ltv.model": None, "ltv.error": "too few repeat buyers"}
    assert s.title == i18n.t("ltv.error.title", "en")
    assert "too few repeat buyers" in s.finding
    assert s.skips == {"*": s.finding}


def test_gap_note_names_the_one_group(tmp_path, tiny_data):
    ds = _connect(tmp_path, tiny_data)
    d = clv.ValuationSlides(ds, i18n.Fmt.from_params(ds.params), churn_status(ds), None, "x", "",
                 lambda df: df)  # fmt: skip
    d.rate = 0.125
    table = pd.DataFrame({"group": [clv.UNRECORDED, "retail"], "base_clv": [0.0, 10.0]})
    text = d.gap_note("one_group", "industry", "industry", table)
    assert text == i18n.t("ltv.gap.one_group", "en", what=i18n.t("ltv.what.industry", "en"),
                          group=d.label("ltv.industry_name", "retail"), rate="12.5%")  # fmt: skip
    assert d.gap_note("not_supplied", "tier", "tier", table) == i18n.t(
        "ltv.gap.not_supplied", "en", what=i18n.t("ltv.what.tier", "en"), column="tier"
    )
