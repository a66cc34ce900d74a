"""Build the self-contained HTML deck from executed notebooks.

The deck shows what the notebooks displayed through :mod:`fupan.report.show` and nothing else:
no code, no parameters cells, no logs or warnings. Charts are inlined as PNG data URIs and
the page's CSS and JavaScript are inlined from the package, so the file opens from an email
attachment and makes no network request.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import nbformat
from nbconvert.preprocessors import TagRemovePreprocessor

from fupan.report.show import SLIDE_MIME_META

TEMPLATE_DIR = Path(__file__).parent / "templates"
# A deck must never make a request: anything that looks like an external reference is refused.
_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["'](?:https?:)?//""", re.IGNORECASE)


@dataclass
class Page:
    """One rendered page of the deck: its head (title, finding) and HTML body parts.

    What a notebook's outputs become (or what the deck itself adds: summary, glossary,
    failures); the content a chapter puts on a slide is :class:`fupan.chapters.slide.Slide`.
    """

    head: str
    body: list[str] = field(default_factory=list)
    kind: str = "content"
    #: what :mod:`fupan.report.show` displayed for each part of ``body`` (figure, table, missing, …)
    kinds: list[str] = field(default_factory=list)

    @property
    def only_missing(self) -> bool:
        """Nothing on the slide but "this section is skipped: table … is missing" notes."""
        return bool(self.kinds) and all(k == "missing" for k in self.kinds)


@dataclass
class Section:
    key: str
    title: str
    question: str
    slides: list[Page] = field(default_factory=list)
    divider: bool = True

    @property
    def number(self) -> str:
        """The chapter number of a notebook section ("00_data_check" -> "0")."""
        head = self.key.split("_", 1)[0]
        return str(int(head)) if head.isdigit() else ""


def _output_html(out: Any) -> str | None:
    data = out.get("data", {})
    if "image/png" in data:
        alt = html.escape(str(data.get("text/plain", "chart")))
        return f'<img class="chart" alt="{alt}" src="data:image/png;base64,{data["image/png"]}">'
    if "image/svg+xml" in data:
        return f'<div class="chart">{data["image/svg+xml"]}</div>'
    if "text/html" in data:
        return str(data["text/html"])
    if "text/markdown" in data:
        from nbconvert.filters import markdown2html

        return markdown2html(str(data["text/markdown"]))
    return None  # plain reprs (return values, objects) are notebook noise, not deck content


def slides_from_notebook(path: str | Path, key: str, title: str, question: str) -> Section:
    """Collect the slides a notebook displayed, in order."""
    nb = nbformat.read(str(path), as_version=4)
    nb, _ = TagRemovePreprocessor(
        remove_cell_tags={"parameters", "injected-parameters"}, enabled=True
    ).preprocess(nb, {})
    section = Section(key=key, title=title, question=question)
    current: Page | None = None
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        if any(o.get("output_type") == "error" for o in cell.get("outputs", [])):
            break  # a partial run: what the failing cell began is not a finished slide
        for out in cell.get("outputs", []):
            if out.get("output_type") not in ("display_data", "execute_result"):
                continue  # streams (logs, warnings) and errors stay in the notebook
            kind = out.get("metadata", {}).get(SLIDE_MIME_META)
            if kind is None:
                continue  # only what fupan.report.show displayed is deck content
            content = _output_html(out)
            if content is None:
                continue
            if kind == "slide":
                current = Page(head=content)
                section.slides.append(current)
            elif current is not None:
                current.body.append(content)
                current.kinds.append(kind)
    return section


def _text(fragment: str) -> str:
    """Visible text of an HTML fragment, whitespace collapsed."""
    no_tags = re.sub(r"<[^>]+>", " ", fragment)
    return re.sub(r"\s+", " ", html.unescape(no_tags)).strip()


