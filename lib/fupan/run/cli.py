"""The ``fupan`` command: review, run, validate, demo-data, rerun, monthly.

Exit codes: 0 success; 1 failure (bad input, a failed notebook, an interrupt);
2 wrong command-line usage; 3 success with an alert (monthly runs).
"""

from __future__ import annotations

import argparse
import datetime as dt
import errno
import json
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from fupan.run import skip_slow_imports

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_ALERT = 0, 1, 2, 3


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _out(args: argparse.Namespace) -> str | None:
    """``--out`` as the user meant it: relative to the shell's folder (the notebooks run
    elsewhere, and a relative path would land inside the checkout)."""
    out = getattr(args, "out", None)
    return str(Path(out).expanduser().resolve()) if out else None


class UserError(Exception):
    """A problem the user can fix: printed as it is, without a traceback."""


def check_params_file(path: str | Path) -> None:
    """Name the problem with a params path before YAML or pydantic see it.

    Raises
    ------
    UserError
        for a missing file, a folder, an unreadable file or a file that is not UTF-8.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise UserError(
            f"params file {p} does not exist.\n  fix: pass --params with the path of a YAML run "
            f"definition (e.g. params/annual_review.yaml), relative to {Path.cwd()}"
        )
    if p.is_dir():
        found = sorted(x.name for x in p.glob("*.yaml")) + sorted(x.name for x in p.glob("*.yml"))
        hint = f" it holds: {', '.join(found[:6])}" if found else " it holds no .yaml file"
        raise UserError(
            f"params path {p} is a folder, not a YAML file;{hint}.\n"
            f"  fix: pass the file itself, e.g. --params {p / (found[0] if found else 'annual_review.yaml')}"
        )
    try:
        raw = p.read_bytes()
    except PermissionError:
        raise UserError(
            f"params file {p} cannot be read: permission denied.\n"
            "  fix: make it readable (chmod u+r) or copy it somewhere you can read"
        ) from None
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        try:
            raw.decode("gb18030")
            guess = "it looks like GBK/GB18030 (a Chinese Windows encoding)"
        except UnicodeDecodeError:
            guess = "its encoding is unknown"
        raise UserError(
            f"params file {p} is not UTF-8 text (byte {exc.start}, line {line}); {guess}.\n"
            f"  fix: save it as UTF-8, e.g. iconv -f gb18030 -t utf-8 {p.name} > utf8.yaml"
        ) from None


def describe_os_error(exc: OSError) -> str:
    """An operating-system error in words: what, where, and the fix."""
    where = str(exc.filename or "")
    # a run writes into a hidden temporary folder first; the user knows the folder above it
    where = re.sub(r"/\.[^/]+\.tmp-\d+(/.*)?$", "", where)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return (
            f"no space left on device while writing {where or 'the report'}.\n"
            "  fix: free disk space (or choose --out on another disk) and run again"
        )
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        why = "read-only file system" if exc.errno == errno.EROFS else "permission denied"
        return (
            f"cannot write in {where or 'the output folder'}: {why}.\n"
            f"  fix: choose a writable --out folder, or make {where or 'it'} writable"
        )
    if exc.errno == errno.ENOENT:
        return f"file or folder not found: {where}.\n  fix: check the path (relative paths start at {Path.cwd()})"
    if exc.errno == errno.EISDIR:
        return f"{where} is a folder where a file was expected.\n  fix: pass the file's path"
    if exc.errno == errno.ENOTDIR:
        return f"{where}: a part of this path is a file, not a folder.\n  fix: check the path"
    return f"{exc.strerror or exc} ({where or 'no path'})."


def log_traceback(exc: BaseException, args: argparse.Namespace | None = None) -> Path | None:
    """Append the traceback to a log file (the monthly ``--log`` or one in the temp folder)."""
    candidates = []
    if args is not None and getattr(args, "log", None):
        candidates.append(Path(args.log))
    candidates.append(Path(tempfile.gettempdir()) / "fupan-errors.log")
    for path in candidates:
        try:
            with path.open("a", encoding="utf-8") as fh:
                fh.write(
                    f"--- {dt.datetime.now().isoformat(timespec='seconds')} pid {os.getpid()}\n"
                )
                fh.write("".join(traceback.format_exception(exc)))
            return path
        except OSError:
            continue
    return None


def _data_arg(args: argparse.Namespace) -> str | None:
    """``--data`` as the user meant it: a path typed on the command line is relative to the
    shell's folder, not the params file's (URLs unchanged)."""
    source = getattr(args, "data", None)
    if source and "://" not in source:
        source = str(Path(source).expanduser().resolve())
    return source


def _load_params(args: argparse.Namespace) -> Any:
    from fupan.core import params as fparams

    overrides = {
        "data.source": _data_arg(args),
        "as_of": getattr(args, "as_of", None),
        "lang": getattr(args, "lang", None),
        "seed": getattr(args, "seed", None),
    }
    return fparams.load(args.params, **overrides)


def cmd_validate(args: argparse.Namespace) -> int:
    from fupan.io import data as fdata

    params = _load_params(args)
    ds = fdata.load(params, strict=False)
    ds.close()
    print(ds.report.format())
    if not ds.report.ok:
        return EXIT_FAIL
    print(
        f"ok: {', '.join(ds.report.present)} present; missing optional: {', '.join(ds.report.missing_optional) or 'none'}"
    )
    return EXIT_OK


def cmd_review(args: argparse.Namespace) -> int:
    from fupan.run import runner

    params = _load_params(args)
    log = (lambda _m: None) if args.quiet else print
    res = runner.run(
        params,
        args.params,
        reports_dir=_out(args),
        log=log,
        name=getattr(args, "name", None),
        previous=getattr(args, "previous", None),
        chapters=getattr(args, "chapters", None),
        with_dependents=getattr(args, "with_dependents", False),
    )
    print(res.deck)
    if getattr(args, "pdf", False):
        from fupan.report import deck

        print(deck.to_pdf(res.deck))
    return EXIT_OK


def chapter_names(given: list[str]) -> list[str]:
    """Chapter names as typed (``01_diagnosis``, ``01``, ``1``, ``diagnosis``) made full.

    Raises
    ------
    UserError
        for a name that matches no chapter or several, listing the chapters.
    """
    from fupan.core.params import NOTEBOOKS

    out = []
    for name in given:
        stem = Path(name).stem  # notebooks/01_diagnosis.ipynb works too
        hits = [
            nb
            for nb in NOTEBOOKS
            if stem == nb
            or (stem.isdigit() and int(stem) == int(nb.split("_", 1)[0]))
            or (not stem.isdigit() and nb.split("_", 1)[1].startswith(stem))
        ]
        if len(hits) != 1:
            raise UserError(
                f"no single chapter is called {name!r}; the chapters are: {', '.join(NOTEBOOKS)}.\n"
                "  fix: name one, e.g. fupan run 01_diagnosis (or 01, or diagnosis)"
            )
        out.append(hits[0])
    return list(dict.fromkeys(out))


def cmd_run(args: argparse.Namespace) -> int:
    """``fupan run CHAPTER…``: update those chapters of the run in place."""
    args.chapters = chapter_names(args.notebooks)
    return cmd_review(args)


def cmd_pdf(args: argparse.Namespace) -> int:
    """Print an existing run's deck to PDF (headless Chromium), without rerunning it."""
    from fupan.report import deck

    run = Path(args.run).expanduser()
    page = run / "deck.html" if run.is_dir() else run
    if not page.is_file():
        raise UserError(
            f"{run} holds no deck.html.\n"
            "  fix: pass a run folder (reports/<run>) or its deck.html; fupan review writes them"
        )
    if deck.chromium_path() is None:
        raise UserError(
            "printing a PDF needs Chromium, which is not installed.\n"
            "  fix: install it (Debian: apt-get install chromium; or make browser-deps)"
        )
    out = Path(args.out).expanduser().resolve() if args.out else None
    print(deck.to_pdf(page, out))
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from fupan import demo

    truth = demo.generate(
        args.out,
        customers=args.customers,
        seed=args.seed,
        business_model=args.business_model,
        as_of=args.as_of,
        fmt=args.format,
    )
    cal = truth.get("calibration", {})
    print(
        f"wrote {args.customers:,} customers to {args.out} "
        f"(core churn {cal.get('core_annual_churn', float('nan')):.1%}, seed {args.seed})"
    )
    return EXIT_OK


