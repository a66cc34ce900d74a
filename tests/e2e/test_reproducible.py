"""Same data + params + code → same numbers and the same charts."""

from __future__ import annotations

import json
import re

import pytest
from conftest import ROOT
from fupan.core import params as fparams
from fupan.run import runner

pytestmark = pytest.mark.slow


def _charts(deck_html: str) -> list[str]:
    return re.findall(r'src="data:image/png;base64,([^"]+)"', deck_html)


def test_two_runs_give_identical_results_and_chart_data(review_run, tmp_path):
    data = review_run.run_dir.parent.parent / "data"
    pf = ROOT / "params" / "annual_review.yaml"
    params = fparams.load(pf, **{"data.source": str(data)})
    again = runner.run(params, pf, reports_dir=tmp_path / "again", log=lambda m: None)
    first = json.loads((review_run.run_dir / "results.json").read_text(encoding="utf-8"))
    second = json.loads((again.run_dir / "results.json").read_text(encoding="utf-8"))
    assert first == second
    a, b = (
        _charts(review_run.deck.read_text(encoding="utf-8")),
        _charts(again.deck.read_text(encoding="utf-8")),
    )
    assert len(a) == len(b) and len(a) > 10
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    assert not differ, f"charts {differ} differ between two identical runs"
    m1 = json.loads((review_run.run_dir / "manifest.json").read_text())
    m2 = json.loads((again.run_dir / "manifest.json").read_text())
    assert m1["inputs"] == m2["inputs"] and m1["params"] == m2["params"]


def test_full_review_covers_every_chapter(review_run):
    listed = fparams.load(ROOT / "params" / "annual_review.yaml").notebooks
    assert list(review_run.timings)[1:] == listed
    res = review_run.results
    for key in ("data_check", "diagnosis", "churn", "ltv", "simulation", "kpi"):
        nb = {
            "diagnosis": "01_diagnosis",
            "churn": "02_churn_root_cause",
            "ltv": "03_ltv_loss",
            "simulation": "04_strategy_simulation",
            "kpi": "05_kpi_tracking",
            "data_check": "00_data_check",
        }[key]
        if nb in listed:
            assert key in res, f"{nb} recorded nothing under '{key}'"
