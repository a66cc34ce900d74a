"""Tables written into benchmarks/README.md between a pair of markers."""

from __future__ import annotations

LADDER_MARK = "<!-- latest -->"


def put_block(text: str, marks: tuple[str, str], block: str) -> str:
    """``text`` with ``block`` (which starts and ends with ``marks``) in place of the old one.

    Without the markers the block goes before the ladder's ``<!-- latest -->`` section
    (run.py rewrites everything from that marker on), else at the end.
    """
    begin, end = marks
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        return head + block + rest.split(end, 1)[1]
    if LADDER_MARK in text:
        head, rest = text.split(LADDER_MARK, 1)
        return f"{head.rstrip()}\n\n{block}\n\n{LADDER_MARK}{rest}"
    return f"{text.rstrip()}\n\n{block}\n"
