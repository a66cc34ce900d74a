"""`fupan review` end to end: deck, results.json, manifest, atomic failure handling, CLI exits."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import tiny
from conftest import ROOT
from fupan.core import params as fparams
from fupan.io.validation import DataValidationError
from fupan.report import deck
from fupan.run import execute, memory, runner

pytestmark = pytest.mark.slow
FUPAN = (
    str(Path(ROOT / ".venv" / "bin" / "fupan"))
    if (ROOT / ".venv" / "bin" / "fupan").exists()
    else "fupan"
)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_run(tmp_path, tiny_params):
    params = fparams.load(tiny_params)
    res = runner.run(params, tiny_params, reports_dir=tmp_path / "reports", log=lambda m: None)
    return params, res


def test_tiny_review_writes_deck_results_manifest(tiny_run, tiny_data):
    params, res = tiny_run
    assert res.deck.exists() and res.run_dir.name == "annual_review-2026-10-31"
    assert res.results["data_check"]["customers"] == 5
    assert res.results["data_check"]["orders"] == 10
    manifest = json.loads((res.run_dir / "manifest.json").read_text())
    assert manifest["inputs"]["orders.csv"] == _sha(tiny_data / "orders.csv")
    assert set(manifest["inputs"]) == {f"{t}.csv" for t in tiny.frames()}
    assert manifest["params"]["as_of"] == "2026-10-31"
    assert {"pandas", "ibis-framework", "duckdb", "papermill"} <= set(manifest["packages"])
    assert "00_data_check" in manifest["timings_seconds"]
    assert manifest["seeds"]["seed"] == params.seed
    assert (res.run_dir / "notebooks" / "00_data_check.ipynb").exists()
    assert not (res.run_dir / "work").exists(), "the staging database must not stay in the report"


def test_deck_is_self_contained_and_holds_no_code(tiny_run):
    _, res = tiny_run
    page = res.deck.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["'](https?:)?//""", page)
    assert "<script src" not in page and "<link" not in page
    for code_marker in (
        "params_file",
        "from fupan",
        "nb.record(",
        "injected-parameters",
        "Traceback",
    ):
        assert code_marker not in page, code_marker
    assert "数据检查" in page and "tiny review" in page
    assert deck.count_slides(page) >= 2 + 1 + 5  # title, agenda, chapter divider, data-check slides
    assert page.count("data:image/png;base64,") >= 2


def test_english_deck(tmp_path, tiny_params):
    params = fparams.load(tiny_params, lang="en")
    res = runner.run(params, tiny_params, reports_dir=tmp_path / "r", log=lambda m: None)
    page = res.deck.read_text(encoding="utf-8")
    assert "Data check" in page and "数据检查" not in page


def test_failed_notebook_keeps_previous_report(tmp_path, tiny_run, tiny_params):
    params, res = tiny_run
    before = _sha(res.deck)
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    nb = nbformat.read(str(ROOT / "notebooks" / "00_data_check.ipynb"), as_version=4)
    nb.cells.insert(3, nbformat.v4.new_code_cell("raise RuntimeError('planted failure')"))
    nbformat.write(nb, str(nb_dir / "00_data_check.ipynb"))
    with pytest.raises(execute.RunError) as exc:
        runner.run(
            params,
            tiny_params,
            reports_dir=res.run_dir.parent,
            notebook_dir=nb_dir,
            log=lambda m: None,
        )
    msg = str(exc.value)
    assert "00_data_check" in msg and "planted failure" in msg and "cell" in msg
    assert _sha(res.deck) == before, "the previous good deck must stay untouched"
    failed = res.run_dir.parent / "annual_review-2026-10-31.failed"
    assert (failed / "notebooks" / "00_data_check.ipynb").exists()
    assert "planted failure" in (failed / "ERROR.txt").read_text()
    assert not list(res.run_dir.parent.glob(".*tmp-*")), "temporary folders must be cleaned up"


def test_bad_input_writes_nothing_new(tmp_path, tiny_run):
    params, res = tiny_run
    before = _sha(res.deck)
    # orders without amounts (a tier column is optional since orders alone are enough)
    bad = tiny.write(tmp_path / "bad", orders=tiny.frames()["orders"].drop(columns=["amount"]))
    p2 = fparams.load(tiny.params_file(tmp_path / "bad", bad))
    with pytest.raises(DataValidationError, match="amount"):
        runner.run(
            p2, tmp_path / "bad" / "params.yaml", reports_dir=res.run_dir.parent, log=lambda m: None
        )
    assert _sha(res.deck) == before


