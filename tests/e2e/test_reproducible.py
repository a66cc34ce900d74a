"""Same data + params + code → same numbers and the same charts.

The session's review (conftest's ``review_run``, a ``fupan review``) is run a second time
with every notebook of the shipped params executed in this process (``tests/inprocess.py``):
a second process, a second hash seed, the same data and params, and every chapter's numbers
and charts compared exactly. The runner's own path is not what is under test here; its
second run cost a kernel start and the package imports per notebook.
"""

from __future__ import annotations

import json
import re

import inprocess
import pytest
from conftest import ROOT
from fupan.core import params as fparams

pytestmark = pytest.mark.slow


def _charts(deck_html: str) -> list[str]:
    return re.findall(r'src="data:image/png;base64,([^"]+)"', deck_html)


def test_two_runs_give_identical_results_and_chart_data(review_run, tmp_path):
    from fupan.core.params import dump

    data = review_run.run_dir.parent.parent / "data"
    pf = ROOT / "params" / "annual_review.yaml"
    params = fparams.load(pf, **{"data.source": str(data)})
    m1 = json.loads((review_run.run_dir / "manifest.json").read_text())
    assert params.notebooks == m1["notebooks"]  # every chapter runs again
    again = inprocess.review(pf, tmp_path / "again", **{"data.source": str(data)})
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
    # what the manifest records of the inputs and the params, taken afresh
    assert m1["inputs"] == again.inputs
    assert m1["params"] == json.loads(
        json.dumps({**dump(params), "notebooks": params.notebooks}, default=str)
    )


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
