"""Chart style shared by every chapter: one palette, CJK-capable fonts, titled axes.

Call :func:`setup` once per notebook. Chinese glyphs come from Noto Sans CJK SC, registered
with matplotlib's font manager directly so nothing is written into matplotlib's install and
nothing is fetched at run time: Debian's ``fonts-noto-cjk`` (regular and bold, installed by
``make setup`` / ``make browser-deps``) when present, else the regular face shipped in the
``mplfonts`` package. Titles are bold; with no bold CJK face they are drawn in the regular
one, and matplotlib's "findfont: Failed to find font weight bold" for that substitution is
dropped (it would print in every executed notebook).

A legend never covers data: :func:`place_legends` moves one that does (to matplotlib's
"best", a free corner, or outside the plot), and :func:`figure_problems` checks every chart
at render time; :func:`fupan.report.show.figure` runs both and records the result in the PNG.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() == "agg" else None

import logging  # noqa: E402

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

CJK_FAMILY = "Noto Sans CJK SC"
PALETTE = ["#1f4e79", "#c0504d", "#4f9a94", "#e6a23c", "#7f6aa8", "#8c8c8c", "#2e8b57", "#d4763b"]
STATUS_COLORS = {"green": "#2e8b57", "amber": "#e6a23c", "red": "#c0392b", "grey": "#9e9e9e"}
BAND_COLORS = {"green": "#2e8b57", "amber": "#e6a23c", "red": "#c0392b"}
#: Where Debian's fonts-noto-cjk puts Noto Sans CJK (each .ttc holds SC, TC, JP, KR, HK).
SYSTEM_CJK_DIRS = (Path("/usr/share/fonts/opentype/noto"), Path("/usr/share/fonts/noto-cjk"))
SYSTEM_CJK_FILES = {"regular": "NotoSansCJK-Regular.ttc", "bold": "NotoSansCJK-Bold.ttc"}


def cjk_font_path() -> Path:
    import mplfonts

    path = Path(mplfonts.__file__).parent / "fonts" / "NotoSansCJKsc-Regular.otf"
    if not path.exists():
        raise FileNotFoundError(
            f"Noto Sans CJK SC not found at {path}; reinstall the mplfonts package"
        )
    return path


def system_cjk_fonts() -> list[Path]:
    """Debian's Noto Sans CJK regular and bold collections, when both are installed.

    Only with a matplotlib that reads a collection's faces by index (3.10 and later): an
    older one would draw every face of the .ttc with its first, the Japanese glyph forms.
    """
    if "index" not in getattr(font_manager.FontEntry, "__dataclass_fields__", {}):
        return []
    for folder in SYSTEM_CJK_DIRS:
        paths = [folder / name for name in SYSTEM_CJK_FILES.values()]
        if all(p.is_file() for p in paths):
            return paths
    return []


def _has_bold(family: str) -> bool:
    return any(
        f.name == family and font_manager._normalize_weight(f.weight) >= 600
        for f in font_manager.fontManager.ttflist
    )


class _BoldSubstitution(logging.Filter):
    """Drops matplotlib's warning that a bold CJK title is drawn in the regular face."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.msg.startswith("findfont: Failed to find font weight")
            and CJK_FAMILY in str(record.args)
        )


def register_cjk_font() -> str:
    """Make Noto Sans CJK SC known to matplotlib (with its bold face when installed)."""
    known = {f.fname for f in font_manager.fontManager.ttflist}
    for path in system_cjk_fonts() or [cjk_font_path()]:
        if str(path) not in known:
            font_manager.fontManager.addfont(str(path))
    fm_log = logging.getLogger("matplotlib.font_manager")
    if not _has_bold(CJK_FAMILY) and not any(
        isinstance(f, _BoldSubstitution) for f in fm_log.filters
    ):
        fm_log.addFilter(_BoldSubstitution())
    return CJK_FAMILY