def collapse_skipped(section: Section, lang: str) -> Section:
    """Merge the section's slides that only say "skipped, table missing" into one slide.

    A chapter run on a two-table export otherwise shows a row of near-empty slides; the
    merged slide lists each skipped section and what would enable it, where the first of
    them stood. A single such slide is left as it is.
    """
    from fupan.core import i18n

    skipped = [s for s in section.slides if s.only_missing]
    if len(skipped) < 2:
        return section
    rows = []
    for s in skipped:
        title = _text(re.sub(r'<p class="finding">.*?</p>', "", s.head, flags=re.S))
        why = "; ".join(dict.fromkeys(_text(part) for part in s.body))
        rows.append(f"<tr><td>{html.escape(title)}</td><td>{html.escape(why)}</td></tr>")
    t = lambda key, **kw: i18n.t(key, lang, **kw)  # noqa: E731
    head = (
        f'<div class="fupan-slide-head"><h2>{html.escape(t("deck.skipped_title", n=len(rows)))}</h2>'
        "</div>"
    )
    lead = f'<p class="fupan-missing">{html.escape(t("deck.skipped_finding"))}</p>'
    table = (
        f'<table class="fupan-table fupan-skipped"><thead><tr>'
        f"<th>{html.escape(t('deck.skipped_section'))}</th>"
        f"<th>{html.escape(t('deck.skipped_why'))}</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )
    merged = Page(head=head, body=[lead, table], kind="skipped", kinds=["missing", "table"])
    first = section.slides.index(skipped[0])
    kept = [s for s in section.slides if not s.only_missing]
    kept.insert(first, merged)
    section.slides = kept
    return section


def render(
    sections: list[Section],
    meta: dict[str, Any],
    labels: dict[str, str],
    lang: str,
    out_path: str | Path,
    template: str = "deck.html.j2",
) -> Path:
    """Write the deck. ``meta`` feeds the title slide; ``labels`` the deck's own words."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
    )
    tpl = env.get_template(template)
    css = (TEMPLATE_DIR / "deck.css").read_text(encoding="utf-8")
    js = (TEMPLATE_DIR / "deck.js").read_text(encoding="utf-8")
    page = tpl.render(
        sections=sections,
        meta=meta,
        labels=labels,
        lang=lang,
        css=css,
        js=js,
        generated_at=meta.get("generated_at") or dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
    )
    bad = _EXTERNAL.search(page)
    if bad:
        raise ValueError(f"deck would reference an external resource: {bad.group(0)!r}")
    out_path = Path(out_path)
    out_path.write_text(page, encoding="utf-8")
    return out_path


_SLIDE = re.compile(r'<section class="slide([^"]*)"[^>]*>(.*?)</section>', re.S)
_IMG = re.compile(r'<img class="chart"[^>]*?alt="([^"]*)"[^>]*?src="([^"]*)"', re.S)


def text_problems(page: str) -> list[str]:
    """What a reader of a built deck would see as broken, one readable line each.

    Looks at every slide's visible text for placeholders standing in for values (nan,
    None, inf, NaT, "–", "-0"; see :func:`fupan.report.show.placeholder_problems`), at content
    slides with a title and nothing else, and at charts without data (no image, or a
    picture with no coloured mark: only axes and text).
    """
    from fupan.report.show import placeholder_problems

    problems = []
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    for i, m in enumerate(_SLIDE.finditer(page), start=1):
        classes, inner = m.group(1), m.group(2)
        inner_no_foot = re.sub(r'<footer class="slide-foot">.*?</footer>', " ", inner, flags=re.S)
        title = _text("".join(re.findall(r"<h[12][^>]*>.*?</h[12]>", inner_no_foot, re.S)))
        where = f"slide {i} ({title[:50] or 'untitled'})"
        found: list[str] = []
        prose = re.sub(r"<table\b.*?</table>", " ", inner_no_foot, flags=re.S)
        found += placeholder_problems(_text(prose))
        for cell in re.findall(r"<t[dh][^>]*>(.*?)</t[dh]>", inner_no_foot, re.S):
            if _text(cell) in ("–", "—", "-"):
                found.append(f"a table cell shows {_text(cell)!r} for a value")
            else:
                found += [f"a table cell: {p}" for p in placeholder_problems(_text(cell))]
        problems += [f"{where}: {p}" for p in dict.fromkeys(found)]
        body = re.search(r'<div class="slide-body">(.*)', inner_no_foot, re.S)
        if "slide-content" in classes:
            rest = body.group(1) if body else ""
            finding = re.search(r'<p class="finding">(.*?)</p>', inner_no_foot, re.S)
            said = _text(finding.group(1)) if finding else ""
            # a slide that cannot be made states why in its finding line: that is content
            if not said and not _text(rest) and "<img" not in rest and "<svg" not in rest:
                problems.append(f"{where}: empty slide (a title and nothing else)")
        for alt, src in _IMG.findall(inner_no_foot):
            why = _chart_without_data(src)
            if why:
                problems.append(f"{where}: chart {html.unescape(alt)!r} {why}")
    return problems


#: A pixel whose channels differ by more than this is coloured (a mark), not grey (axes,
#: grid, text). fupan's charts draw data in the palette's colours.
_COLOUR_SPREAD = 40
_MIN_MARK_PIXELS = 30


def _chart_without_data(src: str) -> str | None:
    """Why an embedded chart shows no data, or None when it does (or cannot be read)."""
    import base64
    import io

    if not src.startswith("data:image/png;base64,") or len(src) < 64:
        return "has no image"
    try:
        from PIL import Image

        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).convert("RGB")
    except Exception:  # noqa: BLE001 - not a picture we can judge
        return "has an unreadable image"
    import numpy as np

    img.thumbnail((400, 400))
    px = np.asarray(img, dtype=np.int16)
    coloured = int(((px.max(axis=2) - px.min(axis=2)) > _COLOUR_SPREAD).sum())
    return None if coloured >= _MIN_MARK_PIXELS else "shows no data (only axes and text)"


def png_overlaps(src: str) -> list[str] | None:
    """What :func:`fupan.report.charts.figure_problems` recorded in a chart's PNG when it was
    drawn: legends or labels covering data (empty: none). None when the chart carries no
    record (drawn without the check)."""
    import base64
    import io
    import json

    from fupan.report.charts import OVERLAP_KEY

    if not src.startswith("data:image/png;base64,"):
        return None
    try:
        from PIL import Image

        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        raw = img.text.get(OVERLAP_KEY) if hasattr(img, "text") else None
    except Exception:  # noqa: BLE001 - an unreadable picture is reported elsewhere
        return None
    return None if raw is None else list(json.loads(raw))


def chart_problems(page: str) -> list[str]:
    """Charts whose legend or labels cover data, or that were drawn without the check,
    one readable line each ("slide 15 (title): chart '…': the legend covers …")."""
    problems = []
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S | re.I)
    for i, m in enumerate(_SLIDE.finditer(page), start=1):
        inner = m.group(2)
        title = _text("".join(re.findall(r"<h[12][^>]*>.*?</h[12]>", inner, re.S)))
        where = f"slide {i} ({title[:50] or 'untitled'})"
        for alt, src in _IMG.findall(inner):
            found = png_overlaps(src)
            if found is None:
                problems.append(
                    f"{where}: chart {html.unescape(alt)!r} was not checked for a legend or "
                    "label covering data (draw it with fupan.report.show.figure)"
                )
            else:
                problems += [f"{where}: {p}" for p in found]
    return problems


def count_slides(page: str) -> int:
    return len(re.findall(r'<section class="slide', page))


def chromium_path() -> str | None:
    import shutil

    return (
        shutil.which("chromium")
        or shutil.which("chromium-browser")
        or shutil.which("google-chrome")
    )


def to_pdf(deck_path: str | Path, pdf_path: str | Path | None = None, timeout: int = 180) -> Path:
    """Print the deck to PDF with headless Chromium: one slide per 16:9 landscape page."""
    import subprocess
    import tempfile

    browser = chromium_path()
    if not browser:
        raise RuntimeError(
            "printing to PDF needs Chromium: install Debian's 'chromium' package (make browser-deps)"
        )
    deck_path = Path(deck_path).resolve()
    pdf_path = Path(pdf_path) if pdf_path else deck_path.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="fupan-chromium-") as profile:
        cmd = [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--no-pdf-header-footer",
            "--run-all-compositor-stages-before-draw",
            f"--print-to-pdf={pdf_path}",
            deck_path.as_uri(),
        ]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not pdf_path.exists():
        raise RuntimeError(
            f"Chromium could not print {deck_path.name}: {done.stderr.strip()[-400:]}"
        )
    return pdf_path


def pdf_page_count(pdf_path: str | Path) -> int:
    """Pages in a PDF (counts page objects; enough for the PDFs Chromium writes)."""
    data = Path(pdf_path).read_bytes()
    return len(re.findall(rb"/Type\s*/Page(?![s\w])", data))