def test_cli_validate_exit_codes(tmp_path, tiny_params):
    ok = subprocess.run(
        [FUPAN, "validate", "--params", str(tiny_params)], capture_output=True, text=True
    )
    assert ok.returncode == 0, ok.stderr
    # acquired_at is derived from the first order when absent; order_date is not optional
    bad = tiny.write(tmp_path / "bad", orders=tiny.frames()["orders"].drop(columns=["order_date"]))
    p = tiny.params_file(tmp_path / "bad", bad)
    out = subprocess.run([FUPAN, "validate", "--params", str(p)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "orders.order_date" in out.stdout and "missing" in out.stdout


def test_cli_data_path_is_relative_to_the_shell_folder(tmp_path, tiny_params, tiny_data):
    # `--data exports/` typed in a shell means that shell's folder, not the params file's
    out = subprocess.run(
        [FUPAN, "validate", "--params", str(tiny_params), "--data", "."],
        capture_output=True,
        text=True,
        cwd=tiny_data,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_cli_bad_params_exit_1_with_message(tmp_path):
    p = tmp_path / "p.yaml"
    p.write_text("as_of: 2026-10-31\nbenchmarks_file: null\ndata: {source: x}\nlangauge: en\n")
    out = subprocess.run([FUPAN, "review", "--params", str(p)], capture_output=True, text=True)
    assert out.returncode == 1
    assert "did you mean 'lang'" in out.stderr


def test_rerun_reproduces_and_flags_changed_inputs(tmp_path, tiny_run, tiny_data):
    _, res = tiny_run
    out = subprocess.run(
        [FUPAN, "rerun", str(res.run_dir / "manifest.json"), "--out", str(tmp_path / "rr"), "-q"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    again = json.loads(
        (tmp_path / "rr" / "annual_review-2026-10-31-rerun" / "results.json").read_text()
    )
    assert again["data_check"] == res.results["data_check"]
    shutil.copy(tiny_data / "orders.csv", tmp_path / "orders.bak")
    with open(tiny_data / "orders.csv", "a") as fh:
        fh.write("O99,C1,2026-10-02,100.0,hardware\n")
    out = subprocess.run(
        [
            FUPAN,
            "rerun",
            str(res.run_dir / "manifest.json"),
            "--out",
            str(tmp_path / "rr2"),
            "--strict",
            "-q",
        ],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1 and "orders.csv" in out.stderr


def _recording_notebook(path: Path, code: str) -> None:
    src = nbformat.read(str(ROOT / "notebooks" / "00_data_check.ipynb"), as_version=4)
    body = nbformat.v4.new_code_cell(
        "import time\nfrom fupan.report.results import Recorder\nrec = Recorder(run_dir)\n" + code
    )
    params_cell = [c for c in src.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    nb = nbformat.v4.new_notebook(cells=[*params_cell, body], metadata=src.metadata)
    nbformat.write(nb, str(path))


def test_parallel_notebooks_record_every_figure_and_wait_for_their_inputs(tmp_path, tiny_params):
    # Two notebooks run at once and record 150 figures each into one results.json; chapter 3
    # quotes chapter 2's export and chapter 5 reads chapter 2's and 3's models from the run
    # cache, so they wait; chapter 2, waited for, starts before chapter 0.
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    names = ["00_data_check", "02_churn_root_cause", "03_ltv_loss", "05_kpi_tracking"]
    for nb in names:
        key = nb[:2]
        _recording_notebook(
            nb_dir / f"{nb}.ipynb",
            f"rec.record('t.{key}_start', time.time())\n"
            f"for i in range(150):\n    rec.record(f'fig.{key}.k{{i}}', i)\n"
            f"time.sleep(4)\nrec.record('t.{key}_end', time.time())\n",
        )
    params = fparams.load(tiny_params, notebooks=names, parallel_notebooks=2)
    logged: list[str] = []
    res = runner.run(
        params, tiny_params, reports_dir=tmp_path / "r", notebook_dir=nb_dir, log=logged.append
    )
    started = [m.split()[1] for m in logged if " started (" in m]
    assert started == ["02_churn_root_cause", "00_data_check", "03_ltv_loss", "05_kpi_tracking"]
    fig, t = res.results["fig"], res.results["t"]
    assert all(len(fig[nb[:2]]) == 150 for nb in names)
    # 00 and 02 overlapped; 03 after 02; 05 after 02 and 03
    assert t["00_start"] < t["02_end"] and t["02_start"] < t["00_end"]
    assert t["03_start"] >= t["02_end"]
    assert t["05_start"] >= max(t["02_end"], t["03_end"])
    assert not list((tmp_path / "r").rglob(".results.json.lock"))
    assert set(res.timings) >= set(names)


def test_parallel_kernels_get_one_blas_thread_unless_the_user_chose(monkeypatch):
    for var in execute.THREAD_VARS:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    env = execute._env(2)
    assert env["OPENBLAS_NUM_THREADS"] == "1" and env["MKL_NUM_THREADS"] == "1"
    assert env["OMP_NUM_THREADS"] == "3"
    assert "OPENBLAS_NUM_THREADS" not in execute._env(1)


def test_kernels_return_freed_arrays_to_the_system_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    assert execute._env(1)["MALLOC_MMAP_THRESHOLD_"] == "131072"
    assert execute._env(2)["MALLOC_MMAP_THRESHOLD_"] == "131072"
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "4096")
    assert execute._env(2)["MALLOC_MMAP_THRESHOLD_"] == "4096"


@pytest.mark.skipif(runner.os.name != "posix", reason="Unix sockets: TCP stays on Windows")
def test_kernels_talk_over_private_unix_sockets_that_are_removed(tmp_path):
    # Over TCP a port chosen free could be taken before the kernel bound it (seen on CI
    # with two notebooks starting together); a socket in the kernel's own folder cannot be.
    seen = tmp_path / "seen.json"
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_code_cell("seen = ''", metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import json\n"
            "from ipykernel.kernelapp import IPKernelApp\n"
            "app = IPKernelApp.instance()\n"
            "open(seen, 'w').write(json.dumps({'transport': app.transport, 'ip': app.ip}))"
        ),
    ]
    src = tmp_path / "probe.ipynb"
    nbformat.write(nb, str(src))
    execute.execute_notebook(
        "probe", src, tmp_path / "out.ipynb", {"seen": str(seen)}, timeout=120, cwd=tmp_path
    )
    info = json.loads(seen.read_text())
    assert info["transport"] == "ipc"
    folder = Path(info["ip"]).parent
    assert folder.is_absolute() and folder.name.startswith("fupan-kernel-")
    assert not folder.exists()


def _chapter_notebooks(nb_dir: Path, fail: str | None) -> list[str]:
    """Four small chapters that show a slide each; ``fail`` raises in its second cell."""
    nb_dir.mkdir(exist_ok=True)
    names = ["00_data_check", "02_churn_root_cause", "03_ltv_loss", "04_strategy_simulation"]
    for nb in names:
        code = f"from fupan.report import show\nshow.slide('slide of {nb}')\nshow.note('shown by {nb}')\n"
        _recording_notebook(nb_dir / f"{nb}.ipynb", code)
        if nb == fail:
            book = nbformat.read(str(nb_dir / f"{nb}.ipynb"), as_version=4)
            book.cells.append(
                nbformat.v4.new_code_cell(
                    "show.slide('half a slide')\nraise ValueError('planted chapter failure')"
                )
            )
            nbformat.write(book, str(nb_dir / f"{nb}.ipynb"))
    return names


def test_failed_chapter_does_not_stop_chapters_that_do_not_need_it(tmp_path, tiny_params):
    good_dir, bad_dir = tmp_path / "good", tmp_path / "bad"
    names = _chapter_notebooks(good_dir, None)
    _chapter_notebooks(bad_dir, "02_churn_root_cause")
    params = fparams.load(tiny_params, notebooks=names, parallel_notebooks=2)
    reports = tmp_path / "r"
    good = runner.run(params, tiny_params, reports_dir=reports, notebook_dir=good_dir, log=print)
    before = _sha(good.deck)
    with pytest.raises(execute.RunError) as exc:
        runner.run(params, tiny_params, reports_dir=reports, notebook_dir=bad_dir, log=print)
    err = exc.value
    by_nb = {f.nb: f for f in err.failures}
    assert set(by_nb) == {"02_churn_root_cause", "04_strategy_simulation"}
    assert "planted chapter failure" in by_nb["02_churn_root_cause"].error
    assert "code cell 4" in by_nb["02_churn_root_cause"].cell
    assert by_nb["04_strategy_simulation"].needs == ("02_churn_root_cause",)
    assert _sha(good.deck) == before, "the previous good report stays in place"
    failed = err.failed_dir
    assert failed == reports / f"{good.run_dir.name}.failed"
    page = (failed / "deck.html").read_text(encoding="utf-8")
    # chapters that do not need chapter 2 ran and are in the partial deck
    assert "slide of 00_data_check" in page and "slide of 03_ltv_loss" in page
    assert "slide of 02_churn_root_cause" in page, "slides made before the failure are kept"
    assert "<h2>half a slide" not in page, "the failing cell's unfinished slide is dropped"
    assert "slide of 04_strategy_simulation" not in page
    assert "planted chapter failure" in page and "代码单元" in page  # chapter, cell, error
    assert "Traceback" not in page and "\x1b" not in page
    assert "raise ValueError('planted" in (failed / "errors.log").read_text()
    assert "planted chapter failure" in (failed / "ERROR.txt").read_text()
    assert not (failed / "work").exists() and not list(reports.glob(".*tmp-*"))
    manifest = json.loads((failed / "manifest.json").read_text())
    assert [f["notebook"] for f in manifest["failed"]] == [
        "02_churn_root_cause",
        "04_strategy_simulation",
    ]


def _started_processes(monkeypatch) -> list[str]:
    """The notebooks whose process the runner starts, in order (warm or not)."""
    seen: list[str] = []
    real = execute._start

    def spy(nb, *args, **kwargs):
        seen.append(nb)
        return real(nb, *args, **kwargs)

    monkeypatch.setattr(execute, "_start", spy)
    return seen


def test_idle_slot_warms_the_next_notebook_which_runs_unchanged_on_its_go(
    tmp_path, tiny_params, monkeypatch
):
    # 03 waits for 02; once 00 is done a slot is idle, so 03's kernel starts and imports
    # while 02 runs, and 03's cells run only after 02 ended (its go)
    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    names = ["00_data_check", "02_churn_root_cause", "03_ltv_loss"]
    kernel_born = (
        "import os, psutil\nrec.record('t.{k}_kernel', psutil.Process(os.getpid()).create_time())\n"
    )
    for nb, pause in zip(names, (0, 12, 0), strict=True):
        k = nb[:2]
        _recording_notebook(
            nb_dir / f"{nb}.ipynb",
            f"rec.record('t.{k}_start', time.time())\ntime.sleep({pause})\n"
            + kernel_born.format(k=k)
            + f"rec.record('t.{k}_end', time.time())\n",
        )
    monkeypatch.setattr(execute, "WARM_MIN_AVAILABLE", 0.0)
    started = _started_processes(monkeypatch)
    params = fparams.load(tiny_params, notebooks=names, parallel_notebooks=2)
    res = runner.run(
        params, tiny_params, reports_dir=tmp_path / "r", notebook_dir=nb_dir, log=print
    )
    t = res.results["t"]
    assert t["03_kernel"] < t["02_end"] - 2, "chapter 3's kernel was not started ahead"
    assert t["03_start"] >= t["02_end"], "chapter 3 ran before its input was done"
    assert started == ["02_churn_root_cause", "00_data_check", "03_ltv_loss"]
    # the executed notebook is what a cold start writes: no extra cell, counts from 1
    out = nbformat.read(str(res.run_dir / "notebooks" / "03_ltv_loss.ipynb"), as_version=4)
    code = [c for c in out.cells if c.cell_type == "code"]
    assert [c.execution_count for c in code] == [1, 2, 3]
    assert not any(o.get("name") == "stderr" for c in code for o in c.outputs)
    assert not list(res.run_dir.rglob(".*.warm")) and not list(res.run_dir.rglob(".*.job.json"))


def test_warm_notebook_whose_input_failed_is_stopped_unrun(tmp_path, tiny_params, monkeypatch):
    import psutil

    nb_dir = tmp_path / "nbs"
    names = _chapter_notebooks(nb_dir, "02_churn_root_cause")
    book = nbformat.read(str(nb_dir / "02_churn_root_cause.ipynb"), as_version=4)
    book.cells.insert(-1, nbformat.v4.new_code_cell("time.sleep(15)"))
    nbformat.write(book, str(nb_dir / "02_churn_root_cause.ipynb"))
    monkeypatch.setattr(execute, "WARM_MIN_AVAILABLE", 0.0)
    started = _started_processes(monkeypatch)
    # what this worker already runs (a session's Chromium for the browser tests) stays
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    params = fparams.load(tiny_params, notebooks=names, parallel_notebooks=2)
    with pytest.raises(execute.RunError) as exc:
        runner.run(params, tiny_params, reports_dir=tmp_path / "r", notebook_dir=nb_dir, log=print)
    by_nb = {f.nb: f for f in exc.value.failures}
    assert by_nb["04_strategy_simulation"].needs == ("02_churn_root_cause",)
    # 04 was warmed while 02 ran, then stopped: its process and kernel are gone
    assert "04_strategy_simulation" in started
    assert [p for p in psutil.Process().children(recursive=True) if p.pid not in before] == []
    page = (exc.value.failed_dir / "deck.html").read_text(encoding="utf-8")
    assert "slide of 03_ltv_loss" in page and "slide of 04_strategy_simulation" not in page


def test_warm_processes_die_with_the_runner(tmp_path, tiny_data):
    import psutil

    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    names = ["00_data_check", "02_churn_root_cause", "03_ltv_loss"]
    for nb in names:
        pause = 120 if nb.startswith("02") else 0
        _recording_notebook(nb_dir / f"{nb}.ipynb", f"time.sleep({pause})\n")
    (tmp_path / "p").mkdir()
    params_file = tiny.params_file(
        tmp_path / "p", tiny_data, "parallel_notebooks: 2", notebooks=tuple(names)
    )
    reports = tmp_path / "r"
    script = (
        "import sys\nfrom fupan.run import cli, execute, runner\n"
        "execute.WARM_MIN_AVAILABLE = 0.0\n"
        f"runner.NOTEBOOK_DIR = __import__('pathlib').Path({str(nb_dir)!r})\n"
        f"sys.exit(cli.main(['review', '--params', {str(params_file)!r}, '--out', {str(reports)!r}]))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.time() + 180
    while time.time() < deadline and not list(reports.rglob(".03_ltv_loss.warm")):
        time.sleep(0.5)
    assert list(reports.rglob(".03_ltv_loss.warm")), "chapter 3 was never warmed"
    tree = psutil.Process(proc.pid).children(recursive=True)
    assert len(tree) >= 4  # two notebook processes, each with its kernel
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(tree, timeout=20)
    assert not alive, f"left running after the runner died: {alive}"


def test_memory_bound_run_names_notebooks_and_the_cost_of_one_at_a_time():
    gb = 10**9
    peak = {"04_strategy_simulation": 3 * gb, "05_kpi_tracking": 4 * gb}
    secs = {"04_strategy_simulation": 300.0, "05_kpi_tracking": 320.0}
    # 7 GB held, 1 GB left: 87.5% of the 8 GB the notebooks could have had
    line = memory.memory_note(peak, 1 * gb, secs, wall=330.0, slots=2)
    assert line is not None and "memory-bound" in line
    assert "05_kpi_tracking 4.0 GB, 04_strategy_simulation 3.0 GB" in line
    assert "88% of 8.0 GB" in line and "parallel_notebooks: 1" in line
    assert "10m20s in a row instead of 5m30s side by side (+4m50s)" in line
    # 7 GB held with 3 GB left (70%) is not memory-bound; nothing sampled says nothing
    assert memory.memory_note(peak, 3 * gb, secs, wall=330.0, slots=2) is None
    assert memory.memory_note({}, 0, secs, wall=330.0, slots=2) is None
    # one notebook at the peak: running one at a time would not help
    one = memory.memory_note({"05_kpi_tracking": 9 * gb}, gb // 2, secs, 330.0, 2)
    assert one is not None and "would not lower this peak" in one


def test_memory_watch_keeps_the_notebooks_sizes_at_the_runs_peak(monkeypatch):
    sizes = iter([{"a": 100, "b": 50}, {"a": 300, "b": 400}, {"a": 10, "b": 20}])
    now = iter([0.0, 5.0, 10.0, 15.0])
    watch = memory.MemoryWatch(every=1.0)
    monkeypatch.setattr(memory.time, "monotonic", lambda: next(now))
    for _ in range(3):
        current = next(sizes)
        monkeypatch.setattr(memory, "_tree_rss", lambda pid, s=current: s[pid])
        jobs = {nb: type("J", (), {"proc": type("P", (), {"pid": nb})()})() for nb in current}
        watch.sample(jobs)
    assert watch.peak == {"a": 300, "b": 400} and watch.available > 0