#: seaborn 0.13's ``set_theme(style="whitegrid", context="notebook")`` as rcParams (its
#: ``axes_style`` and ``plotting_context``): the chart style is seaborn's theme, and importing
#: seaborn (and scipy.stats with it) only to set it cost 1.1 CPU s in every notebook. Its
#: default colormap ("rocket", which only seaborn registers) is left out: every fupan chart
#: names its colormap. ``tests/report/test_chart_overlap.py`` checks this against seaborn.
SEABORN_WHITEGRID: dict[str, object] = {
    "axes.axisbelow": True,
    "axes.edgecolor": ".8",
    "axes.facecolor": "white",
    "axes.grid": True,
    "axes.labelcolor": ".15",
    "axes.labelsize": 12,
    "axes.linewidth": 1.25,
    "axes.spines.bottom": True,
    "axes.spines.left": True,
    "axes.spines.right": True,
    "axes.spines.top": True,
    "axes.titlesize": 12,
    "figure.facecolor": "white",
    "font.family": ["sans-serif"],
    "font.sans-serif": [
        "Arial",
        "DejaVu Sans",
        "Liberation Sans",
        "Bitstream Vera Sans",
        "sans-serif",
    ],
    "font.size": 12,
    "grid.color": ".8",
    "grid.linestyle": "-",
    "grid.linewidth": 1,
    "legend.fontsize": 11,
    "legend.title_fontsize": 12,
    "lines.linewidth": 1.5,
    "lines.markersize": 6,
    "lines.solid_capstyle": "round",
    "patch.edgecolor": "w",
    "patch.force_edgecolor": True,
    "patch.linewidth": 1,
    "text.color": ".15",
    "xtick.bottom": False,
    "xtick.color": ".15",
    "xtick.direction": "out",
    "xtick.labelsize": 11,
    "xtick.major.size": 6,
    "xtick.major.width": 1.25,
    "xtick.minor.size": 4,
    "xtick.minor.width": 1,
    "xtick.top": False,
    "ytick.color": ".15",
    "ytick.direction": "out",
    "ytick.labelsize": 11,
    "ytick.left": False,
    "ytick.major.size": 6,
    "ytick.major.width": 1.25,
    "ytick.minor.size": 4,
    "ytick.minor.width": 1,
    "ytick.right": False,
}


def setup(dpi: int = 110) -> None:
    """Apply the fupan chart style: seaborn's white-grid theme (:data:`SEABORN_WHITEGRID`)
    with the palette, then the CJK font and fupan's sizes."""
    from cycler import cycler
    from matplotlib.colors import to_rgb

    family = register_cjk_font()
    plt.rcParams.update(
        {
            **SEABORN_WHITEGRID,
            "font.family": [family],
            "axes.prop_cycle": cycler("color", [to_rgb(c) for c in PALETTE]),
        }
    )
    plt.rcParams.update(
        {
            "font.family": "sans-serif",
            "font.sans-serif": [family, "DejaVu Sans"],
            # CJK fonts have no U+2212 minus sign; the ASCII hyphen avoids "Glyph missing".
            "axes.unicode_minus": False,
            "figure.dpi": dpi,
            "savefig.dpi": dpi,
            "figure.figsize": (9.0, 4.6),
            "axes.titlesize": 13,
            "axes.titleweight": "bold",
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    )


def new(title: str, xlabel: str = "", ylabel: str = "", figsize: tuple[float, float] | None = None):
    """A figure with one titled axes (a chart without a title fails the deck check)."""
    fig, ax = plt.subplots(figsize=figsize)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return fig, ax


def axes(ax, title: str, xlabel: str = "", ylabel: str = "", figsize=None):
    """``ax`` titled and labelled, or the axes of a new figure (:func:`new`) when ``ax`` is
    None: a plot function draws on the axes it is given or on a figure of its own."""
    if ax is None:
        return new(title, xlabel=xlabel, ylabel=ylabel, figsize=figsize)[1]
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return ax


def percent_axis(ax, axis: str = "y", decimals: int = 0) -> None:
    from matplotlib.ticker import PercentFormatter

    fmt = PercentFormatter(xmax=1.0, decimals=decimals)
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)


# --------------------------------------------------------------------------------------
# Legends and labels never cover data

#: PNG text key under which :func:`fupan.report.show.figure` records what :func:`figure_problems`
#: found when the chart was drawn (a JSON list; empty when nothing overlaps).
OVERLAP_KEY = "fupan-overlaps"
_MIN_AREA_PX = 6.0  # an overlap smaller than this (a shared edge, antialiasing) is none
_INSIDE_LOCS = (
    "upper right",
    "upper left",
    "lower left",
    "lower right",
    "center right",
    "center left",
    "upper center",
    "lower center",
)


