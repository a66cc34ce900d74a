"""Every error the CLI can meet ends as words (file, problem, fix), exit 1, no traceback;
a runner killed with SIGKILL takes its notebook processes and kernels with it (issue 18)."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from collections import namedtuple
from pathlib import Path

import nbformat
import paramfile
import pytest
from conftest import ROOT
from fupan.run import cli, run_folder, runner


def _run_cli(capsys, argv):
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return code, err


def test_params_saved_as_gbk(tmp_path, capsys, tiny_params):
    text = paramfile.update(tiny_params, name="复盘小样本").read_text(encoding="utf-8")
    assert "复盘小样本" in text
    gbk = tmp_path / "gbk.yaml"
    gbk.write_bytes(text.encode("gbk"))
    code, err = _run_cli(capsys, ["validate", "--params", str(gbk)])
    assert code == 1
    assert err.startswith(f"fupan: params file {gbk} is not UTF-8 text")
    assert "GBK" in err and "fix:" in err and "iconv" in err


def test_params_path_is_a_folder(tmp_path, capsys, tiny_params):
    code, err = _run_cli(capsys, ["review", "--params", str(tiny_params.parent)])
    assert code == 1 and "is a folder, not a YAML file" in err
    assert f"--params {tiny_params}" in err  # the fix names the file it holds


def test_missing_params_file(tmp_path, capsys):
    code, err = _run_cli(capsys, ["validate", "--params", str(tmp_path / "nope.yaml")])
    assert code == 1 and "does not exist" in err and "fix:" in err


def test_out_under_a_file(tmp_path, capsys, tiny_params):
    (tmp_path / "afile").write_text("x")
    code, err = _run_cli(
        capsys, ["review", "--params", str(tiny_params), "--out", str(tmp_path / "afile" / "r")]
    )
    assert code == 1 and "is a file, not a folder" in err


def test_read_only_output_folder(tmp_path, capsys, tiny_params, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root writes anywhere: refuse writes under ro/ the way EACCES does
        real = Path.mkdir

        def mkdir(self, *a, **k):
            if str(self).startswith(str(ro) + os.sep):
                raise PermissionError(errno.EACCES, "Permission denied", str(self))
            return real(self, *a, **k)

        monkeypatch.setattr(Path, "mkdir", mkdir)
    else:
        ro.chmod(0o555)
    code, err = _run_cli(capsys, ["review", "--params", str(tiny_params), "--out", str(ro)])
    assert code == 1
    first = err.splitlines()[0]
    assert "cannot write" in first and "permission denied" in first, err
    assert "choose a writable --out" in err


def test_full_disk_names_the_root_cause(tmp_path, capsys, tiny_params, monkeypatch):
    class FullRecorder:
        def __init__(self, folder):
            self.folder = folder

        def record(self, *a, **k):
            raise OSError(
                errno.ENOSPC, "No space left on device", str(self.folder / "results.json")
            )

    monkeypatch.setattr(runner, "Recorder", FullRecorder)
    reports = tmp_path / "r"
    code, err = _run_cli(capsys, ["review", "--params", str(tiny_params), "--out", str(reports)])
    assert code == 1
    assert err.splitlines()[0].startswith("fupan: no space left on device while writing")
    (failed,) = reports.glob("*.failed")
    assert "no space left on device" in (failed / "ERROR.txt").read_text()
    assert not list(reports.glob(".*tmp-*")) and not (failed / "work").exists()


def test_a_notebook_symptom_on_a_full_disk_is_blamed_on_the_disk(tmp_path, monkeypatch):
    # a notebook that could not write dies with its own symptom; the free space tells why
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(runner.shutil, "disk_usage", lambda p: usage(100, 100, 0))
    exc = RuntimeError("notebook 02 lost its kernel")
    assert run_folder.root_cause(exc, tmp_path) == "no space left on device"
    monkeypatch.setattr(runner.shutil, "disk_usage", lambda p: usage(10**12, 0, 10**12))
    assert run_folder.root_cause(exc, tmp_path) is None
    chained = RuntimeError("kernel died")
    chained.__cause__ = OSError(errno.ENOSPC, "No space left on device")
    assert run_folder.root_cause(chained, tmp_path) == "no space left on device"


def test_stale_temporary_runs_of_dead_processes_are_removed(tmp_path):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    stale = tmp_path / f".annual_review-2026-10-31.tmp-{dead}"
    (stale / "work").mkdir(parents=True)
    (stale / "work" / "staged.duckdb").write_bytes(b"customer data")
    live = tmp_path / f".annual_review-2026-10-31.tmp-{os.getppid()}"
    live.mkdir()
    removed = run_folder.remove_stale_temporaries(tmp_path, log=lambda m: None)
    assert removed == [stale] and not stale.exists() and live.exists()


# --------------------------------------------------------------------------------------
# Slow: whole runs


@pytest.mark.slow
def test_relative_out_is_the_shell_folder(tmp_path, tiny_params, monkeypatch):
    before = sorted(p.name for p in (ROOT / "notebooks").iterdir())
    shell = tmp_path / "shell"
    shell.mkdir()
    monkeypatch.chdir(shell)
    assert cli.main(["review", "--params", str(tiny_params), "--out", "rel", "--quiet"]) == 0
    run = shell / "rel" / "annual_review-2026-10-31"
    import json

    results = json.loads((run / "results.json").read_text())
    assert "data_check" in results and set(results) != {"run"}
    assert sorted(p.name for p in (ROOT / "notebooks").iterdir()) == before


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120]
    except OSError:
        return "?"


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux")
def test_sigkill_of_the_runner_takes_its_kernels_and_data_with_it(tmp_path, tiny_params):
    marker = tmp_path / "cell-started"
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    nb = nbformat.read(str(ROOT / "notebooks" / "00_data_check.ipynb"), as_version=4)
    nb.cells.insert(
        4,
        nbformat.v4.new_code_cell(
            f"import pathlib, time\npathlib.Path({str(marker)!r}).touch()\ntime.sleep(300)"
        ),
    )
    nbformat.write(nb, str(nb_dir / "00_data_check.ipynb"))
    reports = tmp_path / "reports"
    script = (
        "import sys, pathlib\nfrom fupan.run import cli, runner\n"
        f"runner.NOTEBOOK_DIR = pathlib.Path({str(nb_dir)!r})\n"
        f"sys.exit(cli.main(['review', '--params', {str(tiny_params)!r}, '--out', {str(reports)!r}, '-q']))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 180
    while time.time() < deadline and not marker.exists():
        time.sleep(0.5)
    assert marker.exists(), "the run never reached the sleeping cell"
    family = _descendants(proc.pid)
    assert len(family) >= 2, "a notebook process and its kernel"
    assert list(reports.glob(".*.tmp-*/work/staged.duckdb"))
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = time.time()
    while time.time() - killed < 5 and any(_alive(p) for p in family):
        time.sleep(0.2)
    survivors = {p: _cmdline(p) for p in family if _alive(p)}
    assert not survivors, f"outlived the runner by 5 s: {survivors}"
    # the next run removes the killed run's folder (and its staged customer data)
    from fupan.core import params as fparams

    nxt = runner.run(fparams.load(tiny_params), tiny_params, reports_dir=reports, log=print)
    assert nxt.deck.exists()
    assert not list(reports.glob(".*.tmp-*")) and not list(reports.rglob("staged.duckdb"))
