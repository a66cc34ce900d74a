"""Validation findings: what is wrong with the input, where, and how to fix it.

The loader collects every problem before it stops, so a user fixes an export once rather
than once per error.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Severity = Literal["error", "warning", "info"]


@dataclass
class Problem:
    """One finding about the input data."""

    severity: Severity
    table: str
    column: str | None
    check: str
    count: int
    message: str
    fix: str = ""
    examples: list[dict[str, Any]] = field(default_factory=list)

    def format(self) -> str:
        where = self.table + (f".{self.column}" if self.column else "")
        text = f"[{self.severity.upper()}] {where}: {self.message}"
        if self.examples:
            text += "\n      e.g. " + "\n           ".join(_row_text(r) for r in self.examples[:5])
        if self.fix:
            text += f"\n      fix: {self.fix}"
        return text


def _row_text(row: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_clean(v)!r}" for k, v in row.items())


def _clean(v: Any) -> Any:
    if isinstance(v, float) and math.isnan(v):
        return None
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):  # numpy scalar
        return v.item()
    return v


@dataclass
class ValidationReport:
    """Every problem found, plus a per-table profile for the data-check chapter."""

    problems: list[Problem] = field(default_factory=list)
    profile: dict[str, dict[str, Any]] = field(default_factory=dict)
    present: list[str] = field(default_factory=list)
    missing_optional: list[str] = field(default_factory=list)
    #: table -> the contract columns the source had with at least one value
    #: (read through :meth:`fupan.io.dataset.Dataset.supplied`).
    supplied: dict[str, list[str]] = field(default_factory=dict)
    #: "table" or "table.column" -> how it was derived when the source lacked it
    #: (e.g. ``"customers": "orders"``, ``"customers.tier": "spend_floors"``).
    derived: dict[str, str] = field(default_factory=dict)
    #: How ``tiers.spend_floors`` were set: ``source`` ("params", or "data" when resolved
    #: from the data's spend), ``floors``, and for "data" the ``shares`` (cumulative share
    #: of customers with spend at or above each floor) and the ``rule`` in words.
    tier_floors: dict[str, Any] = field(default_factory=dict)

    def add(self, *args: Any, **kwargs: Any) -> Problem:
        p = Problem(*args, **kwargs)
        p.examples = [{k: _clean(v) for k, v in r.items()} for r in p.examples[:5]]
        self.problems.append(p)
        return p

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def format(self) -> str:
        if not self.problems:
            return "data check: no problems found"
        head = f"data check: {len(self.errors)} error(s), {len(self.warnings)} warning(s)"
        order = {"error": 0, "warning": 1, "info": 2}
        body = [p.format() for p in sorted(self.problems, key=lambda p: order[p.severity])]
        return "\n".join([head, *body])

    def to_dict(self) -> dict[str, Any]:
        return {
            "problems": [asdict(p) for p in self.problems],
            "profile": self.profile,
            "present": self.present,
            "missing_optional": self.missing_optional,
            "supplied": self.supplied,
            "derived": self.derived,
            "tier_floors": self.tier_floors,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ValidationReport:
        return cls(
            problems=[Problem(**p) for p in d.get("problems", [])],
            profile=d.get("profile", {}),
            present=d.get("present", []),
            missing_optional=d.get("missing_optional", []),
            supplied=d.get("supplied", {}),
            derived=d.get("derived", {}),
            tier_floors=d.get("tier_floors", {}),
        )


class DataValidationError(Exception):
    """The input cannot be trusted; the message names table, column, rows and the fix."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(report.format())
