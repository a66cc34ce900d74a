"""Typing the staged text against the data contract, and the contract's checks.

Maps source columns onto contract columns (with 'did you mean' for near misses), maps
vocabularies (tiers, statuses) through the params' value maps, casts each column to its
contract type with ``TRY_CAST`` so bad values are counted and shown, and checks
nulls, ranges and finiteness (:mod:`fupan.io.schema` says what the contract is).
"""

from __future__ import annotations

import re
import string
from typing import Any

import ibis
import ibis.expr.types as ir

from fupan.core.params import Params
from fupan.io.reading import ROW_BASE, _materialise_sql, _sql_name, _sql_string
from fupan.io.schema import TABLES, Column, Table
from fupan.io.validation import Severity, ValidationReport

_TRUE = ("true", "t", "1", "yes", "y", "是", "对", "true.")


_FALSE = ("false", "f", "0", "no", "n", "否", "错")


def _examples(
    t: ir.Table, pred: ir.BooleanValue, cols: list[str], n: int = 5
) -> list[dict[str, Any]]:
    # a table without its own key names customer_id twice (as key and as the column)
    keep = list(dict.fromkeys(c for c in ["_row", *cols] if c in t.columns))
    rows = t.filter(pred).select(keep).order_by("_row").limit(n).to_pyarrow().to_pylist()
    return [
        {("row" if k == "_row" else k.removeprefix("_raw_")): v for k, v in r.items()} for r in rows
    ]


def _strip(v: ir.StringValue) -> ir.StringValue:
    """``v.strip()``, with the trim skipped where it cannot change the value.

    DuckDB's ``trim`` with a set of characters costs ~140 ns a value (most of the typing
    of a large table); a value whose first character is above " " and whose last is no
    whitespace is its own trim, and both tests are byte comparisons.
    """
    edge = v.ascii_str() > 32
    # what ``strip`` removes: Python's string.whitespace, every one of them <= " "
    for ch in string.whitespace:
        edge &= ~v.endswith(ch)
    return ibis.ifelse(edge, v, v.strip())


def _blank(v: ir.StringValue) -> ir.BooleanValue:
    return v.isnull() | (_strip(v) == "")


# Currency signs and spaces around or inside a number ("¥ 1 234").
_MONEY_JUNK = r"[¥$€£\s]"


# Without a number_format, a comma is accepted only as a thousands separator in full groups
# of three before an optional decimal point: "1,234.5" yes; "683,63" and "1.234,50" are
# comma decimals, which a cleaner that drops commas would read as 68,363 and 123,450.
_US_THOUSANDS = r"^[-+]?\d{1,3}([,，]\d{3})+(\.\d*)?$"


_SEPARATORS = r"[,，]"


_SEPARATED_NUMBER = r"^[-+]?[0-9.]*[,，][0-9.,，]*$"


def _parse_number(s: ir.StringValue, fmt: Any = None) -> ir.FloatingValue:
    """Parse number text; a value whose separators could mean two things is NULL.

    A plain number casts directly; only values that fail are cleaned (the clean-up is a
    regex, ~3x the cast). A value that casts directly has no separators inside it, so the
    result is the one the clean-up would give. ``fmt`` (a
    :class:`fupan.core.params.NumberFormat`) names the decimal and thousands marks; a value that
    does not follow it is NULL too.
    """
    cleaned = s.re_replace(_MONEY_JUNK, "")
    if fmt is None:
        alt = ibis.ifelse(
            cleaned.re_search(_US_THOUSANDS),
            cleaned.re_replace(_SEPARATORS, ""),
            cleaned,
        )
        return ibis.coalesce(s.try_cast("float64"), alt.try_cast("float64"))
    dec, th = re.escape(fmt.decimal), re.escape(fmt.thousands)
    grouped = rf"^[-+]?\d{{1,3}}({th}\d{{3}})+({dec}\d*)?$" if th else r"^$"
    plain = rf"^[-+]?\d*({dec}\d*)?$"
    ok = cleaned.re_search(grouped) | cleaned.re_search(plain)
    text = cleaned.re_replace(th, "") if th else cleaned
    if fmt.decimal != ".":
        text = text.replace(fmt.decimal, ".")
    return ibis.ifelse(ok, text.try_cast("float64"), ibis.null().cast("float64"))


