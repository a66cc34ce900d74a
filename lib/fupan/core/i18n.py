"""The label catalogue (zh / en) and number formats.

Every word a deck shows comes from ``lib/fupan/core/locale/*.yaml``: one file per chapter, each
key holding its ``zh`` and ``en`` text. A missing key or language raises, so a test that
renders both languages proves every label resolves.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

LOCALE_DIR = Path(__file__).parent / "locale"
LANGS = ("zh", "en")
#: ``{n|kind|kinds}``: the singular when the value ``n`` is 1, else the plural (English
#: text; Chinese needs none). The value may be a number or its formatted text ("1,204").
_PLURAL = re.compile(r"\{(\w+)\|([^{}|]*)\|([^{}|]*)\}")


class MissingLabelError(KeyError):
    pass


# libyaml's safe loader parses the locale ~8x faster than the pure-Python one (0.17 -> 0.02
# CPU s in every notebook kernel); the same safe subset, so the data are equal
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@lru_cache(maxsize=1)
def catalogue() -> dict[str, dict[str, str]]:
    """All labels, merged from every locale file; a key defined twice is an error."""
    merged: dict[str, dict[str, str]] = {}
    for path in sorted(LOCALE_DIR.glob("*.yaml")):
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_SAFE_LOADER) or {}
        for key, texts in data.items():
            if key in merged:
                raise ValueError(f"label '{key}' is defined twice (again in {path.name})")
            if not isinstance(texts, dict) or set(texts) != set(LANGS):
                raise ValueError(f"label '{key}' in {path.name} needs exactly zh and en texts")
            merged[key] = {k: str(v) for k, v in texts.items()}
    return merged


def t(key: str, lang: str, **values: Any) -> str:
    """The label ``key`` in ``lang``, with ``{placeholders}`` filled from ``values``.

    Counts read correctly in English: ``{n|kind|kinds}`` picks a form by ``n``, and a
    listed plural noun right after a count of one ("{n} warnings", "{n} lost customers",
    "{n} scenario(s)") takes its singular form (see :func:`_singular_after_one`).
    """
    try:
        text = catalogue()[key][lang]
    except KeyError:
        raise MissingLabelError(
            f"label '{key}' ({lang}) is not in the catalogue {LOCALE_DIR}"
        ) from None
    if values:
        text = _PLURAL.sub(lambda m: plural(values.get(m.group(1)), m.group(2), m.group(3)), text)
        if lang == "en":
            text = _singular_after_one(text, values)
        return text.format(**values)
    return text


#: Plural nouns a count in an English label may stand before, with their singular: "{n}
#: customers" reads "1 customer" when n is 1. Words not listed are left alone.
_NOUNS = {
    w: w[:-1]
    for w in (
        "accounts alerts chains channels chapters churners contracts customers days decisions "
        "drivers errors events flags groups issues kinds levels managers months orders points "
        "purchases quarters records rows rules resamples scenarios sections segments shuffles "
        "snapshots surveys tables tickets tiers times values warnings weeks years"
    ).split()
}
_NOUNS.update(
    {"analyses": "analysis", "industries": "industry", "categories": "category", "touches": "touch"}
)
#: a verb right after the counted noun (or the count) agrees with it
_VERBS = {"are": "is", "were": "was", "have": "has", "need": "needs", "do": "does"}
#: words that end a noun phrase: "{n} of customers" counts something else
_NOT_ADJ = {"of", "in", "to", "and", "or", "for", "with", "on", "at", "by", "from", "than"}
_COUNTED = re.compile(
    r"\{(?P<name>\w+)\}(?P<rest>(?:\s+[a-z][a-z-]*'?){1,3})",
)


def _agree(words: list[str]) -> list[str]:
    """Singular forms for the words after a count of one: the noun (first or second word)
    and a verb right after it."""
    out = list(words)
    if out and out[0] in _VERBS:
        out[0] = _VERBS[out[0]]
        return out
    if out and out[0] in _NOUNS:
        i = 0
    elif len(out) > 1 and out[1] in _NOUNS and out[0] not in _NOT_ADJ and out[0] not in _VERBS:
        i = 1
    else:
        return out
    out[i] = _NOUNS[out[i]]
    if i + 1 < len(out) and out[i + 1] in _VERBS:
        out[i + 1] = _VERBS[out[i + 1]]
    return out


def _singular_after_one(text: str, values: dict[str, Any]) -> str:
    """English agreement for counts of one: "{n} kinds of issue" with n = 1 reads "1 kind
    of issue", "{n} lost customers" reads "1 lost customer", "{n} are skipped" reads
    "1 is skipped". Only the words right after the placeholder change."""

    def one(name: str) -> bool:
        v = values.get(name)
        return (isinstance(v, int) and not isinstance(v, bool) and v == 1) or (
            isinstance(v, str) and v.strip() == "1"
        )

    def fix(m: re.Match[str]) -> str:
        if not one(m.group("name")):
            return m.group(0)
        parts = re.split(r"(\s+)", m.group("rest"))  # ["", " ", "w1", " ", "w2", ...]
        words = parts[2::2]
        bare = [w.rstrip("'") for w in words]
        agreed = _agree(bare)
        # a plural possessive ("days' spend") becomes a singular one ("day's spend")
        parts[2::2] = [
            a + ("'s" if w.endswith("'") and a != b else "'" if w.endswith("'") else "")
            for w, b, a in zip(words, bare, agreed, strict=True)
        ]
        return "{" + m.group("name") + "}" + "".join(parts)

    text = _COUNTED.sub(fix, text)

    def either(m: re.Match[str]) -> str:
        # "{n} scenario(s)": the count is the nearest placeholder before the word
        before = re.findall(r"\{(\w+)\}", text[: m.start()])
        n = _count(values.get(before[-1])) if before else None
        if n is None:
            return m.group(0)
        return m.group(1) if n == 1 else m.group(1) + "s"

    return re.sub(r"\b([a-z]+)\(s\)", either, text)


def _count(value: Any) -> float | None:
    """A count given as a number or as its formatted text ("1", "1,204", "1 204")."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    digits = re.sub(r"[,\s\u00a0\u202f']", "", str(value))
    try:
        return float(digits)
    except ValueError:
        return None


def plural(n: Any, one: str, other: str) -> str:
    """``one`` when ``n`` is exactly 1 (1, "1", "1.0"), ``other`` otherwise (0, 2, 1.5, "–")."""
    return one if _count(n) == 1 else other


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

    @staticmethod
    def apart(
        render: Callable[[float, int], str], a: float, b: float, decimals: int, extra: int = 3
    ) -> tuple[str, str]:
        """``a`` and ``b`` rendered with ``decimals`` places, or up to ``extra`` more until
        two different values read differently: a value that crossed a line never reads
        equal to it ("18.04%, above the alert line 18.00%", not "18.0% ... 18.0%").

        ``render(x, d)`` writes ``x`` with ``d`` decimals (e.g. ``Fmt.pct``).
        """
        ra, rb = render(a, decimals), render(b, decimals)
        d = decimals
        while a != b and ra == rb and d < decimals + extra:
            d += 1
            ra, rb = render(a, d), render(b, d)
        return ra, rb

    def pct_apart(self, a: float, b: float, decimals: int | None = None) -> tuple[str, str]:
        """Two shares as percentages that differ when the values do (see :meth:`apart`)."""
        d = self.decimals if decimals is None else decimals
        return self.apart(self.pct, a, b, d)

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

    def rel(self, x: float | None, decimals: int | None = None) -> str:
        """A relative change (new / old - 1) in percent, with its sign; a change of a rate
        is in points (:meth:`pts`), so "%" after a sign always means relative."""
        if x is None or (isinstance(x, float) and math.isnan(x)):
            return "–"
        d = self.decimals if decimals is None else decimals
        return f"{self.fixed(100 * x, d, '+')}%"

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
