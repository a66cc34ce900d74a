"""The unattended monthly run: exit codes, quiet mode and log file, history, backfill, deck.

End-to-end runs (papermill, Chromium) are marked slow; the rest checks the orchestration
pieces directly.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fupan.chapters import kpi
from fupan.core import params as fparams
from fupan.run import cli, monthly
from test_kpi import _steady, params_file, write_fixture

# --------------------------------------------------------------------------------------
# Fast: the pieces


def test_previous_month_and_folder_name():
    import datetime as dt

    assert monthly.previous_month(dt.date(2026, 11, 2)) == "2026-10"
    assert monthly.previous_month(dt.date(2026, 1, 1)) == "2025-12"
    assert monthly.folder_name("2026-10") == "monthly-2026-10"


def test_month_params_set_as_of_and_require_the_kpi_notebook(tmp_path):
    data = write_fixture(tmp_path / "data")
    pf = params_file(tmp_path, data)
    p = monthly.month_params(pf, "2026-09")
    assert p.as_of.isoformat() == "2026-09-30"
    bad = tmp_path / "bad.yaml"
    doc = yaml.safe_load(pf.read_text(encoding="utf-8"))
    assert "05_kpi_tracking" in doc["notebooks"]  # else the edit below would test nothing
    doc["notebooks"] = ["00_data_check"]
    bad.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(fparams.ParamsError, match="05_kpi_tracking"):
        monthly.month_params(bad, "2026-09")
    targets = params_file(
        tmp_path, data, extra="benchmarks:\n  kpi_targets:\n    nsp: {target: 1}\n"
    )
    with pytest.raises(fparams.ParamsError, match="did you mean 'nps'"):
        monthly.month_params(targets, "2026-09")


def test_exit_code_and_summary():
    kpi_alert = {
        "kind": "kpi",
        "kpi": "nps",
        "message": "NPS is 20.0, below the alert threshold 40.0",
    }
    quiet = monthly.MonthOutcome("2026-10", None, alerts=[])
    loud = monthly.MonthOutcome("2026-10", Path("/r/monthly-2026-10"), alerts=[kpi_alert])
    muted = monthly.MonthOutcome("2026-10", None, alerts=[kpi_alert], alert_on=("incomplete",))
    assert monthly.exit_code([quiet]) == monthly.EXIT_OK == 0
    assert monthly.exit_code([quiet, loud]) == monthly.EXIT_ALERT == cli.EXIT_ALERT == 3
    assert monthly.exit_code([muted]) == 0
    lines = monthly.summarise([quiet, loud])
    assert lines[0].startswith("fupan monthly 2026-10: 1 alert(s)") and "NPS is 20.0" in lines[1]


def test_run_log_quiet_mode_and_log_file(tmp_path, capfd):
    log = monthly.RunLog(quiet=True, path=tmp_path / "logs" / "monthly.log")
    log.info("progress line")
    with log.capture_output():
        # a child process (like a papermill kernel) writing to both streams
        subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; print('kernel out'); print('kernel err', file=sys.stderr)",
            ],
            check=True,
        )
        print("python print")
    log.notice("an alert")
    log.error("an error", echo=False)
    log.close()
    out, err = capfd.readouterr()
    assert out == "an alert\n" and err == ""
    text = (tmp_path / "logs" / "monthly.log").read_text()
    for s in (
        "INFO  progress line",
        "kernel out",
        "kernel err",
        "python print",
        "ALERT an alert",
        "ERROR an error",
    ):
        assert s in text
    loud = monthly.RunLog(quiet=False)
    loud.info("shown")
    with loud.capture_output():
        print("also shown")
    assert capfd.readouterr().out == "shown\nalso shown\n"


def test_cli_usage_errors_exit_2(capsys):
    for argv in (
        ["monthly", "--month", "2026-13"],
        ["monthly", "--month", "2026-10", "--from", "2026-01"],
        ["monthly", "--decks", "some"],
    ):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == cli.EXIT_USAGE == 2
    assert "not a month" in capsys.readouterr().err


def test_bad_data_exits_1_and_is_logged(tmp_path, capsys):
    pf = params_file(tmp_path, tmp_path / "nowhere")
    code = cli.main(
        [
            "monthly",
            "--month",
            "2026-10",
            "--params",
            str(pf),
            "--out",
            str(tmp_path / "reports"),
            "--quiet",
            "--log",
            str(tmp_path / "m.log"),
        ]
    )
    assert code == cli.EXIT_FAIL == 1
    assert "data source not found" in capsys.readouterr().err
    assert "ERROR fupan monthly failed" in (tmp_path / "m.log").read_text()
    assert not (tmp_path / "reports" / "kpi_history.parquet").exists()


# --------------------------------------------------------------------------------------
# Slow: whole runs


@pytest.fixture(scope="module")
def month_run(tmp_path_factory):
    """``fupan monthly --month 2026-10 --lang en --quiet --log`` on the hand-made fixture."""
    work = tmp_path_factory.mktemp("monthly")
    data = write_fixture(work / "data")
    pf = params_file(work, data)
    reports = work / "reports"
    argv = [
        "monthly",
        "--month",
        "2026-10",
        "--params",
        str(pf),
        "--out",
        str(reports),
        "--lang",
        "en",
        "--quiet",
        "--log",
        str(work / "monthly.log"),
    ]
    code = cli.main(argv)
    return {"work": work, "pf": pf, "data": data, "reports": reports, "code": code, "argv": argv}


@pytest.mark.slow
def test_month_run_writes_deck_results_history_and_exports(month_run, capfd):
    reports = month_run["reports"]
    run = reports / "monthly-2026-10"
    assert month_run["code"] == cli.EXIT_ALERT  # NPS 20 is below 40: the scheduler should notify
    assert (run / "deck.html").exists()
    res = json.loads((run / "results.json").read_text(encoding="utf-8"))
    k = res["kpi"]
    assert k["month"] == "2026-10"
    assert set(k["values"]) == set(kpi.CATALOGUE) == set(k["status"])
    assert k["values"]["nps"] == pytest.approx(20.0) and k["status"]["nps"] == "red"
    assert k["values"]["renewal_rate"] == pytest.approx(0.4)
    assert k["at_risk_count"] == 2 and k["new_red_count"] == 1
    assert {a["kind"] for a in k["alerts"]} >= {"kpi", "new_red"}
    assert all(a["message"] for a in k["alerts"])
    assert set(k["status"].values()) <= set(kpi.STATUSES)
    hist = kpi.read_history(reports / "kpi_history.parquet")
    assert list(hist.month.unique()) == ["2026-10"] and len(hist) == len(kpi.CATALOGUE)
    assert (hist.run == "monthly-2026-10").all() and hist.fingerprint.str.len().eq(16).all()
    assert dict(zip(hist.kpi, hist.status, strict=True)) == k["status"]
    exports = run / "exports"
    assert (exports / "at_risk.csv").exists() and (exports / "at_risk.xlsx").exists()
    at_risk = pd.read_csv(exports / "at_risk.csv")
    assert at_risk["Customer"].tolist() == ["G", "H"] and "Account manager" in at_risk.columns
    log = (month_run["work"] / "monthly.log").read_text()
    assert "ALERT fupan monthly 2026-10" in log and "exit code 3" in log


@pytest.mark.slow
def test_rerunning_a_month_is_idempotent(month_run, capfd):
    reports = month_run["reports"]
    before = kpi.read_history(reports / "kpi_history.parquet")
    results_before = json.loads((reports / "monthly-2026-10" / "results.json").read_text())["kpi"]
    assert cli.main(month_run["argv"]) == cli.EXIT_ALERT
    after = kpi.read_history(reports / "kpi_history.parquet")
    cols = [
        "month",
        "kpi",
        "value",
        "n",
        "status",
        "reason",
        "target",
        "alert",
        "complete",
        "fingerprint",
        "run",
    ]
    pd.testing.assert_frame_equal(before[cols], after[cols])
    results_after = json.loads((reports / "monthly-2026-10" / "results.json").read_text())["kpi"]
    assert results_after["values"] == results_before["values"]
    assert not list(reports.glob(".monthly-*")) and not list(reports.glob("*.failed"))
    assert capfd.readouterr().out.startswith(
        "fupan monthly 2026-10:"
    )  # quiet: only the alert summary


@pytest.mark.slow
def test_failed_run_keeps_the_previous_report_and_history(month_run, tmp_path):
    reports = month_run["reports"]
    deck = (reports / "monthly-2026-10" / "deck.html").read_bytes()
    hist = (reports / "kpi_history.parquet").read_bytes()
    broken = write_fixture(tmp_path / "broken")
    (broken / "orders.csv").write_text(
        "order_id,customer_id\nX,A\n", encoding="utf-8"
    )  # no order_date, amount
    argv = [*month_run["argv"]]
    argv[argv.index("--params") + 1] = str(params_file(tmp_path, broken))
    assert cli.main(argv) == cli.EXIT_FAIL
    assert (reports / "monthly-2026-10" / "deck.html").read_bytes() == deck
    assert (reports / "kpi_history.parquet").read_bytes() == hist


@pytest.mark.slow
@pytest.mark.browser
def test_month_deck_passes_the_browser_checks(month_run, browser, tmp_path):
    seen = check_deck(
        browser, month_run["reports"] / "monthly-2026-10" / "deck.html", tmp_path / "shots"
    )
    assert seen["slides"] >= 12


@pytest.mark.slow
def test_backfill_then_rerun_one_month_keeps_the_other_eleven(tmp_path, capfd):
    data = write_fixture(tmp_path / "data")
    # alert_on: [] -> a run with alerts still exits 0, and quiet mode prints nothing at all
    pf = params_file(tmp_path, data, kpi_extra="  alert_on: []\n")
    reports = tmp_path / "reports"
    code = monthly.main(
        str(pf), first="2025-11", last="2026-10", reports_dir=str(reports), decks="none", quiet=True
    )
    assert code == 0
    backfilled = kpi.read_history(reports / "kpi_history.parquet")
    months = kpi.month_range("2025-11", "2026-10")
    assert sorted(backfilled.month.unique()) == months
    assert len(backfilled) == 12 * len(kpi.CATALOGUE)
    assert not list(reports.glob("monthly-*"))  # decks=none: history only
    code = monthly.main(str(pf), month="2026-05", reports_dir=str(reports), quiet=True)
    assert code == 0
    assert capfd.readouterr().out == ""
    rerun = kpi.read_history(reports / "kpi_history.parquet")
    others = [m for m in months if m != "2026-05"]
    pd.testing.assert_frame_equal(
        backfilled[backfilled.month.isin(others)].reset_index(drop=True),
        rerun[rerun.month.isin(others)].reset_index(drop=True),
    )
    # the re-run month itself says what the backfill said (same data, as of its month end)
    cols = [
        "month",
        "kpi",
        "value",
        "n",
        "status",
        "reason",
        "target",
        "alert",
        "complete",
        "fingerprint",
    ]
    a = backfilled[backfilled.month == "2026-05"][cols].reset_index(drop=True)
    b = rerun[rerun.month == "2026-05"][cols].reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert (rerun[rerun.month == "2026-05"].run == "monthly-2026-05").all()
    res = json.loads((reports / "monthly-2026-05" / "results.json").read_text())
    assert res["run"]["as_of"] == "2026-05-31" and res["kpi"]["month"] == "2026-05"
    assert res["kpi"]["trend_months_from_history"] == [
        m for m in kpi.month_range("2025-11", "2026-04")
    ]


@pytest.mark.slow
@pytest.mark.browser
def test_incomplete_month_run_alerts_incomplete_not_churn(tmp_path, browser):
    d = _steady(tmp_path, cut="2026-10-14")
    pf = Path(d.params.base_dir) / f"params-{d.params.as_of}.yaml"
    d.close()
    reports = tmp_path / "reports"
    code = monthly.main(str(pf), month="2026-10", reports_dir=str(reports), lang="en", quiet=True)
    assert code == monthly.EXIT_ALERT
    k = json.loads((reports / "monthly-2026-10" / "results.json").read_text())["kpi"]
    assert k["complete"] is False
    assert k["status"]["churn_rate_monthly"] == "grey" and k["values"]["churn_rate_monthly"] > 0.9
    kinds = {(a["kind"], a.get("kpi")) for a in k["alerts"]}
    assert ("incomplete", None) in kinds
    assert not any(kind == "kpi" and key.startswith("churn") for kind, key in kinds)
    hist = kpi.read_history(reports / "kpi_history.parquet")
    assert not hist.complete.any()
    html = (reports / "monthly-2026-10" / "deck.html").read_text(encoding="utf-8")
    assert "data is incomplete" in html
    check_deck(browser, reports / "monthly-2026-10" / "deck.html", tmp_path / "shots")


try:  # the same browser checks as the annual deck
    from test_browser import check_deck
except ImportError:  # pragma: no cover - test_browser is part of the suite
    pass


# --------------------------------------------------------------------------------------
# A damaged KPI history: detected by its checksum, rebuilt by a backfill with a backup


def _damage(path: Path, at: float = 0.5) -> None:
    """Overwrite a few bytes mid-file, as a bad copy or a disk error would."""
    raw = bytearray(path.read_bytes())
    i = int(len(raw) * at)
    raw[i : i + 8] = b"\x00garbage"
    path.write_bytes(bytes(raw))


@pytest.mark.parametrize("where", [0.5, 0.97])
def test_damaged_history_is_refused_and_backfill_rebuilds_it(tmp_path, capfd, where):
    data = write_fixture(tmp_path / "data")
    pf = params_file(tmp_path, data, kpi_extra="  alert_on: []\n")
    reports = tmp_path / "reports"
    hist = reports / "kpi_history.parquet"
    argv = ["--params", str(pf), "--out", str(reports), "--quiet"]
    assert (
        cli.main(["monthly", "--from", "2026-08", "--to", "2026-10", "--decks", "none", *argv]) == 0
    )
    assert monthly.checksum_path(hist).exists() and monthly.kpi_history_problem(hist) is None
    good = kpi.read_history(hist)
    _damage(hist, where)
    capfd.readouterr()
    assert "checksum" in monthly.kpi_history_problem(hist)
    # a month run refuses the damaged history before anything is written
    assert cli.main(["monthly", "--month", "2026-10", *argv]) == 1
    err = capfd.readouterr().err
    assert "KPI history" in err and "damaged" in err and "--from" in err
    assert "Traceback" not in err and "pyarrow" not in err.lower()
    assert not list(reports.glob("monthly-*"))
    # a backfill keeps the damaged file as a backup and writes a sound history
    damaged = hist.read_bytes()
    assert (
        cli.main(["monthly", "--from", "2026-08", "--to", "2026-10", "--decks", "none", *argv]) == 0
    )
    out = capfd.readouterr()
    assert "was damaged" in out.out and "Traceback" not in out.out + out.err
    (backup,) = reports.glob("kpi_history.damaged-*.parquet")
    assert backup.read_bytes() == damaged
    assert monthly.kpi_history_problem(hist) is None
    rebuilt = kpi.read_history(hist)
    cols = ["month", "kpi", "value", "status"]
    pd.testing.assert_frame_equal(rebuilt[cols], good[cols])


def test_history_without_checksum_that_cannot_be_read_is_damaged(tmp_path):
    hist = tmp_path / "kpi_history.parquet"
    hist.write_bytes(b"PAR1 not really a parquet file")
    why = monthly.kpi_history_problem(hist)
    assert why and "cannot be read as a KPI history" in why
    with pytest.raises(monthly.HistoryError, match="fupan monthly --from 2026-10"):
        monthly.check_history(hist, "2026-10")
    assert monthly.kpi_history_problem(tmp_path / "none.parquet") is None


def test_failed_month_says_what_was_written(tmp_path, capsys):
    # a data folder that fails validation: the runner keeps monthly-YYYY-MM.failed/
    data = write_fixture(tmp_path / "data")
    (data / "orders.csv").write_text("customer_id,order_date\nx,2026-01-01\n", encoding="utf-8")
    pf = params_file(tmp_path, data)
    reports = tmp_path / "reports"
    code = cli.main(["monthly", "--month", "2026-10", "--params", str(pf), "--out", str(reports)])
    err = capsys.readouterr().err
    assert code == 1
    assert (reports / "monthly-2026-10.failed" / "ERROR.txt").exists()
    assert "nothing was written" not in err
    assert str(reports / "monthly-2026-10.failed" / "ERROR.txt") in err
