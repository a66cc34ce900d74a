"""What a notebook puts on a slide: titles that state findings, charts, tables, notes.

The deck builder reads these outputs from the executed notebooks: a slide begins at each
:func:`slide` marker, and everything displayed after it belongs to that slide. Code, logs
and warnings never reach the deck.
"""

from __future__ import annotations

import base64
import html
import io
from typing import Any

import pandas as pd

SLIDE_MIME_META = "fupan"


def _display(data: dict[str, Any], kind: str) -> None:
    from IPython.display import display

    display(data, raw=True, metadata={SLIDE_MIME_META: kind})


def slide(title: str, finding: str | None = None, kicker: str | None = None) -> None:
    """Start a slide. ``title`` states the finding; ``finding`` is the one-sentence takeaway."""
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
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
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
    """An HTML table cut to ``max_rows`` (full data belongs in exports/)."""
    formats = formats or {}
    shown = df.head(max_rows).copy()
    for col, f in formats.items():
        if col in shown.columns:
            shown[col] = shown[col].map(
                lambda v, f=f: "–" if v is None or (isinstance(v, float) and v != v) else f(v)
            )
    body = shown.to_html(index=False, escape=True, border=0, classes="fupan-table", na_rep="–")
    n = total_rows if total_rows is not None else len(df)
    if n > max_rows and more_label:
        body += (
            f'<p class="fupan-more">{html.escape(more_label.format(shown=max_rows, total=n))}</p>'
        )
    _display({"text/html": body, "text/plain": shown.to_string(index=False)}, "table")


def kpis(items: list[tuple[str, str, str | None]]) -> None:
    """Big-number tiles: (label, value, status) with status green/amber/red or None."""
    cells = []
    for label, value, status in items:
        cls = f" status-{status}" if status else ""
        cells.append(
            f'<div class="tile{cls}"><div class="value">{html.escape(value)}</div>'
            f'<div class="label">{html.escape(label)}</div></div>'
        )
    text = "\n".join(f"{lab}: {val}" for lab, val, _ in items)
    _display(
        {"text/html": f'<div class="fupan-tiles">{"".join(cells)}</div>', "text/plain": text},
        "tiles",
    )


def bullets(lines: list[str]) -> None:
    items = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
    _display(
        {"text/html": f'<ul class="fupan-bullets">{items}</ul>', "text/plain": "\n".join(lines)},
        "bullets",
    )