def cmd_rerun(args: argparse.Namespace) -> int:
    import yaml

    from fupan.core import params as fparams
    from fupan.io import reading
    from fupan.run import runner

    manifest = json.loads(Path(args.manifest).read_text(encoding="utf-8"))
    stored = dict(manifest["params"])
    stored["benchmarks_file"] = None
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as fh:
        yaml.safe_dump(stored, fh, allow_unicode=True)
        path = fh.name
    params = fparams.load(path)
    files = reading.find_source_files(params) if Path(params.context.data).is_dir() else {}
    now = {p.name: reading.sha256_file(p) for p in files.values() if p.exists()}
    changed = sorted(
        k
        for k in set(manifest.get("inputs", {})) | set(now)
        if manifest["inputs"].get(k) != now.get(k)
    )
    if changed and files:
        _err(f"warning: input fingerprints no longer match the manifest for: {', '.join(changed)}")
        if args.strict:
            return EXIT_FAIL
    res = runner.run(
        params,
        path,
        reports_dir=_out(args),
        name=args.name or f"{manifest['run']}-rerun",
        log=(lambda _m: None) if args.quiet else print,
    )
    print(res.deck)
    return EXIT_OK


def _month_arg(value: str) -> str:
    from fupan.chapters.kpi import parse_month

    try:
        return parse_month(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_monthly(args: argparse.Namespace) -> int:
    """The unattended monthly report: 0 ok, 1 failure, 3 ok with an alert (see fupan.run.monthly)."""
    from fupan.run import monthly

    if args.month and (args.first or args.last):
        raise SystemExit(_usage("monthly", "use either --month or --from/--to, not both"))
    return monthly.main(
        args.params,
        month=args.month,
        first=args.first,
        last=args.last,
        reports_dir=_out(args),
        data=_data_arg(args),
        lang=args.lang,
        decks=args.decks,
        quiet=args.quiet,
        log_file=args.log,
    )


def _usage(command: str, message: str) -> int:
    _err(f"fupan {command}: error: {message}")
    return EXIT_USAGE


OUT_HELP = (
    "reports folder the run goes into (default: reports_dir in the params, relative to "
    "the params file; else reports/ under the current folder)"
)
PARAMS_HELP = (
    "YAML run definition; data and side files in it are relative to it (default: "
    "{default} under the current folder; without one, the example fupan ships, "
    "which needs --data)"
)
PREVIOUS_HELP = (
    "an earlier run folder (reports/<run>) whose forecasts 06_followup grades "
    "(default: the newest earlier annual run beside this one, else a backtest)"
)
QUIET_HELP = "print only the deck's path (and errors)"


def build_parser() -> argparse.ArgumentParser:
    """The command line. Only the standard library is imported here (``fupan --help``
    must answer at once); every option has help text (a test checks)."""
    p = argparse.ArgumentParser(
        prog="fupan",
        description="复盘 fupan: the customer-relationship review workbook",
        epilog="A first run: fupan demo-data --out demo --customers 300 && "
        "fupan review --data demo --lang en",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_review_command(sub)
    add_run_command(sub)
    add_validate_command(sub)
    add_pdf_command(sub)
    add_demo_command(sub)
    add_rerun_command(sub)
    add_monthly_command(sub)
    return p


def add_data_options(sp: argparse.ArgumentParser, default_params: str = "") -> None:
    """``--params`` (with its default), ``--data``, ``--as-of``, ``--lang``, ``--seed``:
    the overrides every command that runs the annual params takes."""
    default_params = default_params or DEFAULT_PARAMS
    sp.add_argument("--params", default=None, help=PARAMS_HELP.format(default=default_params))
    sp.set_defaults(default_params=default_params)
    sp.add_argument(
        "--data",
        help="override data.source (folder, .duckdb file or URL), relative to the current folder",
    )
    sp.add_argument("--as-of", dest="as_of", help="override as_of (YYYY-MM-DD)")
    sp.add_argument("--lang", choices=["zh", "en"], help="deck language (default: the params')")
    sp.add_argument("--seed", type=int, help="override the seed of every random step")


def add_review_command(sub: Any) -> None:
    """``fupan review``: a whole new run."""
    sp = sub.add_parser(
        "review",
        help="validate, run every chapter, write reports/<run>/deck.html",
        description="Validate the data, run every chapter the params list and write a new "
        "run folder (deck.html, results.json, manifest.json, exports/). The folder is "
        "replaced only by a complete run: a failed run leaves the previous one in place.",
    )
    add_data_options(sp)
    sp.add_argument("--out", help=OUT_HELP)
    sp.add_argument("--name", help="run folder name (default: <kind>-<as_of>)")
    sp.add_argument("--previous", help=PREVIOUS_HELP)
    sp.add_argument(
        "--pdf", action="store_true", help="also print the deck to deck.pdf (headless Chromium)"
    )
    sp.add_argument("--quiet", "-q", action="store_true", help=QUIET_HELP)
    sp.set_defaults(func=cmd_review)


def add_run_command(sub: Any) -> None:
    """``fupan run CHAPTER``: rerun chapters of an existing run in place."""
    sp = sub.add_parser(
        "run",
        help="rerun chosen chapters in place: the run's other chapters are kept",
        description="Rerun the chapters named into the run folder: their notebooks, results, "
        "exports and slides are replaced, the other chapters are kept, and the whole deck "
        "is rendered again. Chapters that used a rerun chapter's results are marked stale "
        "on their slides (or rerun too, with --with-dependents). Into a folder with no run, "
        "a run of just these chapters.",
    )
    sp.add_argument(
        "notebooks",
        nargs="+",
        metavar="CHAPTER",
        help="chapters to run: 01_diagnosis, 01, 1 or diagnosis",
    )
    add_data_options(sp)
    sp.add_argument("--out", help=OUT_HELP)
    sp.add_argument("--name", help="run folder to update (default: <kind>-<as_of>)")
    sp.add_argument(
        "--with-dependents",
        dest="with_dependents",
        action="store_true",
        help="also rerun the chapters that use these (e.g. 03-06 after 02) instead of "
        "marking them stale",
    )
    sp.add_argument("--previous", help=PREVIOUS_HELP)
    sp.add_argument("--quiet", "-q", action="store_true", help=QUIET_HELP)
    sp.set_defaults(func=cmd_run)


def add_validate_command(sub: Any) -> None:
    """``fupan validate``: the data contract only."""
    sp = sub.add_parser("validate", help="check a data source against the contract")
    add_data_options(sp)
    sp.set_defaults(func=cmd_validate)


def add_pdf_command(sub: Any) -> None:
    """``fupan pdf``: print an existing deck."""
    sp = sub.add_parser(
        "pdf",
        help="print an existing run's deck to PDF (headless Chromium)",
        description="Print reports/<run>/deck.html to deck.pdf beside it, one slide a page, "
        "without running anything again.",
    )
    sp.add_argument("run", help="a run folder (reports/<run>) or its deck.html")
    sp.add_argument("--out", help="the PDF to write (default: deck.pdf beside the deck)")
    sp.set_defaults(func=cmd_pdf)


def add_demo_command(sub: Any) -> None:
    """``fupan demo-data``: the generated demo dataset."""
    sp = sub.add_parser("demo-data", help="generate the demo dataset (with truth.json)")
    sp.add_argument(
        "--out", default="data/demo", help="folder to write the tables into (default: %(default)s)"
    )
    sp.add_argument(
        "--customers", type=int, default=5000, help="number of customers (default: %(default)s)"
    )
    sp.add_argument(
        "--seed", type=int, default=42, help="seed: same seed, same files (default: %(default)s)"
    )
    sp.add_argument(
        "--business-model",
        dest="business_model",
        choices=["contractual", "non_contractual"],
        default="non_contractual",
        help="contractual (contracts not renewed) or non_contractual (dormancy) churn "
        "(default: %(default)s)",
    )
    sp.add_argument(
        "--as-of",
        dest="as_of",
        default="2026-10-31",
        help="the review date; nothing after it is generated (default: %(default)s)",
    )
    sp.add_argument(
        "--format",
        choices=["csv", "parquet"],
        default="csv",
        help="file format of the tables (default: %(default)s)",
    )
    sp.set_defaults(func=cmd_demo)


def add_rerun_command(sub: Any) -> None:
    """``fupan rerun``: reproduce a run from its manifest."""
    sp = sub.add_parser(
        "rerun",
        help="reproduce a run from its manifest.json",
        description="Run again with the params a manifest recorded, into <run>-rerun; "
        "warns when the input files changed since.",
    )
    sp.add_argument("manifest", help="the manifest.json of the run to reproduce")
    sp.add_argument("--out", help=OUT_HELP)
    sp.add_argument("--name", help="run folder name (default: <run>-rerun)")
    sp.add_argument("--strict", action="store_true", help="fail when input fingerprints changed")
    sp.add_argument("--quiet", "-q", action="store_true", help=QUIET_HELP)
    sp.set_defaults(func=cmd_rerun)


def add_monthly_command(sub: Any) -> None:
    """``fupan monthly``: the unattended monthly KPI report (and its backfill)."""
    sp = sub.add_parser(
        "monthly",
        help="the monthly KPI report, unattended: exit 0 ok, 1 failure, 3 ok but an alert fired",
        description="Render reports/monthly-YYYY-MM/ (as of the month end) and update reports/kpi_history.parquet. "
        "Exit codes: 0 ok, 1 failure, 3 success with an alert (for schedulers).",
    )
    sp.add_argument(
        "--month", type=_month_arg, help="YYYY-MM (default: the previous calendar month)"
    )
    sp.add_argument(
        "--from", dest="first", type=_month_arg, help="backfill from this month (YYYY-MM)"
    )
    sp.add_argument(
        "--to",
        dest="last",
        type=_month_arg,
        help="backfill to this month (default: the previous month)",
    )
    sp.add_argument(
        "--decks",
        choices=["last", "all", "none"],
        default="last",
        help="backfill: render the deck for the last month (default), every month, or none",
    )
    sp.add_argument(
        "--params", default=None, help=PARAMS_HELP.format(default=DEFAULT_MONTHLY_PARAMS)
    )
    sp.set_defaults(default_params=DEFAULT_MONTHLY_PARAMS)
    sp.add_argument(
        "--data",
        help="override data.source (folder, .duckdb file or URL), relative to the current folder",
    )
    sp.add_argument("--lang", choices=["zh", "en"], help="deck language (default: the params')")
    sp.add_argument("--out", help=OUT_HELP + "; the KPI history lives there")
    sp.add_argument(
        "--quiet",
        "-q",
        action="store_true",
        help="print nothing unless an alert fired or the run failed",
    )
    sp.add_argument(
        "--log", help="append timestamped progress, kernel output and errors to this file"
    )
    sp.set_defaults(func=cmd_monthly)


DEFAULT_PARAMS = "params/annual_review.yaml"
DEFAULT_MONTHLY_PARAMS = "params/monthly.yaml"


def params_path(args: argparse.Namespace) -> str:
    """The params file a command uses: ``--params`` as given; else the default under the
    current folder; else, when ``--data`` names the data, the example fupan ships (a
    wheel install in an empty folder). Relative paths mean the current folder.

    Raises
    ------
    UserError
        when there is no params file and no ``--data`` to use the example with.
    """
    from fupan.core import paths

    if args.params:
        return args.params
    default = args.default_params
    if Path(default).is_file():
        return default
    example = paths.example_params(Path(default).name)
    if getattr(args, "data", None) and example.is_file():
        return str(example)
    raise UserError(
        f"there is no {default} under {Path.cwd()}.\n"
        f"  fix: pass --params with your run definition, or --data with your data folder "
        f"to use the example one (fupan {args.command} --data data/demo); "
        f"`fupan demo-data` writes demo data"
    )


def main(argv: list[str] | None = None) -> int:
    """Run a command. Every error a user can meet ends here as words (the file or table,
    the problem, the fix) and exit code 1; tracebacks go to a log file, never the screen.

    Nothing heavy is imported before the arguments are read: ``fupan --help`` answers at
    once, and each command imports what it needs (the runner, pandas, papermill)."""
    args = build_parser().parse_args(argv)
    skip_slow_imports()  # the runner imports papermill and nbformat: 1 CPU s saved
    try:
        if hasattr(args, "default_params"):
            args.params = params_path(args)
            check_params_file(args.params)
        return int(args.func(args))
    except KeyboardInterrupt:
        _err("fupan: interrupted")
    except Exception as exc:  # noqa: BLE001 - the boundary: no traceback on the screen
        _report(exc, args)
    return EXIT_FAIL


def _report(exc: Exception, args: argparse.Namespace) -> None:
    """Print a failure as words. The error classes are imported here, after the fact: the
    module that raised one is loaded already, and a clean run never pays for them."""
    from fupan.core.params import ParamsError
    from fupan.io.validation import DataValidationError
    from fupan.run.execute import RunError
    from fupan.run.monthly import HistoryError

    if isinstance(exc, UserError):
        _err(f"fupan: {exc}")
    elif isinstance(exc, ParamsError):
        _err(f"fupan: bad params\n{exc}")
    elif isinstance(exc, DataValidationError):
        _err(f"fupan: the data failed its checks; {_written(exc)}{_written_suffix(exc)}\n{exc}")
    elif isinstance(exc, HistoryError):
        _err(f"fupan: {exc}{_written_suffix(exc)}")
    elif isinstance(exc, RunError):
        _err(f"fupan: {exc}\n  {_written(exc)}{_written_suffix(exc)}")
    elif isinstance(exc, OSError):
        logged = log_traceback(exc, args)
        _err(f"fupan: {describe_os_error(exc)}{_details(logged)}{_written_suffix(exc)}")
    elif isinstance(exc, UnicodeDecodeError):
        logged = log_traceback(exc, args)
        _err(
            f"fupan: a file is not UTF-8 text ({exc.reason} at byte {exc.start}).\n"
            f"  fix: save it as UTF-8, or set data.encoding (e.g. gb18030) in the params"
            f"{_details(logged)}"
        )
    else:
        logged = log_traceback(exc, args)
        _err(
            f"fupan: unexpected error: {type(exc).__name__}: {exc}{_details(logged)}"
            f"{_written_suffix(exc)}"
        )


def _details(logged: Path | None) -> str:
    return f"\n  details (traceback): {logged}" if logged else ""


def _written(exc: BaseException) -> str:
    """What a failed run left on disk, in words: the ``.failed`` folder it wrote (never
    "nothing" when one exists) and whether a previous report stands beside it."""
    failed = getattr(exc, "failed_dir", None)
    if not failed or not Path(failed).exists():
        return "nothing was written"
    failed = Path(failed)
    final = failed.with_name(failed.name.removesuffix(".failed"))
    kept = [x for x in ("ERROR.txt", "errors.log", "deck.html") if (failed / x).exists()]
    if (failed / "notebooks").is_dir() and any((failed / "notebooks").glob("*.ipynb")):
        kept.append("the notebooks as far as they ran")
    what = f"wrote {failed}/ ({', '.join(kept)}); the details are in {failed / 'ERROR.txt'}"
    if final.exists():
        return f"{what}; the previous report {final}/ is unchanged"
    return f"{what}; no report was written at {final}/"


def _written_suffix(exc: BaseException) -> str:
    done = getattr(exc, "fupan_written", None)
    if not done:
        return ""
    return "\n  written before the failure: " + "; ".join(done)


if __name__ == "__main__":
    sys.exit(main())
