"""Chart style shared by every chapter: one palette, CJK-capable fonts, titled axes.

Call :func:`setup` once per notebook. Chinese glyphs come from the Noto Sans CJK SC font
shipped in the ``mplfonts`` package, registered with matplotlib's font manager directly so
nothing is written into matplotlib's install and nothing is fetched at run time.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg") if matplotlib.get_backend().lower() == "agg" else None

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib import font_manager  # noqa: E402

CJK_FAMILY = "Noto Sans CJK SC"
PALETTE = ["#1f4e79", "#c0504d", "#4f9a94", "#e6a23c", "#7f6aa8", "#8c8c8c", "#2e8b57", "#d4763b"]
STATUS_COLORS = {"green": "#2e8b57", "amber": "#e6a23c", "red": "#c0392b", "grey": "#9e9e9e"}
BAND_COLORS = {"green": "#2e8b57", "amber": "#e6a23c", "red": "#c0392b"}


def cjk_font_path() -> Path:
    import mplfonts

    path = Path(mplfonts.__file__).parent / "fonts" / "NotoSansCJKsc-Regular.otf"
    if not path.exists():
        raise FileNotFoundError(
            f"Noto Sans CJK SC not found at {path}; reinstall the mplfonts package"
        )
    return path


def register_cjk_font() -> str:
    path = str(cjk_font_path())
    if path not in {f.fname for f in font_manager.fontManager.ttflist}:
        font_manager.fontManager.addfont(path)
    return CJK_FAMILY


def setup(dpi: int = 110) -> None:
    """Apply the fupan chart style (after seaborn's theme, which would reset the font)."""
    import seaborn as sns

    family = register_cjk_font()
    sns.set_theme(style="whitegrid", palette=PALETTE, font=family)
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


def percent_axis(ax, axis: str = "y", decimals: int = 0) -> None:
    from matplotlib.ticker import PercentFormatter

    fmt = PercentFormatter(xmax=1.0, decimals=decimals)
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(fmt)
