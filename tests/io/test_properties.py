"""Property-based hardening: random corruption of valid data ends in a clean error or in
numbers that equal a direct computation on the cleaned data. Never a traceback, never a
silently wrong figure."""

from __future__ import annotations

import pandas as pd
import pytest
import tiny
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io.validation import DataValidationError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

AS_OF = pd.Timestamp(tiny.AS_OF)

MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "blank_amount",
                "text_amount",
                "bad_date",
                "future_date",
                "orphan",
                "dup_order",
                "refund",
                "zero",
                "blank_tier",
                "nps_out_of_range",
                "dup_customer",
            ]
        ),
        st.integers(min_value=0, max_value=9),
    ),
    min_size=0,
    max_size=4,
)


def _apply(frames: dict[str, pd.DataFrame], mutations) -> dict[str, pd.DataFrame]:
    f = {k: v.copy().astype(object) for k, v in frames.items()}
    o, c, s = f["orders"], f["customers"], f["surveys"]
    for kind, i in mutations:
        if kind == "blank_amount":
            o.loc[i, "amount"] = ""
        elif kind == "text_amount":
            o.loc[i, "amount"] = "about 10k"
        elif kind == "bad_date":
            o.loc[i, "order_date"] = "31/02/2026"
        elif kind == "future_date":
            o.loc[i, "order_date"] = "2027-03-01"
        elif kind == "orphan":
            o.loc[i, "customer_id"] = "C404"
        elif kind == "dup_order":
            o.loc[i, "order_id"] = o.loc[(i + 1) % len(o), "order_id"]
        elif kind == "refund":
            o.loc[i, "amount"] = -abs(float(tiny.frames()["orders"].amount[i]))
        elif kind == "zero":
            o.loc[i, "amount"] = 0.0
        elif kind == "blank_tier":
            c.loc[i % len(c), "tier"] = ""
        elif kind == "nps_out_of_range":
            s.loc[i % len(s), "nps"] = 11
        elif kind == "dup_customer":
            c.loc[i % len(c), "customer_id"] = c.loc[(i + 1) % len(c), "customer_id"]
    return f


def _expected_orders(f: dict[str, pd.DataFrame]) -> pd.DataFrame:
    o = f["orders"].copy()
    o = o[o.customer_id.isin(set(f["customers"].customer_id))]
    o = o[pd.to_datetime(o.order_date) <= AS_OF]
    return o.assign(amount=o.amount.astype(float))


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(mutations=MUTATIONS)
def test_random_corruption_gives_clean_error_or_right_numbers(tmp_path_factory, mutations):
    folder = tmp_path_factory.mktemp("prop")
    frames = _apply(tiny.frames(), mutations)
    data = tiny.write(folder / "d", **frames)
    params = fparams.load(tiny.params_file(folder, data))
    try:
        ds = fdata.load(params)
    except DataValidationError as exc:
        report = exc.report
        assert report.errors
        for p in report.errors:  # every error names its table and says how to fix it
            assert p.table in fdata.TABLES or p.table == "(source)"
            assert p.message
        assert str(exc).startswith("data check:")
        fatal = {k for k, _ in mutations} & {
            "blank_amount",
            "text_amount",
            "bad_date",
            "dup_order",
            "blank_tier",
            "nps_out_of_range",
            "dup_customer",
        }
        assert fatal, f"{mutations} should have loaded cleanly:\n{report.format()}"
        return
    try:
        got = (
            ds["orders"]
            .aggregate(n=ds["orders"].count(), total=ds["orders"].amount.sum())
            .to_pandas()
            .iloc[0]
        )
        exp = _expected_orders(frames)
        assert int(got.n) == len(exp)
        assert float(got.total) == pytest.approx(exp.amount.sum())
        checks = {p.check for p in ds.report.problems}
        if any(k == "orphan" for k, _ in mutations):
            assert "orphans" in checks
        if any(k == "future_date" for k, _ in mutations):
            assert "after_as_of" in checks
    finally:
        ds.close()
