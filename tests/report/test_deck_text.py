"""Slide text never shows a placeholder: show.table/show.slide, deck.text_problems,
and the merged "skipped" slide (issue 17)."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from fupan.report import deck, show  # noqa: E402


@pytest.fixture
def shown(monkeypatch):
    out: list[tuple[dict, str]] = []
    monkeypatch.setattr(show, "_display", lambda data, kind: out.append((data, kind)))
    return out


@pytest.mark.parametrize(
    "text",
    [
        "NRR –, at or above the 100.0% benchmark",
        "净收入留存 inf%，达到 100.0% 的基准",
        "¥inf亿",
        "customer_name: None",
        "mean CLV nan",
        "ROI -inf%",
        "「–」的流失率最高",
        "–",
        "change -0.0 pts",
        "change −0%",
        "first order NaT",
    ],
)
def test_placeholders_are_found(text):
    assert show.placeholder_problems(text), text


@pytest.mark.parametrize(
    "text",
    [
        "Review period 2026-01-01 – 2026-10-31",
        "None of the 3 tiers misses its target",
        "financial infrastructure; nancy's account",
        "change -0.5 pts, 10-0 wins, 0.0%",
        "核心客户 – 金牌与白金",
    ],
)
def test_clean_text_passes(text):
    assert show.placeholder_problems(text) == []


def test_table_renders_missing_as_empty_and_drops_empty_columns(shown):
    df = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "customer_name": [None, None, None],
            "rate": [0.25, np.nan, np.inf],
            "delta": [-0.0, 0.1, None],
            "tier": ["gold", None, "silver"],
        }
    )
    show.table(df, formats={"rate": lambda v: f"{v:.0%}", "delta": lambda v: f"{v:.1f}"})
    ((data, kind),) = shown
    page = data["text/html"]
    assert kind == "table" and "customer_name" not in page
    assert "25%" in page and "0.0" in page and "-0.0" not in page
    for bad in ("–", "nan", "None", "inf", "NaN"):
        assert bad not in page, bad
    assert page.count("<td></td>") == 4  # rate NaN and inf, delta None, tier None


def test_table_with_a_formatter_that_returns_a_dash_shows_an_empty_cell(shown):
    show.table(pd.DataFrame({"x": [1.0, 2.0]}), formats={"x": lambda v: "–" if v > 1 else "one"})
    assert "–" not in shown[0][0]["text/html"] and "one" in shown[0][0]["text/html"]


def test_a_last_column_of_sentences_is_marked_to_wrap_and_a_short_one_is_not(shown):
    """The deck wraps a table's last column only when it holds prose (deck.css
    ``table.fupan-table[data-prose]``): a short verdict wrapped would be squeezed by the
    table's auto layout and make a ten-row table overflow the slide."""
    finding = "scenario 'sla_core' targets tier(s) that no customer holds; edit target.tiers"
    show.table(pd.DataFrame({"check": ["scenarios"], "finding": [finding]}))
    show.table(pd.DataFrame({"rank": [1, 2], "verdict": ["not supported (2 of 3 methods)"] * 2}))
    show.table(
        pd.DataFrame(
            {
                "rank": [1],
                "why": [
                    "没有工单表，无法计算首次响应时间与服务水平达标率（需要工单的打开与首次响应时间）"
                ],
            }
        )
    )
    marked = ['data-prose="last"' in data["text/html"] for data, _ in shown]
    assert marked == [True, False, True]
    assert 'class="dataframe fupan-table"' in shown[0][0]["text/html"]  # the class is unchanged


def test_slide_and_tiles_refuse_placeholders_in_strict_mode(shown, monkeypatch):
    monkeypatch.setenv(show.STRICT_ENV, "1")
    with pytest.raises(ValueError, match="placeholder"):
        show.slide("NRR –, at or above the 100.0% benchmark")
    with pytest.raises(ValueError, match="nan"):
        show.kpis([("mean CLV", "nan", None)])
    with pytest.raises(ValueError):
        show.kpis([("mean CLV", "", None)])
    show.slide("NRR 96.0%, below the 100.0% benchmark")  # clean text is shown
    monkeypatch.delenv(show.STRICT_ENV)
    with pytest.warns(UserWarning, match="placeholder"):
        show.slide("ROI inf%")