def _area(a, b) -> float:
    from matplotlib.transforms import Bbox

    inter = Bbox.intersection(a, b)
    return 0.0 if inter is None else max(inter.width, 0) * max(inter.height, 0)


def _translucent(artist) -> bool:
    """A background band (axvspan, a shaded interval): covering part of it hides no value."""
    alpha = artist.get_alpha()
    face = getattr(artist, "get_facecolor", lambda: None)()
    try:
        import numpy as np

        face_alpha = float(np.min(np.asarray(face, dtype=float).reshape(-1, 4)[:, 3]))
    except (TypeError, ValueError):
        face_alpha = 1.0
    return (alpha is not None and alpha < 0.5) or face_alpha < 0.5


def _data_marks(ax, renderer) -> list[tuple[str, object]]:
    """What a reader must see on ``ax``: lines, bars, points, error bars, value labels.

    Each item is (what, test) where ``test(bbox)`` says whether the mark lies under
    ``bbox`` (display pixels).
    """
    import numpy as np
    from matplotlib.collections import LineCollection, PathCollection, PolyCollection, QuadMesh

    marks: list[tuple[str, object]] = []
    for line in ax.lines:
        if not line.get_visible() or len(line.get_xydata()) == 0:
            continue
        path = line.get_transform().transform_path(line.get_path())
        pts = path.vertices
        pad = (
            line.get_markersize() / 2 * renderer.points_to_pixels(1)
            if line.get_marker() not in (None, "None", "", " ")
            else 0.0
        )

        ls = line.get_linestyle()

        def hit(bbox, path=path, pts=pts, pad=pad, ls=ls):
            inside = (
                (pts[:, 0] >= bbox.x0 - pad)
                & (pts[:, 0] <= bbox.x1 + pad)
                & (pts[:, 1] >= bbox.y0 - pad)
                & (pts[:, 1] <= bbox.y1 + pad)
            )
            if inside.any():
                return True
            return (
                ls not in ("None", "", " ")
                and len(pts) > 1
                and path.intersects_bbox(bbox, filled=False)
            )

        marks.append((f"line '{line.get_label()}'", hit))
    for patch in ax.patches:
        if not patch.get_visible() or _translucent(patch):
            continue
        ext = patch.get_window_extent(renderer)
        if ext.width * ext.height <= 0:
            continue
        marks.append(("a bar or shape", lambda bbox, ext=ext: _area(ext, bbox) > _MIN_AREA_PX))
    for coll in ax.collections:
        if not coll.get_visible():
            continue
        if isinstance(coll, PathCollection) and len(coll.get_offsets()):
            pts = coll.get_offset_transform().transform(np.asarray(coll.get_offsets(), dtype=float))
            sizes = coll.get_sizes()
            pad = (
                np.sqrt(float(np.max(sizes))) / 2 if len(sizes) else 3.0
            ) * renderer.points_to_pixels(1)

            def hit(bbox, pts=pts, pad=pad):
                return bool(
                    (
                        (pts[:, 0] >= bbox.x0 - pad)
                        & (pts[:, 0] <= bbox.x1 + pad)
                        & (pts[:, 1] >= bbox.y0 - pad)
                        & (pts[:, 1] <= bbox.y1 + pad)
                    ).any()
                )

            marks.append(("points", hit))
        elif isinstance(coll, LineCollection):
            tr = coll.get_transform()
            paths = [tr.transform_path(p) for p in coll.get_paths()]
            marks.append(
                (
                    "error bars or segments",
                    lambda bbox, paths=paths: any(
                        p.intersects_bbox(bbox, filled=False) for p in paths
                    ),
                )
            )
        elif isinstance(coll, (PolyCollection, QuadMesh)) and not _translucent(coll):
            ext = coll.get_window_extent(renderer)
            marks.append(("a filled area", lambda bbox, ext=ext: _area(ext, bbox) > _MIN_AREA_PX))
    for text in ax.texts:
        if not text.get_visible() or not text.get_text().strip():
            continue
        ext = text.get_window_extent(renderer)
        marks.append(
            (
                f"label '{text.get_text()[:30]}'",
                lambda bbox, ext=ext: _area(ext, bbox) > _MIN_AREA_PX,
            )
        )
    return marks


def _legends(fig) -> list[tuple[object, object]]:
    """(legend, the axes it belongs to or None for a figure legend)."""
    out = [(ax.get_legend(), ax) for ax in fig.axes if ax.get_legend() is not None]
    return out + [(leg, None) for leg in fig.legends]