def _one_of(v: ir.StringValue, values: tuple[str, ...]) -> ir.BooleanValue:
    """``v.isin(values)`` written as ``=`` comparisons: DuckDB turns an IN list of five or
    more constants into a join, which does not keep the rows in their order, and the typed
    table must hold them in the source's order (its row ids number the source rows)."""
    return ibis.or_(*(v == x for x in values))


def _typed(raw: ir.Value, col: Column, fmt: Any = None) -> tuple[ir.Value, bool]:
    """The contract-typed column, and whether a non-blank value can fail to type.

    A source column that already has the contract's type is used as it is: its text form
    would parse back to the same value, so no value can fail. Any other column is typed from
    its text.
    """
    native = _native(raw, col)
    if native is not None:
        return native, False
    if not raw.type().is_string():
        raw = raw.cast("string")
    s = _strip(raw).nullif("")
    if col.dtype == "str":
        return s, False
    if col.dtype in ("date", "datetime"):
        # Accept 2026-01-05, 2026/1/5, 2026.01.05 and an optional time; other orders are
        # ambiguous (05/01/2026) and are reported instead of guessed. The pattern can only
        # match with a separator as fifth character, so other values skip the regex.
        norm = ibis.ifelse(
            s.substr(4, 1).isin(["/", ".", "年"]),
            s.re_replace(r"^(\d{4})[/.年](\d{1,2})[/.月](\d{1,2})日?", r"\1-\2-\3"),
            s,
        )
        return norm.try_cast("date" if col.dtype == "date" else "timestamp"), True
    if col.dtype == "float":
        return _parse_number(s, fmt), True
    if col.dtype == "int":
        f = _parse_number(s, fmt)
        # try_cast: a whole number beyond int64 (or nan/inf) is a bad value, not a crash.
        return ibis.ifelse(f % 1 == 0, f.try_cast("int64"), ibis.null().cast("int64")), True
    if col.dtype == "bool":
        low = s.lower()
        return ibis.ifelse(
            _one_of(low, _TRUE),
            True,
            ibis.ifelse(_one_of(low, _FALSE), False, ibis.null().cast("boolean")),
        ), True
    raise ValueError(col.dtype)


def _native(raw: ir.Value, col: Column) -> ir.Value | None:
    """``raw`` as the contract type when its own type is that type, else None."""
    t = raw.type()
    if col.dtype == "date" and t.is_date():
        return raw
    if col.dtype == "datetime" and t.is_timestamp() and t.timezone is None and t.scale in (None, 6):
        return raw
    if col.dtype == "float" and t.is_float64():
        return raw
    if col.dtype == "float" and t.is_integer() and not t.is_uint64():
        # An integer converts to the same double its digits parse to (both round to nearest).
        return raw.cast("float64")
    if col.dtype == "int" and t.is_integer() and not t.is_uint64():
        return raw.cast("int64")
    if col.dtype == "bool" and t.is_boolean():
        return raw
    return None


def _fix_for_type(col: Column) -> str:
    return {
        "date": "use ISO dates (YYYY-MM-DD); day-first or month-first dates are ambiguous",
        "datetime": "use ISO timestamps (YYYY-MM-DD HH:MM:SS)",
        "float": "use plain numbers (a decimal point, no currency text)",
        "int": "use whole numbers",
        "bool": "use true/false (or 1/0, yes/no, 是/否)",
    }.get(col.dtype, "")


