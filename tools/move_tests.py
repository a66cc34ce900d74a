"""Move tests/test_*.py into folders that mirror lib/fupan (issue 22, item 7).

    python tools/move_tests.py            # git mv every test file to its folder
    python tools/move_tests.py --check    # only report; exit 1 if a file is unplaced

Each test file has a rule in :data:`RULES` naming its folder: the package room it tests
(``core``, ``io``, ``measures``, ``models``, ``chapters``, ``report``, ``run``, ``demo``),
``e2e`` for whole reviews, ``browser`` for headless-Chromium tests. A test file without a rule
stops the script before anything moves: add its rule here. The script can be rerun at any
time (after merging branches that added or edited test files): files already in their folder
stay, files still in ``tests/`` move.

A moved file sits one folder deeper, so paths it builds from ``__file__`` are rewritten one
level up (``parents[1]`` → ``parents[2]``); helper modules (``tiny``, ``shapes``, ...) and
``conftest`` stay in ``tests/``, which pytest puts on ``sys.path`` (``pythonpath`` in
pyproject.toml).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"

FOLDERS = (
    "core",
    "io",
    "measures",
    "models",
    "chapters",
    "report",
    "run",
    "demo",
    "e2e",
    "browser",
)

# folder -> test files (names without "test_" and ".py"); one place per file
_TABLE: dict[str, tuple[str, ...]] = {
    "core": ("params", "i18n", "progress", "layers"),
    "io": (
        "data",
        "sources",
        "bad_input",
        "bad_input_values",
        "contract_minimal",
        "engine",
        "cache",
        "privacy",
        "spark",
        "spark_quiet",
        "properties",
    ),
    "measures": ("outcomes", "features", "metrics", "segments"),
    "models": ("ltv", "ltv_reference", "drivers", "health"),
    "chapters": (
        "quality",
        "diagnosis",
        "diagnosis_shapes",
        "funnel",
        "service",
        "touches",
        "signals",
        "churn_chapter",
        "churn_orders_only",
        "atrisk_speed",
        "clv",
        "simulate",
        "scenarios",
        "kpi",
        "followup",
        "reconcile",
        "diagnosis_chapter",
        "clv_slides",
        "kpi_slides",
        "simulate_slides",
    ),
    "report": (
        "plots_diagnosis",
        "churn_plots",
        "ltv_plots",
        "results",
        "deck_text",
        "chart_overlap",
        "scorecard",
        "summary",
        "numbers",
        "notebooks",
        "notebook_env",
    ),
    "run": (
        "runner",
        "run_cli",
        "run_name",
        "monthly",
        "cli_errors",
        "main",
        "faults",
        "gate_runner",
        "setup",
        "run_context",
    ),
    "demo": ("demo", "demo_pin", "demo_targets"),
    "e2e": (
        "reproducible",
        "golden",
        "shapes",
        "gate_shapes",
        "diagnosis_notebook",
        "wheel",
    ),
    "browser": ("browser",),
    # the benchmark scripts' own logic (benchmarks/ is not part of the package)
    "benchmarks": ("bench_spark", "bench_phases", "bench_loop"),
}

# file name prefixes for test files other helpers may add: test_<prefix>*.py -> folder
# (checked after the exact names above, longest prefix first)
_PREFIXES: dict[str, str] = {
    "diagnosis": "chapters",
    "funnel": "chapters",
    "service": "chapters",
    "touches": "chapters",
    "signals": "chapters",
    "churn_": "chapters",
    "clv": "chapters",
    "simulate": "chapters",
    "kpi": "chapters",
    "followup": "chapters",
    "drivers": "models",
    "health": "models",
    "ltv": "models",
    "bad_input": "io",
    "run_": "run",
    "browser": "browser",
}

RULES: dict[str, str] = {f"test_{n}.py": folder for folder, ns in _TABLE.items() for n in ns}

# paths built from __file__ one level deeper (the file moved from tests/ to tests/<folder>/)
_DEEPER = [
    (re.compile(r"(Path\(__file__\)(?:\.resolve\(\))?)\.parents\[1\]"), r"\1.parents[2]"),
    (re.compile(r"(Path\(__file__\)(?:\.resolve\(\))?)\.parent\.parent\b"), r"\1.parents[2]"),
    (re.compile(r"(Path\(__file__\)(?:\.resolve\(\))?)\.parent\b(?!\.)"), r"\1.parents[1]"),
]


def folder_for(name: str) -> str | None:
    """The folder a test file belongs in, or None when no rule covers it."""
    if name in RULES:
        return RULES[name]
    stem = name.removeprefix("test_").removesuffix(".py")
    for prefix in sorted(_PREFIXES, key=len, reverse=True):
        if stem.startswith(prefix):
            return _PREFIXES[prefix]
    return None


def plan(tests: Path = TESTS) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """(moves to make, test files without a rule). Files already in their folder: no move."""
    moves, unplaced = [], []
    for path in sorted(tests.rglob("test_*.py")):
        rel = path.relative_to(tests)
        if rel.parts[0] in {"data", "golden", "results"}:
            continue
        folder = folder_for(path.name)
        if folder is None:
            unplaced.append(rel)
        elif rel.parent != Path(folder):
            moves.append((path, tests / folder / path.name))
    return moves, unplaced


def deepen(text: str) -> str:
    """Rewrite ``__file__``-relative paths of a file moved one folder deeper."""
    for pattern, repl in _DEEPER:
        text = pattern.sub(repl, text)
    return text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="report only, move nothing")
    args = ap.parse_args(argv)
    moves, unplaced = plan()
    if unplaced:
        print("move_tests: NO RULE for these test files (nothing was moved):", file=sys.stderr)
        for rel in unplaced:
            print(f"  tests/{rel}", file=sys.stderr)
        print(
            "add each to _TABLE (or _PREFIXES) in tools/move_tests.py and rerun.", file=sys.stderr
        )
        return 1
    if args.check:
        for src, dst in moves:
            print(f"would move {src.relative_to(ROOT)} -> {dst.relative_to(ROOT)}")
        return 0
    for src, dst in moves:
        dst.parent.mkdir(exist_ok=True)
        subprocess.run(["git", "mv", str(src), str(dst)], cwd=ROOT, check=True)
        if src.parent == TESTS:  # one level deeper now
            text = dst.read_text(encoding="utf-8")
            new = deepen(text)
            if new != text:
                dst.write_text(new, encoding="utf-8")
                subprocess.run(["git", "add", str(dst)], cwd=ROOT, check=True)
        print(f"moved {src.relative_to(ROOT)} -> {dst.relative_to(ROOT)}")
    print(f"move_tests: {len(moves)} moved; every test file has its folder")
    return 0


if __name__ == "__main__":
    sys.exit(main())
