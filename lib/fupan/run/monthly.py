"""The unattended monthly report: ``fupan monthly --month 2026-10`` and backfills.

A scheduler runs it with nobody watching, so it is idempotent and loud only when something
needs attention:

* ``--month YYYY-MM`` renders ``reports/monthly-YYYY-MM/`` (deck, results.json, exports)
  with ``as_of`` = the month end, through :func:`fupan.run.runner.run` (atomic: a failed run
  keeps the previous good report), then replaces that month's rows in
  ``reports/kpi_history.parquet`` (atomic, under a lock). Re-running a month replaces it.
* ``--from A --to B`` backfills the history for every month from A to B, each from data up
  to its own month end, then renders the deck for B (``--decks all`` renders every month,
  ``--decks none`` only writes the history).
* Exit codes: 0 success, 1 failure, 3 success with an alert (a KPI across its alert
  threshold, customers newly in the red band, or incomplete data; ``kpi.alert_on`` chooses
  which kinds count), so a scheduler can notify.
* ``--quiet`` prints nothing on a clean success (only the alert summary, or the error);
  ``--log FILE`` appends every line, with timestamps, including the notebook kernels' own
  output, which quiet mode keeps off the terminal.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import pandas as pd

from fupan.chapters import kpi
from fupan.core import params as fparams

EXIT_OK, EXIT_FAIL, EXIT_ALERT = 0, 1, 3
NOTEBOOK = "05_kpi_tracking"


class HistoryError(RuntimeError):
    """The KPI history file is damaged; the message says how to rebuild it."""


def checksum_path(path: str | Path) -> Path:
    """The history's checksum file: ``<history>.sha256`` beside it."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def seal_history(path: str | Path) -> None:
    """Record the history file's checksum (after fupan wrote it)."""
    path = Path(path)
    if not path.exists():
        return
    target = checksum_path(path)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(f"{_sha256(path)}  {path.name}\n", encoding="utf-8")
    os.replace(tmp, target)


