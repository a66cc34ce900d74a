"""The deck as a person sees it, in Debian's headless Chromium (no browser download).

Opens the deck from a file URL and checks: zero requests to any other host, no console
errors, keyboard navigation, and for every slide: not blank, nothing overflowing, no text
clipped (cut at the slide body's edge or under the footer), every chart titled, and no
chart whose legend or labels cover its data (checked when matplotlib drew it, recorded in
the PNG: :func:`fupan.report.deck.chart_problems`). Screenshots are saved beside the test run for
a human to look at. The English review the installed wheel ran (`installed_review`) goes through the
same checks, follow-up chapter included.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fupan.core import params as fparams
from fupan.run import runner

pytestmark = [pytest.mark.slow, pytest.mark.browser]


@pytest.fixture(scope="module")
def tiny_deck(tmp_path_factory):
    import tiny

    work = tmp_path_factory.mktemp("browser")
    data = tiny.write(work / "data")
    pf = tiny.params_file(work, data)
    return runner.run(fparams.load(pf), pf, reports_dir=work / "reports", log=lambda m: None).deck


#: Per slide, text the reader cannot see whole: an element of the slide body that reaches
#: past the body's bottom or right edge, or any text under the footer.
CLIPPED_JS = """() => {
  const s = document.querySelector('section.slide.active');
  const body = s.querySelector('.slide-body');
  const foot = s.querySelector('footer.slide-foot');
  if (!body) return [];
  const b = body.getBoundingClientRect();
  const f = foot ? foot.getBoundingClientRect() : null;
  const out = [];
  const parts = s.querySelectorAll('.slide-body p, .slide-body li, .slide-body tr, .slide-body img, .fupan-slide-head *');
  for (const el of parts) {
    const r = el.getBoundingClientRect();
    if (r.width === 0 || r.height === 0) continue;
    const what = (el.innerText || el.alt || el.tagName).trim().slice(0, 60);
    if (el.closest('.slide-body') && (r.bottom > b.bottom + 1 || r.right > b.right + 1))
      out.push('cut at the slide edge: ' + what);
    else if (f && r.bottom > f.top + 1 && r.top < f.bottom)
      out.push('under the footer: ' + what);
  }
  return out;
}"""


def check_deck(browser, deck: Path, shots: Path) -> dict:
    """Open a deck and run every check; returns what it saw."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    external, errors = [], []
    page.on(
        "request",
        lambda r: external.append(r.url) if not r.url.startswith(("file:", "data:")) else None,
    )
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(deck.as_uri())
    page.wait_for_load_state("load")
    n = page.evaluate("window.fupanDeck.count")
    assert n >= 3
    assert page.evaluate("window.fupanDeck.current()") == 0
    page.keyboard.press("ArrowRight")
    assert page.evaluate("window.fupanDeck.current()") == 1
    page.keyboard.press("End")
    assert page.evaluate("window.fupanDeck.current()") == n - 1
    page.keyboard.press("Home")
    assert page.inner_text("#counter").startswith("1 /")
    shots.mkdir(parents=True, exist_ok=True)
    problems = []
    for i in range(n):
        page.evaluate(f"window.fupanDeck.show({i})")
        info = page.evaluate(
            """() => {
              const s = document.querySelector('section.slide.active');
              const body = s.querySelector('.slide-body');
              const text = s.innerText.trim();
              const over = body ? body.scrollHeight > body.clientHeight + 2 || body.scrollWidth > body.clientWidth + 2 : false;
              const tables = Array.from(s.querySelectorAll('table')).filter(t => t.scrollWidth > s.clientWidth - 60).length;
              const imgs = Array.from(s.querySelectorAll('img.chart'));
              const untitled = imgs.filter(im => !im.alt || im.alt.replace('[chart]', '').trim() === '').length;
              const broken = imgs.filter(im => !(im.complete && im.naturalWidth > 0)).length;
              const finding = (s.querySelector('p.finding') || {}).innerText || '';
              return {title: (s.querySelector('h1,h2') || {}).innerText || '', text: text.length, over, tables, untitled, broken,
                      finding: finding.trim().length,
                      content: s.classList.contains('slide-content'), parts: body ? body.children.length : 0};
            }"""
        )
        clipped = page.evaluate(CLIPPED_JS)
        page.screenshot(path=str(shots / f"slide-{i + 1:02d}.png"))
        for what in dict.fromkeys(clipped):
            problems.append(f"slide {i + 1} ({info['title']}): text {what!r}")
        if not info["title"].strip():
            problems.append(f"slide {i + 1}: no title")
        # a slide that cannot be made says why in its finding line: that is content
        if info["content"] and info["parts"] == 0 and not info["finding"]:
            problems.append(
                f"slide {i + 1} ({info['title']}): blank (no chart, table or text under the title)"
            )
        if info["over"] or info["tables"]:
            problems.append(f"slide {i + 1} ({info['title']}): content overflows the slide")
        if info["untitled"]:
            problems.append(f"slide {i + 1} ({info['title']}): chart without a title")
        if info["broken"]:
            problems.append(f"slide {i + 1} ({info['title']}): chart image does not render")
    from fupan.report import deck as fdeck

    problems += fdeck.chart_problems(deck.read_text(encoding="utf-8"))
    page.evaluate("window.fupanDeck.toggle()")
    assert page.evaluate("document.body.classList.contains('scroll-mode')")
    page.close()
    assert not external, f"the deck requested other hosts: {external[:5]}"
    assert not errors, f"console errors: {errors[:5]}"
    assert not problems, "\n".join(problems)
    return {"slides": n}


