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

:func:`run` reads as its steps; the rooms beside this one do the work: executing the
notebooks (:mod:`fupan.run.execute`), the run folder, chapter plan and manifest
(:mod:`fupan.run.run_folder`), and the deck's chapter and failure sections
(:mod:`fupan.run.render`).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from fupan.core import paths
from fupan.core.params import Params
from fupan.io import data as fdata
from fupan.io.validation import DataValidationError
from fupan.report import deck, gate, summary
from fupan.report.results import RESULTS_NAME, Recorder, write_json_atomic
from fupan.run.execute import (
    ChapterFailure,
    RunError,
    _execute_all,
    _install_handlers,
    _Terminated,
)
from fupan.run.memory import clock
from fupan.run.render import _chapter_sections, deck_labels, failure_section
from fupan.run.run_folder import (
    ERROR_LOG,
    ChapterPlan,
    _attribute_exports,
    _chapter_entries,
    _keep_failed,
    _manifest,
    _seed_from,
    _stat_exports,
    _tb,
    differing_params,
    expected_seconds,
    params_checksum,
    plan_chapters,
    read_manifest,
    remove_stale_temporaries,
    root_cause,
    write_error_log,
)

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
        "params_file": str(params_file),
        "run_dir": str(run_dir),
        "data": params.context.data,
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
    reports_dir : where the run folder goes (``--out``; default: the run context's
        :attr:`~fupan.core.paths.RunContext.reports_dir`, the params' ``reports_dir`` or
        ``./reports``); ``name`` its folder (default: the context's ``run_name``).
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
    params_file: Path
    ctx: paths.RunContext  # the run's folders: reports, the run's, its staging and failed ones
    nb_dir: Path
    plan: ChapterPlan
    prior: dict[str, Any] | None
    log: Callable[[str], None]
    timings: dict[str, float] = field(default_factory=dict)
    windows: dict[str, tuple[float, float]] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    current: str = "validation"

    @property
    def reports(self) -> Path:
        return self.ctx.reports_dir

    @property
    def name(self) -> str:
        return self.ctx.run_name

    @property
    def final(self) -> Path:
        return self.ctx.run_dir

    @property
    def failed(self) -> Path:
        return self.ctx.failed_dir

    @property
    def tmp(self) -> Path:
        return self.ctx.staging_dir()


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
    ctx = params.context.for_run(reports_dir, name)
    nb_dir = Path(notebook_dir) if notebook_dir else NOTEBOOK_DIR
    ctx.reports_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(ctx.reports_dir, log)
    if ctx.staging_dir().exists():
        shutil.rmtree(ctx.staging_dir())
    prior = read_manifest(ctx.run_dir) if chapters is not None else None
    plan = plan_chapters(params, chapters, prior, with_dependents)
    params = params.model_copy(update={"notebooks": plan.run})
    # the params file as the run's manifest and notebooks name it: absolute, made once here
    return _Run(params, Path(params_file).resolve(), ctx, nb_dir, plan, prior, log)


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
    r.log(f"[fupan] {r.params.name}: validating {r.params.context.data}")
    ds = fdata.load(r.params, work_dir=paths.work_dir(r.tmp), strict=True, handoff=False)
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
    shutil.rmtree(paths.work_dir(r.tmp), ignore_errors=True)
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
    r.log(f"[fupan] deck ({len(r.plan.all)} chapters) in {clock(took)}: {r.final / 'deck.html'}")
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
