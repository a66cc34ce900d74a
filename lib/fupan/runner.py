"""Run a review: validate, execute the notebooks with papermill, build the deck, atomically.

A run is built in a temporary folder beside its final place and moved there only when
every notebook succeeded and the deck is written. A failed run leaves the previous good
report untouched and keeps its partial notebooks in ``reports/<run>.failed/``.

A chapter that fails does not stop the chapters that do not need it (:data:`NEEDS`): they
run, and the failed run's folder holds a partial deck whose first slide names each failed
chapter, its cell and its error (tracebacks go to ``errors.log`` beside it).
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
from typing import Any

from fupan import data as fdata
from fupan import deck, gate, i18n, summary
from fupan.params import Params, dump
from fupan.results import RESULTS_NAME, Recorder, results_lock_available, write_json_atomic
from fupan.validation import DataValidationError

PACKAGE_ROOT = Path(__file__).resolve().parent
PROJECT_ROOT = PACKAGE_ROOT.parent.parent
NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
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
) -> RunResult:
    """Validate the data, execute the run's notebooks in order and write the report.

    ``previous`` is an earlier run folder whose forecasts ``06_followup`` grades (default:
    the follow-up chapter looks for one itself, or backtests).

    A notebook that fails does not stop the notebooks that do not need it (:data:`NEEDS`);
    the run then writes a partial deck into ``<run>.failed/`` and raises.

    Raises
    ------
    DataValidationError
        when the input fails its contract (nothing is written but ``<run>.failed/``).
    RunError
        when a notebook fails; names the notebook, the cell and the error
        (:attr:`RunError.failures` lists every failed or skipped notebook).
    """
    # absolute: the notebooks run in their own folder and must write into this one
    reports = Path(reports_dir).resolve() if reports_dir else PROJECT_ROOT / "reports"
    nb_dir = Path(notebook_dir) if notebook_dir else NOTEBOOK_DIR
    reports.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(reports, log)
    name = name or run_name(params)
    final = reports / name
    failed = reports / f"{name}.failed"
    tmp = reports / f".{name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    old_handlers = _install_handlers()
    timings: dict[str, float] = {}
    started = time.time()
    current = "validation"
    try:
        (tmp / "notebooks").mkdir(parents=True)
        (tmp / "exports").mkdir()
        t0 = time.perf_counter()
        log(f"[fupan] {params.name}: validating {params.resolve(params.data.source)}")
        ds = fdata.load(params, work_dir=tmp / "work", strict=True, handoff=False)
        fingerprints = dict(ds.fingerprints)
        n_warn = len(ds.report.warnings)
        ds.close()
        timings["load_validate"] = round(time.perf_counter() - t0, 3)
        log(
            f"[fupan] data ok ({', '.join(ds.report.present)}; {n_warn} warning(s)) in {timings['load_validate']:.1f}s"
        )
        Recorder(tmp).record(
            "run",
            {
                "name": params.name,
                "kind": params.kind,
                "as_of": params.as_of,
                "period_start": params.period_start,
                "lang": params.lang,
                **({"previous": str(Path(previous).resolve())} if previous else {}),
            },
        )
        passed = notebook_parameters(params, params_file, tmp)
        for nb in params.notebooks:
            src = nb_dir / f"{nb}.ipynb"
            if not src.exists():
                raise RunError(f"notebook {src} not found")
            check_notebook_parameters(src, passed)
        current = ", ".join(params.notebooks)
        failures = _execute_all(params, nb_dir, tmp, passed, timings, log)
        # notebooks end in any order side by side; the manifest lists them as the params do
        timings.update({nb: timings.pop(nb) for nb in params.notebooks if nb in timings})
        current = "deck"
        gate.enforce(tmp / RESULTS_NAME, params)  # a metric two chapters quote has one value
        sections = _chapter_sections(params, tmp, failures)
        meta = {
            "name": params.name,
            "as_of": params.as_of.isoformat(),
            "period_start": params.period_start.isoformat() if params.period_start else "",
            "generated_at": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
            **(extra_meta or {}),
        }
        if params.kind == "annual_review":
            results_now = json.loads((tmp / RESULTS_NAME).read_text(encoding="utf-8"))
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
        manifest = {
            "run": name,
            "fupan_version": metadata.version("fupan"),
            "started_at": dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now().isoformat(timespec="seconds"),
            "params_file": str(Path(params_file).resolve()),
            "params": dump(params),
            "inputs": fingerprints,
            "packages": package_versions(),
            "git_commit": git_commit(),
            "seeds": {"seed": params.seed},
            "timings_seconds": timings,
            "notebooks": list(params.notebooks),
        }
        if failures:
            manifest["failed"] = [{"notebook": f.nb, "problem": f.line()} for f in failures]
        write_json_atomic(tmp / "manifest.json", manifest)
        if (tmp / RESULTS_NAME).exists():  # recorded one line at a time: indent it for readers
            write_json_atomic(
                tmp / RESULTS_NAME, json.loads((tmp / RESULTS_NAME).read_text(encoding="utf-8"))
            )
        if failures:
            write_error_log(tmp / ERROR_LOG, failures)
            raise RunError("\n".join(f.line() for f in failures), failures=failures)
        shutil.rmtree(tmp / "work", ignore_errors=True)
        (tmp / f".{RESULTS_NAME}.lock").unlink(missing_ok=True)
        _replace_dir(tmp, final)
        if failed.exists():
            shutil.rmtree(failed, ignore_errors=True)
        results = json.loads((final / RESULTS_NAME).read_text(encoding="utf-8"))
        log(f"[fupan] deck: {final / 'deck.html'}")
        return RunResult(final, final / "deck.html", results, timings)
    except (DataValidationError, RunError, _Terminated, KeyboardInterrupt, Exception) as exc:
        failures = exc.failures if isinstance(exc, RunError) else []
        cause = root_cause(exc, reports)
        if isinstance(exc, OSError):
            from fupan.cli import describe_os_error

            message = f"{describe_os_error(exc)}\n  (during {current})"
        elif failures:
            message = str(exc)
        else:
            message = f"{current}: {exc}"
        if cause and cause not in message.lower():
            message = f"{cause}\n{message}"
        _keep_failed(tmp, failed, message, exc)
        kept = failed if failed.exists() else None
        if isinstance(exc, DataValidationError):
            exc.failed_dir = kept  # type: ignore[attr-defined]
            raise
        if isinstance(exc, RunError):
            exc.failed_dir = kept
            if cause and cause not in str(exc).lower():
                raise RunError(f"{cause}: {exc}", kept, failures) from None
            raise
        if isinstance(exc, (_Terminated, KeyboardInterrupt)):
            raise RunError(f"run interrupted ({exc or 'SIGINT'}) during {current}", kept) from None
        if isinstance(exc, OSError):
            raise RunError(message, kept) from exc
        what = f"{cause}: " if cause else ""
        raise RunError(f"{what}{current} failed: {type(exc).__name__}: {exc}", kept) from exc
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)


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
    params: Params, tmp: Path, failures: list[ChapterFailure]
) -> list[deck.Section]:
    """One section per notebook that ran; a failed one keeps the slides made before its
    failing cell and ends with a slide saying where it stopped."""
    by_nb = {f.nb: f for f in failures}
    sections: list[deck.Section] = []
    for nb in params.notebooks:
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
        sections.append(section)
    return sections


def _chapter_name(nb: str, lang: str) -> str:
    try:
        title = i18n.t(f"chapter.{nb}.title", lang)
    except i18n.MissingLabelError:
        return nb
    head = nb.split("_", 1)[0]
    return f"{int(head)} · {title}" if head.isdigit() else title


def _failure_slide(
    failures: list[ChapterFailure], lang: str, title: str | None = None
) -> deck.Slide:
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
    return deck.Slide(head=head, body=[f'<ul class="fupan-bullets">{items}</ul>'], kind="failure")


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
#: run cache (:mod:`fupan.cache`; started earlier they would compute them again).
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
#: with chapter 2's health model and chapter 3's valuations (:mod:`fupan.cache`): a model
#: whose own chapter failed is not one to build a recommendation or an alert on.
NEEDS: dict[str, tuple[str, ...]] = {
    "04_strategy_simulation": ("02_churn_root_cause", "03_ltv_loss"),
    "05_kpi_tracking": ("02_churn_root_cause", "03_ltv_loss"),
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
) -> list[ChapterFailure]:
    """Execute the run's notebooks, up to ``params.parallel_notebooks`` at once.

    Each notebook runs in its own process (which starts its own kernel), so an interrupt
    stops every running notebook and its kernel, and each process's memory is its own. A
    notebook starts once what it waits for (:data:`WAITS_FOR`) is done; of those ready,
    the ones others wait for first, then the params' order (one at a time: the params'
    order). A failed notebook does not stop the others: those that need it
    (:data:`NEEDS`) are skipped, the rest run. Returns the failed and skipped notebooks.
    """
    order = list(params.notebooks)
    waits = {
        nb: {d for d in WAITS_FOR.get(nb, ()) if d in order[: order.index(nb)]} for nb in order
    }
    needs = {nb: {d for d in NEEDS.get(nb, ()) if d in order} for nb in order}
    total = len(order)
    # without fcntl (Windows) results.json has no lock: one notebook at a time
    slots = max(1, params.parallel_notebooks) if results_lock_available() else 1
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
                log(f"[fupan] [{order.index(nb) + 1}/{total}] {failures[-1].line()}")
            while len(running) < slots:
                settled = done | lost
                nxt = next((nb for nb in pending if waits[nb] <= settled), None)
                if nxt is None:
                    break
                pending.remove(nxt)
                log(f"[fupan] [{order.index(nxt) + 1}/{total}] {nxt} …")
                running[nxt] = _start(nxt, nb_dir, tmp, passed, params.cell_timeout_seconds, slots)
            finished = [job for job in running.values() if job.proc.poll() is not None]
            for job in finished:
                del running[job.nb]
                timings[job.nb] = round(time.perf_counter() - job.started, 3)
                failure = _outcome(job)
                i = order.index(job.nb) + 1
                if failure:
                    failures.append(failure)
                    log(f"[fupan] [{i}/{total}] {failure.error}")
                    continue
                done.add(job.nb)
                log(f"[fupan] [{i}/{total}] {job.nb} done in {timings[job.nb]:.1f}s")
            if not finished:
                time.sleep(0.1)
    except (_Terminated, KeyboardInterrupt) as exc:
        where = "; ".join(f"notebook {j.nb}, {_running_cell(j.out)}" for j in running.values())
        _stop(running)
        raise RunError(f"run interrupted ({exc or 'SIGINT'}) in {where or 'a notebook'}") from None
    finally:
        _stop(running)
    return failures


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
        "cwd": str(nb_dir),
        "parameters": passed,
        "timeout": timeout,
        "result": str(result),
    }
    write_json_atomic(spec, spec_data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fupan.runner", str(spec)],
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
                extra_arguments=["--IPKernelApp.log_level=ERROR"],
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
    """``python -m fupan.runner SPEC``: one notebook of a run, in its own process."""
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
