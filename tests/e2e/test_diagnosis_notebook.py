"""The 01_diagnosis notebook end to end: results.json, the deck's slides, missing tables.

Slow: each test runs a review of 00_data_check and 01_diagnosis, with the notebooks executed
in this process (``tests/inprocess.py``: no kernel start or package import per notebook; the
runner's own path is covered by the session review and ``tests/run``).
"""

from __future__ import annotations

import re
from pathlib import Path

import inprocess
import pytest
import tiny
from conftest import ROOT
from test_diagnosis import independent_churn_rate, independent_first_response

pytestmark = pytest.mark.slow

REQUIRED_KEYS = (
    "churn_rate",
    "core_churn_rate",
    "benchmark_churn_rate",
    "top_n_renewal_rate",
    "misclassified_customers",
    "sla_compliance",
    "median_first_response_days",
    "findings",
)


def _review(
    work: Path, data: Path, lang: str = "zh", benchmarks: bool = True
) -> inprocess.InProcessRun:
    work.mkdir(parents=True, exist_ok=True)
    bench = ""
    if benchmarks:
        (work / "benchmarks.yaml").write_text(
            (ROOT / "params" / "benchmarks.yaml").read_text(encoding="utf-8")
        )
        bench = "benchmarks_file: benchmarks.yaml\n"
    pf = work / "params.yaml"
    pf.write_text(
        f"name: diagnosis test\nas_of: 2026-10-31\nperiod_start: 2025-11-01\nlang: {lang}\nseed: 42\n{bench}"
        f"data:\n  source: {data}\nnotebooks:\n  - 00_data_check\n  - 01_diagnosis\n",
        encoding="utf-8",
    )
    return inprocess.review(pf, work / "reports")


def _chapter_slides(deck: str) -> list[str]:
    """The slide sections of the diagnosis chapter (after its chapter slide)."""
    sections = re.split(r'(?=<section class="slide)', deck)
    start = next(
        i
        for i, s in enumerate(sections)
        if "slide-chapter" in s and ("现状诊断" in s or "Diagnosis" in s)
    )
    out = []
    for s in sections[start + 1 :]:
        if "slide-chapter" in s:
            break
        out.append(s)
    return out


@pytest.fixture(scope="module")
def demo_data(demo_default):
    return demo_default


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory, demo_data):
    return _review(tmp_path_factory.mktemp("zh"), demo_data, "zh")


def test_results_hold_the_headline_figures(demo_run, demo_data):
    d = demo_run.results["diagnosis"]
    for key in REQUIRED_KEYS:
        assert key in d, key
    assert d["churn_rate"] == pytest.approx(independent_churn_rate(demo_data), abs=1e-12)
    assert d["median_first_response_days"] == pytest.approx(
        independent_first_response(demo_data)[0], rel=1e-9
    )
    assert d["benchmark_churn_rate"] == 0.12
    assert d["misclassified_customers"] == len(d["misclassified_customer_ids"]) > 0
    assert 0 <= d["sla_compliance"] <= 1 and 0 <= d["top_n_renewal_rate"] <= 1
    assert sum(row["customers"] for row in d["funnel"]) == d["funnel_total"] == 5000
    findings = d["findings"]
    assert 1 <= len(findings) <= 3
    assert [f["revenue_at_stake"] for f in findings] == sorted(
        (f["revenue_at_stake"] for f in findings), reverse=True
    )
    for f in findings:
        assert {"title", "metric", "value", "revenue_at_stake"} <= set(f)
        assert re.search(r"\d", f["title"]), "each finding states its number"


def test_every_slide_has_a_titled_finding_and_one_exhibit(demo_run):
    deck = demo_run.deck.read_text(encoding="utf-8")
    slides = _chapter_slides(deck)
    assert len(slides) >= 15
    for s in slides:
        title = re.search(r"<h2>(.*?)</h2>", s, re.S).group(1)
        assert re.search(r"\d", title), f"title without a number: {title}"
        charts = s.count('class="chart"') + s.count('class="dataframe fupan-table"')
        tiles = s.count('class="fupan-tiles"')
        assert charts <= 1, f"more than one chart or table on: {title}"
        assert charts + tiles >= 1 or "fupan-missing" in s or "fupan-note" in s, (
            f"nothing shown on: {title}"
        )
    assert "Traceback" not in deck


def test_english_deck_is_complete(tmp_path, demo_data):
    run = _review(tmp_path, demo_data, "en")
    slides = "".join(_chapter_slides(run.deck.read_text(encoding="utf-8")))
    text = re.sub(r"<[^>]+>|data:image/png;base64,[A-Za-z0-9+/=]+", " ", slides)
    # every word on an English slide comes from the catalogue: no Chinese left but region names
    leftover = set(re.findall(r"[\u4e00-\u9fff]+", text))
    assert not leftover, leftover


def test_missing_touches_and_tickets_are_said_and_the_rest_runs(tmp_path):
    for dropped in ("touches", "tickets"):
        data = tiny.write(tmp_path / dropped / "data", drop=(dropped,))
        run = _review(tmp_path / dropped / "work", data, "en", benchmarks=False)
        slides = _chapter_slides(run.deck.read_text(encoding="utf-8"))
        missing = [s for s in slides if "fupan-missing" in s]
        label = {"touches": "touches", "tickets": "tickets"}[dropped]
        assert any(label in s for s in missing)
        # other slides may be unable to show something else on tiny data: they say so too
        assert all(label in s or "cannot" in s for s in missing)
        d = run.results["diagnosis"]
        assert d["churn_rate"] is not None and d["funnel_total"] == 5
        if dropped == "tickets":
            assert d["sla_compliance"] is None and d["median_first_response_days"] is None
        else:
            assert d["touch_coverage"] is None
            assert d["sla_compliance"] == 0.5


def test_tables_present_but_empty_in_the_period_are_said(tmp_path):
    """Touches and tickets exist but all fall before the review period."""
    fr = tiny.frames()
    touches = fr["touches"].assign(
        touched_at=[
            "2024-09-01 10:00:00",
            "2024-10-01 09:30:00",
            "2024-01-05 14:00:00",
            "2024-08-08 11:00:00",
        ]
    )
    tickets = fr["tickets"].assign(
        opened_at=["2024-09-01 08:00:00", "2024-01-10 08:00:00", "2024-10-25 08:00:00"],
        first_response_at=["2024-09-02 08:00:00", "2024-01-17 08:00:00", ""],
        resolved_at=["2024-09-05 08:00:00", "2024-01-20 08:00:00", ""],
    )
    data = tiny.write(tmp_path / "data", touches=touches, tickets=tickets)
    run = _review(tmp_path / "work", data, "en", benchmarks=False)
    slides = "".join(_chapter_slides(run.deck.read_text(encoding="utf-8")))
    assert "No touches in the review period." in slides
    assert "No tickets in the review period." in slides
    assert run.results["diagnosis"]["funnel_total"] == 5
