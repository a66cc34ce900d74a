"""The run folder and its manifest: which chapters a run executes or keeps
(:func:`plan_chapters`, :data:`USES`), seeding an in-place update from the run it updates,
whose exports each chapter wrote, manifest.json (what ran, with which params and inputs,
how long), and the folders of failed and dead runs (``<run>.failed``, errors.log,
leftover temporaries).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from fupan.core import paths
from fupan.core.params import NOTEBOOKS, Params, dump
from fupan.io.validation import DataValidationError
from fupan.report.results import RESULTS_NAME, write_json_atomic
from fupan.run.execute import NEEDS, WAITS_FOR, ChapterFailure, RunError, _strip_ansi

PACKAGE_ROOT = paths.PACKAGE_ROOT


#: The source checkout (in a wheel install: a folder that is not one; see :mod:`fupan.core.paths`).
PROJECT_ROOT = paths.CHECKOUT


KEY_PACKAGES = (
    "fupan",
    "ibis-framework",
    "duckdb",
    "sqlglot",
    "pandas",
    "numpy",
    "scipy",
    "statsmodels",
    "scikit-learn",
    "matplotlib",
    "seaborn",
    "papermill",
    "nbconvert",
    "pyarrow",
    "pydantic",
)


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in KEY_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def git_commit() -> str | None:
    """The checkout's commit (``+dirty`` with local changes); None for an installed wheel
    (its parent folders may sit inside someone else's repository)."""
    if not paths.is_checkout(PROJECT_ROOT):
        return None
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


@dataclass
class ChapterPlan:
    """Which chapters a run executes, which it keeps from the run it updates, and the
    chapters of the finished run (:data:`fupan.core.params.NOTEBOOKS` order)."""

    run: list[str]
    kept: list[str] = field(default_factory=list)

    @property
    def all(self) -> list[str]:
        return _in_order(set(self.run) | set(self.kept))


def _in_order(names: set[str] | list[str]) -> list[str]:
    known = {nb: i for i, nb in enumerate(NOTEBOOKS)}
    return sorted(set(names), key=lambda nb: (known.get(nb, len(known)), nb))


def dependents(chapters: list[str], among: list[str]) -> list[str]:
    """The chapters of ``among`` that use ``chapters``, directly or through another."""
    out: set[str] = set()
    frontier = set(chapters)
    while frontier:
        nxt = {nb for nb in among if set(USES.get(nb, ())) & frontier} - out - set(chapters)
        out |= nxt
        frontier = nxt
    return _in_order(out)


def plan_chapters(
    params: Params,
    chapters: list[str] | None,
    prior: dict[str, Any] | None,
    with_dependents: bool = False,
) -> ChapterPlan:
    """What a run executes and keeps. A whole run (``chapters`` None) executes the
    params' notebooks in their order; an update executes ``chapters`` (and, with
    ``with_dependents``, the chapters that use them) and keeps the rest of ``prior``."""
    if chapters is None:
        return ChapterPlan(run=list(params.notebooks))
    unknown = [nb for nb in chapters if nb not in NOTEBOOKS]
    if unknown:
        raise RunError(f"unknown chapters {unknown}; known: {list(NOTEBOOKS)}")
    present = list((prior or {}).get("notebooks") or [])
    selected = list(chapters)
    if with_dependents:
        selected += dependents(selected, among=present or list(params.notebooks))
    run_list = _in_order(selected)
    kept = [nb for nb in _in_order(present) if nb not in run_list]
    return ChapterPlan(run=run_list, kept=kept)


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """A finished run's manifest, or None when ``run_dir`` holds no readable run."""
    try:
        return json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


_RECORD_KEY = __import__("re").compile(r"""record\(\s*\\?["']([A-Za-z_][A-Za-z0-9_]*)[."']""")


def result_sections(nb_path: Path) -> list[str]:
    """The top-level results.json sections a notebook records (``record("churn.…")``)."""
    try:
        text = nb_path.read_text(encoding="utf-8")
    except OSError:
        return []
    return sorted(set(_RECORD_KEY.findall(text)) - {"run"})


#: Files at the top of a run folder the runner writes itself (never copied into an update).
RUNNER_FILES = ("deck.html", "manifest.json", "ERROR.txt", "errors.log", RESULTS_NAME)


def _owned_exports(
    nb: str, prior: dict[str, Any], sections: list[str], exports: Path, rerun: list[str]
) -> list[Path]:
    """The export files of a chapter: those named after its results sections
    (``churn_at_risk.csv`` for ``churn``), and those its last run wrote (the manifest
    says) unless a chapter that is kept may have written them too (two chapters running
    side by side cannot be told apart by time: the file then stays, and is overwritten
    if the rerun chapter writes it again)."""
    chapters = prior.get("chapters") or {}
    listed = set((chapters.get(nb) or {}).get("exports") or [])
    shared = {
        f
        for other, e in chapters.items()
        if other not in rerun
        for f in (e or {}).get("exports") or []
    }
    return [
        f
        for f in sorted(exports.iterdir())
        if f.name in listed - shared or any(f.name.startswith(f"{s}_") for s in sections)
    ]


def _seed_from(
    final: Path, tmp: Path, plan: ChapterPlan, prior: dict[str, Any], nb_dir: Path
) -> None:
    """Start an update from a copy of the finished run, without the rerun chapters'
    notebooks, results sections and exports (copies: a chapter rewriting a file must
    not change the run that stays in place until the update is complete)."""
    owned: set[str] = set()
    drop_sections: set[str] = set()
    for nb in plan.run:
        sections = result_sections(nb_dir / f"{nb}.ipynb")
        drop_sections |= set(sections)
        if (final / "exports").is_dir():
            owned |= {
                f.name for f in _owned_exports(nb, prior, sections, final / "exports", plan.run)
            }
    for item in final.iterdir():
        if item.name in RUNNER_FILES or item.name.startswith("."):
            continue
        if item.name == "notebooks":
            for f in item.glob("*.ipynb"):
                if f.stem in plan.kept:
                    shutil.copy2(f, tmp / "notebooks" / f.name)
        elif item.name == "exports":
            for f in item.iterdir():
                if f.name not in owned:
                    (shutil.copytree if f.is_dir() else shutil.copy2)(f, tmp / "exports" / f.name)
        elif item.name != paths.WORK_NAME:
            (shutil.copytree if item.is_dir() else shutil.copy2)(item, tmp / item.name)
    try:
        results = json.loads((final / RESULTS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        results = {}
    kept = {k: v for k, v in results.items() if k not in drop_sections}
    write_json_atomic(tmp / RESULTS_NAME, kept, indent=None)


def differing_params(prior: dict[str, Any], kept: list[str], checksum: str) -> list[str]:
    """The kept chapters whose recorded params differ from ``checksum`` (or are unknown)."""
    chapters = prior.get("chapters") or {}
    return [nb for nb in kept if (chapters.get(nb) or {}).get("params_sha256") != checksum]


def _stat_exports(tmp: Path) -> dict[str, tuple[int, int]]:
    return {
        f.name: (f.stat().st_mtime_ns, f.stat().st_size)
        for f in (tmp / "exports").iterdir()
        if f.is_file()
    }


def _attribute_exports(
    tmp: Path,
    seeded: dict[str, tuple[int, int]],
    chapter_log: dict[str, dict[str, Any]],
    plan: ChapterPlan,
    windows: dict[str, tuple[float, float]],
) -> None:
    """Record in each chapter's manifest entry the exports it wrote: new or changed files,
    given to the chapter named by their prefix, else to every chapter running when the
    file was last written (a later update of either then rewrites it)."""
    written = {nb: [] for nb in plan.run}  # type: dict[str, list[str]]
    for f in sorted((tmp / "exports").iterdir()):
        if not f.is_file() or seeded.get(f.name) == (f.stat().st_mtime_ns, f.stat().st_size):
            continue
        prefixed = [
            nb
            for nb in plan.run
            if any(f.name.startswith(f"{s}_") for s in chapter_log[nb].get("results", []))
        ]
        mtime = f.stat().st_mtime
        owners = set(prefixed) or {
            nb for nb, (a, b) in windows.items() if nb in written and a - 1 <= mtime <= b + 1
        }
        for nb in owners or set(plan.run if len(plan.run) == 1 else ()):
            written[nb].append(f.name)
    claimed = {f for names in written.values() for f in names}
    for nb, entry in chapter_log.items():
        if nb in written:
            entry["exports"] = sorted(set(written[nb]))
        elif entry.get("exports"):  # a kept chapter no longer owns what a rerun one wrote
            entry["exports"] = [f for f in entry["exports"] if f not in claimed]


def params_checksum(params: Params) -> str:
    """sha256 of the run's params as the manifest stores them, without the chapter list
    (running another chapter with the same settings is the same params)."""
    import hashlib

    data = dump(params)
    data.pop("notebooks", None)
    text = json.dumps(data, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _chapter_entries(
    params: Params,
    params_file: str | Path,
    plan: ChapterPlan,
    prior: dict[str, Any],
    windows: dict[str, tuple[float, float]],
    timings: dict[str, float],
    ran_at: str,
    failures: list[ChapterFailure],
    nb_dir: Path,
) -> dict[str, dict[str, Any]]:
    """The manifest's ``chapters``: for each chapter, when it ran, with which params
    (file and checksum), what it recorded and exported, and whether it is stale."""
    checksum = params_checksum(params)
    lost = {f.nb for f in failures}
    old = prior.get("chapters") or {}
    out: dict[str, dict[str, Any]] = {}
    for nb in plan.all:
        if nb in plan.run:
            begun = windows.get(nb, (time.time(), 0.0))[0]
            out[nb] = {
                "ran_at": dt.datetime.fromtimestamp(begun).isoformat(timespec="seconds"),
                "seconds": timings.get(nb),
                "params_file": str(params_file),
                "params_sha256": checksum,
                "results": result_sections(nb_dir / f"{nb}.ipynb"),
                "ok": nb not in lost,
            }
            continue
        entry = dict(
            old.get(nb)
            or {  # a run from before the manifest listed chapters
                "ran_at": prior.get("finished_at"),
                "params_file": prior.get("params_file"),
                "params_sha256": None,
            }
        )
        because = set(entry.get("stale_because") or []) | (set(USES.get(nb, ())) & set(plan.run))
        if because:
            entry["stale_because"] = _in_order(because)
            entry["stale_since"] = ran_at
        out[nb] = entry
    return out


def _manifest(
    name: str,
    params: Params,
    params_file: str | Path,
    plan: ChapterPlan,
    chapter_log: dict[str, dict[str, Any]],
    fingerprints: dict[str, Any],
    timings: dict[str, float],
    started: float,
) -> dict[str, Any]:
    stored = dump(params)
    stored["notebooks"] = plan.all
    checksums = {e.get("params_sha256") for e in chapter_log.values()}
    return {
        "run": name,
        "fupan_version": _version(),
        "started_at": dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now().isoformat(timespec="seconds"),
        "params_file": str(params_file),
        "params": stored,
        "params_sha256": params_checksum(params),
        # chapters of one run that ran with different params (or before checksums)
        "mixed_params": len(checksums) > 1,
        "inputs": fingerprints,
        "packages": package_versions(),
        "git_commit": git_commit(),
        "seeds": {"seed": params.seed},
        "timings_seconds": timings,
        "notebooks": plan.all,
        "ran": list(plan.run),
        "chapters": chapter_log,
        "stale": [nb for nb, e in chapter_log.items() if e.get("stale_because")],
    }


def _version() -> str:
    try:
        return metadata.version("fupan")
    except metadata.PackageNotFoundError:  # a checkout on PYTHONPATH, not installed
        return "0+unknown"


def expected_seconds(reports: Path, name: str, prior: dict[str, Any] | None) -> dict[str, float]:
    """Each notebook's time in the last finished run here (this run's earlier version,
    else the newest run beside it), for the progress lines' estimate; {} when none."""
    candidates = [prior] if prior else []
    if not prior:
        found = read_manifest(reports / name)
        if found:
            candidates.append(found)
        else:
            manifests = sorted(
                reports.glob("*/manifest.json"), key=lambda p: p.stat().st_mtime, reverse=True
            )
            candidates += [m for m in (read_manifest(p.parent) for p in manifests[:3]) if m]
    for m in candidates:
        t = m.get("timings_seconds") or {}
        got = {k: float(v) for k, v in t.items() if k in NOTEBOOKS and v}
        if got:
            return got
    return {}


ERROR_LOG = "errors.log"


def _tb() -> str:
    import traceback

    return traceback.format_exc()


def _keep_failed(tmp: Path, failed: Path, message: str, exc: BaseException) -> None:
    """Move the temporary run to ``failed`` with ERROR.txt; never raise (the disk may be full)."""
    shutil.rmtree(paths.work_dir(tmp), ignore_errors=True)
    (tmp / f".{RESULTS_NAME}.lock").unlink(missing_ok=True)
    if failed.exists():
        shutil.rmtree(failed, ignore_errors=True)
    if not tmp.exists():
        return
    try:
        os.replace(tmp, failed)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        return
    try:
        (failed / "ERROR.txt").write_text(message + "\n", encoding="utf-8")
        if not isinstance(exc, (DataValidationError, RunError)):
            import traceback

            with (failed / ERROR_LOG).open("a", encoding="utf-8") as fh:
                fh.write("".join(traceback.format_exception(exc)))
    except OSError:
        pass  # a full disk: the message still reaches the terminal


#: Free space below which a failure is blamed on the disk (a notebook that could not write
#: often reports only its own symptom: a dead kernel, a missing result).
LOW_DISK_BYTES = 8 * 1024 * 1024


def root_cause(exc: BaseException, folder: Path) -> str | None:
    """``"no space left on device"`` when the disk is full, else None.

    Looks through the exception's chain for ``ENOSPC``/``EDQUOT`` and at the free space
    left where the run writes.
    """
    import errno

    seen: BaseException | None = exc
    for _ in range(20):
        if seen is None:
            break
        if isinstance(seen, OSError) and seen.errno in (errno.ENOSPC, errno.EDQUOT):
            return "no space left on device"
        seen = seen.__cause__ or seen.__context__
    if "no space left on device" in str(exc).lower():
        return "no space left on device"
    try:
        if shutil.disk_usage(folder).free < LOW_DISK_BYTES:
            return "no space left on device"
    except OSError:
        pass
    return None


def remove_stale_temporaries(reports: Path, log: Callable[[str], None] = print) -> list[Path]:
    """Remove temporary run folders (``.<run>.tmp-<pid>``, ``.<run>.old-<pid>``) whose
    process is gone: a run killed with SIGKILL cannot clean up, and its folder holds the
    staged data (``work/staged.duckdb``, customer data)."""
    removed = []
    for path in sorted(reports.glob(".*.tmp-*")) + sorted(reports.glob(".*.old-*")):
        pid_text = path.name.rsplit("-", 1)[-1]
        if not path.is_dir() or not pid_text.isdigit():
            continue
        if int(pid_text) != os.getpid() and _alive(int(pid_text)):
            continue  # another run writing beside this one
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
        log(f"[fupan] removed {path.name}, left by a run that was killed")
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_error_log(path: Path, failures: list[ChapterFailure]) -> None:
    """The technical side of a partial run: each failure with its traceback."""
    parts = []
    for f in failures:
        parts.append(f"== {f.nb}\n{f.line()}\n")
        if f.traceback:
            parts.append(_strip_ansi(f.traceback).rstrip() + "\n")
    path.write_text("\n".join(parts), encoding="utf-8")


#: Chapters that use another chapter's results: what they wait for or need. A chapter
#: updated in place (``fupan run``) makes the chapters that use it stale.
USES: dict[str, tuple[str, ...]] = {
    nb: tuple(_in_order(set(WAITS_FOR.get(nb, ())) | set(NEEDS.get(nb, ()))))
    for nb in set(WAITS_FOR) | set(NEEDS)
}
