"""fupan.chapters.service: first response, resolution and SLA compliance, checked by hand on tiny data.

Tiny tickets: S1 (C1 platinum, high) opened 2026-09-01 08:00, answered after 1.0 day, resolved
after 4.0; S2 (C2 gold, normal) 2025-01-10, answered after 7.0 days, resolved after 10.0; S3
(C3 silver, urgent) 2026-10-25, never answered. SLA days: platinum 1, gold 2, silver 3.5.
"""

from __future__ import annotations

import pandas as pd
import pytest
import tiny
from fupan.chapters import service
from fupan.core import params as fparams
from fupan.io import data as fdata


def _ds(tmp_path, **replace):
    data = tiny.write(tmp_path / "d", **replace)
    return fdata.load(fparams.load(tiny.params_file(tmp_path, data)))


@pytest.fixture
def ds(tmp_path):
    d = _ds(tmp_path)
    yield d
    d.close()


def test_sla_days_from_benchmarks(ds):
    assert service.sla_days(ds.params) == {
        "platinum": 1.0,
        "gold": 2.0,
        "silver": 3.5,
        "attention": 5.0,
    }


def test_review_period_levels(ds):
    row = service.service_levels(ds).iloc[0]  # S1 and S3 fall in 2025-11-01..2026-10-31
    assert (row.tickets, row.answered, row.unanswered, row.due, row.within_sla) == (2, 1, 1, 2, 1)
    assert row.sla_compliance == pytest.approx(0.5)
    assert row.median_first_response_days == pytest.approx(1.0)
    assert row.median_resolution_days == pytest.approx(4.0)
    assert row.unanswered_share == pytest.approx(0.5)


def test_whole_history_quantiles(ds):
    row = service.service_levels(ds, start="2020-01-01").iloc[0]
    assert row.tickets == 3
    assert row.median_first_response_days == pytest.approx(4.0)  # median of 1 and 7
    assert row.p90_first_response_days == pytest.approx(1 + 0.9 * 6)  # linear interpolation
    assert row.mean_first_response_days == pytest.approx(4.0)
    assert row.sla_compliance == pytest.approx(1 / 3)  # S2 took 7 days against 2


def test_by_tier_and_priority_in_order(ds):
    t = service.service_levels(ds, by=["tier", "priority"], start="2020-01-01")
    assert list(zip(t.tier, t.priority, strict=True)) == [
        ("platinum", "high"),
        ("gold", "normal"),
        ("silver", "urgent"),
    ]
    assert t.sla_compliance.tolist() == [1.0, 0.0, 0.0]
    assert t.sla_days.tolist() == [1.0, 2.0, 3.5]


def test_unanswered_ticket_is_due_only_after_its_deadline(tmp_path):
    tickets = pd.DataFrame(
        {
            "ticket_id": ["A", "B"],
            "customer_id": ["C5", "C1"],
            # C5 is silver (3.5 days: deadline after as_of); C1 platinum (1 day: passed)
            "opened_at": ["2026-10-30 12:00:00", "2026-10-29 12:00:00"],
            "first_response_at": ["", ""],
            "resolved_at": ["", ""],
            "priority": ["low", "low"],
            "category": ["x", "x"],
        }
    )
    ds = _ds(tmp_path, tickets=tickets)
    t = service.service_levels(ds, by=["tier"]).set_index("tier")
    assert t.loc["silver", "due"] == 0 and pd.isna(t.loc["silver", "sla_compliance"])
    assert t.loc["platinum", "due"] == 1 and t.loc["platinum", "sla_compliance"] == 0.0
    ds.close()


def test_customer_service_breaches(ds):
    c = service.customer_service(ds).set_index("customer_id")
    assert c.loc["C1"].breaches == 0 and c.loc["C3"].breaches == 1 and c.loc["C3"].unanswered == 1
    assert "C2" not in c.index  # S2 is before the review period


def test_backlog_trend(ds):
    b = service.backlog_trend(ds, months=3)
    assert [d.date().isoformat() for d in b.date] == [
        "2026-07-31",
        "2026-08-31",
        "2026-09-30",
        "2026-10-31",
    ]
    assert b.open.tolist() == [0, 0, 0, 1]  # S1 opened 09-01 and resolved 09-05; S3 stays open
    assert b.unanswered.tolist() == [0, 0, 0, 1]
