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


def _load_params(args: argparse.Namespace) -> Any:
    from fupan import params as fparams

    source = getattr(args, "data", None)
    if source and "://" not in source:
        # A path typed on the command line means the shell's folder, not the params file's.
        source = str(Path(source).expanduser().resolve())
    overrides = {
        "data.source": source,
        "as_of": getattr(args, "as_of", None),
        "lang": getattr(args, "lang", None),
        "seed": getattr(args, "seed", None),
    }
    return fparams.load(args.params, **overrides)


def cmd_validate(args: argparse.Namespace) -> int:
    from fupan import data as fdata

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


def cmd_review(args: argparse.Namespace, notebooks: list[str] | None = None) -> int:
    from fupan import runner

    params = _load_params(args)
    if notebooks:
        params.notebooks = notebooks
    log = (lambda _m: None) if args.quiet else print
    res = runner.run(
        params,
        args.params,
        reports_dir=_out(args),
        log=log,
        name=getattr(args, "name", None),
        previous=getattr(args, "previous", None),
    )
    print(res.deck)
    if getattr(args, "pdf", False):
        from fupan import deck

        print(deck.to_pdf(res.deck))
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    return cmd_review(args, notebooks=args.notebooks)


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

    from fupan import data as fdata
    from fupan import params as fparams
    from fupan import runner

    manifest = json.loads(Path(args.manifest).read_text(encoding="utf-8"))
    stored = dict(manifest["params"])
    stored["benchmarks_file"] = None
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False, encoding="utf-8") as fh:
        yaml.safe_dump(stored, fh, allow_unicode=True)
        path = fh.name
    params = fparams.load(path)
    files = (
        fdata.find_source_files(params) if Path(params.resolve(params.data.source)).is_dir() else {}
    )
    now = {p.name: fdata.sha256_file(p) for p in files.values() if p.exists()}
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
    from fupan.kpi import parse_month

    try:
        return parse_month(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def cmd_monthly(args: argparse.Namespace) -> int:
    """The unattended monthly report: 0 ok, 1 failure, 3 ok with an alert (see fupan.monthly)."""
    from fupan import monthly

    if args.month and (args.first or args.last):
        raise SystemExit(_usage("monthly", "use either --month or --from/--to, not both"))
    return monthly.main(
        args.params,
        month=args.month,
        first=args.first,
        last=args.last,
        reports_dir=_out(args),
        data=args.data,
        lang=args.lang,
        decks=args.decks,
        quiet=args.quiet,
        log_file=args.log,
    )


def _usage(command: str, message: str) -> int:
    _err(f"fupan {command}: error: {message}")
    return EXIT_USAGE


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fupan", description="复盘 fupan: the customer-relationship review workbook"
    )
    sub = p.add_subparsers(dest="command", required=True)

    def common(
        sp: argparse.ArgumentParser, default_params: str = "params/annual_review.yaml"
    ) -> None:
        sp.add_argument(
            "--params", default=default_params, help="YAML run definition (default: %(default)s)"
        )
        sp.add_argument("--data", help="override data.source (folder, .duckdb file or URL)")
        sp.add_argument("--as-of", dest="as_of", help="override as_of (YYYY-MM-DD)")
        sp.add_argument("--lang", choices=["zh", "en"], help="deck language")
        sp.add_argument("--seed", type=int, help="override the seed")

    sp = sub.add_parser(
        "review", help="validate, run every notebook, write reports/<run>/deck.html"
    )
    common(sp)
    sp.add_argument("--out", help="reports folder (default: reports/)")
    sp.add_argument("--name", help="run folder name (default: <kind>-<as_of>)")
    sp.add_argument(
        "--previous",
        help="an earlier run folder (reports/<run>) whose forecasts 06_followup grades "
        "(default: the newest earlier annual run beside this one, else a backtest)",
    )
    sp.add_argument(
        "--pdf", action="store_true", help="also print the deck to deck.pdf (headless Chromium)"
    )
    sp.add_argument("--quiet", "-q", action="store_true")
    sp.set_defaults(func=cmd_review)

    sp = sub.add_parser("run", help="run selected notebooks only")
    sp.add_argument("notebooks", nargs="+", help="notebook names, e.g. 00_data_check")
    common(sp)
    sp.add_argument("--out")
    sp.add_argument("--name")
    sp.add_argument(
        "--previous",
        help="an earlier run folder (reports/<run>) whose forecasts 06_followup grades "
        "(default: the newest earlier annual run beside this one, else a backtest)",
    )
    sp.add_argument("--quiet", "-q", action="store_true")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("validate", help="check a data source against the contract")
    common(sp)
    sp.set_defaults(func=cmd_validate)

    sp = sub.add_parser("demo-data", help="generate the demo dataset (with truth.json)")
    sp.add_argument("--out", default="data/demo")
    sp.add_argument("--customers", type=int, default=5000)
    sp.add_argument("--seed", type=int, default=42)
    sp.add_argument(
        "--business-model",
        dest="business_model",
        choices=["contractual", "non_contractual"],
        default="non_contractual",
    )
    sp.add_argument("--as-of", dest="as_of", default="2026-10-31")
    sp.add_argument("--format", choices=["csv", "parquet"], default="csv")
    sp.set_defaults(func=cmd_demo)

    sp = sub.add_parser("rerun", help="reproduce a run from its manifest.json")
    sp.add_argument("manifest")
    sp.add_argument("--out")
    sp.add_argument("--name")
    sp.add_argument("--strict", action="store_true", help="fail when input fingerprints changed")
    sp.add_argument("--quiet", "-q", action="store_true")
    sp.set_defaults(func=cmd_rerun)

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
        "--params", default="params/monthly.yaml", help="YAML run definition (default: %(default)s)"
    )
    sp.add_argument("--data", help="override data.source (folder, .duckdb file or URL)")
    sp.add_argument("--lang", choices=["zh", "en"], help="deck language")
    sp.add_argument("--out", help="reports folder (default: reports/); the KPI history lives there")
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
    return p


