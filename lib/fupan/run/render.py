"""The deck's sections from a run's notebooks: one section per chapter (with stale marks
for chapters that used a rerun one), and the opening slide of a partial deck naming each
failed or skipped chapter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fupan.core import i18n
from fupan.core.params import Params
from fupan.report import deck
from fupan.run.execute import ChapterFailure
from fupan.run.run_folder import ERROR_LOG


def _chapter_labels(nb: str, lang: str) -> tuple[str, str]:
    return i18n.t(f"chapter.{nb}.title", lang), i18n.t(f"chapter.{nb}.question", lang)


def deck_labels(lang: str) -> dict[str, str]:
    keys = (
        "nav",
        "prev",
        "next",
        "toggle",
        "scroll_view",
        "period",
        "as_of",
        "generated_at",
        "agenda",
        "data",
    )
    return {k: i18n.t(f"deck.{k}", lang) for k in keys}


def _chapter_sections(
    params: Params,
    tmp: Path,
    failures: list[ChapterFailure],
    chapters: list[str] | None = None,
    chapter_log: dict[str, dict[str, Any]] | None = None,
) -> list[deck.Section]:
    """One section per chapter of the run; a failed one keeps the slides made before its
    failing cell and ends with a slide saying where it stopped; a stale one (it used a
    chapter rerun since) says so on every slide."""
    by_nb = {f.nb: f for f in failures}
    sections: list[deck.Section] = []
    for nb in chapters if chapters is not None else params.notebooks:
        f = by_nb.get(nb)
        if f is not None and f.skipped:
            continue
        title, question = _chapter_labels(nb, params.lang)
        out = tmp / "notebooks" / f"{nb}.ipynb"
        if out.exists():
            section = deck.slides_from_notebook(out, nb, title, question)
        else:
            section = deck.Section(key=nb, title=title, question=question)
        deck.collapse_skipped(section, params.lang)
        if f is not None:
            stopped = i18n.t(
                "run.stopped_title", params.lang, chapter=_chapter_name(nb, params.lang)
            )
            section.slides.append(_failure_slide([f], params.lang, title=stopped))
        entry = (chapter_log or {}).get(nb) or {}
        if entry.get("stale_because"):
            mark_stale(section, nb, entry, chapter_log or {}, params.lang)
        sections.append(section)
    return sections


def stale_line(
    nb: str, entry: dict[str, Any], chapter_log: dict[str, dict[str, Any]], lang: str
) -> str:
    """The sentence a stale chapter's slides carry: which chapters were rerun since it ran."""
    needs = entry["stale_because"]
    names = "、".join(_chapter_name(n, lang) for n in needs)
    rerun_at = max(str((chapter_log.get(n) or {}).get("ran_at") or "") for n in needs)
    return i18n.t(
        "run.stale_line",
        lang,
        needs=names,
        chapter=nb,
        ran_at=_when(entry.get("ran_at")),
        rerun_at=_when(rerun_at),
    )


def _when(stamp: Any) -> str:
    return str(stamp or "?").replace("T", " ")[:16]


def mark_stale(
    section: deck.Section,
    nb: str,
    entry: dict[str, Any],
    chapter_log: dict[str, dict[str, Any]],
    lang: str,
) -> None:
    """Put the stale line on every slide of ``section``, under its title."""
    import html

    line = f'<p class="fupan-missing fupan-stale">{html.escape(stale_line(nb, entry, chapter_log, lang))}</p>'
    for slide in section.slides:
        head = slide.head.rstrip()
        if head.endswith("</div>"):
            slide.head = head[: -len("</div>")] + line + "</div>"
        else:
            slide.head = head + line


def _chapter_name(nb: str, lang: str) -> str:
    try:
        title = i18n.t(f"chapter.{nb}.title", lang)
    except i18n.MissingLabelError:
        return nb
    head = nb.split("_", 1)[0]
    return f"{int(head)} · {title}" if head.isdigit() else title


def _failure_slide(
    failures: list[ChapterFailure], lang: str, title: str | None = None
) -> deck.Page:
    import html

    t = lambda key, **kw: i18n.t(key, lang, **kw)  # noqa: E731
    lines = []
    for f in failures:
        chapter = _chapter_name(f.nb, lang)
        if f.skipped:
            needs = "、".join(_chapter_name(n, lang) for n in f.needs)
            lines.append(t("run.skipped_line", chapter=chapter, needs=needs))
        else:
            lines.append(
                t(
                    "run.failed_line",
                    chapter=chapter,
                    cell=_cell_words(f, lang),
                    error=_short(f.error),
                )
            )
    if title is None:
        title = t("run.incomplete_title", n=sum(not f.skipped for f in failures))
    head = (
        f'<div class="fupan-slide-head"><h2>{html.escape(title)}</h2>'
        f'<p class="finding">{html.escape(t("run.incomplete_finding", log=ERROR_LOG))}</p></div>'
    )
    items = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
    return deck.Page(head=head, body=[f'<ul class="fupan-bullets">{items}</ul>'], kind="failure")


def _cell_words(f: ChapterFailure, lang: str) -> str:
    """The failing cell in the deck's language ("code cell 3 (…)" / "第 3 个代码单元（…）")."""
    import re

    m = re.match(r"code cell (\d+) \((.*)\)$", f.cell)
    if not m:
        return f.cell or "?"
    return i18n.t("run.cell", lang, n=m.group(1), code=m.group(2).strip("'\""))


def _short(error: str, limit: int = 240) -> str:
    """The error's own words, without the runner's "notebook X failed in cell N:" prefix."""
    text = error.split(": ", 1)[1] if error.startswith("notebook ") and ": " in error else error
    text = text.strip().splitlines()[0] if text.strip() else error
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_section(failures: list[ChapterFailure], lang: str) -> deck.Section:
    """The partial deck's opening: which chapters failed (cell, error) or were skipped."""
    return deck.Section(
        key="run_incomplete",
        title=i18n.t("run.section", lang),
        question="",
        slides=[_failure_slide(failures, lang)],
        divider=False,
    )
