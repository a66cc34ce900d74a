"""The deck as a person sees it, in Debian's headless Chromium (no browser download).

Opens the deck from a file URL and checks: zero requests to any other host, no console
errors, keyboard navigation, and for every slide: not blank, nothing overflowing, every chart
titled. Screenshots are saved beside the test run for a human to look at.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from fupan import params as fparams
from fupan import runner

pytestmark = [pytest.mark.slow, pytest.mark.browser]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM:
        pytest.skip("Debian chromium is not installed (make browser-deps installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture(scope="module")
def tiny_deck(tmp_path_factory):
    import tiny

    work = tmp_path_factory.mktemp("browser")
    data = tiny.write(work / "data")
    pf = tiny.params_file(work, data)
    return runner.run(fparams.load(pf), pf, reports_dir=work / "reports", log=lambda m: None).deck


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
        page.screenshot(path=str(shots / f"slide-{i + 1:02d}.png"))
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


def test_pdf_has_one_landscape_page_per_slide(tiny_deck, tmp_path):
    from fupan import deck

    if not deck.chromium_path():
        pytest.skip("Debian chromium is not installed")
    pdf = deck.to_pdf(tiny_deck, tmp_path / "deck.pdf")
    slides = deck.count_slides(tiny_deck.read_text(encoding="utf-8"))
    assert deck.pdf_page_count(pdf) == slides
    box = re.search(rb"/MediaBox\s*\[\s*0\s+0\s+([\d.]+)\s+([\d.]+)", pdf.read_bytes())
    assert box and float(box.group(1)) > float(box.group(2)), "pages must be landscape"
