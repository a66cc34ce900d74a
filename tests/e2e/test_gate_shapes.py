"""The consistency gate on real reviews: the diagnosis and the KPI chapter, run in this
process (``tests/inprocess.py``) on the demo, on a subscription business (contracts only,
``shapes.contractual``) and on the real CDNOW log (``shapes.cdnow``), quote every shared
metric with one value. Only the two chapters that share metrics run.
"""

from __future__ import annotations

from pathlib import Path

import inprocess
import paramfile
import pytest
import shapes
from fupan.core import params as fparams
from fupan.report import gate

CHAPTERS = ["01_diagnosis", "05_kpi_tracking"]


def _demo(root: Path) -> Path:
    from fupan import demo

    demo.generate(root / "data", customers=400, seed=5)
    path = root / "params.yaml"
    path.write_text(
        "name: demo gate\nkind: annual_review\nlang: en\nas_of: 2026-10-31\nseed: 5\n"
        "data:\n  source: data\n",
        encoding="utf-8",
    )
    return path


BUILDERS = {"demo": _demo, "contractual": shapes.contractual, "cdnow": shapes.cdnow}
# the metrics both chapters quote with a value on each shape (what its tables allow) ...
VALUED = {
    "demo": {"annual_churn", "nrr", "grr", "top_n_renewal", "touch_coverage"},
    "contractual": {"annual_churn", "nrr", "grr", "top_n_renewal"},
    "cdnow": {"annual_churn"},
}
# ... and those both say cannot be computed: touch coverage without touches; CDNOW's
# orders start 1997-01-01, inside the base year (1996-07-01 .. 1997-06-30) of revenue
# retention at 1998-06-30
NO_VALUE = {
    "demo": set(),
    "contractual": {"touch_coverage"},
    "cdnow": {"nrr", "grr", "touch_coverage"},
}
pytestmark = pytest.mark.slow  # three reviews of two chapters: some two minutes


@pytest.mark.parametrize("name", list(BUILDERS))
def test_gate_passes_on_a_review(tmp_path, name):
    params_path = BUILDERS[name](tmp_path)
    paramfile.update(params_path, notebooks=CHAPTERS)
    run = inprocess.review(params_path, tmp_path / "reports")
    params = fparams.load(params_path)
    assert gate.check(run.results, params) == []
    groups = gate.shared(run.results, params)
    valued = {g[0].metric for g in groups if g[0].value is not None}
    empty = {g[0].metric for g in groups if g[0].value is None}
    assert VALUED[name] <= valued, valued
    assert NO_VALUE[name] == empty, empty