def _covered(fig, legend, renderer) -> list[str]:
    if not legend.get_visible():
        return []
    box = legend.get_window_extent(renderer)
    found = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for what, hit in _data_marks(ax, renderer):
            if hit(box):
                found.append(what)
    return found


#: A line over time needs this many points to read as a trend (fupan.chapters.kpi uses the same).
MIN_TREND_POINTS = 6


def _short_trends(ax) -> list[str]:
    """Lines over dates with 2 to ``MIN_TREND_POINTS - 1`` points: a near-empty trend."""
    import matplotlib.dates as mdates
    import numpy as np

    conv = ax.xaxis.get_converter() if hasattr(ax.xaxis, "get_converter") else ax.xaxis.converter
    if not isinstance(conv, (mdates.DateConverter, mdates._SwitchableDateConverter)):
        return []
    out = []
    for line in ax.lines:
        y = np.asarray(line.get_ydata(), dtype=float)
        k = int(np.isfinite(y).sum())
        if (
            line.get_visible()
            and line.get_linestyle() not in ("None", "", " ")
            and 1 < k < MIN_TREND_POINTS
        ):
            xs = set(map(str, np.asarray(line.get_xdata()).tolist()))
            # a level (axhline) or a date marker (axvline) is a reference, not a trend
            if len(set(y[np.isfinite(y)].tolist())) > 1 and len(xs) > 1:
                out.append(f"a trend of only {k} points")
    return out


def figure_problems(fig, drawn: bool = False) -> list[str]:
    """Legends that cover data, and value labels that cover each other, one line each.

    Compares, at render time, each legend's box with every line, bar, point, error bar,
    opaque filled area and text label of every axes of ``fig``; and each text label with
    the other labels of its axes. Empty when the chart reads cleanly. ``drawn``: the
    figure was drawn as it is (as :func:`place_legends` leaves it); else it is drawn first.
    """
    if not drawn:
        fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    title = next((ax.get_title() for ax in fig.axes if ax.get_title()), "") or (
        fig._suptitle.get_text() if fig._suptitle else ""
    )
    problems = []
    for legend, _ in _legends(fig):
        covered = _covered(fig, legend, renderer)
        if covered:
            shown = ", ".join(dict.fromkeys(covered))
            problems.append(f"chart '{title}': the legend covers {shown[:120]}")
    for ax in fig.axes:
        problems += [f"chart '{title}': {p}" for p in dict.fromkeys(_short_trends(ax))]
        boxes = [
            (t.get_text(), t.get_window_extent(renderer))
            for t in ax.texts
            if t.get_visible() and t.get_text().strip()
        ]
        for i, (a, ba) in enumerate(boxes):
            for b, bb in boxes[i + 1 :]:
                if _area(ba, bb) > _MIN_AREA_PX:
                    problems.append(f"chart '{title}': labels '{a[:20]}' and '{b[:20]}' overlap")
    return problems


def place_legends(fig) -> None:
    """Move every legend that covers data to where it covers none.

    An axes legend tries matplotlib's "best" and then each corner and edge inside the plot;
    failing those it goes outside the plot area, to the right. A figure legend that covers
    a panel goes below the panels. Call just before saving (:func:`fupan.report.show.figure` does).

    The figure is drawn once before and once after (when a legend moved): a legend's box
    at each place tried is measured with the first draw's renderer (a legend is laid out
    when its extent is asked for, and moving one moves no data). Afterwards the figure is
    drawn as it now is: :func:`figure_problems` need not draw it again (``drawn=True``).
    """
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    moved = False
    for legend, ax in _legends(fig):
        if not _covered(fig, legend, renderer):
            continue
        moved = True
        if ax is not None:
            legend.set_bbox_to_anchor(None)  # inside the plot area, wherever it was anchored
            for loc in ("best", *_INSIDE_LOCS):
                legend.set_loc(loc)
                if not _covered(fig, legend, renderer):
                    break
            else:
                legend.set_loc("upper left")
                legend.set_bbox_to_anchor((1.02, 1.0), transform=ax.transAxes)
        else:
            legend.set_loc("upper center")
            legend.set_bbox_to_anchor((0.5, 0.0), transform=fig.transFigure)
            legend.set_ncols(max(1, min(4, len(legend.get_texts()))))
    if moved:
        fig.canvas.draw()
