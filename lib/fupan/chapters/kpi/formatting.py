"""Formatting helpers for the deck: KPI values, changes, thresholds and missing values
in words, and the scorecard."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

from fupan.chapters.kpi.catalogue import CATALOGUE, EVENT_DATES, STATUSES
from fupan.chapters.kpi.status import _isnan


def _words(key: str, fmt: Any) -> str:
    from fupan.core import i18n

    return i18n.t(key, getattr(fmt, "lang", "en"))


def _value_text(key: str, value: float, fmt: Any, decimals: int | None = None) -> str:
    """A finite KPI value in its unit, with ``decimals`` places (None: the unit's default)."""
    unit = CATALOGUE[key].unit
    if unit == "pct":
        return fmt.pct(value, CATALOGUE[key].decimals if decimals is None else decimals)
    if unit == "nps":
        return fmt.num(value, 1 if decimals is None else decimals)
    if unit == "score":
        return fmt.num(value, 2 if decimals is None else decimals)
    if unit == "days":
        return fmt.days(value, 1 if decimals is None else decimals)
    return fmt.money(value)


def _default_decimals(key: str, fmt: Any) -> int | None:
    unit = CATALOGUE[key].unit
    if unit == "pct":
        return CATALOGUE[key].decimals if CATALOGUE[key].decimals is not None else fmt.decimals
    return {"nps": 1, "score": 2, "days": 1}.get(unit)


def format_value(key: str, value: float | None, fmt: Any) -> str:
    """A KPI value in its unit (``fmt`` is a :class:`fupan.core.i18n.Fmt`); a missing value in
    words (the reason goes beside it), never a placeholder sign."""
    if _isnan(value) or not math.isfinite(float(value)):
        return _words("kpi.value.na", fmt)
    return _value_text(key, float(value), fmt)


def format_against(
    key: str, value: float | None, levels: Iterable[float | None], fmt: Any
) -> tuple[str, list[str]]:
    """``value`` and the ``levels`` it is judged against (target, alert), written with
    enough decimals that a value unequal to a level never reads equal to it.

    "18.0%, above the alert threshold 18.0%" is false on its face; this writes "18.04%"
    and "18.00%" instead. Money keeps its compact form (its thresholds are relative).
    """
    levels = list(levels)
    d = _default_decimals(key, fmt)
    finite = [float(x) for x in levels if not _isnan(x) and math.isfinite(float(x))]
    if _isnan(value) or not math.isfinite(float(value)) or d is None or not finite:
        return format_value(key, value, fmt), [
            format_value(key, x, fmt) if not _isnan(x) else _words("kpi.value.na", fmt)
            for x in levels
        ]
    v = float(value)
    for extra in range(4):
        shown = _value_text(key, v, fmt, d + extra)
        if all(x == v or _value_text(key, x, fmt, d + extra) != shown for x in finite):
            break
    out = [
        _value_text(key, float(x), fmt, d + extra) if not _isnan(x) else _words("kpi.value.na", fmt)
        for x in levels
    ]
    if extra == 0:  # thresholds keep their usual form when nothing needed more digits
        out = [format_value(key, x, fmt) for x in levels]
    return shown, out


def format_change(key: str, change: float | None, fmt: Any) -> str:
    """A change in the KPI's terms: points for rates, relative for money; without an
    earlier value to compare with, words."""
    if _isnan(change) or not math.isfinite(float(change)):
        return _words("kpi.change.na", fmt)
    unit = CATALOGUE[key].unit
    if unit == "pct":
        return fmt.pts(change, CATALOGUE[key].decimals)
    if unit == "money":
        return fmt.rel(change)
    if unit == "days":
        return fmt.fixed(change, 1, "+") + (" 天" if fmt.lang == "zh" else " days")
    return fmt.fixed(change, 1 if unit == "nps" else 2, "+")


def format_threshold(key: str, t: dict[str, Any] | pd.Series, which: str, fmt: Any) -> str:
    """Target or alert (``which``) as text; relative thresholds as ``YoY +x%``."""
    absolute = t.get(which)
    if not _isnan(absolute):
        return format_value(key, absolute, fmt)
    rel = t.get(f"{which}_yoy")
    if _isnan(rel):
        return _words("kpi.threshold.none", fmt)
    return ("同比 " if fmt.lang == "zh" else "YoY ") + fmt.rel(rel, 0)


def value_and_threshold(key: str, row: Any, which: str, fmt: Any) -> tuple[str, str]:
    """A KPI's value and its ``target`` or ``alert`` (``which``) for a sentence: written
    with enough digits to differ when they do (:func:`format_against`); a relative
    threshold reads "YoY -10%"."""
    t = row if isinstance(row, dict) else (row._asdict() if hasattr(row, "_asdict") else dict(row))
    if _isnan(t.get(which)):
        return format_value(key, t.get("value"), fmt), format_threshold(key, t, which, fmt)
    value, (level,) = format_against(key, t.get("value"), [t[which]], fmt)
    return value, level


#: Status as a shape as well as a colour, so the scorecard survives black-and-white print.
STATUS_MARKS = {"green": "●", "amber": "▲", "red": "■", "grey": "○"}
SCORECARD_COLUMNS = ("kpi", "value", "status", "target", "alert", "mom", "yoy", "note")


def status_html(status: str, lang: str) -> str:
    """A status as colour, shape and word: ``<span class="fupan-status status-red">■ alert``."""
    import html as _html

    from fupan.core import i18n

    s = status if status in STATUS_MARKS else "grey"
    word = _html.escape(i18n.t(f"kpi.status.{s}", lang))
    return (
        f'<span class="fupan-status status-{s}"><span class="mark" aria-hidden="true">'
        f"{STATUS_MARKS[s]}</span> {word}</span>"
    )


def status_legend_html(lang: str, statuses: Iterable[str] = STATUSES) -> str:
    """The legend under a scorecard: each status's shape, word and meaning."""
    import html as _html

    from fupan.core import i18n

    items = "".join(
        f"<li>{status_html(s, lang)} <span>{_html.escape(i18n.t(f'kpi.legend.{s}', lang))}</span></li>"
        for s in statuses
    )
    title = _html.escape(i18n.t("kpi.legend.title", lang))
    return f'<ul class="fupan-status-legend" aria-label="{title}">{items}</ul>'


def scorecard_rows(
    table: pd.DataFrame, names: dict[str, str], fmt: Any, lang: str
) -> list[dict[str, str]]:
    """The scorecard's cells as text, one dict per KPI (keys :data:`SCORECARD_COLUMNS`).

    The value is written with enough digits that it never reads equal to a target or
    alert threshold it differs from (:func:`format_against`).
    """
    rows = []
    for r in table.itertuples():
        t = r._asdict()
        value, (target, alert) = format_against(r.kpi, r.value, [t["target"], t["alert"]], fmt)
        rel = _isnan(t["target"])
        rows.append(
            {
                "kpi": names[r.kpi],
                "value": value,
                "status": r.status,
                "target": format_threshold(r.kpi, t, "target", fmt) if rel else target,
                "alert": format_threshold(r.kpi, t, "alert", fmt) if _isnan(t["alert"]) else alert,
                "mom": format_change(r.kpi, r.mom, fmt),
                "yoy": format_change(r.kpi, r.yoy, fmt),
                "note": reason_text(r.reason, lang),
            }
        )
    return rows


def scorecard_html(table: pd.DataFrame, names: dict[str, str], fmt: Any, lang: str) -> str:
    """The KPI scorecard as an HTML table with coloured, shaped and worded status cells,
    and its legend. The monthly deck and the annual review's KPI chapter both show this."""
    import html as _html

    from fupan.core import i18n

    rows = scorecard_rows(table, names, fmt, lang)
    cols = [c for c in SCORECARD_COLUMNS if c != "note" or any(r["note"] for r in rows)]
    head = "".join(f"<th>{_html.escape(i18n.t(f'kpi.col.{c}', lang))}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            if c == "status":
                cells.append(f'<td class="status-cell">{status_html(r[c], lang)}</td>')
            else:
                cells.append(f"<td>{_html.escape(r[c])}</td>")
        body.append(f'<tr class="row-{r["status"]}">{"".join(cells)}</tr>')
    used = [s for s in STATUSES if any(r["status"] == s for r in rows)]
    return (
        f'<table class="fupan-table fupan-scorecard"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>" + status_legend_html(lang, used or STATUSES)
    )


def show_scorecard(table: pd.DataFrame, names: dict[str, str], fmt: Any, lang: str) -> None:
    """Display :func:`scorecard_html` on the current slide (a notebook cell's output)."""
    from fupan.core import i18n
    from fupan.report import show

    rows = scorecard_rows(table, names, fmt, lang)
    text = "\n".join(
        " | ".join([r["kpi"], r["value"], i18n.t(f"kpi.status.{r['status']}", lang), r["target"]])
        for r in rows
    )
    show.check_text(text)
    show.html_block(scorecard_html(table, names, fmt, lang), text, kind="table")


def reason_text(reason: str | None, lang: str) -> str:
    """A missing value's reason code in words (``missing:surveys`` -> "table 'surveys' is missing")."""
    from fupan.core import i18n

    if not reason or (isinstance(reason, float) and math.isnan(reason)):
        return ""
    code, _, arg = str(reason).partition(":")
    if code == "missing":
        if arg in EVENT_DATES or arg in ("churn_events", "customers"):
            return i18n.t("kpi.reason.missing", lang, table=i18n.t(f"table.{arg}", lang))
        return i18n.t("kpi.reason.missing_column", lang, column=arg)
    if code == "model":
        return i18n.t(f"kpi.reason.model.{arg}", lang)
    if code == "disabled":
        return i18n.t("kpi.reason.disabled", lang)
    if code == "incomplete":
        tables = ", ".join(i18n.t(f"table.{x}", lang) for x in arg.split(","))
        return i18n.t("kpi.reason.incomplete", lang, tables=tables)
    return i18n.t(f"kpi.reason.{code}", lang)
