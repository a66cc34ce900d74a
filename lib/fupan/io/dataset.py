"""The loaded data: :class:`Dataset` holds the staged, typed, clean tables of one source as
Ibis expressions (what every chapter function takes); :class:`MissingTableError` says that
an optional table is absent. Made by :func:`fupan.io.data.load` and
:func:`fupan.io.data.connect`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd

from fupan.core.params import Params
from fupan.io.schema import TABLES
from fupan.io.validation import ValidationReport


@dataclass
class Dataset:
    """The validated, typed tables of one data source, as Ibis expressions.

    Attributes
    ----------
    con : the Ibis backend (DuckDB by default) that holds the staged tables.
    params : the run's params.
    report : every validation finding, and a per-table profile.
    fingerprints : sha256 of every input file, for the manifest.
    cache_dir : where fitted models are kept for the other notebooks of the same run
        (:mod:`fupan.io.cache`); ``None`` outside a run.
    parent : for a :meth:`subset`, the whole dataset it was cut from.
    """

    con: Any
    params: Params
    report: ValidationReport
    fingerprints: dict[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None
    parent: Dataset | None = None
    # Ibis asks the backend for a table's schema on every ``con.table``: ~1 ms each, and a
    # feature query alone names the tables ~20 times. The staged tables never change.
    _tables: dict[str, ir.Table] = field(default_factory=dict, repr=False, compare=False)

    @property
    def root(self) -> Dataset:
        """The whole dataset: ``self``, or the one a subset was cut from."""
        return self if self.parent is None else self.parent

    def subset(self, customer_ids: Any) -> Dataset:
        """Every table restricted to these customers, held in memory in DuckDB.

        For models fitted on a sample of customers: each of their queries then reads the
        sample's rows only, not every event of every customer (a 20,000-customer sample of
        a 1M-customer dataset is 2% of the rows). Per-customer results are the same as on
        the whole dataset; what depends on all customers (the activity period, the start
        of activity tracking) is read from :attr:`root`. Nothing is cached for a subset.
        """
        ids = pd.DataFrame({"customer_id": pd.unique(pd.Series(customer_ids, dtype=object))})
        keep = ibis.memtable(ids.astype({"customer_id": str}))
        con = ibis.duckdb.connect()
        for name in self.present:
            rows = self[name].semi_join(keep, "customer_id").to_pyarrow()
            con.create_table(name, rows)
        return Dataset(
            con=con,
            params=self.params,
            report=self.report,
            fingerprints=self.fingerprints,
            cache_dir=None,
            parent=self.root,
        )

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.params.as_of)

    @property
    def present(self) -> list[str]:
        return list(self.report.present)

    def has(self, table: str) -> bool:
        return table in self.report.present

    def supplied(self, table: str, column: str) -> bool:
        """Whether the source had ``table.column`` with at least one value.

        False for a column the loader derived or filled (a ``customers`` table derived from
        orders, ``customers.tier`` filled with the spend tier, a generated ``order_id``) and
        for a column that was absent or empty: the clean table still has it, so queries run,
        but a slide about it has nothing the business supplied to show.
        """
        return column in self.report.supplied.get(table, [])

    def __getitem__(self, table: str) -> ir.Table:
        return self.table(table)

    def table(self, table: str) -> ir.Table:
        if table not in TABLES:
            raise KeyError(f"'{table}' is not a contract table; known: {list(TABLES)}")
        if not self.has(table):
            raise MissingTableError(table)
        if table not in self._tables:
            self._tables[table] = self.con.table(table)
        return self._tables[table]

    def close(self) -> None:
        try:
            self.con.disconnect()
        except Exception:  # noqa: BLE001 - closing is best effort
            pass


class MissingTableError(LookupError):
    """An optional table a section needs is not in the data source."""

    def __init__(self, table: str):
        self.table = table
        super().__init__(f"optional table '{table}' is not in the data source")