def test_tiny_deck_in_chromium(browser, tiny_deck, tmp_path):
    seen = check_deck(browser, tiny_deck, tmp_path / "shots")
    assert seen["slides"] >= 8
    assert (tmp_path / "shots" / "slide-01.png").stat().st_size > 5_000


def test_full_review_deck_in_chromium(browser, review_run, tmp_path):
    out = review_run.run_dir / "screenshots"
    check_deck(browser, review_run.deck, out)


def test_english_review_deck_in_chromium(browser, installed_review, tmp_path):
    """The English deck passes every check and shows no Chinese outside customer data: the
    review that the installed wheel ran (every chapter incl. the follow-up, 300 demo
    customers; conftest's `installed_review`), so no review runs for this test alone."""
    english_review = installed_review
    page = english_review.deck.read_text(encoding="utf-8")
    assert "06_followup" in page or "Follow-up" in page
    check_deck(browser, english_review.deck, english_review.run_dir / "screenshots")
    from fupan.report import deck as fdeck

    visible = fdeck._text(re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S))
    import pandas as pd

    customers = pd.read_csv(english_review.work / "demo" / "customers.csv")
    data_words = set()  # names, regions, industries: the customer's own data, not the deck's
    for col in ("customer_name", "region", "industry", "account_manager"):
        if col in customers:
            data_words |= set(customers[col].dropna().astype(str))
    for word in sorted(data_words, key=len, reverse=True):
        visible = visible.replace(word, "")
    cjk = re.findall(r".{0,30}[\u3400-\u9fff]+.{0,10}", visible)
    assert not cjk, cjk[:5]


def test_check_deck_catches_clipped_text_and_covered_data(browser, tmp_path, monkeypatch):
    """The checks fail on what they guard against: a footnote cut off at the slide's foot,
    and a chart whose legend covers its bars (drawn with the legend left in place)."""
    import matplotlib

    matplotlib.use("Agg")
    from fupan.report import charts, show
    from fupan.report import deck as fdeck

    charts.setup()
    fig, ax = charts.new("Bars under the legend")
    ax.bar([0, 1, 2], [0.5, 0.9, 1.0], label="value")
    ax.legend(loc="lower right")
    shown = []
    monkeypatch.setattr(show, "_display", lambda data, kind: shown.append(data))
    monkeypatch.setenv(show.PLACE_LEGENDS_ENV, "0")
    show.figure(fig)
    img = f'<img class="chart" alt="[chart] Bars" src="data:image/png;base64,{shown[0]["image/png"]}">'
    notes = "".join(f'<p class="fupan-note">footnote line {k}</p>' for k in range(40))
    sections = [
        fdeck.Section(
            key="01_x",
            title="Chapter",
            question="Q?",
            slides=[
                fdeck.Page(head="<div class='fupan-slide-head'><h2>Legend</h2></div>", body=[img]),
                fdeck.Page(head="<div class='fupan-slide-head'><h2>Notes</h2></div>", body=[notes]),
            ],
        )
    ]
    out = fdeck.render(
        sections, {"name": "t", "as_of": "2026-10-31"}, {}, "en", tmp_path / "d.html"
    )
    with pytest.raises(AssertionError) as caught:
        check_deck(browser, out, tmp_path / "shots")
    message = str(caught.value)
    assert "the legend covers" in message
    assert "cut at the slide edge" in message or "under the footer" in message


def test_pdf_has_one_landscape_page_per_slide(tiny_deck, tmp_path):
    from fupan.report import deck

    if not deck.chromium_path():
        pytest.skip("Debian chromium is not installed")
    pdf = deck.to_pdf(tiny_deck, tmp_path / "deck.pdf")
    slides = deck.count_slides(tiny_deck.read_text(encoding="utf-8"))
    assert deck.pdf_page_count(pdf) == slides
    box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)", pdf.read_bytes())
    assert box and float(box.group(1)) > float(box.group(2)), "pages must be landscape"
