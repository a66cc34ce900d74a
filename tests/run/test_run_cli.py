"""The analyst's and operator's loop (issue 20): `fupan run` updates chapters in place,
paths as every CLI has them, a fast CLI with help for every option, ordered progress,
`fupan pdf`, and failure messages that say what was written."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import paramfile
import pytest
from conftest import ROOT
from fupan.core import params as fparams
from fupan.core import paths
from fupan.run import cli, execute, run_folder, runner

LIB = str(ROOT / "lib")


def _py(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": LIB}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=cwd, timeout=60
    )


# --------------------------------------------------------------------------- fast CLI

HEAVY = ("papermill", "nbformat", "pandas", "numpy", "pydantic", "jsonschema", "ibis", "duckdb")


def test_importing_the_cli_and_building_its_parser_imports_nothing_heavy():
    # issue 20: main() imported the runner (nbformat, jsonschema, ...) before reading its
    # arguments, so `fupan --help` took 8-12 s
    code = (
        "import sys\nfrom fupan.run import cli\ncli.build_parser()\n"
        "for argv in (['--help'], ['validate', '--help'], ['run', '--help']):\n"
        "    try:\n        cli.main(argv)\n    except SystemExit:\n        pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = _py(code)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def _actions(parser: argparse.ArgumentParser, path: str = "fupan"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_every_option_has_help_text():
    # issue 20: run --out/--name, every demo-data option and rerun had none
    missing = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in _actions(cli.build_parser())
        if not (a.help and a.help.strip()) and a.help != argparse.SUPPRESS
    ]
    assert not missing, missing


def test_out_help_does_not_promise_a_folder_it_does_not_use():
    parser = cli.build_parser()
    runs = ("fupan review", "fupan run", "fupan rerun", "fupan monthly")
    helps = [a.help for path, a in _actions(parser) if "--out" in a.option_strings and path in runs]
    assert len(helps) == 4 and all("reports/ under the current folder" in h for h in helps)


# --------------------------------------------------------------------------- paths


def _params(tmp_path: Path, extra: str = "") -> Path:
    folder = tmp_path / "cfg"
    folder.mkdir(exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    return paramfile.write(folder, "data", extra, filename="p.yaml", as_of="2026-10-31")


def test_reports_go_under_the_current_folder_not_the_package(tmp_path, monkeypatch):
    # issue 20: runs from another clone wrote into the first checkout's reports/
    monkeypatch.chdir(tmp_path)
    params = fparams.load(_params(tmp_path))
    assert paths.reports_dir(params) == tmp_path.resolve() / "reports"
    assert paths.reports_dir(None, "out") == tmp_path.resolve() / "out"
    assert not paths.reports_dir(params).is_relative_to(paths.PACKAGE_ROOT)


def test_reports_dir_in_params_is_relative_to_the_params_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pf = _params(tmp_path, "reports_dir: ../shared-reports\n")
    params = fparams.load(pf)
    assert paths.reports_dir(params) == (tmp_path / "shared-reports").resolve()
    assert paths.reports_dir(params, "here") == (tmp_path / "here").resolve()  # --out wins
    assert params.resolve(params.data.source) == str((pf.parent / "data").resolve())


def test_notebooks_and_example_params_are_found_in_a_checkout_and_as_package_data():
    assert paths.notebook_dir() == ROOT / "notebooks"
    assert paths.example_params("annual_review.yaml") == ROOT / "params" / "annual_review.yaml"
    # a wheel has no checkout around it: the installed copies are used
    assert not paths.is_checkout(Path(sys.prefix) / "lib")


def test_pyproject_ships_the_notebooks_and_example_params():
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
        "setuptools"
    ]
    assert conf["package-dir"]["fupan.notebooks"] == "notebooks"
    assert conf["package-dir"]["fupan.examples"] == "params"
    assert "*.ipynb" in conf["package-data"]["fupan.notebooks"]


def test_without_a_params_file_the_example_is_used_only_with_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = cli.build_parser().parse_args(["validate", "--data", "demo"])
    assert Path(cli.params_path(args)) == paths.example_params("annual_review.yaml")
    args = cli.build_parser().parse_args(["validate"])
    with pytest.raises(cli.UserError, match="there is no params/annual_review.yaml"):
        cli.params_path(args)
    (tmp_path / "params").mkdir()
    (tmp_path / "params" / "annual_review.yaml").write_text("x: 1\n")
    assert cli.params_path(args) == "params/annual_review.yaml"


def test_git_commit_is_not_taken_from_a_repository_around_an_installed_package(tmp_path):
    assert not paths.is_checkout(tmp_path)


# --------------------------------------------------------------------------- chapters


def test_chapter_names_as_typed():
    assert cli.chapter_names(["01", "2", "ltv", "04_strategy_simulation"]) == [
        "01_diagnosis",
        "02_churn_root_cause",
        "03_ltv_loss",
        "04_strategy_simulation",
    ]
    assert cli.chapter_names(["notebooks/05_kpi_tracking.ipynb"]) == ["05_kpi_tracking"]
    with pytest.raises(cli.UserError, match="the chapters are"):
        cli.chapter_names(["9"])


def test_dependents_follow_what_chapters_use():
    every = list(fparams.NOTEBOOKS)
    assert run_folder.dependents(["02_churn_root_cause"], every) == [
        "03_ltv_loss",
        "04_strategy_simulation",
        "05_kpi_tracking",
        "06_followup",
    ]
    assert run_folder.dependents(["00_data_check"], every) == []
    assert run_folder.dependents(["01_diagnosis"], every) == ["06_followup"]
    # only chapters of the run count
    assert (
        run_folder.dependents(["02_churn_root_cause"], ["01_diagnosis", "02_churn_root_cause"])
        == []
    )


def test_plan_keeps_the_other_chapters_of_an_existing_run():
    params = fparams.Params.model_validate({"as_of": "2026-10-31", "data": {"source": "x"}})
    prior = {"notebooks": list(fparams.NOTEBOOKS)}
    plan = run_folder.plan_chapters(params, ["01_diagnosis"], prior)
    assert plan.run == ["01_diagnosis"]
    assert plan.all == list(fparams.NOTEBOOKS)
    assert "01_diagnosis" not in plan.kept and len(plan.kept) == 6
    plan = run_folder.plan_chapters(params, ["02_churn_root_cause"], prior, with_dependents=True)
    assert plan.run == list(fparams.NOTEBOOKS)[2:]
    # into an empty folder: a run of just these chapters
    assert run_folder.plan_chapters(params, ["03_ltv_loss"], None).all == ["03_ltv_loss"]
    # a whole review runs the params' notebooks and keeps nothing
    assert run_folder.plan_chapters(params, None, prior).kept == []


def test_result_sections_are_read_from_the_notebook():
    assert run_folder.result_sections(ROOT / "notebooks" / "01_diagnosis.ipynb") == ["diagnosis"]
    assert run_folder.result_sections(ROOT / "notebooks" / "02_churn_root_cause.ipynb") == ["churn"]


# --------------------------------------------------------------------------- progress


def test_progress_lines_count_up_whatever_order_notebooks_end_in(monkeypatch):
    # issue 20: "[3/6]" came before "[1/6]": lines were numbered by the params' order
    clock = [0.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    order = ["00_data_check", "01_diagnosis", "02_churn_root_cause"]
    prog = execute.Progress(order, slots=2, expected={})
    prog.started("02_churn_root_cause")
    prog.started("00_data_check")
    clock[0] = 10
    first = prog.finished("00_data_check", "done in 10s")
    prog.started("01_diagnosis")
    clock[0] = 30
    second = prog.finished("02_churn_root_cause", "done in 30s")
    clock[0] = 40
    third = prog.finished("01_diagnosis", "done in 10s")
    assert first.startswith("[fupan] [1/3] 00_data_check")
    assert second.startswith("[fupan] [2/3] 02_churn_root_cause")
    assert third.startswith("[fupan] [3/3] 01_diagnosis")
    assert "10s elapsed" in first and "40s elapsed" in third
    # one notebook left, begun at 10 s, typical 10 s -> none of it left beyond the mean
    assert "left" in first and "left" not in third


def test_progress_estimate_uses_the_last_run_times(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(runner.time, "monotonic", lambda: clock[0])
    order = ["a", "b", "c"]
    prog = execute.Progress(order, slots=1, expected={"a": 10, "b": 100, "c": 50})
    prog.started("a")
    clock[0] = 12
    line = prog.finished("a", "done")
    assert "about 2m30s left" in line  # b (100 s) + c (50 s), one at a time
    prog.started("b")
    clock[0] = 62
    assert prog.remaining() == pytest.approx(50 + 50)


# --------------------------------------------------------------------------- messages


def test_failure_message_says_what_was_written(tmp_path):
    failed = tmp_path / "monthly-2026-10.failed"
    (failed / "notebooks").mkdir(parents=True)
    (failed / "ERROR.txt").write_text("x")
    (failed / "notebooks" / "05_kpi_tracking.ipynb").write_text("{}")
    err = execute.RunError("boom", failed)
    text = cli._written(err)
    assert f"wrote {failed}/" in text and "ERROR.txt" in text
    assert "no report was written at" in text and "nothing was written" not in text
    (tmp_path / "monthly-2026-10").mkdir()
    assert f"the previous report {tmp_path / 'monthly-2026-10'}/ is unchanged" in cli._written(err)
    assert cli._written(execute.RunError("boom")) == "nothing was written"


def test_pdf_of_a_folder_without_a_deck_is_a_clear_error(tmp_path, capsys):
    code = cli.main(["pdf", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1 and "holds no deck.html" in err and "fix:" in err


@pytest.mark.browser
def test_pdf_prints_an_existing_deck(tmp_path):
    from fupan.report import deck

    if deck.chromium_path() is None:
        pytest.skip("no chromium")
    run = tmp_path / "annual_review-2026-10-31"
    run.mkdir()
    sec = deck.Section(key="01_x", title="T", question="Q", slides=[deck.Page(head="<h2>a</h2>")])
    deck.render([sec], {"name": "n", "as_of": "2026-10-31"}, {}, "en", run / "deck.html")
    assert cli.main(["pdf", str(run)]) == 0
    assert deck.pdf_page_count(run / "deck.pdf") >= 1


# --------------------------------------------------------------------------- in place


def _fake_notebooks(folder: Path, value: int) -> Path:
    """Three chapters that record a figure, export a table and show one slide each."""
    folder.mkdir(parents=True, exist_ok=True)
    src = nbformat.read(str(ROOT / "notebooks" / "00_data_check.ipynb"), as_version=4)
    params_cell = next(c for c in src.cells if "parameters" in c.metadata.get("tags", []))
    for nb, key in [
        ("01_diagnosis", "diagnosis"),
        ("02_churn_root_cause", "churn"),
        ("03_ltv_loss", "ltv"),
    ]:
        code = (
            "from pathlib import Path\nfrom fupan.report import show\nfrom fupan.report.results import Recorder\n"
            f"Recorder(run_dir).record('{key}.value', {value})\n"
            f"Recorder(run_dir).record('{key}.cwd', str(Path.cwd()))\n"
            f"(Path(run_dir) / 'exports' / '{key}_table.csv').write_text('v\\n{value}\\n')\n"
            f"show.slide('{key} slide {value}', 'finding {value}')\n"
        )
        out = nbformat.v4.new_notebook(
            cells=[params_cell, nbformat.v4.new_code_cell(code)], metadata=src.metadata
        )
        nbformat.write(out, str(folder / f"{nb}.ipynb"))
    return folder


@pytest.mark.slow
def test_run_updates_one_chapter_in_place_and_marks_its_users_stale(
    tmp_path, tiny_params, monkeypatch
):
    # issue 20: `fupan run 01_diagnosis` replaced an 80-slide review with a 25-slide deck
    params = fparams.load(tiny_params)
    params.lang = "en"
    reports = tmp_path / "reports"
    v1 = _fake_notebooks(tmp_path / "v1", 1)
    kw = dict(reports_dir=reports, notebook_dir=v1, log=lambda m: None)
    params.notebooks = ["01_diagnosis", "02_churn_root_cause", "03_ltv_loss"]
    first = runner.run(params, tiny_params, **kw)
    assert set(first.results) >= {"diagnosis", "churn", "ltv"}
    (first.run_dir / "exports" / "churn_stale_leftover.csv").write_text("old")

    v2 = _fake_notebooks(tmp_path / "v2", 2)
    lines: list[str] = []
    res = runner.run(
        params,
        tiny_params,
        reports_dir=reports,
        notebook_dir=v2,
        log=lines.append,
        chapters=["02_churn_root_cause"],
    )
    assert res.run_dir == first.run_dir
    results = json.loads((res.run_dir / "results.json").read_text())
    assert results["diagnosis"]["value"] == 1 and results["ltv"]["value"] == 1
    assert results["churn"]["value"] == 2
    exports = sorted(p.name for p in (res.run_dir / "exports").iterdir())
    assert exports == ["churn_table.csv", "diagnosis_table.csv", "ltv_table.csv"]
    assert (res.run_dir / "exports" / "churn_table.csv").read_text() == "v\n2\n"
    page = res.deck.read_text(encoding="utf-8")
    assert "diagnosis slide 1" in page and "churn slide 2" in page and "ltv slide 1" in page
    assert "churn slide 1" not in page
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    assert manifest["notebooks"] == ["01_diagnosis", "02_churn_root_cause", "03_ltv_loss"]
    assert manifest["ran"] == ["02_churn_root_cause"]
    ch = manifest["chapters"]
    assert ch["02_churn_root_cause"]["ran_at"] > ch["01_diagnosis"]["ran_at"] or (
        ch["02_churn_root_cause"]["ran_at"] >= ch["01_diagnosis"]["ran_at"]
    )
    assert ch["02_churn_root_cause"]["params_sha256"] == run_folder.params_checksum(params)
    assert ch["01_diagnosis"]["params_sha256"] == run_folder.params_checksum(params)
    assert ch["03_ltv_loss"]["stale_because"] == ["02_churn_root_cause"]
    assert manifest["stale"] == ["03_ltv_loss"]
    # the stale line is on chapter 3's slide, not on chapter 1's
    ltv_at = page.index("ltv slide 1")
    assert "was rerun at" in page[ltv_at : ltv_at + 2000]
    diag_at = page.index("diagnosis slide 1")
    assert "was rerun at" not in page[diag_at : diag_at + 800]
    assert any("03_ltv_loss is marked stale" in line for line in lines)

    # with --with-dependents chapter 3 runs again and is no longer stale
    res = runner.run(
        params,
        tiny_params,
        reports_dir=reports,
        notebook_dir=v2,
        log=lambda m: None,
        chapters=["02_churn_root_cause"],
        with_dependents=True,
    )
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    assert manifest["ran"] == ["02_churn_root_cause", "03_ltv_loss"]
    assert manifest["stale"] == [] and res.results["ltv"]["value"] == 2
    assert "was rerun at" not in res.deck.read_text(encoding="utf-8")

    # a failing update keeps the good run as it was
    before = res.deck.read_bytes()
    broken = _fake_notebooks(tmp_path / "v3", 3)
    nb = nbformat.read(str(broken / "01_diagnosis.ipynb"), as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("raise ValueError('nope')"))
    nbformat.write(nb, str(broken / "01_diagnosis.ipynb"))
    with pytest.raises(execute.RunError):
        runner.run(
            params,
            tiny_params,
            reports_dir=reports,
            notebook_dir=broken,
            log=lambda m: None,
            chapters=["01_diagnosis"],
        )
    assert res.deck.read_bytes() == before
    assert json.loads((res.run_dir / "results.json").read_text())["diagnosis"]["value"] == 1


@pytest.mark.slow
def test_run_into_an_empty_folder_makes_a_run_of_just_those_chapters(tmp_path, tiny_params):
    params = fparams.load(tiny_params)
    nbs = _fake_notebooks(tmp_path / "nbs", 5)
    t0 = time.time()
    res = runner.run(
        params,
        tiny_params,
        reports_dir=tmp_path / "reports",
        notebook_dir=nbs,
        log=lambda m: None,
        chapters=["01_diagnosis"],
    )
    assert time.time() - t0 < 300
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    assert manifest["notebooks"] == ["01_diagnosis"] and list(manifest["chapters"]) == [
        "01_diagnosis"
    ]
    assert manifest["chapters"]["01_diagnosis"]["exports"] == ["diagnosis_table.csv"]
    # the kernel worked in the run's scratch folder: not the notebooks' (the installed
    # package), not the shell's; and the scratch folder is gone
    cwd = Path(res.results["diagnosis"]["cwd"])
    assert cwd.name == "work" and cwd.parent.name.startswith(".annual_review-2026-10-31.tmp-")
    assert not cwd.exists() and not (res.run_dir / "work").exists()


def test_every_subpackage_is_listed_for_the_wheel():
    import tomllib

    conf = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]
    listed = set(conf["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT / "lib").parts)
        for p in (ROOT / "lib" / "fupan").rglob("__init__.py")
    }
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"


def test_an_update_with_other_params_is_named():
    prior = {"chapters": {"01_diagnosis": {"params_sha256": "a"}, "03_ltv_loss": {}}}
    assert run_folder.differing_params(prior, ["01_diagnosis", "03_ltv_loss"], "a") == [
        "03_ltv_loss"
    ]
    assert run_folder.differing_params(prior, ["01_diagnosis"], "b") == ["01_diagnosis"]


def test_the_benchmark_reads_the_progress_lines_the_runner_writes(monkeypatch):
    from types import SimpleNamespace

    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    bench = pytest.importorskip("run")
    prog = execute.Progress(["00_data_check", "01_diagnosis"], slots=2, expected={})
    lines = [
        (0.0, "[fupan] data ok (orders; 0 warning(s)) in 1.5s"),
        (1.0, prog.started("01_diagnosis")),
        (1.0, prog.started("00_data_check")),
        (5.0, prog.finished("00_data_check", "done in 4.0s")),
        (9.0, prog.finished("01_diagnosis", "done in 8.0s")),
        (11.0, "[fupan] deck (2 chapters) in 11s: /x/deck.html"),
    ]
    got = bench._parse_log(SimpleNamespace(lines=lines))
    assert got["notebooks"] == {"00_data_check": 4.0, "01_diagnosis": 8.0}
    assert got["notebooks_wall_seconds"] == 8.0 and got["render_seconds"] == 2.0
    assert got["load_validate"] == 1.5


def test_monthly_data_typed_on_the_command_line_is_relative_to_the_shell(
    tmp_path, tiny_data, monkeypatch, capsys
):
    import tiny

    cfg = tmp_path / "cfg"
    cfg.mkdir()
    pf = tiny.params_file(cfg, tiny_data, extra="kind: monthly\n", notebooks=("05_kpi_tracking",))
    shell = tmp_path / "shell"
    (shell / "bad").mkdir(parents=True)
    (shell / "bad" / "orders.csv").write_text("customer_id,order_date\nx,2026-01-01\n")
    monkeypatch.chdir(shell)
    code = cli.main(["monthly", "--month", "2026-10", "--params", str(pf), "--data", "bad"])
    err = capsys.readouterr().err
    assert code == 1
    assert "required column 'amount' is missing" in err  # it read shell/bad, not cfg/bad
    assert f"wrote {shell / 'reports' / 'monthly-2026-10.failed'}/" in err


def test_fupan_run_passes_the_chapters_to_update_in_place(tmp_path, tiny_params, monkeypatch):
    seen = {}

    def fake_run(params, params_file, **kw):
        seen.update(kw)
        return runner.RunResult(tmp_path, tmp_path / "deck.html", {})

    monkeypatch.setattr(runner, "run", fake_run)
    argv = ["run", "2", "ltv", "--params", str(tiny_params), "--with-dependents", "-q"]
    assert cli.main(argv) == 0
    assert seen["chapters"] == ["02_churn_root_cause", "03_ltv_loss"]
    assert seen["with_dependents"] is True
    assert cli.main(["review", "--params", str(tiny_params), "-q"]) == 0
    assert seen["chapters"] is None  # a review is a whole new run