def kpi_history_problem(path: str | Path | None) -> str | None:
    """Why the KPI history cannot be trusted, or None when it can (or does not exist yet).

    A history fupan wrote carries a checksum (:func:`seal_history`): a file changed since,
    even one that still reads as a table, is damaged. A history without a checksum (from
    an older fupan) must at least read as a KPI history.
    """
    if path is None or not Path(path).exists():
        return None
    path = Path(path)
    sealed = checksum_path(path)
    if sealed.exists():
        want = (sealed.read_text(encoding="utf-8").split() or [""])[0]
        if want != _sha256(path):
            stamp = dt.datetime.fromtimestamp(sealed.stat().st_mtime).isoformat(timespec="seconds")
            return f"its contents changed since fupan wrote it at {stamp} (checksum mismatch)"
    try:
        kpi.read_history(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds for a broken file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        return f"it cannot be read as a KPI history ({first})"
    return None


def check_history(path: str | Path | None, months: str = "YYYY-MM") -> None:
    """Raise :class:`HistoryError` naming the file, the problem and the rebuild command."""
    why = kpi_history_problem(path)
    if why:
        raise HistoryError(
            f"the KPI history {path} is damaged: {why}. Nothing was written.\n"
            f"  fix: rebuild it from the data with `fupan monthly --from {months} --to {months}` "
            "(first and last month to keep); the damaged file is kept as a backup"
        )


def set_aside_damaged(path: Path, log: RunLog) -> Path | None:
    """Move a damaged history (and its checksum) to ``<name>.damaged-<time>``; None if sound."""
    why = kpi_history_problem(path)
    if why is None:
        return None
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    backup = path.with_name(f"{path.stem}.damaged-{stamp}{path.suffix}")
    os.replace(path, backup)
    checksum_path(path).unlink(missing_ok=True)
    log.notice(
        f"fupan monthly: the KPI history {path} was damaged ({why}); kept as {backup.name}; "
        "rebuilding it from the data for the requested months"
    )
    return backup


def previous_month(today: dt.date | None = None) -> str:
    """The last complete calendar month (what a run on the 2nd of a month reports on)."""
    today = today or dt.date.today()
    return kpi.shift_month(kpi.parse_month(today), -1)


def folder_name(month: str) -> str:
    """The monthly run folder's name (not the run's display name, :func:`fupan.core.params.run_name`)."""
    return f"monthly-{kpi.parse_month(month)}"


class RunLog:
    """Progress lines to stdout (unless quiet) and, with timestamps, to a log file.

    Parameters
    ----------
    quiet : keep progress off the terminal; errors and the alert summary still print.
    path : a log file, appended to (created with its folder when missing).
    """

    def __init__(self, quiet: bool = False, path: str | Path | None = None):
        self.quiet = quiet
        self.path = Path(path) if path else None
        #: what this command wrote, for the failure message (never "nothing" if not so)
        self.written: list[str] = []
        self._fh: TextIO | None = None
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def _file(self, level: str, msg: str) -> None:
        if self._fh:
            stamp = dt.datetime.now().isoformat(timespec="seconds")
            for line in str(msg).splitlines() or [""]:
                self._fh.write(f"{stamp} {level:<5} {line}\n")
            self._fh.flush()

    def info(self, msg: str) -> None:
        """Progress: the terminal only when not quiet."""
        self._file("INFO", msg)
        if not self.quiet:
            print(msg, flush=True)

    def notice(self, msg: str) -> None:
        """Something a person should read (an alert summary): always printed."""
        self._file("ALERT", msg)
        print(msg, flush=True)

    def error(self, msg: str, echo: bool = True) -> None:
        """An error: to the log file, and to stderr unless the caller reports it itself."""
        self._file("ERROR", msg)
        if echo:
            print(msg, file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def capture_output(self) -> Iterator[None]:
        """In quiet mode, send this process's and its children's stdout/stderr (papermill's
        kernels write warnings there) to the log file, or nowhere, while the block runs."""
        if not self.quiet:
            yield
            return
        sys.stdout.flush()
        sys.stderr.flush()
        target = open(self.path if self.path else os.devnull, "a", encoding="utf-8")  # noqa: SIM115
        saved = (os.dup(1), os.dup(2))
        try:
            os.dup2(target.fileno(), 1)
            os.dup2(target.fileno(), 2)
            # Python-level streams too (they need not be fds 1 and 2, e.g. under a test runner)
            with contextlib.redirect_stdout(target), contextlib.redirect_stderr(target):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            target.close()

    def close(self) -> None:
        if self._fh:
            self._fh.close()
            self._fh = None


@dataclass
class MonthOutcome:
    """What one month's run produced."""

    month: str
    run_dir: Path | None
    alerts: list[dict[str, Any]] = field(default_factory=list)
    complete: bool = True
    alert_on: tuple[str, ...] = ("kpi", "new_red", "incomplete")

    @property
    def notify(self) -> list[dict[str, Any]]:
        """The alerts of a kind that make the command exit with the alert code."""
        return [a for a in self.alerts if a.get("kind") in self.alert_on]


def month_params(
    params_file: str | Path,
    month: str,
    data: str | None = None,
    lang: str | None = None,
) -> fparams.Params:
    """The run's params with ``as_of`` at the month end; they must run the KPI notebook.

    Raises
    ------
    fparams.ParamsError
        when the params are invalid, do not include ``05_kpi_tracking`` or have bad KPI targets.
    """
    end = kpi.month_end(month)
    params = fparams.load(
        params_file, **{"as_of": end.isoformat(), "data.source": data, "lang": lang}
    )
    if NOTEBOOK not in params.notebooks:
        raise fparams.ParamsError(
            f"{params_file}: notebooks must include {NOTEBOOK} for a monthly run "
            f"(it has {params.notebooks})"
        )
    try:
        kpi.targets(params)
    except ValueError as exc:
        raise fparams.ParamsError(f"{params_file}: {exc}") from None
    return params


def run_month(
    params_file: str | Path,
    month: str,
    reports_dir: str | Path | None = None,
    data: str | None = None,
    lang: str | None = None,
    log: RunLog | None = None,
) -> MonthOutcome:
    """Render one month's report and replace its rows in the KPI history.

    The deck is built by :func:`fupan.run.runner.run` (run folder ``monthly-YYYY-MM``); the
    history is updated only after the run succeeded, from the rows the KPI notebook wrote.

    Raises
    ------
    fparams.ParamsError, fupan.io.validation.DataValidationError, fupan.run.execute.RunError
        as the runner does; the history is then unchanged.
    """
    from fupan.run import execute, runner

    log = log or RunLog()
    month = kpi.parse_month(month)
    params = month_params(params_file, month, data, lang)
    ctx = params.context.for_run(reports_dir, folder_name(month))
    reports, name = ctx.reports_dir, ctx.run_name
    log.info(f"[fupan] monthly {month}: as of {params.as_of}, reports in {reports}")
    path = kpi.history_path(params, reports_dir=reports)
    check_history(path, month)
    with log.capture_output():
        res = runner.run(params, params_file, reports_dir=reports, name=name, log=log.info)
    log.written.append(f"the report {res.run_dir}")
    rows_file = res.run_dir / kpi.MONTH_ROWS
    if not rows_file.exists():
        raise execute.RunError(f"{NOTEBOOK} did not write {kpi.MONTH_ROWS} in {res.run_dir}")
    rows = pd.read_parquet(rows_file).assign(run=name)
    kpi.write_history(path, rows)
    seal_history(path)
    log.written.append(f"{month} in the KPI history {path}")
    log.info(f"[fupan] history: {month} written to {path}")
    k = res.results.get("kpi", {})
    return MonthOutcome(
        month=month,
        run_dir=res.run_dir,
        alerts=list(k.get("alerts", [])),
        complete=bool(k.get("complete", True)),
        alert_on=tuple(params.kpi.alert_on),
    )


def backfill(
    params_file: str | Path,
    first: str,
    last: str,
    reports_dir: str | Path | None = None,
    data: str | None = None,
    lang: str | None = None,
    decks: str = "last",
    log: RunLog | None = None,
) -> list[MonthOutcome]:
    """Write the KPI history for every month from ``first`` to ``last``, then render decks.

    The data is loaded and validated once, as of ``last``'s month end; each month's KPIs use
    only data up to that month's end, so a backfilled month equals what a run in that month
    would have said on the same data. All months are replaced in one atomic write.

    Parameters
    ----------
    decks : ``last`` (the deck for ``last``), ``all`` (one per month) or ``none``.
    """
    from fupan.io import data as fdata

    log = log or RunLog()
    months = kpi.month_range(first, last)
    if decks not in ("last", "all", "none"):
        raise ValueError(f"decks must be last, all or none, not {decks!r}")
    params = month_params(params_file, months[-1], data, lang)
    reports = params.context.reports(reports_dir)
    path = kpi.history_path(params, reports_dir=reports)
    log.info(f"[fupan] backfill {months[0]} .. {months[-1]} ({len(months)} months) into {path}")
    with log.capture_output():
        ds = fdata.load(params, strict=True)
    try:
        backup = set_aside_damaged(path, log)
        if backup is not None:
            log.written.append(f"the damaged history moved to {backup}")
        with log.capture_output():
            rows = kpi.backfill_rows(
                ds, months, history=kpi.read_history(path), run=f"backfill-{months[0]}-{months[-1]}"
            )
    finally:
        ds.close()
    kpi.write_history(path, rows)
    seal_history(path)
    log.written.append(f"{months[0]}..{months[-1]} in the KPI history {path}")
    log.info(f"[fupan] history: {len(months)} months written")
    outcomes: list[MonthOutcome] = []
    targets = months if decks == "all" else months[-1:] if decks == "last" else []
    for m in targets:
        outcomes.append(run_month(params_file, m, reports, data, lang, log))
    return outcomes


def summarise(outcomes: list[MonthOutcome], lang: str = "en") -> list[str]:
    """One line per month that needs attention, and its alerts' messages."""
    lines = []
    for o in outcomes:
        notify = o.notify
        if not notify:
            continue
        where = f" ({o.run_dir / 'deck.html'})" if o.run_dir else ""
        lines.append(f"fupan monthly {o.month}: {len(notify)} alert(s){where}")
        lines += [f"  - {a.get('message') or a.get('kind')}" for a in notify]
    return lines


def exit_code(outcomes: list[MonthOutcome]) -> int:
    return EXIT_ALERT if any(o.notify for o in outcomes) else EXIT_OK


def main(
    params_file: str,
    month: str | None = None,
    first: str | None = None,
    last: str | None = None,
    reports_dir: str | None = None,
    data: str | None = None,
    lang: str | None = None,
    decks: str = "last",
    quiet: bool = False,
    log_file: str | None = None,
) -> int:
    """The ``fupan monthly`` command: run or backfill, log, and return the exit code.

    Errors are logged and re-raised for the CLI to report (exit code 1).
    """
    log = RunLog(quiet=quiet, path=log_file)
    started = dt.datetime.now()
    try:
        if first or last:
            last = kpi.parse_month(last) if last else previous_month()
            first = kpi.parse_month(first) if first else last
            outcomes = backfill(params_file, first, last, reports_dir, data, lang, decks, log)
        else:
            outcomes = [
                run_month(params_file, month or previous_month(), reports_dir, data, lang, log)
            ]
        code = exit_code(outcomes)
        for line in summarise(outcomes):
            log.notice(line)
        took = (dt.datetime.now() - started).total_seconds()
        log.info(f"[fupan] monthly done in {took:.0f}s, exit code {code}")
        for o in outcomes:
            if o.run_dir:
                log.info(str(o.run_dir / "deck.html"))
        return code
    except BaseException as exc:
        # the CLI prints the error; the log file must have it too, with its traceback
        import traceback

        log.error(f"fupan monthly failed: {type(exc).__name__}: {exc}", echo=False)
        log.error("".join(traceback.format_exception(exc)), echo=False)
        if log.written:
            with contextlib.suppress(AttributeError, TypeError):
                exc.fupan_written = list(log.written)  # type: ignore[attr-defined]
        raise
    finally:
        log.close()
