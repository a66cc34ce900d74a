"""The consistency gate on real reviews: the diagnosis and the KPI chapter quote every
shared metric with one value, on the demo (the session's review, conftest's `review_run`),
on a subscription business (contracts only) and on the real CDNOW log.

The two shapes are the data-shape matrix's own reviews (``tests/e2e/test_shapes.py``
asserts there with :func:`shapes.check_gate`), so no review runs here for them. A review
passes the gate or fails (the runner and ``tests/inprocess.py`` enforce it); these tests pin
which metrics the chapters can quote with a value on each shape and which they both say
cannot be computed.
"""

from __future__ import annotations

import pytest
from conftest import ROOT
from shapes import check_gate

pytestmark = pytest.mark.slow


def test_gate_passes_on_the_demo_review(review_run):
    data = review_run.run_dir.parent.parent / "data"
    check_gate(
        "demo",
        review_run.results,
        ROOT / "params" / "annual_review.yaml",
        **{"data.source": str(data)},
    )
