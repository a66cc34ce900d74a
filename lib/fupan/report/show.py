"""What a notebook puts on a slide: titles that state findings, charts, tables, notes.

The deck builder reads these outputs from the executed notebooks: a slide begins at each
:func:`slide` marker, and everything displayed after it belongs to that slide. Code, logs
and warnings never reach the deck.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import json
import math
import os
import re
import warnings
from pathlib import Path
from typing import Any

import pandas as pd

SLIDE_MIME_META = "fupan"
#: Set (to anything) to make a placeholder on a slide an error instead of a warning (tests).
STRICT_ENV = "FUPAN_STRICT_TEXT"
DECK_CSS = Path(__file__).parent / "templates" / "deck.css"
#: Set to 0 to leave legends where the notebook put them (to see what the deck check catches).
PLACE_LEGENDS_ENV = "FUPAN_PLACE_LEGENDS"

# Values that leaked from a computation into words: nan, None, inf, NaT, <NA>. "None" that
# starts an English phrase ("None of the tiers") is a word, not a leak.
_LEAK = re.compile(
    r"(?<![A-Za-z0-9_.])(?:(?i:-?inf|nan)|NaT|<NA>|∞|None(?!\s+[a-z]))(?![A-Za-z0-9_])"
)
_NEG_ZERO = re.compile(r"(?<![A-Za-z0-9_.,])[-−]0(?:[.,]0+)?(?![.,]?\d)")
_WORDY = re.compile(r"[\w\u3400-\u9fff]")


def placeholder_problems(text: str) -> list[str]:
    """The placeholders in a piece of slide text: nan/None/inf, "–" standing for a value,
    "-0". Empty when the text is clean.

    A dash between two values ("2026-01 – 2026-10") is a range, not a placeholder; a dash
    with punctuation or nothing on a side ("NRR –, above", "「–」", a cell that is "–") is.
    """
    problems = []
    for m in _LEAK.finditer(text):
        problems.append(f"{m.group(0)!r} in {_around(text, m.start(), m.end())!r}")
    for i, ch in enumerate(text):
        if ch not in "–—":
            continue
        left = (text[:i].split() or [""])[-1]
        right = (text[i + 1 :].split() or [""])[0]
        if not (_WORDY.search(left.strip("–—")) and _WORDY.search(right.strip("–—"))):
            problems.append(f"{ch!r} for a value in {_around(text, i, i + 1)!r}")
    for m in _NEG_ZERO.finditer(text):
        problems.append(f"{m.group(0)!r} (negative zero) in {_around(text, m.start(), m.end())!r}")
    return problems


def _around(text: str, start: int, end: int, width: int = 30) -> str:
    return text[max(0, start - width) : end + width].strip()


def check_text(*texts: str | None) -> None:
    """Warn (or, with ``FUPAN_STRICT_TEXT`` set, raise ValueError) on placeholders."""
    problems = [p for t in texts if t for p in placeholder_problems(str(t))]
    if not problems:
        return
    message = "slide text holds a placeholder instead of a value: " + "; ".join(problems)
    if os.environ.get(STRICT_ENV):
        raise ValueError(message)
    warnings.warn(message, stacklevel=3)


def _display(data: dict[str, Any], kind: str) -> None:
    from IPython.display import display

    display(data, raw=True, metadata={SLIDE_MIME_META: kind})


def slide(title: str, finding: str | None = None, kicker: str | None = None) -> None:
    """Start a slide. ``title`` states the finding; ``finding`` is the one-sentence takeaway."""
    check_text(title, finding, kicker)
    parts = ['<div class="fupan-slide-head">']
    if kicker:
        parts.append(f'<div class="kicker">{html.escape(kicker)}</div>')
    parts.append(f"<h2>{html.escape(title)}</h2>")
    if finding:
        parts.append(f'<p class="finding">{html.escape(finding)}</p>')
    parts.append("</div>")
    text = title + ("\n" + finding if finding else "")
    _display({"text/html": "".join(parts), "text/plain": text}, "slide")


def note(text: str, kind: str = "note") -> None:
    """A short line under the chart: a caveat, a source, a skipped section."""
    check_text(text)
    _display(
        {"text/html": f'<p class="fupan-{kind}">{html.escape(text)}</p>', "text/plain": text}, kind
    )


def missing(table: str, message: str) -> None:
    """Say on the slide that a section is skipped because an optional table is absent."""
    note(message.format(table=table), kind="missing")


def figure(fig: Any, close: bool = True) -> None:
    """Embed a matplotlib figure as PNG (and close it so it is not shown twice)."""
    import matplotlib.pyplot as plt

    if not any(ax.get_title() for ax in fig.axes) and not fig._suptitle:
        raise ValueError("every chart needs a title: set ax.set_title(...) before showing it")
    from fupan.report import charts

    # a legend that covers data moves where it covers none; what still overlaps (a legend,
    # or labels on each other) is recorded in the PNG for the deck check to report
    place = os.environ.get(PLACE_LEGENDS_ENV, "1") != "0"
    if place:
        charts.place_legends(fig)
    problems = charts.figure_problems(fig, drawn=place)
    buf = io.BytesIO()
    fig.savefig(
        buf,
        format="png",
        bbox_inches="tight",
        metadata={charts.OVERLAP_KEY: json.dumps(problems, ensure_ascii=True)},
    )
    png = base64.b64encode(buf.getvalue()).decode("ascii")
    title = next((ax.get_title() for ax in fig.axes if ax.get_title()), "")
    _display({"image/png": png, "text/plain": f"[chart] {title}"}, "figure")
    if close:
        plt.close(fig)


def table(
    df: pd.DataFrame,
    max_rows: int = 12,
    formats: dict[str, Any] | None = None,
    total_rows: int | None = None,
    more_label: str | None = None,
) -> None:
    """An HTML table cut to ``max_rows`` (full data belongs in exports/).

    A missing value (None, NaN, inf) shows as an empty cell, never as "nan" or "–"; a
    column with no value at all (e.g. names the export did not carry) is left out.
    """
    formats = formats or {}
    df = df.loc[:, [c for c in df.columns if not _all_missing(df[c])]]
    shown = df.head(max_rows).copy()
    for col in shown.columns:
        f = formats.get(col)
        if f is not None:
            shown[col] = shown[col].map(lambda v, f=f: _cell(v, f))
        elif pd.api.types.is_float_dtype(shown[col]):
            # pandas' own number formatting stays; missing cells print as na_rep
            shown[col] = shown[col].replace([math.inf, -math.inf], math.nan)
        elif shown[col].map(_missing).any():
            shown[col] = shown[col].astype(object).where(~shown[col].map(_missing), "")
    body = shown.to_html(index=False, escape=True, border=0, classes="fupan-table", na_rep="")
    if len(shown.columns) and _prose(shown.iloc[:, -1]):
        # a last column of sentences (a finding, a reason) may wrap; short ones never do
        body = body.replace("<table ", '<table data-prose="last" ', 1)
    n = total_rows if total_rows is not None else len(df)
    if n > max_rows and more_label:
        body += (
            f'<p class="fupan-more">{html.escape(more_label.format(shown=max_rows, total=n))}</p>'
        )
    _display({"text/html": body, "text/plain": shown.to_string(index=False)}, "table")


#: A cell wider than this (CJK characters count two) is prose, not a label or a value.
PROSE_WIDTH = 48


def _width(text: str) -> int:
    """Characters, a CJK or full-width one counting two (it takes about twice the room)."""
    return len(text) + sum("\u2e80" <= ch <= "\u9fff" or "\uff00" <= ch <= "\uffef" for ch in text)


def _prose(col: pd.Series) -> bool:
    """Whether a column holds sentences: a cell wider than :data:`PROSE_WIDTH`."""
    return any(_width(v) > PROSE_WIDTH for v in col if isinstance(v, str))


def _missing(v: Any) -> bool:
    if v is None or v is pd.NaT or v is pd.NA:
        return True
    if isinstance(v, float):
        return math.isnan(v) or math.isinf(v)
    if isinstance(v, str):
        return v.strip() in ("", "–", "-", "nan", "None", "NaN")
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _all_missing(col: pd.Series) -> bool:
    return len(col) > 0 and all(_missing(v) for v in col)


def _cell(v: Any, f: Any) -> str:
    """A table cell's text: empty when missing, formatted with ``f`` otherwise."""
    if _missing(v):
        return ""
    if isinstance(v, float) and v == 0:
        v = 0.0  # -0.0 would print as "-0"
    text = str(f(v)) if f else str(v)
    return "" if text.strip() in ("–", "nan", "None", "inf", "-inf") else text


