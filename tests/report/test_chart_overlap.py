"""Legends and labels never cover data (issue 19): the render-time check and the fix."""

from __future__ import annotations

import base64
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from fupan.report import charts, deck  # noqa: E402


@pytest.fixture(autouse=True)
def _style():
    charts.setup()
    yield
    plt.close("all")


def _bars_under_legend():
    """The bug seen on the English deck: tall bars in the lower right, legend placed there."""
    fig, ax = charts.new("Gross and net revenue retention")
    ax.bar([0, 1, 2, 3], [0.7, 0.9, 0.6, 1.2], label="net")
    ax.bar([0.4, 1.4, 2.4, 3.4], [0.6, 0.8, 0.5, 0.75], label="gross")
    ax.axhline(1.0, linestyle="--", color="k", label="benchmark")
    ax.legend(loc="lower right")
    return fig, ax


def test_legend_over_bars_is_found():
    fig, _ = _bars_under_legend()
    problems = charts.figure_problems(fig)
    assert problems and "legend covers" in problems[0]


def test_legend_clear_of_data_passes():
    fig, ax = charts.new("Two points")
    ax.plot([0, 1], [0, 0.1], label="a")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right")
    assert charts.figure_problems(fig) == []


def test_legend_over_a_value_label_is_found():
    fig, ax = charts.new("Shares")
    ax.plot([0, 1], [0.1, 0.2], label="share")
    ax.text(0.97, 0.95, "84.5%", transform=ax.transAxes, ha="right", va="top")
    ax.set_ylim(0, 1)
    ax.legend(loc="upper right", fontsize=14)
    assert any("84.5%" in p for p in charts.figure_problems(fig)), charts.figure_problems(fig)


def test_place_legends_moves_a_covering_legend_clear():
    fig, _ = _bars_under_legend()
    charts.place_legends(fig)
    assert charts.figure_problems(fig) == []


def test_place_legends_goes_outside_when_no_corner_is_free():
    fig, ax = charts.new("Dense")
    for k in range(6):
        ax.plot(range(50), [((i * (k + 3)) % 17) for i in range(50)], label=f"series {k}")
    ax.legend(loc="center")
    charts.place_legends(fig)
    assert charts.figure_problems(fig) == []
    box = ax.get_legend().get_window_extent(fig.canvas.get_renderer())
    assert box.x0 >= ax.get_window_extent().x1  # right of the plot area


def test_overlapping_labels_are_found():
    fig, ax = charts.new("Labels")
    ax.plot([0, 1], [0, 1])
    ax.text(0.5, 0.5, "first label here")
    ax.text(0.52, 0.5, "second label")
    assert any("overlap" in p for p in charts.figure_problems(fig))


def test_show_figure_records_the_check_in_the_png(monkeypatch):
    from fupan.report import show

    shown = []
    monkeypatch.setattr(show, "_display", lambda data, kind: shown.append(data))
    fig, _ = _bars_under_legend()
    show.figure(fig)
    src = "data:image/png;base64," + shown[0]["image/png"]
    assert deck.png_overlaps(src) == []  # moved clear, and recorded as checked
    monkeypatch.setenv(show.PLACE_LEGENDS_ENV, "0")
    fig, _ = _bars_under_legend()
    show.figure(fig)
    src = "data:image/png;base64," + shown[1]["image/png"]
    assert deck.png_overlaps(src) and "legend covers" in deck.png_overlaps(src)[0]
    page = (
        '<section class="slide slide-content"><h2>T</h2>'
        f'<img class="chart" alt="[chart] x" src="{src}"></section>'
        '<section class="slide slide-content"><h2>U</h2>'
        '<img class="chart" alt="[chart] y" src="data:image/png;base64,'
        + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"0" * 40).decode()
        + '"></section>'
    )
    found = deck.chart_problems(page)
    assert any("slide 1 (T)" in p and "legend covers" in p for p in found)
    assert any("slide 2 (U)" in p and "not checked" in p for p in found)
    assert os.environ[show.PLACE_LEGENDS_ENV] == "0" and json.dumps([]) == "[]"


def test_an_anchored_legend_that_covers_data_is_moved_too():
    fig, ax = charts.new("Anchored")
    ax.bar([0, 1, 2, 3], [1.0, 1.0, 1.0, 0.2], label="value")
    ax.set_ylim(0, 1.2)
    ax.legend(loc="center", bbox_to_anchor=(0.5, 0.5))
    assert charts.figure_problems(fig)
    charts.place_legends(fig)
    assert charts.figure_problems(fig) == []


def test_a_figure_legend_over_a_panel_goes_below_the_panels():
    fig, axes = plt.subplots(1, 2)
    fig.suptitle("Panels")
    for ax in axes:
        ax.plot(range(10), [1.0] * 10, label="target")
        ax.set_ylim(0.9, 1.1)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="center")
    assert charts.figure_problems(fig)
    charts.place_legends(fig)
    assert charts.figure_problems(fig) == []


def test_a_trend_of_fewer_than_six_points_is_found():
    import pandas as pd

    fig, ax = charts.new("Three months")
    ax.plot(pd.date_range("2026-08-31", periods=3, freq="ME"), [0.1, 0.12, 0.11])
    ax.axhline(0.12, linestyle="--")  # a target line is not a trend
    assert charts.figure_problems(fig) == ["chart 'Three months': a trend of only 3 points"]
    fig, ax = charts.new("Eight months")
    ax.plot(pd.date_range("2026-03-31", periods=8, freq="ME"), [0.1, 0.12] * 4)
    assert charts.figure_problems(fig) == []
    fig, ax = charts.new("Not over time")
    ax.plot([1, 2, 3], [0.1, 0.12, 0.11])  # three categories or deciles: no trend claimed
    assert charts.figure_problems(fig) == []


def test_a_date_marker_is_not_a_trend():
    import datetime as dt

    fig, ax = charts.new("Coverage")
    ax.barh(0, 300, left=dt.date(2025, 1, 1))
    ax.axvline(dt.date(2025, 10, 31), linestyle="--")
    assert charts.figure_problems(fig) == []


def test_chart_style_is_seaborns_white_grid_theme_without_importing_it():
    sns = pytest.importorskip("seaborn")
    theme = {**sns.axes_style("whitegrid"), **sns.plotting_context("notebook")}
    theme.pop("image.cmap")  # seaborn's own colormap; every fupan chart names its colormap
    assert charts.SEABORN_WHITEGRID == theme
