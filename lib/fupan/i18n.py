"""The label catalogue (zh / en) and number formats.

Every word a deck shows comes from ``lib/fupan/locale/*.yaml``: one file per chapter, each
key holding its ``zh`` and ``en`` text. A missing key or language raises, so a test that
renders both languages proves every label resolves.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

LOCALE_DIR = Path(__file__).parent / "locale"
LANGS = ("zh", "en")


class MissingLabelError(KeyError):
    pass


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, str]]:
    """All labels, merged from every locale file; a key defined twice is an error."""
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(LOCALE_DIR.glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        for key, texts in data.items():
            if key in merged:
                raise ValueError(f"label '{key}' is defined twice (again in {path.name})")
            if not isinstance(texts, dict) or set(texts) != set(LANGS):
                raise ValueError(f"label '{key}' in {path.name} needs exactly zh and en texts")
            merged[key] = {k: str(v) for k, v in texts.items()}
    return merged


def t(key: str, lang: str, **values: Any) -> str:
    """The label ``key`` in ``lang``, with ``{placeholders}`` filled from ``values``."""
    try:
        text = catalogue()[key][lang]
    except KeyError:
        raise MissingLabelError(
            f"label '{key}' ({lang}) is not in the catalogue {LOCALE_DIR}"
        ) from None
    return text.format(**values) if values else text


class Fmt:
    """Number formats for one language and the params' currency settings."""

    def __init__(
        self, lang: str = "zh", currency_symbol: str = "¥", thousands: str = ",", decimals: int = 1
    ):
        self.lang = lang
        self.symbol = currency_symbol
        self.sep = thousands
        self.decimals = decimals

    @classmethod
    def from_params(cls, params: Any) -> Fmt:
        f = params.format
        return cls(params.lang, f.currency_symbol, f.thousands, f.decimals)

    @staticmethod
    def fixed(x: float, decimals: int, spec: str = ",") -> str:
        """``x`` to ``decimals`` places (``spec``: "," thousands, "+" a sign), never "-0" or
        "+0": a value that rounds to zero has no sign."""
        text = f"{x:{spec}.{decimals}f}"
        zero = not any(c in "123456789" for c in text)
        return text[1:] if zero and text[:1] in "+-" else text

    def _thousands(self, text: str) -> str:
        return text.replace(",", self.sep) if self.sep != "," else text

    def num(self, x: float | None, decimals: int = 0) -> str:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "–"
        return self._thousands(self.fixed(x, decimals))

    def int(self, x: float | None) -> str:
        return self.num(x, 0)

    def pct(self, x: float | None, decimals: int | None = None) -> str:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "–"
        d = self.decimals if decimals is None else decimals
        return f"{self.fixed(100 * x, d, '')}%"

    def pts(self, x: float | None, decimals: int | None = None) -> str:
        """A difference of two rates, in percentage points, with its sign."""
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "–"
        d = self.decimals if decimals is None else decimals
        unit = "个百分点" if self.lang == "zh" else " pts"
        return f"{self.fixed(100 * x, d, '+')}{unit}"

    def days(self, x: float | None, decimals: int = 1) -> str:
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "–"
        return self.fixed(x, decimals, "") + (" 天" if self.lang == "zh" else " days")

    def money(self, x: float | None, compact: bool = True) -> str:
        """Currency; compact uses 万/亿 in Chinese and k/M/B in English."""
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "–"
        a = abs(x)
        sign = "-" if x < 0 and a >= 0.5 else ""  # a loss that rounds to nothing has no sign
        if not compact:
            return f"{sign}{self.symbol}{self._thousands(f'{a:,.0f}')}"
        if self.lang == "zh":
            for div, unit in ((1e8, "亿"), (1e4, "万")):
                if a >= div:
                    return f"{sign}{self.symbol}{self._thousands(f'{a / div:,.{self.decimals}f}')}{unit}"
        else:
            for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
                if a >= div:
                    return f"{sign}{self.symbol}{self._thousands(f'{a / div:,.{self.decimals}f}')}{unit}"
        return f"{sign}{self.symbol}{self._thousands(f'{a:,.0f}')}"
