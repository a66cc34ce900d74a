"""Cleaning typed tables by the params' rules: orphans, rows after ``as_of``, events
before a customer's acquisition, inconsistent tickets; each rule counts and reports the
rows it drops with examples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from fupan.core.params import Params
from fupan.io.contract import _examples
from fupan.io.reading import _materialise, _sql_name
from fupan.io.schema import CORE_TABLES, TABLES, Table
from fupan.io.validation import Severity, ValidationReport


@dataclass
class _Finding:
    """A cleaning check: counted in one scan with the others, examples read only if hit."""

    severity: Severity
    column: str
    check: str
    flag: str  # boolean column of ``at``: the row is kept so far and has the problem
    at: ir.Table  # the table as it was when the check ran (later steps may blank columns)
    message: Callable[[int], str]
    fix: str
    example_cols: list[str]


class _Cleaning:
    """One table under the cleaning rules.

    The rules run in order (orphans, then each date column, then the consistency checks),
    each on the rows the earlier ones kept. Rather than filtering between steps, every row
    carries a ``_keep`` flag and every check a flag column, so one scan counts them all and
    one more writes the clean table.
    """

    def __init__(self, t: ir.Table):
        self.t = t.mutate(_keep=ibis.literal(True))
        self.findings: list[_Finding] = []

    def check(
        self,
        pred: ir.BooleanValue,
        severity: Severity,
        column: str,
        check: str,
        message: Callable[[int], str],
        fix: str,
        example_cols: list[str],
    ) -> None:
        flag = f"_flag{len(self.findings)}"
        self.t = self.t.mutate(**{flag: self.t._keep & pred})
        self.findings.append(
            _Finding(severity, column, check, flag, self.t, message, fix, example_cols)
        )

    def drop(self, pred: ir.BooleanValue) -> None:
        self.t = self.t.mutate(_keep=self.t._keep & ~pred)

    def counts(self) -> dict[str, Any]:
        t = self.t
        aggs = {f.flag: t[f.flag].cast("int64").sum() for f in self.findings}
        return (
            t.aggregate(rows=t.count(), kept=t._keep.cast("int64").sum(), **aggs)
            .to_pyarrow()
            .to_pylist()[0]
        )

    def clean(self, sort: bool) -> ir.Table:
        """The kept rows; ``sort`` restores source order after a join, which may shuffle it."""
        t = self.t
        keep = [c for c in t.columns if not c.startswith("_flag") and c not in ("_row", "_keep")]
        kept = t.filter(t._keep)
        return (kept.order_by("_row") if sort else kept).select(keep)


def _cleaning_rules(
    typed: ir.Table,
    table: Table,
    params: Params,
    ids: ir.Table,
    orphans: bool = True,
    kept_ids: ir.Table | None = None,
) -> _Cleaning:
    """The cleaning rules of one table, in order; ``orphans=False`` leaves out that check.

    ``ids`` are every customer of the source, ``kept_ids`` those the clean customers table
    kept: rows of a customer the run excluded (acquired after as_of) are excluded with them
    rather than counted, and are not orphans.
    """
    name = table.name
    c = _Cleaning(typed.select(*(x for x in typed.columns if not x.startswith("_raw_"))))
    if orphans and table.references_customers and name != "customers":
        _drop_orphans(c, table, params, ids, kept_ids)
    if name == "customers":
        _drop_without_acquisition(c)
    if name == "orders" and params.data.bad_amounts == "drop":
        # reported by the column checks; the policy drops them here
        a = c.t.amount
        c.drop(a.isnull() | a.isnan().fill_null(False) | a.isinf().fill_null(False))
    _exclude_after_as_of(c, table, params)
    _check_consistency(c, name)
    return c


def _drop_orphans(
    c: _Cleaning, table: Table, params: Params, ids: ir.Table, kept_ids: ir.Table | None
) -> None:
    """Rows of customers the source does not have (by policy), then of customers the run
    excluded."""
    orphan = ~c.t.customer_id.isin(ids.customer_id)
    sev: Severity = "error" if params.data.orphans == "fail" else "warning"
    action = "the run stops" if sev == "error" else "they were dropped"
    c.check(
        orphan,
        sev,
        "customer_id",
        "orphans",
        lambda n, a=action: f"{n:,} row(s) reference customers that are not in customers; {a}",
        "export customers and events from the same snapshot, or set data.orphans: drop",
        [table.key or "customer_id", "customer_id"],
    )
    c.drop(orphan)
    if kept_ids is not None:
        excluded = ~c.t.customer_id.isin(kept_ids.customer_id)
        c.check(
            excluded,
            "warning",
            "customer_id",
            "excluded_customer",
            lambda n: (
                f"{n:,} row(s) of customers excluded from this run "
                "(acquired after as_of, or without an acquisition date); excluded with them"
            ),
            "",
            [table.key or "customer_id", "customer_id"],
        )
        c.drop(excluded)


def _drop_without_acquisition(c: _Cleaning) -> None:
    # only a derived acquired_at can be empty here: a customer with no order or contract
    c.check(
        c.t.acquired_at.isnull(),
        "warning",
        "acquired_at",
        "no_acquired_at",
        lambda n: (
            f"{n:,} customer(s) without acquired_at and without any order or "
            "contract: no acquisition date; excluded"
        ),
        "supply customers.acquired_at",
        ["customer_id"],
    )
    c.drop(c.t.acquired_at.isnull())


def _exclude_after_as_of(c: _Cleaning, table: Table, params: Params) -> None:
    """Rows dated after as_of leave the run (a ticket's later answer is blanked instead)."""
    as_of = pd.Timestamp(params.as_of)
    name = table.name
    for col in table.columns:
        if col.not_after_as_of and col.name in c.t.columns:
            dtype = "timestamp" if col.dtype == "datetime" else "date"
            limit = ibis.literal(
                as_of + pd.Timedelta(days=1) if dtype == "timestamp" else as_of.date()
            )
            v = c.t[col.name]
            late = v.notnull() & ((v >= limit) if dtype == "timestamp" else (v > limit))
            c.check(
                late,
                "warning",
                col.name,
                "after_as_of",
                lambda n: f"{n:,} row(s) dated after as_of {params.as_of}; excluded from this run",
                "expected when re-running an earlier month; otherwise check the dates",
                [table.key or "customer_id", col.name],
            )
            if col.nullable and name == "tickets" and col.name != "opened_at":
                # A response after as_of was not yet known on as_of: the ticket was open.
                c.t = c.t.mutate(**{col.name: ibis.ifelse(late, ibis.null().cast("timestamp"), v)})
            else:
                c.drop(late)


def _check_consistency(c: _Cleaning, name: str) -> None:
    """Refunds and zero orders (kept), contracts and tickets whose dates run backwards."""
    if name == "orders":
        for op, check, msg in (
            (lambda a: a < 0, "refunds", "negative amounts (refunds)"),
            (lambda a: a == 0, "zero_amount", "zero amounts"),
        ):
            c.check(
                op(c.t.amount),
                "warning",
                "amount",
                check,
                lambda n, m=msg: f"{n:,} order(s) with {m}; kept and netted",
                "",
                ["order_id", "amount"],
            )
    if name == "contracts":
        c.check(
            c.t.end_date < c.t.start_date,
            "error",
            "end_date",
            "order",
            lambda n: f"{n:,} contract(s) end before they start",
            "swap or correct start_date / end_date",
            ["contract_id", "start_date", "end_date"],
        )
    if name == "tickets":
        c.check(
            c.t.resolved_at.notnull() & (c.t.resolved_at < c.t.opened_at),
            "error",
            "resolved_at",
            "order",
            lambda n: f"{n:,} ticket(s) resolved before they were opened",
            "check the time zone and column mapping of the ticket export",
            ["ticket_id", "opened_at", "resolved_at"],
        )
        c.check(
            c.t.first_response_at.notnull() & (c.t.first_response_at < c.t.opened_at),
            "error",
            "first_response_at",
            "order",
            lambda n: f"{n:,} ticket(s) answered before they were opened",
            "check the time zone and column mapping of the ticket export",
            ["ticket_id", "opened_at", "first_response_at"],
        )


def _clean_table(con: Any, name: str, params: Params, report: ValidationReport) -> None:
    """Create one final table: orphans and rows after as_of handled by policy.

    Runs as soon as the table has passed its checks (customers first), so only one event
    table is held typed in memory at a time.
    """
    ids = con.table("typed_customers").select("customer_id")
    kept_ids = con.table("customers").select("customer_id") if name != "customers" else None
    table = TABLES[name]
    typed = con.table(f"typed_{name}")
    c = _cleaning_rules(typed, table, params, ids, kept_ids=kept_ids)
    row = c.counts()
    for f in c.findings:
        n = int(row[f.flag] or 0)
        if n:
            p = report.add(
                f.severity,
                name,
                f.column,
                f.check,
                n,
                f.message(n),
                fix=f.fix,
                examples=_examples(f.at, f.at[f.flag], f.example_cols),
            )
            if f.check == "orphans":
                _judge_orphans(con, name, p, n, int(row["rows"]), params)
    has_orphans = any(
        f.check in ("orphans", "excluded_customer") and row[f.flag] for f in c.findings
    )
    if not has_orphans:
        # Without orphans the rest of the rules keep the same rows; leaving out the
        # anti-join lets the table stream to disk in source order.
        c = _cleaning_rules(typed, table, params, ids, orphans=False)
    _materialise(con, name, c.clean(sort=has_orphans), temp=False)
    if not int(row["kept"] or 0) and not table.required and name not in CORE_TABLES:
        report.add(
            "warning",
            name,
            None,
            "empty",
            0,
            "the table has no rows; sections that need it are skipped",
        )


def _id_norm(col: str) -> str:
    # "1.0", "001", " A1 " and "a1" all read as the same key
    return f"ltrim(regexp_replace(lower(trim({col})), '\\.0+$', ''), '0')"


_MIN_ORPHANS = 5


def _judge_orphans(con: Any, name: str, p: Any, n: int, rows: int, params: Params) -> None:
    """Orphans above ``data.orphan_threshold`` are an error; a key-format mismatch is named."""
    share = n / rows if rows else 0.0
    typed = _sql_name(f"typed_{name}")
    same = con.raw_sql(
        f"SELECT count(*) FROM {typed} o WHERE o.customer_id NOT IN "
        f"(SELECT customer_id FROM typed_customers) AND {_id_norm('o.customer_id')} IN "
        f"(SELECT {_id_norm('customer_id')} FROM typed_customers)"
    ).fetchone()[0]
    if same and same >= n / 2:
        ex = con.raw_sql(
            f"SELECT o.customer_id, c.customer_id FROM {typed} o JOIN typed_customers c "
            f"ON {_id_norm('o.customer_id')} = {_id_norm('c.customer_id')} "
            "WHERE o.customer_id <> c.customer_id LIMIT 1"
        ).fetchone()
        if ex:
            p.fix = (
                f"customer_id is written differently: {ex[0]!r} in {name}, {ex[1]!r} in customers "
                "(a number format such as '1.0', leading zeros, case or spaces); export both "
                "as the same text"
            )
    # A share from a handful of rows says little about the export (1 orphan in 10 orders):
    # those are reported and dropped; from five rows on, or when every row is orphaned, the
    # share decides.
    decisive = n >= _MIN_ORPHANS or n == rows
    if decisive and share > params.data.orphan_threshold and p.severity != "error":
        p.severity = "error"
        p.message = (
            f"{n:,} row(s) ({share:.1%}) reference customers that are not in customers: more "
            f"than data.orphan_threshold ({params.data.orphan_threshold:.0%}); the run stops"
        )
        if not p.fix.startswith("customer_id is written"):
            p.fix = (
                "export customers and events from the same snapshot, or raise "
                "data.orphan_threshold if the loss is understood"
            )
