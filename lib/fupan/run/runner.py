"""Run a review: validate, execute the notebooks with papermill, build the deck, atomically.

A run is built in a temporary folder beside its final place and moved there only when
every notebook succeeded and the deck is written. A failed run leaves the previous good
report untouched and keeps its partial notebooks in ``reports/<run>.failed/``.

A chapter that fails does not stop the chapters that do not need it (:data:`NEEDS`): they
run, and the failed run's folder holds a partial deck whose first slide names each failed
chapter, its cell and its error (tracebacks go to ``errors.log`` beside it).

``fupan run CHAPTER`` updates an existing run in place (:func:`run` with ``chapters``):
the update starts from a copy of the run without those chapters' notebooks, results
sections and exports, runs them, renders the whole deck again and is swapped in the same
way. Chapters that used a rerun chapter (:data:`USES`) are marked stale on their slides
and in the manifest, whose ``chapters`` say when each chapter ran and with which params.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NoReturn

from fupan.core import i18n, paths
from fupan.core.params import NOTEBOOKS, Params, dump
from fupan.io import data as fdata
from fupan.io.validation import DataValidationError
from fupan.report import deck, gate, summary
from fupan.report.results import RESULTS_NAME, Recorder, results_lock_available, write_json_atomic

PACKAGE_ROOT = paths.PACKAGE_ROOT
#: The source checkout (in a wheel install: a folder that is not one; see :mod:`fupan.core.paths`).
PROJECT_ROOT = paths.CHECKOUT
NOTEBOOK_DIR = paths.notebook_dir()
# The parameters every notebook declares; the runner passes exactly these.
NOTEBOOK_PARAMETERS: dict[str, type] = {
    "params_file": str,
    "run_dir": str,
    "data": str,
    "as_of": str,
    "lang": str,
    "seed": int,
}
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


class RunError(RuntimeError):
    """A run that did not produce a deck; the message names the notebook, cell and error."""

    def __init__(
        self,
        message: str,
        failed_dir: Path | None = None,
        failures: list[ChapterFailure] | None = None,
    ):
        self.failed_dir = failed_dir
        self.failures = list(failures or [])
        super().__init__(message)


@dataclass
class ChapterFailure:
    """A notebook that failed (``cell``, ``error``) or was skipped (``needs`` failed ones)."""

    nb: str
    error: str
    cell: str = ""
    needs: tuple[str, ...] = ()
    traceback: str = ""

    @property
    def skipped(self) -> bool:
        return bool(self.needs)

    def line(self) -> str:
        if self.skipped:
            return f"notebook {self.nb} skipped: it needs {', '.join(self.needs)}, which did not finish"
        return self.error


@dataclass
class RunResult:
    run_dir: Path
    deck: Path
    results: dict[str, Any]
    timings: dict[str, float] = field(default_factory=dict)


def notebook_parameters(
    params: Params, params_file: str | Path, run_dir: str | Path
) -> dict[str, Any]:
    """The values papermill injects into every notebook of a run."""
    return {
        "params_file": str(Path(params_file).resolve()),
        "run_dir": str(run_dir),
        "data": params.resolve(params.data.source),
        "as_of": params.as_of.isoformat(),
        "lang": params.lang,
        "seed": int(params.seed),
    }


def check_notebook_parameters(nb_path: Path, passed: dict[str, Any]) -> None:
    """Fail on parameters a notebook does not declare (papermill would only warn)."""
    import papermill as pm

    declared = pm.inspect_notebook(str(nb_path))
    unknown = sorted(set(passed) - set(declared))
    if unknown:
        raise RunError(
            f"{nb_path.name}: parameters {unknown} are not declared in its parameters cell "
            f"(declared: {sorted(declared)})"
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


def run_name(params: Params) -> str:
    return f"{params.kind}-{params.as_of.isoformat()}"


def _chapter_labels(nb: str, lang: str) -> tuple[str, str]:
    return i18n.t(f"chapter.{nb}.title", lang), i18n.t(f"chapter.{nb}.question", lang)


def deck_labels(lang: str) -> dict[str, str]:
    keys = (
        "nav",
        "prev",
        "next",
        "toggle",
        "scroll_view",
        "period",
        "as_of",
        "generated_at",
        "agenda",
        "data",
    )
    return {k: i18n.t(f"deck.{k}", lang) for k in keys}


class _Terminated(BaseException):
    pass


def _on_term(signum: int, frame: Any) -> None:  # noqa: ARG001
    raise _Terminated(f"signal {signum}")


def _install_handlers() -> dict[int, Any]:
    old: dict[int, Any] = {}
    for sig in (signal.SIGTERM,):
        try:
            old[sig] = signal.signal(sig, _on_term)
        except ValueError:  # not the main thread
            pass
    return old


def _replace_dir(src: Path, dst: Path) -> None:
    """Move ``src`` into place at ``dst``; the old ``dst`` survives until the move is done."""
    old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
    if dst.exists():
        os.replace(dst, old)
    try:
        os.replace(src, dst)
    except OSError:
        if old.exists():
            os.replace(old, dst)
        raise
    if old.exists():
        shutil.rmtree(old, ignore_errors=True)


def run(
    params: Params,
    params_file: str | Path,
    reports_dir: str | Path | None = None,
    notebook_dir: str | Path | None = None,
    name: str | None = None,
    log: Callable[[str], None] = print,
    extra_meta: dict[str, Any] | None = None,
    previous: str | Path | None = None,
    chapters: list[str] | None = None,
    with_dependents: bool = False,
) -> RunResult:
    """Validate the data, execute the run's notebooks in order and write the report.

    Parameters
    ----------
    reports_dir : where the run folder goes (default: :func:`fupan.core.paths.reports_dir`,
        the params' ``reports_dir`` or ``./reports``).
    previous : an earlier run folder whose forecasts ``06_followup`` grades (default: the
        follow-up chapter looks for one itself, or backtests).
    chapters : update these chapters of the run in place (``fupan run``): the run's other
        chapters (notebooks, results, exports) are kept, the whole deck is rendered again,
        and chapters that used a rerun chapter's results are marked stale on their slides
        (:data:`USES`). Into a folder with no run, a run of just these chapters. None: a
        whole new run of ``params.notebooks`` (``fupan review``).
    with_dependents : with ``chapters``, also rerun every chapter of the run that uses
        them (directly or through another), instead of marking them stale.

    A notebook that fails does not stop the notebooks that do not need it (:data:`NEEDS`);
    the run then writes a partial deck into ``<run>.failed/`` and raises. Either way the
    run folder is replaced only by a complete run: the previous good report stays.

    Raises
    ------
    DataValidationError
        when the input fails its contract (nothing is written but ``<run>.failed/``).
    RunError
        when a notebook fails; names the notebook, the cell and the error
        (:attr:`RunError.failures` lists every failed or skipped notebook).
    """
    r = plan_run(
        params, params_file, reports_dir, notebook_dir, name, log, chapters, with_dependents
    )
    old_handlers = _install_handlers()
    try:
        seeded = seed_run_folder(r)
        fingerprints = validate_data(r)
        record_run_section(r, previous)
        passed = check_notebooks(r)
        failures = execute_chapters(r, passed)
        chapter_log = log_chapters(r, failures, seeded)
        results_now = render_deck(r, failures, chapter_log, extra_meta)
        write_manifest(r, chapter_log, fingerprints, failures, results_now)
        raise_for_failed_chapters(r, failures)
        swap_in(r)
        return finished(r, chapter_log)
    except (DataValidationError, RunError, _Terminated, KeyboardInterrupt, Exception) as exc:
        raise_run_failed(r, exc)
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)


@dataclass
class _Run:
    """One run in progress: its params, folders, plan, and what it has measured so far.

    ``current`` names the step under way, for the message of a failure."""

    params: Params
    params_file: str | Path
    reports: Path
    nb_dir: Path
    name: str
    plan: ChapterPlan
    prior: dict[str, Any] | None
    log: Callable[[str], None]
    timings: dict[str, float] = field(default_factory=dict)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    current: str = "validation"

    @property
    def final(self) -> Path:
        return self.reports / self.name

    @property
    def failed(self) -> Path:
        return self.reports / f"{self.name}.failed"

    @property
    def tmp(self) -> Path:
        return self.reports / f".{self.name}.tmp-{os.getpid()}"


def plan_run(
    params: Params,
    params_file: str | Path,
    reports_dir: str | Path | None,
    notebook_dir: str | Path | None,
    name: str | None,
    log: Callable[[str], None],
    chapters: list[str] | None,
    with_dependents: bool,
) -> _Run:
    """Resolve the run's folders, clear leftovers of dead runs, and plan its chapters."""
    # absolute: the notebooks run in their own folder and must write into this one
    reports = paths.reports_dir(params, reports_dir)
    nb_dir = Path(notebook_dir) if notebook_dir else NOTEBOOK_DIR
    reports.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(reports, log)
    name = name or run_name(params)
    tmp = reports / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    prior = read_manifest(reports / name) if chapters is not None else None
    plan = plan_chapters(params, chapters, prior, with_dependents)
    params = params.model_copy(update={"notebooks": plan.run})
    return _Run(params, params_file, reports, nb_dir, name, plan, prior, log)


def seed_run_folder(r: _Run) -> dict[str, tuple[int, int]]:
    """Make the temporary run folder; an update copies in the chapters it keeps. Returns
    the exports present before any notebook ran (to tell whose each export is)."""
    (r.tmp / "notebooks").mkdir(parents=True)
    (r.tmp / "exports").mkdir()
    if r.plan.kept:
        _seed_from(r.final, r.tmp, r.plan, r.prior or {}, r.nb_dir)
        r.log(
            f"[fupan] updating {r.final}: rerunning {', '.join(r.plan.run)}; "
            f"keeping {', '.join(r.plan.kept)}"
        )
        other = differing_params(r.prior or {}, r.plan.kept, params_checksum(r.params))
        if other:
            r.log(
                f"[fupan] warning: {', '.join(other)} ran with other params than these "
                "(the manifest's chapters.*.params_sha256 differ); the deck mixes them: "
                "use the same params (and --lang), or rerun those chapters too"
            )
    return _stat_exports(r.tmp)


def validate_data(r: _Run) -> dict[str, Any]:
    """Load the data strictly (the contract's checks); the input files' fingerprints."""
    t0 = time.perf_counter()
    r.log(f"[fupan] {r.params.name}: validating {r.params.resolve(r.params.data.source)}")
    ds = fdata.load(r.params, work_dir=r.tmp / "work", strict=True, handoff=False)
    fingerprints = dict(ds.fingerprints)
    n_warn = len(ds.report.warnings)
    ds.close()
    r.timings["load_validate"] = round(time.perf_counter() - t0, 3)
    r.log(
        f"[fupan] data ok ({', '.join(ds.report.present)}; {n_warn} warning(s)) in {r.timings['load_validate']:.1f}s"
    )
    return fingerprints


def record_run_section(r: _Run, previous: str | Path | None) -> None:
    """The ``run`` section of results.json: what every chapter quotes about the run."""
    p = r.params
    Recorder(r.tmp).record(
        "run",
        {
            "name": p.name,
            "kind": p.kind,
            "as_of": p.as_of,
            "period_start": p.period_start,
            "lang": p.lang,
            **({"previous": str(Path(previous).resolve())} if previous else {}),
        },
    )


def check_notebooks(r: _Run) -> dict[str, Any]:
    """The parameters every notebook gets, after checking each notebook exists and
    declares exactly them."""
    passed = notebook_parameters(r.params, r.params_file, r.tmp)
    for nb in r.params.notebooks:
        src = r.nb_dir / f"{nb}.ipynb"
        if not src.exists():
            raise RunError(f"notebook {src} not found")
        check_notebook_parameters(src, passed)
    return passed


def execute_chapters(r: _Run, passed: dict[str, Any]) -> list[ChapterFailure]:
    """Execute the planned notebooks (side by side where :data:`NEEDS` allows); the
    chapters that failed or were skipped."""
    r.current = ", ".join(r.params.notebooks)
    expected = expected_seconds(r.reports, r.name, r.prior)
    failures = _execute_all(
        r.params, r.nb_dir, r.tmp, passed, r.timings, r.log, windows=r.windows, expected=expected
    )
    # notebooks end in any order side by side; the manifest lists them as the params do
    r.timings.update({nb: r.timings.pop(nb) for nb in r.params.notebooks if nb in r.timings})
    return failures


def log_chapters(
    r: _Run, failures: list[ChapterFailure], seeded: dict[str, tuple[int, int]]
) -> dict[str, dict[str, Any]]:
    """Check the merged results (a metric two chapters quote has one value), then say
    when and with which params each chapter ran and which exports it wrote."""
    r.current = "deck"
    gate.enforce(r.tmp / RESULTS_NAME, r.params)
    ran_at = dt.datetime.now().isoformat(timespec="seconds")
    chapter_log = _chapter_entries(
        r.params,
        r.params_file,
        r.plan,
        r.prior or {},
        r.windows,
        r.timings,
        ran_at,
        failures,
        r.nb_dir,
    )
    _attribute_exports(r.tmp, seeded, chapter_log, r.plan, r.windows)
    return chapter_log


def render_deck(
    r: _Run,
    failures: list[ChapterFailure],
    chapter_log: dict[str, dict[str, Any]],
    extra_meta: dict[str, Any] | None,
) -> dict[str, Any]:
    """Write deck.html: the failures slide (if any), the executive summary of an annual
    review, and every chapter's slides. Returns the merged results it quoted."""
    params, tmp = r.params, r.tmp
    sections = _chapter_sections(params, tmp, failures, r.plan.all, chapter_log)
    meta = {
        "name": params.name,
        "as_of": params.as_of.isoformat(),
        "period_start": params.period_start.isoformat() if params.period_start else "",
        "generated_at": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        **(extra_meta or {}),
    }
    results_now = json.loads((tmp / RESULTS_NAME).read_text(encoding="utf-8"))
    if params.kind == "annual_review":
        try:
            sections = summary.sections(results_now, params) + sections
        except Exception as exc:
            if not failures:
                raise
            # the summary quotes every chapter; with one missing it may have no figure
            failures.append(
                ChapterFailure("summary", f"executive summary failed: {exc}", traceback=_tb())
            )
    if failures:
        sections = [failure_section(failures, params.lang), *sections]
    deck.render(sections, meta, deck_labels(params.lang), params.lang, tmp / "deck.html")
    return results_now


def write_manifest(
    r: _Run,
    chapter_log: dict[str, dict[str, Any]],
    fingerprints: dict[str, Any],
    failures: list[ChapterFailure],
    results_now: dict[str, Any],
) -> None:
    """manifest.json (what ran, on which inputs, how long) and results.json indented."""
    manifest = _manifest(
        r.name, r.params, r.params_file, r.plan, chapter_log, fingerprints, r.timings, r.started
    )
    if failures:
        manifest["failed"] = [{"notebook": f.nb, "problem": f.line()} for f in failures]
    write_json_atomic(r.tmp / "manifest.json", manifest)
    if (r.tmp / RESULTS_NAME).exists():  # recorded one line at a time: indent it for readers
        write_json_atomic(r.tmp / RESULTS_NAME, results_now)


def raise_for_failed_chapters(r: _Run, failures: list[ChapterFailure]) -> None:
    """A run with a failed chapter writes errors.log and stops before the swap."""
    if failures:
        write_error_log(r.tmp / ERROR_LOG, failures)
        raise RunError("\n".join(f.line() for f in failures), failures=failures)


def swap_in(r: _Run) -> None:
    """Drop the scratch files and move the finished run into place (the previous run
    survives until the move is done); a stale ``.failed`` folder goes."""
    shutil.rmtree(r.tmp / "work", ignore_errors=True)
    (r.tmp / f".{RESULTS_NAME}.lock").unlink(missing_ok=True)
    _replace_dir(r.tmp, r.final)
    if r.failed.exists():
        shutil.rmtree(r.failed, ignore_errors=True)


def finished(r: _Run, chapter_log: dict[str, dict[str, Any]]) -> RunResult:
    """Say which chapters are stale and where the deck is."""
    results = json.loads((r.final / RESULTS_NAME).read_text(encoding="utf-8"))
    for nb, entry in chapter_log.items():
        if entry.get("stale_because"):
            r.log(
                f"[fupan] {nb} is marked stale: it used {', '.join(entry['stale_because'])} "
                f"before the rerun (fupan run {nb}, or --with-dependents)"
            )
    took = time.time() - r.started
    r.log(f"[fupan] deck ({len(r.plan.all)} chapters) in {_clock(took)}: {r.final / 'deck.html'}")
    return RunResult(r.final, r.final / "deck.html", results, r.timings)


def raise_run_failed(r: _Run, exc: BaseException) -> NoReturn:
    """Keep what the failed run wrote in ``<run>.failed/`` (with ERROR.txt) and raise the
    error a user reads: a DataValidationError as it is, anything else as a RunError that
    names the step, the root cause and the folder."""
    failures = exc.failures if isinstance(exc, RunError) else []
    cause = root_cause(exc, r.reports)
    if isinstance(exc, OSError):
        from fupan.run.cli import describe_os_error

        message = f"{describe_os_error(exc)}\n  (during {r.current})"
    elif failures:
        message = str(exc)
    else:
        message = f"{r.current}: {exc}"
    if cause and cause not in message.lower():
        message = f"{cause}\n{message}"
    _keep_failed(r.tmp, r.failed, message, exc)
    kept = r.failed if r.failed.exists() else None
    if isinstance(exc, DataValidationError):
        exc.failed_dir = kept  # type: ignore[attr-defined]
        raise exc
    if isinstance(exc, RunError):
        exc.failed_dir = kept
        if cause and cause not in str(exc).lower():
            raise RunError(f"{cause}: {exc}", kept, failures) from None
        raise exc
    if isinstance(exc, (_Terminated, KeyboardInterrupt)):
        raise RunError(f"run interrupted ({exc or 'SIGINT'}) during {r.current}", kept) from None
    if isinstance(exc, OSError):
        raise RunError(message, kept) from exc
    what = f"{cause}: " if cause else ""
    raise RunError(f"{what}{r.current} failed: {type(exc).__name__}: {exc}", kept) from exc


def _clock(seconds: float) -> str:
    """``42s``, ``3m05s``: elapsed times and estimates in progress lines."""
    s = max(0, int(round(seconds)))
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s"


# --------------------------------------------------------------------------- in place


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
        elif item.name != "work":
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
                "params_file": str(Path(params_file).resolve()),
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
        "params_file": str(Path(params_file).resolve()),
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
    shutil.rmtree(tmp / "work", ignore_errors=True)
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


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


def _chapter_sections(
    params: Params,
    tmp: Path,
    failures: list[ChapterFailure],
    chapters: list[str] | None = None,
    chapter_log: dict[str, dict[str, Any]] | None = None,
) -> list[deck.Section]:
    """One section per chapter of the run; a failed one keeps the slides made before its
    failing cell and ends with a slide saying where it stopped; a stale one (it used a
    chapter rerun since) says so on every slide."""
    by_nb = {f.nb: f for f in failures}
    sections: list[deck.Section] = []
    for nb in chapters if chapters is not None else params.notebooks:
        f = by_nb.get(nb)
        if f is not None and f.skipped:
            continue
        title, question = _chapter_labels(nb, params.lang)
        out = tmp / "notebooks" / f"{nb}.ipynb"
        if out.exists():
            section = deck.slides_from_notebook(out, nb, title, question)
        else:
            section = deck.Section(key=nb, title=title, question=question)
        deck.collapse_skipped(section, params.lang)
        if f is not None:
            stopped = i18n.t(
                "run.stopped_title", params.lang, chapter=_chapter_name(nb, params.lang)
            )
            section.slides.append(_failure_slide([f], params.lang, title=stopped))
        entry = (chapter_log or {}).get(nb) or {}
        if entry.get("stale_because"):
            mark_stale(section, nb, entry, chapter_log or {}, params.lang)
        sections.append(section)
    return sections


def stale_line(
    nb: str, entry: dict[str, Any], chapter_log: dict[str, dict[str, Any]], lang: str
) -> str:
    """The sentence a stale chapter's slides carry: which chapters were rerun since it ran."""
    needs = entry["stale_because"]
    names = "、".join(_chapter_name(n, lang) for n in needs)
    rerun_at = max(str((chapter_log.get(n) or {}).get("ran_at") or "") for n in needs)
    return i18n.t(
        "run.stale_line",
        lang,
        needs=names,
        chapter=nb,
        ran_at=_when(entry.get("ran_at")),
        rerun_at=_when(rerun_at),
    )


def _when(stamp: Any) -> str:
    return str(stamp or "?").replace("T", " ")[:16]


def mark_stale(
    section: deck.Section,
    nb: str,
    entry: dict[str, Any],
    chapter_log: dict[str, dict[str, Any]],
    lang: str,
) -> None:
    """Put the stale line on every slide of ``section``, under its title."""
    import html

    line = f'<p class="fupan-missing fupan-stale">{html.escape(stale_line(nb, entry, chapter_log, lang))}</p>'
    for slide in section.slides:
        head = slide.head.rstrip()
        if head.endswith("</div>"):
            slide.head = head[: -len("</div>")] + line + "</div>"
        else:
            slide.head = head + line


def _chapter_name(nb: str, lang: str) -> str:
    try:
        title = i18n.t(f"chapter.{nb}.title", lang)
    except i18n.MissingLabelError:
        return nb
    head = nb.split("_", 1)[0]
    return f"{int(head)} · {title}" if head.isdigit() else title


def _failure_slide(
    failures: list[ChapterFailure], lang: str, title: str | None = None
) -> deck.Page:
    import html

    t = lambda key, **kw: i18n.t(key, lang, **kw)  # noqa: E731
    lines = []
    for f in failures:
        chapter = _chapter_name(f.nb, lang)
        if f.skipped:
            needs = "、".join(_chapter_name(n, lang) for n in f.needs)
            lines.append(t("run.skipped_line", chapter=chapter, needs=needs))
        else:
            lines.append(
                t(
                    "run.failed_line",
                    chapter=chapter,
                    cell=_cell_words(f, lang),
                    error=_short(f.error),
                )
            )
    if title is None:
        title = t("run.incomplete_title", n=sum(not f.skipped for f in failures))
    head = (
        f'<div class="fupan-slide-head"><h2>{html.escape(title)}</h2>'
        f'<p class="finding">{html.escape(t("run.incomplete_finding", log=ERROR_LOG))}</p></div>'
    )
    items = "".join(f"<li>{html.escape(x)}</li>" for x in lines)
    return deck.Page(head=head, body=[f'<ul class="fupan-bullets">{items}</ul>'], kind="failure")


def _cell_words(f: ChapterFailure, lang: str) -> str:
    """The failing cell in the deck's language ("code cell 3 (…)" / "第 3 个代码单元（…）")."""
    import re

    m = re.match(r"code cell (\d+) \((.*)\)$", f.cell)
    if not m:
        return f.cell or "?"
    return i18n.t("run.cell", lang, n=m.group(1), code=m.group(2).strip("'\""))


def _short(error: str, limit: int = 240) -> str:
    """The error's own words, without the runner's "notebook X failed in cell N:" prefix."""
    text = error.split(": ", 1)[1] if error.startswith("notebook ") and ": " in error else error
    text = text.strip().splitlines()[0] if text.strip() else error
    return text if len(text) <= limit else text[: limit - 1] + "…"


def failure_section(failures: list[ChapterFailure], lang: str) -> deck.Section:
    """The partial deck's opening: which chapters failed (cell, error) or were skipped."""
    return deck.Section(
        key="run_incomplete",
        title=i18n.t("run.section", lang),
        question="",
        slides=[_failure_slide(failures, lang)],
        divider=False,
    )


#: Notebooks that use what an earlier notebook of the run leaves: chapter 3 quotes the
#: at-risk list chapter 2 exports (otherwise it would score the customers again, and say
#: so); chapters 4 and 5 read chapter 2's health model and chapter 3's valuations from the
#: run cache (:mod:`fupan.io.cache`; started earlier they would compute them again).
WAITS_FOR: dict[str, tuple[str, ...]] = {
    "03_ltv_loss": ("02_churn_root_cause",),
    "04_strategy_simulation": ("02_churn_root_cause", "03_ltv_loss"),
    "05_kpi_tracking": ("02_churn_root_cause", "03_ltv_loss"),
    # the follow-up sets this run's findings and scenario predictions beside last year's
    "06_followup": ("01_diagnosis", "04_strategy_simulation", "05_kpi_tracking"),
}
#: What a notebook cannot do without: when one of these fails (or is skipped) in a run,
#: the notebook is skipped and the partial deck says so; every other notebook still runs.
#: Chapter 3 is not here: it quotes chapter 2's at-risk export when there is one and
#: scores the customers itself otherwise (and says so). Chapters 4 and 5 price and track
#: with chapter 2's health model and chapter 3's valuations (:mod:`fupan.io.cache`): a model
#: whose own chapter failed is not one to build a recommendation or an alert on.
NEEDS: dict[str, tuple[str, ...]] = {
    "04_strategy_simulation": ("02_churn_root_cause", "03_ltv_loss"),
    "05_kpi_tracking": ("02_churn_root_cause", "03_ltv_loss"),
}
#: Chapters that use another chapter's results: what they wait for or need. A chapter
#: updated in place (``fupan run``) makes the chapters that use it stale.
USES: dict[str, tuple[str, ...]] = {
    nb: tuple(_in_order(set(WAITS_FOR.get(nb, ())) | set(NEEDS.get(nb, ()))))
    for nb in set(WAITS_FOR) | set(NEEDS)
}
#: How long a notebook process gets to shut its kernel down after SIGTERM.
STOP_GRACE_SECONDS = 20


@dataclass
class _Job:
    nb: str
    out: Path
    result: Path
    proc: subprocess.Popen[bytes]
    started: float


def _execute_all(
    params: Params,
    nb_dir: Path,
    tmp: Path,
    passed: dict[str, Any],
    timings: dict[str, float],
    log: Callable[[str], None],
    windows: dict[str, tuple[float, float]] | None = None,
    expected: dict[str, float] | None = None,
) -> list[ChapterFailure]:
    """Execute the run's notebooks, up to ``params.parallel_notebooks`` at once.

    Each notebook runs in its own process (which starts its own kernel), so an interrupt
    stops every running notebook and its kernel, and each process's memory is its own. A
    notebook starts once what it waits for (:data:`WAITS_FOR`) is done; of those ready,
    the ones others wait for first, then the params' order (one at a time: the params'
    order). A failed notebook does not stop the others: those that need it
    (:data:`NEEDS`) are skipped, the rest run. Returns the failed and skipped notebooks.

    Progress lines count up as notebooks start and finish (``[2/6]`` after ``[1/6]``,
    whichever notebook that is), with the elapsed time and an estimate of what is left
    (:class:`Progress`); a notebook still running says so every
    :data:`HEARTBEAT_SECONDS`, with the cell it is in. ``windows`` receives each
    notebook's (start, end) wall-clock times.
    """
    order = list(params.notebooks)
    waits = {
        nb: {d for d in WAITS_FOR.get(nb, ()) if d in order[: order.index(nb)]} for nb in order
    }
    needs = {nb: {d for d in NEEDS.get(nb, ()) if d in order} for nb in order}
    windows = windows if windows is not None else {}
    # without fcntl (Windows) results.json has no lock: one notebook at a time
    slots = max(1, params.parallel_notebooks) if results_lock_available() else 1
    progress = Progress(order, slots, expected or {})
    pending, running, done = list(order), {}, set()
    failures: list[ChapterFailure] = []
    if slots > 1:
        # of the notebooks ready to start, the one others wait for goes first (chapter 2
        # before chapters 0 and 1): it starts the chain that ends the run
        waited_on = {nb: sum(nb in waits[m] for m in order) for nb in order}
        pending.sort(key=lambda nb: -waited_on[nb])
    try:
        while pending or running:
            lost = {f.nb for f in failures}
            for nb in [nb for nb in pending if needs[nb] & lost]:
                pending.remove(nb)
                failures.append(ChapterFailure(nb, "", needs=tuple(sorted(needs[nb] & lost))))
                log(progress.finished(nb, failures[-1].line()))
            while len(running) < slots:
                settled = done | lost
                nxt = next((nb for nb in pending if waits[nb] <= settled), None)
                if nxt is None:
                    break
                pending.remove(nxt)
                log(progress.started(nxt))
                running[nxt] = _start(nxt, nb_dir, tmp, passed, params.cell_timeout_seconds, slots)
                windows[nxt] = (time.time(), time.time())
            finished = [job for job in running.values() if job.proc.poll() is not None]
            for job in finished:
                del running[job.nb]
                timings[job.nb] = round(time.perf_counter() - job.started, 3)
                windows[job.nb] = (windows[job.nb][0], time.time())
                failure = _outcome(job)
                if failure:
                    failures.append(failure)
                    log(progress.finished(job.nb, failure.error))
                    continue
                done.add(job.nb)
                log(progress.finished(job.nb, f"done in {timings[job.nb]:.1f}s"))
            if not finished:
                for line in progress.heartbeat(running):
                    log(line)
                time.sleep(0.1)
    except (_Terminated, KeyboardInterrupt) as exc:
        where = "; ".join(f"notebook {j.nb}, {_running_cell(j.out)}" for j in running.values())
        _stop(running)
        raise RunError(f"run interrupted ({exc or 'SIGINT'}) in {where or 'a notebook'}") from None
    finally:
        _stop(running)
    return failures


#: A notebook still running after this long says so (and every this often again).
HEARTBEAT_SECONDS = 30.0


class Progress:
    """The review's progress lines: numbered as notebooks finish, with elapsed time and
    an estimate of the time left.

    The estimate uses each notebook's time in the last run (``expected``) when there is
    one, else the mean time of the notebooks finished so far, and divides the work left
    by the notebooks running at once.
    """

    def __init__(self, order: list[str], slots: int, expected: dict[str, float]):
        self.order, self.slots, self.expected = list(order), max(1, slots), dict(expected)
        self.total = len(order)
        self.t0 = time.monotonic()
        self.begun: dict[str, float] = {}
        self.took: dict[str, float] = {}
        self.beat: dict[str, float] = {}

    def _head(self) -> str:
        return f"[fupan] [{len(self.took)}/{self.total}]"

    def started(self, nb: str) -> str:
        self.begun[nb] = self.beat[nb] = time.monotonic()
        return f"[fupan] {nb} started ({len(self.begun)} of {self.total} begun, {_clock(self.elapsed())} elapsed)"

    def finished(self, nb: str, what: str) -> str:
        now = time.monotonic()
        self.took[nb] = now - self.begun.get(nb, now)
        self.beat.pop(nb, None)
        left = self.remaining()
        tail = (
            f"; about {_clock(left)} left"
            if left is not None and len(self.took) < self.total
            else ""
        )
        text = what if what.startswith(("notebook ", "run ")) else f"{nb} {what}"
        return f"{self._head()} {text} ({_clock(self.elapsed())} elapsed{tail})"

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def remaining(self) -> float | None:
        """Seconds of work left over the slots, or None before anything can be said."""
        now = time.monotonic()
        ran = [t for nb, t in self.took.items() if t > 0]
        typical = sum(ran) / len(ran) if ran else None
        work = 0.0
        for nb in self.order:
            if nb in self.took:
                continue
            guess = self.expected.get(nb, typical)
            if guess is None:
                return None
            work += max(0.0, guess - (now - self.begun[nb])) if nb in self.begun else guess
        return work / self.slots

    def heartbeat(self, running: dict[str, _Job]) -> list[str]:
        now = time.monotonic()
        lines = []
        for nb, job in running.items():
            if now - self.beat.get(nb, now) >= HEARTBEAT_SECONDS:
                self.beat[nb] = now
                lines.append(
                    f"[fupan] {nb} running for {_clock(now - self.begun[nb])}, in "
                    f"{_running_cell(job.out)}"
                )
        return lines


#: Thread pools of the numeric libraries a kernel loads (OpenBLAS/MKL, OpenMP).
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
# glibc raises its mmap threshold each time a large block is freed, so later large arrays
# come from the heap and stay resident after they are freed: a kernel kept its peak while
# the notebook beside it climbed to its own. A fixed threshold gives every array over
# 128 KiB its own mapping, returned on free (chapter 5 at 1M: 8.3 -> 5.2 GB peak, 2.2 ->
# 1.3 GB held after its first cell). Other allocators ignore it.
MALLOC_VARS = {"MALLOC_MMAP_THRESHOLD_": "131072"}


def _env(slots: int) -> dict[str, str]:
    """The notebook process's environment (its kernel inherits it).

    With several notebooks at once, each kernel's BLAS and OpenMP pools get one thread:
    two kernels each spinning two BLAS threads on two cores made a matrix-vector product
    several times slower than on one thread. Every kernel gets a fixed glibc mmap
    threshold (:data:`MALLOC_VARS`). A value the user set is kept.
    """
    env = dict(os.environ)
    if slots > 1:
        for var in THREAD_VARS:
            env.setdefault(var, "1")
    for var, value in MALLOC_VARS.items():
        env.setdefault(var, value)
    return env


def _start(
    nb: str, nb_dir: Path, tmp: Path, passed: dict[str, Any], timeout: int, slots: int
) -> _Job:
    out = tmp / "notebooks" / f"{nb}.ipynb"
    spec = tmp / "notebooks" / f".{nb}.job.json"
    result = tmp / "notebooks" / f".{nb}.result.json"
    spec_data = {
        "nb": nb,
        "src": str(nb_dir / f"{nb}.ipynb"),
        "out": str(out),
        # the kernel works in the run's scratch folder (removed before the run is swapped
        # in): never in the notebooks' (the installed package may be read-only) nor
        # wherever fupan was started, and a stray file (derby.log, …) does not reach the report
        "cwd": str(tmp / "work"),
        "parameters": passed,
        "timeout": timeout,
        "result": str(result),
    }
    (tmp / "work").mkdir(exist_ok=True)
    write_json_atomic(spec, spec_data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fupan.run.runner", str(spec)],
        env=_env(slots),
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    return _Job(nb, out, result, proc, time.perf_counter())


def _die_with_parent() -> None:
    """In the notebook process before exec: SIGKILL when the runner dies, even by SIGKILL.

    Not SIGTERM: a notebook process asked to stop shuts its kernel down politely, which on
    a loaded machine took longer than the 5 s a killed run may leave behind. Its kernel
    exits by itself within a second of its parent's death (ipykernel polls its parent,
    whose pid jupyter_client passes in ``JPY_PARENT_PID``). The run's temporary folder,
    with its staged data, is removed by the next run (:func:`remove_stale_temporaries`).
    """
    import ctypes

    PR_SET_PDEATHSIG = 1
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except OSError:
        pass  # not glibc: the kernels' own parent polling still applies


def _outcome(job: _Job) -> ChapterFailure | None:
    """``None`` when the notebook succeeded, else what failed: notebook, cell and error."""
    try:
        res = json.loads(job.result.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        res = {
            "error": f"notebook {job.nb}: its process ended (exit {job.proc.returncode}) "
            f"without a result, in {_running_cell(job.out)}"
        }
    finally:
        for f in (job.result, job.result.with_name(f".{job.nb}.job.json")):
            f.unlink(missing_ok=True)
    if res.get("ok"):
        return None
    return ChapterFailure(
        job.nb,
        str(res.get("error")),
        cell=str(res.get("cell") or _running_cell(job.out)),
        traceback=str(res.get("traceback") or ""),
    )


def _stop(running: dict[str, _Job]) -> None:
    """SIGTERM every running notebook process (each shuts its kernel down), then wait."""
    for job in running.values():
        if job.proc.poll() is None:
            job.proc.terminate()
    deadline = time.monotonic() + STOP_GRACE_SECONDS
    for job in running.values():
        try:
            job.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            job.proc.kill()
            job.proc.wait()
    running.clear()


@contextmanager
def kernel_sockets() -> Iterator[dict[str, Any]]:
    """Papermill arguments that connect a notebook to its kernel over private Unix sockets.

    Over TCP, jupyter_client finds free ports by binding and releasing them, and the kernel
    binds them a moment later. A notebook started beside another (or beside any program
    opening connections) can lose a port in between: CI saw "Address already in use" and
    "Kernel died before replying to kernel_info". Unix sockets in a folder only this kernel
    uses cannot collide; the folder is short (a socket path is limited to ~100 bytes) and
    removed afterwards. Windows has no ``ipc`` transport, so TCP stays there.
    """
    if os.name != "posix":
        yield {}
        return
    from traitlets.config import Config

    with tempfile.TemporaryDirectory(prefix="fupan-kernel-") as folder:
        # the manager and the kernel run in different folders: the path must be absolute
        ip = os.path.join(os.path.realpath(folder), "kernel")
        yield {"config": Config({"KernelManager": {"transport": "ipc", "ip": ip}})}


def execute_notebook(
    nb: str, src: Path, out: Path, parameters: dict[str, Any], timeout: int, cwd: Path
) -> None:
    """Execute one notebook with papermill; raise :class:`RunError` naming its cell."""
    import papermill as pm

    try:
        with kernel_sockets() as sockets:
            pm.execute_notebook(
                str(src),
                str(out),
                parameters=parameters,
                kernel_name="python3",
                progress_bar=False,
                execution_timeout=timeout,
                cwd=str(cwd),
                log_output=False,
                # the kernel's own start-up chatter (transport warnings) is not a user's concern
                # jupyter_client interrupts a kernel before shutting it down, and a kernel inside
                # a handler then logs "KeyboardInterrupt caught" at ERROR to our terminal; cell
                # errors still reach the notebook and the RunError
                extra_arguments=["--IPKernelApp.log_level=CRITICAL"],
                **sockets,
            )
    except pm.PapermillExecutionError as exc:
        err = RunError(
            f"notebook {nb} failed in cell {exc.exec_count or exc.cell_index}: {exc.ename}: {exc.evalue}"
        )
        tb = "\n".join(exc.traceback or [])
        cell = _failing_line(tb, exc.exec_count) or _running_cell(out)
        err.failures = [ChapterFailure(nb, str(err), cell=cell, traceback=tb)]
        raise err from None
    except (_Terminated, KeyboardInterrupt) as exc:
        raise RunError(
            f"run interrupted ({exc or 'SIGINT'}) in notebook {nb}, {_running_cell(out)}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - a dead kernel, a cell past its timeout, ...
        kind = type(exc).__name__
        if "Timeout" in kind:
            what = f"exceeded the {timeout}s cell timeout"
        elif "DeadKernel" in kind:
            what = "lost its kernel (it died or was killed)"
        else:
            what = f"failed: {kind}: {exc}"
        raise RunError(f"notebook {nb} {what} in {_running_cell(out)}") from None


def _notebook_process(spec_file: str) -> int:
    """``python -m fupan.run.runner SPEC``: one notebook of a run, in its own process."""
    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    signal.signal(signal.SIGTERM, _on_term)
    try:
        execute_notebook(
            spec["nb"],
            Path(spec["src"]),
            Path(spec["out"]),
            spec["parameters"],
            int(spec["timeout"]),
            Path(spec["cwd"]),
        )
        result: dict[str, Any] = {"ok": True}
    except RunError as exc:
        result = {"ok": False, "error": str(exc)}
        if exc.failures:
            result.update(cell=exc.failures[0].cell, traceback=exc.failures[0].traceback)
    except (_Terminated, KeyboardInterrupt) as exc:  # between cells, outside papermill
        result = {
            "ok": False,
            "error": f"run interrupted ({exc or 'SIGINT'}) in notebook {spec['nb']}",
        }
    write_json_atomic(spec["result"], result)
    return 0 if result["ok"] else 1


def _running_cell(path: Path) -> str:
    """Name the cell papermill was executing, from the partial output notebook."""
    info = cell_info(path)
    if info is None:
        return "its first cell" if not Path(path).exists() else "an unknown cell"
    return f"code cell {info[0]} ({info[1]!r})"


def _failing_line(traceback: str, exec_count: int | None) -> str | None:
    """ "code cell N (the line that raised)" from a kernel traceback, when it names one.

    A notebook cell's first line is often an import; the line the error came from says
    more (IPython marks it ``---->`` under ``Cell In[N], line L``).
    """
    import re

    text = _strip_ansi(traceback)
    m = re.search(r"Cell In\[(\d+)\], line \d+\n(?:.*\n)*?-+> *\d+ (.*)", text)
    if not m:
        return None
    n = exec_count or int(m.group(1))
    return f"code cell {n} ({m.group(2).strip()[:60]!r})"


def cell_info(path: Path) -> tuple[int, str] | None:
    """(number among code cells, first line) of the cell papermill was executing last."""
    import nbformat

    try:
        nb = nbformat.read(str(path), as_version=4)
    except Exception:  # noqa: BLE001 - the output may not have been written yet
        return None
    code = [c for c in nb.cells if c.cell_type == "code"]
    # Papermill stamps start_time on each cell it begins; the last stamped cell is the culprit.
    started = [
        i
        for i, c in enumerate(code)
        if c.get("metadata", {}).get("papermill", {}).get("start_time")
    ]
    if started:
        cell = code[started[-1]]
        return started[-1] + 1, (cell.source.strip().splitlines() or [""])[0][:60]
    return None


def python_executable() -> str:
    return sys.executable


if __name__ == "__main__":
    raise SystemExit(_notebook_process(sys.argv[1]))
