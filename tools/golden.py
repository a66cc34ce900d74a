"""Golden outputs: what a user sees, pinned before the package is restructured (issue 22).

Three things are pinned under ``tests/golden/``:

* ``demo_sha256.json``: the sha256 of every file the demo generator writes for
  :data:`CUSTOMERS` customers and seed :data:`DEMO_SEED` (CSV tables and truth.json);
* ``results.json``: the results of a review of that demo data with the shipped
  ``params/annual_review.yaml``, with the fields that legitimately vary between runs
  removed (:data:`VOLATILE`) and the run's folders replaced by placeholders
  (:func:`normalise`);
* ``scenarios.csv``: chapter 4's scenario table as exported (``exports/scenarios.csv``).

Numbers are compared with :data:`RTOL` relative and :data:`ATOL` absolute tolerance
(``|a - b| <= max(RTOL * max(|a|, |b|), ATOL)``, :func:`math.isclose`); strings, booleans,
nulls, key sets and list lengths must be identical, and an integer may not become a float.

Usage (from any checkout; the checkout's own ``lib/`` and notebooks are used)::

    python tools/golden.py record    # re-record tests/golden/ (make golden)
    python tools/golden.py check     # compare a fresh run with tests/golden/; exit 1 on a difference
    python tools/golden.py check --review reports/annual_review-2026-10-31  # an existing run
    python tools/golden.py same RUN_A RUN_B   # two run folders of any data: same results?

``same`` is how a speed change shows it changed no number on data other than the pinned
demo (5k, 100k, CDNOW): results.json and the scenario table of two runs of the same data
and params, each normalised against its own run folder.

A review takes a few minutes on 300 customers.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import fnmatch
import hashlib
import io
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
CUSTOMERS = 300
DEMO_SEED = 1
RTOL = 1e-9
ATOL = 1e-9

#: Fields of results.json that legitimately differ between two runs of the same commit on
#: the same data, as dotted paths (fnmatch patterns). results.json holds no wall-clock stamp,
#: timing or git commit today (those are in manifest.json and deck.html, which are not
#: pinned); the run folder and the checkout appear only inside strings, which
#: :func:`normalise` rewrites to ``<RUN>``, ``<WORK>`` and ``<ROOT>`` instead of dropping.
VOLATILE: tuple[str, ...] = (
    "run.previous",  # the absolute path of an earlier run folder, when --previous is passed
)
#: Keys dropped wherever they occur, should a chapter ever record them: wall-clock stamps,
#: timings and the code's version.
VOLATILE_KEYS: tuple[str, ...] = (
    "generated_at",
    "ran_at",
    "git_commit",
    "timings",
    "elapsed_seconds",
)

FILES = {
    "demo": "demo_sha256.json",
    "results": "results.json",
    "scenarios": "scenarios.csv",
}


def _use_this_checkout() -> None:
    """Import fupan from this checkout's ``lib/`` (the shared venv's editable install may
    point at another checkout), and give the notebook kernels the same path."""
    lib = str(ROOT / "lib")
    if sys.path[:1] != [lib]:
        sys.path.insert(0, lib)
    parts = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p != lib]
    os.environ["PYTHONPATH"] = os.pathsep.join([lib, *parts])


# ---------------------------------------------------------------------------------------------
# the three outputs


def demo_hashes(folder: Path) -> dict[str, str]:
    """The sha256 of every file in ``folder`` (the demo generator's output), by file name."""
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def make_demo(out: Path) -> Path:
    """Write the pinned demo data (:data:`CUSTOMERS` customers, seed :data:`DEMO_SEED`)."""
    _use_this_checkout()
    from fupan import demo

    demo.generate(out, customers=CUSTOMERS, seed=DEMO_SEED)
    return out


def run_review(data: Path, work: Path) -> Path:
    """Run the shipped annual review over ``data`` into ``work/reports``; the run folder."""
    _use_this_checkout()
    from fupan.core import params as fparams
    from fupan.run import runner

    params_file = ROOT / "params" / "annual_review.yaml"
    params = fparams.load(params_file, **{"data.source": str(data)})
    result = runner.run(params, params_file, reports_dir=work / "reports", log=lambda m: None)
    return Path(result.run_dir)


def normalise(results: Any, roots: dict[str, Path]) -> Any:
    """results.json without its :data:`VOLATILE` fields, folders replaced by placeholders.

    ``roots`` maps a placeholder (``<ROOT>``) to a folder; in every string the folder's
    absolute path becomes the placeholder (longest folder first), so a path into the
    checkout or the run's scratch folder compares equal between checkouts.
    """
    order = sorted(roots.items(), key=lambda kv: -len(str(kv[1])))

    def walk(x: Any, path: str) -> Any:
        if isinstance(x, dict):
            return {
                k: walk(v, f"{path}.{k}" if path else k)
                for k, v in x.items()
                if k not in VOLATILE_KEYS
                and not any(
                    fnmatch.fnmatchcase(f"{path}.{k}" if path else k, v_) for v_ in VOLATILE
                )
            }
        if isinstance(x, list):
            return [walk(v, f"{path}.{i}") for i, v in enumerate(x)]
        if isinstance(x, str):
            for name, folder in order:
                x = x.replace(str(folder), name)
            return x
        return x

    return walk(results, "")


def read_table(text: str) -> list[list[Any]]:
    """A CSV as rows of cells; a cell that parses as a number becomes one (int or float)."""
    rows = []
    for row in csv.reader(io.StringIO(text)):
        cells: list[Any] = []
        for cell in row:
            try:
                cells.append(int(cell))
            except ValueError:
                try:
                    cells.append(float(cell))
                except ValueError:
                    cells.append(cell)
        rows.append(cells)
    return rows


# ---------------------------------------------------------------------------------------------
# comparison


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def compare(
    expected: Any, actual: Any, path: str = "", rtol: float = RTOL, atol: float = ATOL
) -> list[str]:
    """Every difference between two JSON-like values, one line each (empty: identical).

    Numbers: ``math.isclose(a, b, rel_tol=rtol, abs_tol=atol)``, NaN equals NaN, and an
    int may not turn into a float (the deck would print ``3.0``). Everything else exact:
    strings, booleans, None, dict keys, list lengths.
    """
    where = path or "<top>"
    if _number(expected) and _number(actual):
        if isinstance(expected, int) != isinstance(actual, int):
            return [f"{where}: {expected!r} became {actual!r} (int vs float)"]
        if isinstance(expected, float) and math.isnan(expected) and math.isnan(actual):
            return []
        if expected == actual or math.isclose(expected, actual, rel_tol=rtol, abs_tol=atol):
            return []
        return [f"{where}: {expected!r} became {actual!r}"]
    if type(expected) is not type(actual):
        return [f"{where}: {expected!r} became {actual!r} ({type(actual).__name__})"]
    if isinstance(expected, dict):
        out = [
            f"{path}.{k}: missing" if path else f"{k}: missing" for k in expected if k not in actual
        ]
        out += [f"{path}.{k}: new" if path else f"{k}: new" for k in actual if k not in expected]
        for k in expected:
            if k in actual:
                out += compare(
                    expected[k], actual[k], f"{path}.{k}" if path else str(k), rtol, atol
                )
        return out
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return [f"{where}: {len(expected)} items became {len(actual)}"]
        out = []
        for i, (e, a) in enumerate(zip(expected, actual, strict=True)):
            out += compare(e, a, f"{path}[{i}]", rtol, atol)
        return out
    return [] if expected == actual else [f"{where}: {expected!r} became {actual!r}"]


# ---------------------------------------------------------------------------------------------
# record and check


def outputs(review: Path | None = None, work: Path | None = None) -> dict[str, Any]:
    """The three pinned outputs of this checkout: the demo's hashes, the review's normalised
    results and its scenario table. ``review``: an existing run folder over the pinned demo
    data (else a review is run in ``work``)."""
    with tempfile.TemporaryDirectory(prefix="fupan-golden-") as scratch:
        work = Path(work) if work else Path(scratch)
        data = make_demo(work / "data")
        out: dict[str, Any] = {"demo": demo_hashes(data)}
        run_dir = Path(review) if review else run_review(data, work)
        results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
        roots = {"<RUN>": run_dir.resolve(), "<WORK>": work.resolve(), "<ROOT>": ROOT}
        out["results"] = normalise(results, roots)
        out["scenarios"] = (run_dir / "exports" / "scenarios.csv").read_text(encoding="utf-8-sig")
        return out


def load_golden(folder: Path = GOLDEN) -> dict[str, Any]:
    """The recorded outputs, shaped as :func:`outputs` returns them."""
    return {
        "demo": json.loads((folder / FILES["demo"]).read_text(encoding="utf-8")),
        "results": json.loads((folder / FILES["results"]).read_text(encoding="utf-8")),
        "scenarios": (folder / FILES["scenarios"]).read_text(encoding="utf-8"),
    }


def differences(golden: dict[str, Any], now: dict[str, Any]) -> dict[str, list[str]]:
    """The differences of each output (an empty list: unchanged)."""
    return {
        "demo": compare(golden["demo"], now["demo"], "demo"),
        "results": compare(golden["results"], now["results"]),
        "scenarios": compare(
            read_table(golden["scenarios"]), read_table(now["scenarios"]), "scenarios"
        ),
    }


def _commit() -> str:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            # the golden files themselves are what a recording changes
            ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no", "--"]
            + [".", ":!tests/golden"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head}{' with uncommitted changes' if dirty else ''}"


def record(now: dict[str, Any], folder: Path = GOLDEN) -> None:
    """Write the three outputs and a README saying how and from which commit."""
    commit = _commit()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / FILES["demo"]).write_text(json.dumps(now["demo"], indent=1) + "\n", encoding="utf-8")
    (folder / FILES["results"]).write_text(
        json.dumps(now["results"], indent=1, ensure_ascii=False, sort_keys=True) + "\n",
        encoding="utf-8",
    )
    (folder / FILES["scenarios"]).write_text(now["scenarios"], encoding="utf-8")
    (folder / "README.md").write_text(
        "# Golden outputs (issue 22: pin first)\n\n"
        f"Generated by `python tools/golden.py record` (`make golden`) at commit {commit} "
        f"on {dt.date.today().isoformat()}: the sha256 of the demo generator's files for "
        f"{CUSTOMERS} customers, seed {DEMO_SEED}; results.json of one review of that data "
        "with `params/annual_review.yaml` (run-specific fields removed, folders as "
        "placeholders); chapter 4's exports/scenarios.csv. `tests/test_golden.py` compares "
        "a fresh run against these files: numbers to 1e-9 (relative or absolute), all else "
        "exact; `tools/golden.py` lists the fields left out.\n\n"
        "Re-record only when a change of output is intended, and say why in the commit: "
        "`/path/to/venv/bin/python tools/golden.py record` from the checkout to pin (it uses "
        "that checkout's lib/ and notebooks, whatever PYTHONPATH says; a few minutes). "
        "`python tools/golden.py check` prints every difference.\n",
        encoding="utf-8",
    )


