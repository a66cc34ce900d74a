"""The input data contract: the eight tables of DESIGN.md as code.

Every loader, validator, generator and test reads the contract from here, so a column is
named, typed and ranged in exactly one place.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

DType = Literal["str", "date", "datetime", "float", "int", "bool"]


@dataclass(frozen=True)
class Column:
    """One column of a contract table.

    Parameters
    ----------
    name : contract name of the column.
    dtype : logical type; the loader casts to it and reports rows that do not cast.
    required : a required column must exist in the source; optional ones may be absent.
    nullable : whether empty values are acceptable in a present column.
    allowed : closed vocabulary of values, if any.
    min, max : inclusive numeric range, if any.
    not_after_as_of : dates must not fall after the run's ``as_of``.
    pii : personally identifying; masked in decks meant for wide circulation.
    """

    name: str
    dtype: DType
    required: bool = True
    nullable: bool = False
    allowed: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    not_after_as_of: bool = False
    pii: bool = False
    description: str = ""


@dataclass(frozen=True)
class Table:
    """A contract table: its key, columns and foreign key to ``customers``."""

    name: str
    required: bool
    columns: tuple[Column, ...]
    key: str | None = None
    references_customers: bool = True
    # Columns whose name starts with one of these prefixes are accepted as extra columns
    # (surveys carry any number of dim_* scores).
    extra_prefixes: tuple[str, ...] = ()
    description: str = ""
    _by_name: dict[str, Column] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {c.name: c for c in self.columns})

    def column(self, name: str) -> Column:
        return self._by_name[name]

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


TOUCH_CHANNELS = ("visit", "call", "email", "sms", "app_push", "wechat", "event", "other")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent")

TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "customers",
            # derived from orders (or contracts) when absent: fupan.io.data
            required=False,
            key="customer_id",
            references_customers=False,
            description="one row per customer",
            columns=(
                Column("customer_id", "str", description="unique customer key"),
                Column(
                    "acquired_at",
                    "date",
                    required=False,
                    not_after_as_of=True,
                    description="first deal (default: the first order or contract start)",
                ),
                Column("customer_name", "str", required=False, nullable=True, pii=True),
                Column("industry", "str", required=False, nullable=True),
                Column("region", "str", required=False, nullable=True),
                Column(
                    "tier",
                    "str",
                    required=False,
                    description="the tier the business assigned today "
                    "(default: the tier trailing-12-month spend earns)",
                ),
                Column("account_manager", "str", required=False, nullable=True),
                Column("acquisition_channel", "str", required=False, nullable=True),
            ),
        ),
        Table(
            "orders",
            # a contractual business may give contracts instead (checked by fupan.io.data.load)
            required=False,
            key="order_id",
            description="one row per order; negative amount = refund",
            columns=(
                Column("order_id", "str", required=False, description="default: source row"),
                Column("customer_id", "str"),
                Column("order_date", "date", not_after_as_of=True),
                Column("amount", "float"),
                Column("category", "str", required=False, nullable=True),
            ),
        ),
        Table(
            "contracts",
            required=False,
            key="contract_id",
            columns=(
                Column("contract_id", "str"),
                Column("customer_id", "str"),
                Column("start_date", "date", not_after_as_of=True),
                # end dates lie in the future for running contracts
                Column("end_date", "date"),
                Column("annual_value", "float", min=0),
                Column("renewal_of", "str", required=False, nullable=True),
            ),
        ),
        Table(
            "touches",
            required=False,
            key="touch_id",
            columns=(
                Column("touch_id", "str"),
                Column("customer_id", "str"),
                Column("touched_at", "datetime", not_after_as_of=True),
                Column("channel", "str", allowed=TOUCH_CHANNELS),
                Column("responded", "bool", required=False, nullable=True),
            ),
        ),
        Table(
            "tickets",
            required=False,
            key="ticket_id",
            columns=(
                Column("ticket_id", "str"),
                Column("customer_id", "str"),
                Column("opened_at", "datetime", not_after_as_of=True),
                Column("first_response_at", "datetime", nullable=True, not_after_as_of=True),
                Column("resolved_at", "datetime", nullable=True, not_after_as_of=True),
                Column("priority", "str", allowed=TICKET_PRIORITIES),
                Column("category", "str", required=False, nullable=True),
            ),
        ),
        Table(
            "surveys",
            required=False,
            key="survey_id",
            extra_prefixes=("dim_",),
            columns=(
                Column("survey_id", "str"),
                Column("customer_id", "str"),
                Column("surveyed_at", "date", not_after_as_of=True),
                Column("nps", "int", min=0, max=10),
                Column("csat", "int", required=False, nullable=True, min=1, max=5),
            ),
        ),
        Table(
            "activity",
            required=False,
            key=None,
            columns=(
                Column("customer_id", "str"),
                Column("period_start", "date", not_after_as_of=True),
                Column("logins", "int", min=0),
            ),
        ),
        Table(
            "churn_events",
            required=False,
            key=None,
            columns=(
                Column("customer_id", "str"),
                Column("churned_at", "date", not_after_as_of=True),
                Column("reason", "str", nullable=True),
                Column("competitor", "str", required=False, nullable=True),
                Column("lost_value", "float", required=False, nullable=True),
            ),
        ),
        Table(
            "pilots",
            required=False,
            key=None,
            description="who was in which arm of a pilot; outcomes come from the other tables",
            columns=(
                Column("pilot", "str", description="a roadmap scenario's name"),
                Column("customer_id", "str"),
                Column("arm", "str", allowed=("treatment", "control")),
                Column("started_at", "date", not_after_as_of=True),
            ),
        ),
    )
}

#: Tables one of which must be present: orders, or contracts for a contractual business.
CORE_TABLES = ("orders", "contracts")

REQUIRED_TABLES = [name for name, t in TABLES.items() if t.required]
OPTIONAL_TABLES = [name for name, t in TABLES.items() if not t.required]