def _png(with_data: bool) -> str:
    fig, ax = plt.subplots(figsize=(4, 3))
    ax.set_title("churn by tier")
    if with_data:
        ax.bar(["a", "b"], [1, 2], color="#1f77b4")
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _slide(title: str, body: str) -> str:
    return (
        f'<section class="slide slide-content"><div class="slide-inner">'
        f'<div class="fupan-slide-head"><h2>{title}</h2></div>'
        f'<div class="slide-body">{body}</div>'
        f'<footer class="slide-foot">review · chapter</footer></div></section>'
    )


def test_text_problems_finds_todays_defects():
    page = "".join(
        [
            _slide("NRR –, at or above the 100.0% benchmark", "<p>ok</p>"),
            _slide("Top customers", "<table><tr><td>a</td><td>None</td></tr></table>"),
            _slide("Lost LTV", '<p class="fupan-note">¥inf亿 lost</p>'),
            _slide("Churn by tier", ""),
            _slide("Trend", f'<img class="chart" alt="[chart] trend" src="{_png(False)}">'),
            _slide("Change", "<p>-0.0 pts</p>"),
            _slide("Cell", "<table><tr><td>–</td></tr></table>"),
        ]
    )
    problems = deck.text_problems(page)
    joined = "\n".join(problems)
    assert "slide 1 (NRR" in joined and "'None'" in joined and "inf" in joined
    assert "slide 4 (Churn by tier): empty slide" in joined
    assert "chart '[chart] trend' shows no data" in joined
    assert "negative zero" in joined and "slide 7 (Cell): a table cell" in joined
    flagged = {p.split(" (")[0] for p in problems}
    assert flagged == {f"slide {i}" for i in range(1, 8)}, problems


def test_text_problems_passes_a_clean_deck(tmp_path):
    section = deck.Section(key="01_x", title="Diagnosis", question="Where?")
    section.slides = [
        deck.Page(
            head='<div class="fupan-slide-head"><h2>Churn 12.0%, 2 points above benchmark</h2></div>',
            body=[f'<img class="chart" alt="[chart] churn" src="{_png(True)}">'],
            kinds=["figure"],
        )
    ]
    meta = {"name": "review", "as_of": "2026-10-31", "period_start": "", "generated_at": "now"}
    labels = {k: k for k in deck_labels_keys()}
    out = deck.render([section], meta, labels, "en", tmp_path / "deck.html")
    assert deck.text_problems(out.read_text(encoding="utf-8")) == []


def deck_labels_keys() -> tuple[str, ...]:
    return ("nav", "prev", "next", "toggle", "scroll_view", "period", "as_of", "generated_at")


def _missing_slide(title: str, table: str) -> deck.Page:
    return deck.Page(
        head=f'<div class="fupan-slide-head"><h2>{title}</h2></div>',
        body=[f"<p class=\"fupan-missing\">Optional table '{table}' is missing.</p>"],
        kinds=["missing"],
    )


def test_sections_that_only_say_missing_collapse_into_one_slide():
    content = deck.Page(head="<h2>Churn 12%</h2>", body=["<p>x</p>"], kinds=["note"])
    section = deck.Section(key="01_diagnosis", title="Diagnosis", question="?")
    section.slides = [
        content,
        _missing_slide("Touch frequency", "touches"),
        _missing_slide("Service response", "tickets"),
        _missing_slide("SLA", "tickets"),
    ]
    deck.collapse_skipped(section, "en")
    assert len(section.slides) == 2 and section.slides[0] is content
    merged = section.slides[1]
    assert "3 sections" in merged.head
    text = deck._text("".join(merged.body))
    for title, table in (("Touch frequency", "touches"), ("Service response", "tickets")):
        assert title in text and table in text
    # one such slide stays as it is
    single = deck.Section(key="02", title="t", question="q", slides=[_missing_slide("A", "b")])
    assert len(deck.collapse_skipped(single, "zh").slides) == 1