def main(argv: list[str] | None = None) -> int:
    """Run a command. Every error a user can meet ends here as words (the file or table,
    the problem, the fix) and exit code 1; tracebacks go to a log file, never the screen."""
    from fupan.monthly import HistoryError
    from fupan.params import ParamsError
    from fupan.runner import RunError
    from fupan.validation import DataValidationError

    args = build_parser().parse_args(argv)
    try:
        if getattr(args, "params", None):
            check_params_file(args.params)
        return int(args.func(args))
    except UserError as exc:
        _err(f"fupan: {exc}")
    except ParamsError as exc:
        _err(f"fupan: bad params\n{exc}")
    except DataValidationError as exc:
        _err(f"fupan: the data failed its checks; {_written(exc)}{_written_suffix(exc)}\n{exc}")
    except HistoryError as exc:
        _err(f"fupan: {exc}{_written_suffix(exc)}")
    except RunError as exc:
        where = f"\n  partial run kept in {exc.failed_dir}" if exc.failed_dir else ""
        _err(f"fupan: {exc}{where}\n  the previous good report is unchanged{_written_suffix(exc)}")
    except KeyboardInterrupt:
        _err("fupan: interrupted")
    except OSError as exc:
        logged = log_traceback(exc, args)
        _err(f"fupan: {describe_os_error(exc)}{_details(logged)}{_written_suffix(exc)}")
    except UnicodeDecodeError as exc:
        logged = log_traceback(exc, args)
        _err(
            f"fupan: a file is not UTF-8 text ({exc.reason} at byte {exc.start}).\n"
            f"  fix: save it as UTF-8, or set data.encoding (e.g. gb18030) in the params"
            f"{_details(logged)}"
        )
    except Exception as exc:  # noqa: BLE001 - the boundary: no traceback on the screen
        logged = log_traceback(exc, args)
        _err(
            f"fupan: unexpected error: {type(exc).__name__}: {exc}{_details(logged)}"
            f"{_written_suffix(exc)}"
        )
    return EXIT_FAIL


def _details(logged: Path | None) -> str:
    return f"\n  details (traceback): {logged}" if logged else ""


def _written(exc: BaseException) -> str:
    """What a failed run left on disk, in words (never "nothing" when a folder exists)."""
    failed = getattr(exc, "failed_dir", None)
    if failed and Path(failed).exists():
        return f"the previous good report is unchanged; the details are in {Path(failed) / 'ERROR.txt'}"
    return "nothing was written"


def _written_suffix(exc: BaseException) -> str:
    done = getattr(exc, "fupan_written", None)
    if not done:
        return ""
    return "\n  written before the failure: " + "; ".join(done)


if __name__ == "__main__":
    sys.exit(main())
