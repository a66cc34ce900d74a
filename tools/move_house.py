"""Move the flat ``lib/fupan/*.py`` modules into subpackages that name the layers (issue 22).

One mechanical, reproducible step: ``git mv`` every module into its room, then rewrite
every import, dotted name (``fupan.kpi.month_report``, ``"fupan.runner.X"`` in a
monkeypatch) and file path (``lib/fupan/locale``) in the repository's code, notebooks and
docs. No compatibility shims: the old names stop existing. Run once from the checkout's
root on a clean tree, then ``ruff check --fix`` and ``ruff format`` (the script calls them)::

    python tools/move_house.py

The house, lowest layer first (a module imports only from its own layer or lower ones):

core      params, scenarios, paths, progress, i18n (+ locale/, defaults/): no other fupan
io        schema, sources, validation, data, engine, cache, privacy, exports
measures  outcomes, features, metrics, segments: the numbers every chapter shares
models    ltv/, drivers, health: estimators
chapters  one module per question a chapter answers (the notebooks' library)
report    results, show, charts, deck, gate, glossary, summary, notebook (+ templates/)
run       cli, runner, monthly
demo      the demo data generator (unchanged)
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "lib" / "fupan"

LAYERS: dict[str, list[str]] = {
    # scenarios: the contract of the scenarios file, a params file like params.py's
    "core": ["params", "scenarios", "paths", "progress", "i18n"],
    "io": ["schema", "sources", "validation", "data", "engine", "cache", "privacy", "exports"],
    "measures": ["outcomes", "features", "metrics", "segments"],
    "models": ["ltv", "drivers", "health"],
    "chapters": [
        "quality",
        "diagnosis",
        "funnel",
        "service",
        "touches",
        "signals",
        "lost",
        "atrisk",
        "clv",
        "simulate",
        "kpi",
        "followup",
    ],
    "report": ["results", "show", "charts", "deck", "gate", "glossary", "summary", "notebook"],
    "run": ["cli", "runner", "monthly"],
}
#: Folders of data files that move with the module reading them via ``__file__``.
DIRS = {"locale": "core", "defaults": "core", "templates": "report"}

WHERE = {mod: layer for layer, mods in LAYERS.items() for mod in mods}

DOCS = {
    "core": '''"""The foundation: run parameters (``params``) and the scenarios file (``scenarios``),
where files are (``paths``), progress
bars and the words a deck shows in two languages (``i18n``, ``locale/``). Imports nothing else
from fupan, so every other room may use it."""
''',
    "io": '''"""Data in and out: the data contract (``schema``), reading source files (``sources``),
loading and validating them into an Ibis :class:`~fupan.io.data.Dataset` (``data``,
``validation``), the query engine (``engine``), the per-dataset cache, privacy masking and
file exports."""
''',
    "measures": '''"""The numbers every chapter shares, each computed by one function: churn and renewal
(``outcomes``), customer features by source table (``features``), the metric catalogue
(``metrics``) and tiers, RFM and date windows (``segments``)."""
''',
    "models": '''"""Statistical models shaped like estimators: lifetime value (``ltv/``: BG/NBD,
Pareto/NBD, Gamma-Gamma, sBG), churn drivers (``drivers``) and the health score
(``health``)."""
''',
    "chapters": '''"""The analysis behind each chapter notebook, one module per question.

=======================  ==================================================
notebook                 modules
=======================  ==================================================
00_data_check            ``quality``
01_diagnosis             ``diagnosis``, ``funnel``, ``service``, ``touches``
02_churn_root_cause      ``signals``, ``lost``, ``atrisk``
03_ltv_loss              ``clv``
04_strategy_simulation   ``simulate`` (the scenarios file: ``fupan.core.scenarios``)
05_kpi_tracking          ``kpi``
06_followup              ``followup``
=======================  ==================================================
"""
''',
    "report": '''"""From numbers to the deck: what a run records (``results``), slides shown in a notebook
