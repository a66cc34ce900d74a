"""A params file becomes one run context with absolute paths, made once at load (issue 22 item 8).

Before, ``Params.resolve`` was re-entered from the data loader, the runner, the CLI and the
manifest, against different folders in different places (the relative ``--out`` and
install-folder bugs). These tests count that a load and a run's steps resolve once, and that
the same files named relatively from two folders give the same absolute paths.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import paramfile
import pytest
import tiny
from fupan.core import params as fparams
from fupan.core import paths
from fupan.io import reading
from fupan.run import cli, runner


def _relative_params(tmp_path: Path) -> Path:
    """cfg/params.yaml naming its data, scenarios and reports relative to itself."""
    cfg = tmp_path / "cfg"
    tiny.write(cfg / "data")
    pf = tiny.params_file(cfg, cfg / "data")
    paramfile.update(
        pf, {"data": {"source": "data"}, "simulation": {"scenarios_file": "my-scenarios.yaml"}}
    )
    return pf


@pytest.fixture
def counted(monkeypatch):
    """Counts context builds, and ``Params.resolve`` calls made outside a build."""
    calls = {"builds": 0, "stray_resolves": 0}
    inside = []
    build, resolve = fparams.run_context, fparams.Params.resolve

    def counting_build(*a, **k):
        calls["builds"] += 1
        inside.append(True)
        try:
            return build(*a, **k)
        finally:
            inside.pop()

    def counting_resolve(self, path):
        if not inside:
            calls["stray_resolves"] += 1
        return resolve(self, path)

    monkeypatch.setattr(fparams, "run_context", counting_build)
    monkeypatch.setattr(fparams.Params, "resolve", counting_resolve)
    return calls


def test_load_and_run_resolve_paths_once(tmp_path, monkeypatch, counted):
    pf = _relative_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(params="cfg/params.yaml", out="out", data=None)
    params = cli._load_params(args)
    r = runner.plan_run(
        params, args.params, cli._out(args), None, None, lambda _m: None, None, False
    )
    runner.seed_run_folder(r)
    runner.validate_data(r)
    runner.record_run_section(r, None)
    passed = runner.check_notebooks(r)
    fparams.dump(r.params)
    reading.find_source_files(r.params)
    assert counted == {"builds": 1, "stray_resolves": 0}
    assert passed["data"] == str((pf.parent / "data").resolve())
    assert passed["params_file"] == str(pf.resolve())
    assert r.reports == (tmp_path / "out").resolve()
    # the run's folders are the context's: the finished one, the one being built, its cache
    assert r.final == (tmp_path / "out" / f"annual_review-{params.as_of}").resolve()
    assert r.tmp == r.ctx.staging_dir() and r.tmp.parent == r.final.parent
    assert paths.cache_dir(r.tmp) == r.tmp / "work" / "cache"


def test_relative_out_and_params_from_another_folder_give_the_same_paths(tmp_path, monkeypatch):
    pf = _relative_params(tmp_path)
    (tmp_path / "elsewhere" / "deeper").mkdir(parents=True)
    seen = []
    for cwd, params_arg, out_arg in (
        (tmp_path, "cfg/params.yaml", "out"),
        (tmp_path / "elsewhere" / "deeper", "../../cfg/params.yaml", "../../out"),
        (pf.parent, "params.yaml", "../out"),
    ):
        monkeypatch.chdir(cwd)
        args = argparse.Namespace(params=params_arg, out=out_arg, data=None)
        ctx = cli._load_params(args).context
        seen.append(
            (
                ctx.params_file,
                ctx.data,
                ctx.scenarios_file,
                ctx.reports(cli._out(args)),
                ctx.for_run(cli._out(args)).run_dir,
                runner.notebook_parameters(cli._load_params(args), ctx.params_file, "r")["data"],
            )
        )
    assert seen[0] == seen[1] == seen[2]
    params_file, data, scenarios, reports, run_dir, _ = seen[0]
    assert params_file == pf.resolve()
    assert data == str((pf.parent / "data").resolve())
    assert scenarios == (pf.parent / "my-scenarios.yaml").resolve()
    assert reports == (tmp_path / "out").resolve() == run_dir.parent
    assert all(Path(p).is_absolute() for p in (params_file, data, scenarios, reports, run_dir))


def test_context_is_absolute_and_reports_default_to_the_starting_folder(tmp_path, monkeypatch):
    pf = _relative_params(tmp_path)
    monkeypatch.chdir(tmp_path / "cfg")
    ctx = fparams.load("params.yaml").context
    assert ctx.base_dir == pf.parent.resolve()
    assert ctx.reports_dir == (tmp_path / "cfg" / "reports").resolve()
    assert not ctx.reports_dir.is_relative_to(paths.PACKAGE_ROOT)
    assert ctx.benchmarks_file is None  # benchmarks_file: null


def test_a_copy_with_other_paths_gets_its_own_context(tmp_path, monkeypatch, counted):
    _relative_params(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = fparams.load("cfg/params.yaml")
    same = params.model_copy(update={"seed": 7})
    assert same.context is params.context
    moved = params.model_copy(update={"data": params.data.model_copy(update={"source": "x"})})
    assert moved.context.data == str((tmp_path / "cfg" / "x").resolve())
    assert counted["builds"] == 2
    # the run folder is named by the kind of review and its as-of date
    later = params.model_copy(update={"as_of": params.as_of.replace(year=params.as_of.year + 1)})
    assert later.context.run_name == f"{params.kind}-{later.as_of}"
    assert later.context.run_dir == params.context.reports_dir / later.context.run_name
    assert params.context.for_run(name="monthly-2026-10").run_dir.name == "monthly-2026-10"
