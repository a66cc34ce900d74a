"""Print the words of a deck, one slide per block, to diff two runs (issue 22's moves).

A behaviour-preserving change to a notebook or a chart function must leave every slide's
words unchanged; pictures are summarised as ``[figure]`` so that a chart that disappears or
appears shows in the diff too. Run times and folders differ between runs and are left out.

    python tools/deck_text.py reports/<run>/deck.html > before.txt
    ... change ...
    python tools/deck_text.py reports/<run>/deck.html > after.txt; diff before.txt after.txt
"""

from __future__ import annotations

import re
import sys
from html.parser import HTMLParser
from pathlib import Path

#: Words that change between two runs of the same review (times, run folders).
VOLATILE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d|\d{4}-\d\d-\d\dT\S+|\d+(\.\d+)? ?(s|min)\b|/\S+/reports/\S+"
)


class _Slides(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.slides: list[list[str]] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        cls = dict(attrs).get("class") or ""
        if tag == "section" and "slide" in cls.split():
            self.slides.append([])
        elif tag in ("script", "style"):
            self._skip += 1
        elif tag == "img" and self.slides:
            self.slides[-1].append("[figure]")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        text = " ".join(data.split())
        if text and self.slides and not self._skip:
            self.slides[-1].append(VOLATILE.sub("<v>", text))


def slide_text(path: Path) -> str:
    """The deck's words, slides separated by a rule."""
    parser = _Slides()
    parser.feed(path.read_text(encoding="utf-8"))
    return "\n".join(f"--- slide {i}\n" + "\n".join(s) for i, s in enumerate(parser.slides, 1))


if __name__ == "__main__":
    print(slide_text(Path(sys.argv[1])))
