"""Chart style shared by every chapter: one palette, CJK-capable fonts, titled axes.

Call :func:`setup` once per notebook. Chinese glyphs come from Noto Sans CJK SC, registered
with matplotlib's font manager directly so nothing is written into matplotlib's install and
nothing is fetched at run time: Debian's ``fonts-noto-cjk`` (regular and bold, installed by
``make setup`` / ``make browser-deps``) when present, else the regular face shipped in the
``mplfonts`` package. Titles are bold; with no bold CJK face they are drawn in the regular
one, and matplotlib's "findfont: Failed to find font weight bold" for that substitution is
dropped (it would print in every executed notebook).
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