def _map_columns(
    raw_cols: list[str], table: Table, params: Params, report: ValidationReport
) -> dict[str, str] | None:
    """contract column -> raw column name; reports missing required columns."""
    mapping = {src: dst for src, dst in params.data.columns.get(table.name, {}).items()}
    bad_targets = [dst for dst in mapping.values() if dst not in table.column_names]
    for dst in bad_targets:
        report.add(
            "error",
            table.name,
            dst,
            "mapping",
            0,
            f"data.columns maps a source column onto '{dst}', which is not a contract column",
            fix=f"map onto one of: {', '.join(table.column_names)}",
        )
    lower = {c.lower(): c for c in raw_cols}
    out: dict[str, str] = {}
    for src, dst in mapping.items():
        if src in raw_cols:
            out[dst] = src
        elif src.lower() in lower:
            out[dst] = lower[src.lower()]
    for name in table.column_names:
        if name not in out and name.lower() in lower:
            out[name] = lower[name.lower()]
    missing = [c for c in table.required_columns if c not in out]
    _warn_near_misses(raw_cols, table, out, report)
    if missing:
        import difflib

        available = [c for c in raw_cols if c not in ("_row", ROW_BASE)]
        # Only a column the contract does not already use can be the missing one renamed:
        # "order_date" is never a misspelt "order_id".
        used = {v.lower() for v in out.values()} | {c.lower() for c in table.column_names}
        spare = [c for c in available if c.lower() not in used]
        for m in missing:
            near = difflib.get_close_matches(m, spare, n=1, cutoff=0.6)
            hint = f"rename '{near[0]}' to '{m}'" if near else "add the column"
            report.add(
                "error",
                table.name,
                m,
                "missing_column",
                0,
                f"required column '{m}' is missing (columns found: {', '.join(available)})",
                fix=f"{hint}, or map the source's own name in params: data.columns.{table.name}: {{<source name>: {m}}}",
            )
        return None
    return out


def vocabulary(table: str, column: str, params: Params) -> tuple[list[str], str] | None:
    """The closed set of values a column may hold, and where it is defined.

    Tiers come from ``tiers.order``, churn reasons from ``churn_definition.reasons``,
    channels and priorities from the contract (:mod:`fupan.io.schema`).
    """
    if (table, column) == ("customers", "tier"):
        return list(params.tiers.order), "tiers.order"
    if (table, column) == ("churn_events", "reason"):
        return list(params.churn_definition.reasons), "churn_definition.reasons"
    col = TABLES[table]._by_name.get(column) if table in TABLES else None
    if col is not None and col.allowed:
        return list(col.allowed), f"the contract's {table}.{column}"
    return None


def _vocab_fix(table: str, column: str, where: str, unknown: list[str], allowed: list[str]) -> str:
    import difflib

    pairs = []
    for u in unknown[:8]:
        near = difflib.get_close_matches(u.lower(), allowed, n=1, cutoff=0.0)
        pairs.append(f"{u}: {near[0] if near else allowed[-1]}")
    fix = f"map them in params: data.values: {{{table}: {{{column}: {{{', '.join(pairs)}}}}}}}"
    if where.startswith(("tiers", "churn")):
        fix += f", or add them to {where}"
        if where == "tiers.order":
            fix += " (best first, with tiers.spend_floors)"
    return fix


def _check_value_maps(params: Params, report: ValidationReport) -> None:
    """Every ``data.values`` mapping names a contract table and maps into its vocabulary."""
    for table, cols in params.data.values.items():
        if table not in TABLES:
            report.add(
                "error",
                table,
                None,
                "mapping",
                0,
                f"data.values names '{table}', which is not a contract table",
                fix=f"use one of: {', '.join(TABLES)}",
            )
            continue
        for column, mapping in cols.items():
            vocab = vocabulary(table, column, params)
            if vocab is None:
                continue
            bad = sorted({v for v in mapping.values() if v not in vocab[0]})
            if bad:
                report.add(
                    "error",
                    table,
                    column,
                    "mapping",
                    len(bad),
                    f"data.values.{table}.{column} maps onto {bad}, outside {vocab[1]} {vocab[0]}",
                    fix=f"map onto one of {vocab[0]}",
                )