(``show``), charts, the HTML deck (``deck``, ``templates/``), the quality gate, the glossary
and summary slides, and the notebooks' start-up helper (``notebook``)."""
''',
    "run": '''"""Running a review: the command line (``cli``), executing the notebooks (``runner``) and
the monthly KPI deck (``monthly``)."""
''',
}

HOUSE = '''"""fupan (复盘): a parameterised review workbook.

A map of the house, lowest layer first; a module imports only from its own room or the
rooms above it in this list.

- ``fupan.core``: params and the scenarios file, paths, progress, words in two languages
  (``i18n``, ``locale/``)
- ``fupan.io``: the data contract, loading, validation, the query engine, exports
- ``fupan.measures``: churn (``outcomes``), features, the metric catalogue, segments
- ``fupan.models``: lifetime value (``ltv/``), churn drivers, the health score
- ``fupan.chapters``: the analysis of each chapter notebook (see its docstring)
- ``fupan.report``: results, slides, charts, the deck and its templates
- ``fupan.run``: the command line, the notebook runner, the monthly deck
- ``fupan.demo``: the demo data generator

``python -m fupan`` is the ``fupan`` command (:mod:`fupan.run.cli`).
"""
'''


def git(*args: str) -> None:
    subprocess.run(["git", *args], cwd=ROOT, check=True)


def move_files() -> None:
    for layer in LAYERS:
        (PKG / layer).mkdir(exist_ok=True)
        (PKG / layer / "__init__.py").write_text(DOCS[layer], encoding="utf-8")
        git("add", f"lib/fupan/{layer}/__init__.py")
    for mod, layer in WHERE.items():
        src = PKG / mod if (PKG / mod).is_dir() else PKG / f"{mod}.py"
        git("mv", str(src.relative_to(ROOT)), str((PKG / layer / src.name).relative_to(ROOT)))
    for folder, layer in DIRS.items():
        git("mv", f"lib/fupan/{folder}", f"lib/fupan/{layer}/{folder}")
    # the defaults are symlinks into params/: one level deeper now
    for link in (PKG / "core" / "defaults").iterdir():
        target = link.readlink()
        link.unlink()
        link.symlink_to(Path("..") / target)
        git("add", str(link.relative_to(ROOT)))
    (PKG / "__init__.py").write_text(HOUSE, encoding="utf-8")


NAMES = "|".join(sorted(WHERE, key=len, reverse=True))
DOTTED = re.compile(rf"(?<![\w.])fupan\.({NAMES})\b")
SLASHED = re.compile(rf"(?<![\w.])fupan/({NAMES}|{'|'.join(DIRS)})(?=\.py\b|/|\b)")
FROM_FUPAN = re.compile(
    r"^(?P<indent>[ \t]*)from fupan import (?:\((?P<paren>[^)]*)\)|(?P<plain>[^\n#]*?))"
    r"(?P<comment>[ \t]*#[^\n]*)?$",
    re.M,
)

#: The same line inside a string of code a test runs in a subprocess (``"...\\nfrom fupan
#: import cli, runner\\n..."``): its newlines are escapes.
EMBEDDED = re.compile(r'(?P<indent>\\n|")from fupan import (?P<plain>[\w ,]+?)(?=\\n)')


def _split_from_fupan(match: re.Match) -> str:
    """``from fupan import a, b as c`` -> one ``from fupan.<room> import`` line per room."""
    indent = match["indent"]
    embedded = match.re is EMBEDDED
    body = match["plain"] if embedded or match["paren"] is None else match["paren"]
    body = re.sub(r"#[^\n]*", "", body)
    names = [n.strip() for n in body.replace("\n", " ").split(",") if n.strip()]
    rooms: dict[str, list[str]] = {}
    for name in names:
        base = name.split(" as ")[0].strip()
        rooms.setdefault(WHERE.get(base, ""), []).append(name)
    lines = []
    for room, group in rooms.items():
        where = f"fupan.{room}" if room else "fupan"
        lines.append(f"from {where} import {', '.join(group)}")
    if embedded:  # the quote or escape before the line stays; the lines join with \\n
        return indent + "\\n".join(lines)
    lines = [indent + line for line in lines]
    comment = match["comment"] or ""
    if comment:
        lines[0] += comment
    return "\n".join(lines)


def rewrite(text: str) -> str:
    text = FROM_FUPAN.sub(_split_from_fupan, text)
    text = EMBEDDED.sub(_split_from_fupan, text)
    text = DOTTED.sub(lambda m: f"fupan.{WHERE[m[1]]}.{m[1]}", text)
    text = SLASHED.sub(lambda m: f"fupan/{WHERE.get(m[1]) or DIRS[m[1]]}/{m[1]}", text)
    return text


def rewrite_notebook(path: Path) -> None:
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        new = rewrite(source)
        if new != source:
            cell["source"] = new.splitlines(keepends=True)
    out = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if out != raw:
        path.write_text(out, encoding="utf-8")


def targets() -> list[Path]:
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    keep = []
    for name in files:
        if name.startswith(("tests/golden/", "tests/data/", "benchmarks/results/")):
            continue  # recorded outputs and data: history, not code
        if name == "tools/move_house.py":
            continue
        path = ROOT / name
        if path.is_symlink() or not path.is_file():
            continue
        if path.suffix in {".py", ".ipynb", ".md", ".toml", ".yaml", ".yml", ".cfg"} or name in {
            "Makefile",
            ".ci/run",
        }:
            keep.append(path)
    return keep


def fix_file_paths() -> None:
    """Paths computed from ``__file__`` that look above the module's own folder."""
    edits = {
        PKG / "core" / "paths.py": [
            (
                "PACKAGE_ROOT = Path(__file__).resolve().parent\n",
                "PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # fupan/, not fupan/core\n",
            )
        ],
        PKG / "core" / "params.py": [
            ('.parents[2] / "params" / name', '.parents[3] / "params" / name'),
        ],
    }
    # a test that stubs a chapter module sets it on the package that now holds it
    test_clv = ROOT / "tests" / "test_clv.py"
    edits[test_clv] = [
        (
            "    # `from fupan import atrisk` reads the package attribute once another test "
            "imported it\n    import fupan\n\n    monkeypatch.setattr(fupan, ",
            "    # `from fupan.chapters import atrisk` reads the package attribute once another "
            "test\n    # imported it\n    import fupan.chapters\n\n"
            "    monkeypatch.setattr(fupan.chapters, ",
        )
    ]
    for path, pairs in edits.items():
        text = path.read_text(encoding="utf-8")
        for old, new in pairs:
            assert old in text, f"{path}: {old!r} not found"
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")


def fix_pyproject() -> None:
    path = ROOT / "pyproject.toml"
    text = path.read_text(encoding="utf-8")
    subs = ", ".join(f'"fupan.{layer}"' for layer in LAYERS)
    old = 'packages = ["fupan", "fupan.demo", "fupan.ltv", "fupan.notebooks", "fupan.examples"]'
    new = (
        f'packages = ["fupan", {subs}, "fupan.models.ltv", "fupan.demo",\n'
        '            "fupan.notebooks", "fupan.examples"]'
    )
    assert old in text
    text = text.replace(old, new)
    old = 'fupan = ["templates/**/*", "locale/*.yaml", "*.yaml", "defaults/*.yaml"]'
    new = '"fupan.core" = ["locale/*.yaml", "defaults/*.yaml"]\n"fupan.report" = ["templates/**/*"]'
    assert old in text
    path.write_text(text.replace(old, new), encoding="utf-8")


def main() -> int:
    if subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=ROOT).returncode:
        sys.exit("move_house: commit or stash your changes first")
    if not (PKG / "kpi.py").exists():
        sys.exit("move_house: lib/fupan/kpi.py is gone: the house has moved already")
    move_files()
    fix_file_paths()
    fix_pyproject()  # before the rewrite below turns fupan.ltv into fupan.models.ltv
    for path in targets():
        if path.suffix == ".ipynb":
            rewrite_notebook(path)
            continue
        text = path.read_text(encoding="utf-8")
        new = rewrite(text)
        if new != text:
            path.write_text(new, encoding="utf-8")
    ruff = str(Path(sys.executable).with_name("ruff"))
    subprocess.run([ruff, "check", "--fix", "-q", "lib", "tests", "tools", "benchmarks"], cwd=ROOT)
    subprocess.run([ruff, "check", "--fix", "-q", "--select", "I", "notebooks"], cwd=ROOT)
    subprocess.run([ruff, "format", "-q", "lib", "tests", "tools", "benchmarks"], cwd=ROOT)
    git("add", "-A")
    return 0


if __name__ == "__main__":
    sys.exit(main())