def run_outputs(run_dir: Path) -> dict[str, Any]:
    """Normalised results.json and scenario table (if any) of one run folder."""
    results = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    out: dict[str, Any] = {"results": normalise(results, {"<RUN>": run_dir.resolve()})}
    scen = run_dir / "exports" / "scenarios.csv"
    out["scenarios"] = read_table(scen.read_text(encoding="utf-8-sig")) if scen.exists() else []
    return out


def same(a: Path, b: Path) -> int:
    """Print the differences between two run folders' outputs; exit 1 on any."""
    before, after = run_outputs(a), run_outputs(b)
    diffs = {
        "results": compare(before["results"], after["results"]),
        "scenarios": compare(before["scenarios"], after["scenarios"], "scenarios"),
    }
    for name, lines in diffs.items():
        print(f"{name}: {'unchanged' if not lines else f'{len(lines)} difference(s)'}")
        for line in lines[:50]:
            print(f"  {line}")
    return 1 if any(diffs.values()) else 0


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "same":
        if len(argv) != 3:
            print("usage: golden.py same RUN_A RUN_B", file=sys.stderr)
            return 2
        return same(Path(argv[1]), Path(argv[2]))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=["record", "check"])
    ap.add_argument("--review", help="an existing run folder over the pinned demo data")
    ap.add_argument("--work", help="keep the demo data and the run in this folder")
    ap.add_argument(
        "--golden", default=str(GOLDEN), help="the golden folder (default: %(default)s)"
    )
    args = ap.parse_args(argv)
    now = outputs(
        Path(args.review) if args.review else None, Path(args.work) if args.work else None
    )
    if args.command == "record":
        record(now, Path(args.golden))
        print(f"recorded {', '.join(FILES.values())} into {args.golden}")
        return 0
    diffs = differences(load_golden(Path(args.golden)), now)
    for name, lines in diffs.items():
        print(f"{name}: {'unchanged' if not lines else f'{len(lines)} difference(s)'}")
        for line in lines[:50]:
            print(f"  {line}")
    return 1 if any(diffs.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