def _vocabulary_map(
    raw: ir.Table,
    src: ir.StringValue,
    table: Table,
    column: str,
    params: Params,
    report: ValidationReport,
) -> tuple[dict[str, str], bool]:
    """Case-only variants -> the vocabulary's spelling, and whether every value is known.

    Unknown values are an error listing them with their counts and the ``data.values``
    mapping to add; "Gold" for "gold" is normalised with a warning. Blank values are left
    to the null checks.
    """
    vocab = vocabulary(table.name, column, params)
    if vocab is None:
        return {}, True
    allowed, where = vocab
    v = _strip(src)
    counts = (
        raw.mutate(_v=v)
        .filter(lambda t: t._v.notnull() & (t._v != "") & ~t._v.isin(allowed))
        .group_by("_v")
        .aggregate(n=lambda t: t.count())
        .order_by([ibis.desc("n"), "_v"])
        .limit(200)
        .to_pyarrow()
        .to_pylist()
    )
    if not counts:
        return {}, True
    lower = {a.lower(): a for a in allowed}
    case = {r["_v"]: lower[r["_v"].lower()] for r in counts if r["_v"].lower() in lower}
    if case:
        n = sum(r["n"] for r in counts if r["_v"] in case)
        report.add(
            "warning",
            table.name,
            column,
            "case_normalised",
            n,
            f"{n:,} value(s) differ from {where} only in case or spaces "
            f"({', '.join(f'{k!r}→{v!r}' for k, v in list(case.items())[:6])}); normalised",
            fix=f"write the values as in {where}",
        )
    unknown = [r for r in counts if r["_v"] not in case]
    if unknown:
        at = raw.mutate(**{column: v})
        examples = _examples(at, at[column].isin([r["_v"] for r in unknown]), [column])
        n = sum(r["n"] for r in unknown)
        listed = ", ".join(f"{r['_v']!r} ({r['n']:,})" for r in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        report.add(
            "error",
            table.name,
            column,
            "vocabulary",
            n,
            f"{n:,} value(s) outside {where} {allowed}: {listed}{more}",
            fix=_vocab_fix(table.name, column, where, [r["_v"] for r in unknown], allowed),
            examples=examples,
        )
    return case, not unknown


def _warn_near_misses(
    raw_cols: list[str], table: Table, out: dict[str, str], report: ValidationReport
) -> None:
    """A source column that looks like an optional contract column the source lacks.

    Optional columns are not errors when absent, so a misspelt "tire" would vanish without
    a word and every tier slide would say tiers were not supplied.
    """
    import difflib

    used = {v.lower() for v in out.values()}
    spare = [c for c in raw_cols if c not in ("_row", ROW_BASE) and c.lower() not in used]
    for col in table.columns:
        if col.name in out or col.required:
            continue
        near = difflib.get_close_matches(col.name, spare, n=1, cutoff=0.75)
        if near:
            report.add(
                "warning",
                table.name,
                col.name,
                "unused_column",
                0,
                f"optional column '{col.name}' is not supplied, but the source has "
                f"'{near[0]}', which is not used",
                fix=f"rename '{near[0]}' to '{col.name}', or map it in params: "
                f"data.columns.{table.name}: {{{near[0]}: {col.name}}}",
            )


def _drop_empty_optional(
    raw: ir.Table, table: Table, mapping: dict[str, str], report: ValidationReport
) -> None:
    """An optional column that must be filled when given, but is empty throughout, is
    treated as not supplied (an export with an empty tier column), not as an error per row.

    Customers only: the check reads the source once more, cheap for one row per customer
    but a second pass over a text file of events.
    """
    if table.name != "customers":
        return
    cols = [c.name for c in table.columns if not c.required and not c.nullable]
    cols = [c for c in cols if c in mapping]
    if not cols:
        return
    filled = {
        c: (~_blank(raw[mapping[c]].cast("string"))).cast("int64").sum().name(c) for c in cols
    }
    counts = raw.aggregate(**filled).to_pyarrow().to_pylist()[0]
    for c in cols:
        if not counts[c]:
            report.add(
                "info",
                table.name,
                c,
                "empty_column",
                0,
                f"column '{mapping[c]}' is empty throughout: {table.name}.{c} is treated as "
                "not supplied",
            )
            del mapping[c]


def _check_and_type(con: Any, table: Table, params: Params, report: ValidationReport) -> str:
    """Type one staged table and check it; returns "ok", "failed" or "empty".

    The typed table is the single materialisation of the source (a temporary table): every
    check reads it. It keeps a column's source text (``_raw_<column>``) only where a value
    can fail to type, for the error's example rows. Columns the contract makes optional and
    the source lacks: ``order_id`` is generated from the source row; every other customers
    column is added as typed NULLs, so downstream code never meets a missing column.
    """
    raw = con.table(f"raw_{table.name}")
    mapping = _map_columns(raw.columns, table, params, report)
    if mapping is None:
        return "failed"
    _drop_empty_optional(raw, table, mapping, report)
    positional = ROW_BASE in raw.columns
    typing, derived_id = _typing(raw, table, mapping, params, report)
    sql = con.compile(typing)
    if positional and _has_join(con, sql):
        # A join does not keep the rows in order, and positions would misnumber them:
        # number them by a window first (which reads and types the file on one thread).
        raw = raw.mutate(_row=ibis.row_number() + raw[ROW_BASE]).drop(ROW_BASE)
        positional = False
        typing, derived_id = _typing(raw, table, mapping, params, report)
        sql = con.compile(typing)
    t = _materialise_sql(con, f"typed_{table.name}", sql, temp=True)
    if positional:
        t = _number_rows(con, table, derived_id)
    ok = True
    # Closed vocabularies are read from the typed table (in memory), not the source again.
    for col in table.columns:
        if col.name in mapping and vocabulary(table.name, col.name, params) is not None:
            case, known = _vocabulary_map(t, t[col.name], table, col.name, params, report)
            ok &= known
            if case:
                name, c = _sql_name(f"typed_{table.name}"), _sql_name(col.name)
                whens = " ".join(
                    f"WHEN {_sql_string(k)} THEN {_sql_string(v)}" for k, v in case.items()
                )
                con.raw_sql(
                    f"UPDATE temp.main.{name} SET {c} = CASE {c} {whens} END WHERE {c} IN "
                    f"({', '.join(_sql_string(k) for k in case)})"
                )
                t = con.table(f"typed_{table.name}")
    checks = _column_checks(t, table, mapping, params)
    aggs = {f"c{i}": c[3].cast("int64").sum() for i, c in enumerate(checks)}
    filled = {f"f__{c}": t[c].notnull().sum() for c in mapping if c in t.columns}
    counts = t.aggregate(rows=t.count(), **aggs, **filled).to_pyarrow().to_pylist()[0]
    n_rows = int(counts["rows"])
    if n_rows == 0:
        return "empty"
    report.supplied[table.name] = [c for c in mapping if int(counts.get(f"f__{c}") or 0) > 0]
    for i, (sev, col_name, check, pred, what, fix, ex_cols) in enumerate(checks):
        n_bad = int(counts[f"c{i}"] or 0)
        if n_bad:
            ok &= sev != "error"
            report.add(
                sev,
                table.name,
                col_name,
                check,
                n_bad,
                f"{n_bad:,} {what}",
                fix=fix,
                examples=_examples(t, pred, ex_cols),
            )
    if table.key and table.key in mapping:
        dup = t.group_by(table.key).aggregate(n=t.count()).filter(lambda g: g.n > 1)
        n_dup = int(dup.count().to_pyarrow().as_py())
        if n_dup:
            ok = False
            keys = dup.order_by(table.key).limit(5)[table.key].to_pyarrow().to_pylist()
            report.add(
                "error",
                table.name,
                table.key,
                "duplicate_key",
                n_dup,
                f"{n_dup:,} {table.key} value(s) appear more than once",
                fix=f"deduplicate the export so each {table.key} is unique",
                examples=_examples(t, t[table.key].isin(keys), [table.key]),
            )
    report.profile[table.name] = {"rows": n_rows, "columns": sorted(mapping)}
    return "ok" if ok else "failed"


def _typing(
    raw: ir.Table, table: Table, mapping: dict[str, str], params: Params, report: ValidationReport
) -> tuple[ir.Table, bool]:
    """The query typing a raw table, and whether it derives ``order_id`` from source rows.

    A raw table without ``_row`` (a CSV file, numbered by position after typing) carries
    ``ROW_BASE``, and a derived ``order_id`` is filled in with ``_row`` afterwards.
    """
    value_maps = params.data.values.get(table.name, {})
    positional = ROW_BASE in raw.columns
    typed_cols: dict[str, ir.Value] = (
        {ROW_BASE: raw[ROW_BASE]} if positional else {"_row": raw["_row"]}
    )
    raw_cols: dict[str, ir.Value] = {}
    derived_id = False
    for col in table.columns:
        if col.name not in mapping:
            if table.name == "orders" and col.name == "order_id":
                derived_id = True
                # Deterministic: the source row (file line, or row of a sheet or table).
                typed_cols[col.name] = (
                    ibis.null().cast("string") if positional else raw["_row"].cast("string")
                )
                report.derived["orders.order_id"] = "source_row"
            elif table.name == "customers":
                typed_cols[col.name] = ibis.null().cast(_IBIS_TYPE[col.dtype])
            continue
        src = raw[mapping[col.name]]
        if col.name in value_maps:
            if not src.type().is_string():
                src = src.cast("string")
            src = src.substitute(value_maps[col.name])
        fmt = params.data.number_format_for(table.name, col.name)
        typed_cols[col.name], can_fail = _typed(src, col, fmt)
        if can_fail:
            raw_cols[f"_raw_{col.name}"] = src if src.type().is_string() else src.cast("string")
    for extra in raw.columns:
        if any(extra.startswith(p) for p in table.extra_prefixes):
            typed_cols[extra], _ = _typed(raw[extra], Column(extra, "float", nullable=True))
    return raw.select(**raw_cols, **typed_cols), derived_id


def _has_join(con: Any, sql: str) -> bool:
    """Whether DuckDB's plan for ``sql`` joins (it turns an IN list of five or more
    constants into a join, for one)."""
    plan = con.raw_sql(f"EXPLAIN {sql}").fetchall()
    return any("JOIN" in str(r[-1]).upper() for r in plan)


def _number_rows(con: Any, table: Table, derived_id: bool) -> ir.Table:
    """Give a typed table written from a positional raw view its ``_row`` (and a derived
    ``order_id``): the table holds the view's rows in their order (DuckDB preserves
    insertion order), so a row's id is its position."""
    name = f"temp.main.{_sql_name('typed_' + table.name)}"
    row = f"rowid + {ROW_BASE}"
    sets = [f"_row = {row}"]
    if derived_id:
        sets.append(f"order_id = CAST({row} AS VARCHAR)")
    con.raw_sql(f"ALTER TABLE {name} ADD COLUMN _row BIGINT")
    con.raw_sql(f"UPDATE {name} SET {', '.join(sets)}")
    con.raw_sql(f"ALTER TABLE {name} DROP COLUMN {ROW_BASE}")
    return con.table(f"typed_{table.name}")


_IBIS_TYPE = {
    "str": "string",
    "date": "date",
    "datetime": "timestamp",
    "float": "float64",
    "int": "int64",
    "bool": "boolean",
}


_Check = tuple[Severity, str, str, ir.BooleanValue, str, str, list[str]]


def _number_fix(table: str, column: str) -> str:
    return (
        "name the format in params: data.number_format: "
        f'{{{table}: {{{column}: {{decimal: ",", thousands: "."}}}}}} '
        '(or {decimal: ".", thousands: ","}), per table or for every column'
    )


def _column_checks(
    t: ir.Table, table: Table, mapping: dict[str, str], params: Params
) -> list[_Check]:
    """Every column check of a table as one predicate each, all counted in a single scan."""
    checks: list[_Check] = []
    drop_amounts = table.name == "orders" and params.data.bad_amounts == "drop"
    for col in table.columns:
        if col.name not in mapping:
            continue
        # with data.bad_amounts: drop, bad amounts are warned about (their rows dropped)
        lenient = drop_amounts and col.name == "amount"
        parsed, blank = _parse_checks(t, table, col, params)
        checks += parsed
        if col.dtype == "float":
            checks.append(_finite_check(t[col.name], table, col, lenient))
        if not col.nullable:
            checks.append(_null_check(blank, table, col, lenient))
        if col.min is not None or col.max is not None:
            checks.append(_range_check(t[col.name], table, col))
    return checks


def _parse_checks(
    t: ir.Table, table: Table, col: Column, params: Params
) -> tuple[list[_Check], ir.BooleanValue]:
    """Values the column's type could not parse (ambiguous number formats apart), and
    where the source is empty."""
    v = t[col.name]
    if f"_raw_{col.name}" not in t.columns:
        # Typed without parsing, or as trimmed text: empty exactly where the source is.
        return [], v.isnull()
    checks: list[_Check] = []
    r = t[f"_raw_{col.name}"]
    blank = _blank(r)
    bad = ~blank & v.isnull()
    if (
        col.dtype in ("float", "int")
        and params.data.number_format_for(table.name, col.name) is None
    ):
        # digits and separators only: a number whose marks could mean two things
        seps = bad & r.re_replace(_MONEY_JUNK, "").re_search(_SEPARATED_NUMBER)
        checks.append(
            (
                "error",
                col.name,
                "number_format",
                seps,
                "value(s) with a comma that is not a thousands separator "
                "(comma decimals such as '683,63' or '1.234,50'?); not guessed",
                _number_fix(table.name, col.name),
                [f"_raw_{col.name}"],
            )
        )
        bad = bad & ~seps
    checks.append(
        (
            "error",
            col.name,
            "type",
            bad,
            f"value(s) are not a valid {col.dtype}",
            _fix_for_type(col)
            if col.dtype != "float" or params.data.number_format_for(table.name, col.name) is None
            else "write the numbers as data.number_format says",
            [f"_raw_{col.name}"],
        )
    )
    return checks, blank


def _finite_check(v: ir.Value, table: Table, col: Column, lenient: bool) -> _Check:
    return (
        "warning" if lenient else "error",
        col.name,
        "not_finite",
        v.notnull() & (v.isnan() | v.isinf()),
        "value(s) are NaN or infinite" + ("; those rows were dropped" if lenient else ""),
        ""
        if lenient
        else "correct the values, or set data.bad_amounts: drop"
        if col.name == "amount"
        else "correct the values",
        [table.key or "customer_id", col.name],
    )


def _null_check(blank: ir.BooleanValue, table: Table, col: Column, lenient: bool) -> _Check:
    return (
        "warning" if lenient else "error",
        col.name,
        "nulls",
        blank,
        "empty value(s) in a column that must be filled"
        + ("; those rows were dropped" if lenient else ""),
        ""
        if lenient
        else "fill the column in the export or drop those rows"
        + (", or set data.bad_amounts: drop" if col.name == "amount" else ""),
        table.column_names[:3],
    )


def _range_check(v: ir.Value, table: Table, col: Column) -> _Check:
    cond = ibis.literal(False)
    if col.min is not None:
        cond = cond | (v < col.min)
    if col.max is not None:
        cond = cond | (v > col.max)
    return (
        "error",
        col.name,
        "range",
        v.notnull() & cond,
        f"value(s) outside [{col.min}, {col.max}]",
        "correct the values or the column mapping (e.g. a 5-point scale mapped onto nps)",
        [table.key or "customer_id", col.name],
    )