def kpis(items: list[tuple[str, str, str | None]]) -> None:
    """Big-number tiles: (label, value, status) with status green/amber/red or None."""
    check_text(*(f"{label}: {value}" for label, value, _ in items))
    for label, value, _ in items:
        if not str(value).strip():
            check_text(f"{label}: –")
    cells = []
    for label, value, status in items:
        cls = f" status-{status}" if status else ""
        cells.append(
            f'<div class="tile{cls}"><div class="value">{html.escape(value)}</div>'
            f'<div class="label">{html.escape(label)}</div></div>'
        )
    text = "\n".join(f"{lab}: {val}" for lab, val, _ in items)
    _tile_style()
    _display(
        {"text/html": f'<div class="fupan-tiles">{"".join(cells)}</div>', "text/plain": text},
        "tiles",
    )


@functools.cache
def tile_css() -> str:
    """The deck's rules for KPI tiles, with the colours they use, scoped to the tiles.

    Read from the deck's own stylesheet, so tiles in JupyterLab look as on the slide and
    there is one definition of their style.
    """
    css = DECK_CSS.read_text(encoding="utf-8")
    root = re.search(r":root\s*\{(.*?)\}", css, re.S)
    colours = root.group(1).strip() if root else ""
    rules = [line for line in css.splitlines() if line.startswith(".fupan-tiles")]
    return "\n".join([f".fupan-tiles {{ {colours} }}", *rules])


def _tile_style() -> None:
    """Style the tiles in a notebook front end (the deck has its stylesheet already).

    Displayed without the slide metadata, so the deck builder skips it like any other
    notebook-only output.
    """
    from IPython.display import display

    display({"text/html": f"<style>{tile_css()}</style>"}, raw=True)


def html_block(fragment: str, text: str, kind: str = "table") -> None:
    """Put an HTML fragment a library function built (e.g. :func:`fupan.chapters.kpi.scorecard_html`)
    on the slide; ``text`` is its plain-text form."""
    _display({"text/html": fragment, "text/plain": text}, kind)


def bullets(lines: list[str]) -> None:
    check_text(*lines)
    items = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
    _display(
        {"text/html": f'<ul class="fupan-bullets">{items}</ul>', "text/plain": "\n".join(lines)},
        "bullets",
    )
