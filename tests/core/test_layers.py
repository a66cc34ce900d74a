"""The rooms of lib/fupan keep their order: a module imports only from its room or a lower one.

The order is the one ``fupan/__init__.py`` draws (core, io, measures, models, chapters,
report, run). The upward imports that exist today are listed by name, each with why it is
there; a new one fails this test, and one that disappears must leave the list.
"""

from __future__ import annotations

import ast

from conftest import ROOT

ORDER = ["core", "io", "measures", "models", "chapters", "report", "run"]
PKG = ROOT / "lib" / "fupan"

#: (importing module, imported module): all inside functions, so nothing loads upwards at
#: import time.
KNOWN_UPWARD = {
    # chapters write what the run records through the report's Recorder and show slides
    ("chapters/clv/risk.py", "fupan.report.results"),
    ("chapters/followup/review.py", "fupan.report.results"),
    ("chapters/followup/review.py", "fupan.report"),  # `from fupan.report import results`
    ("chapters/kpi/formatting.py", "fupan.report"),  # show: the KPI scorecard slide
    # the validation of a spend tier at load uses the same trailing-year window as segments
    ("io/tiers.py", "fupan.measures.segments"),
}


def _upward_imports() -> set[tuple[str, str]]:
    found = set()
    for path in sorted(PKG.rglob("*.py")):
        parts = path.relative_to(PKG).parts
        if len(parts) < 2 or parts[0] not in ORDER:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                room = name.split(".")[1] if name.startswith("fupan.") else None
                if room in ORDER and ORDER.index(room) > ORDER.index(parts[0]):
                    found.add(("/".join(parts), name))
    return found


def test_no_room_imports_a_higher_one_beyond_the_known_list():
    found = _upward_imports()
    assert found - KNOWN_UPWARD == set(), "a lower room imports a higher one"
    assert KNOWN_UPWARD - found == set(), "fixed: remove it from KNOWN_UPWARD"


def test_every_module_lives_in_a_room():
    loose = sorted(p.name for p in PKG.glob("*.py") if p.name not in {"__init__.py", "__main__.py"})
    assert loose == [], f"modules outside the rooms: {loose}"
