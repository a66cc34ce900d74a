"""Executing a run's notebooks: each in its own process and kernel, side by side where
:data:`WAITS_FOR` and :data:`NEEDS` allow, with a progress line, a clean stop on a signal,
and a :class:`ChapterFailure` (notebook, cell, error) for each that failed or was skipped.
:class:`RunError` is what a run that did not produce a deck raises.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fupan.core import paths
from fupan.core.params import Params
from fupan.report.results import results_lock_available, write_json_atomic
from fupan.run import skip_slow_imports
from fupan.run.memory import MemoryWatch, clock, memory_available_share


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


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text)


#: Notebooks that use what an earlier notebook of the run leaves: chapter 3 quotes the
#: at-risk list chapter 2 exports (otherwise it would score the customers again, and say
#: so); chapters 4 and 5 read chapter 2's health model and chapter 3's valuations from the
#: run cache (:mod:`fupan.io.cache`; started earlier they would compute them again).
WAITS_FOR: dict[str, tuple[str, ...]] = {
    "03_ltv_loss": ("02_churn_root_cause",),
    "04_strategy_simulation": ("02_churn_root_cause", "03_ltv_loss"),
    "05_kpi_tracking": ("02_churn_root_cause", "03_ltv_loss"),
    # the follow-up reads 01's findings (grading a previous run), 04's scenario predictions
    # and 05's health scoring of the report date (run cache)
    "06_followup": ("01_diagnosis", "04_strategy_simulation", "05_kpi_tracking"),
}


#: What a notebook cannot do without: when one of these fails (or is skipped) in a run,
#: the notebook is skipped and the partial deck says so; every other notebook still runs.
#: Chapter 3 is not here: it quotes chapter 2's at-risk export when there is one and
#: scores the customers itself otherwise (and says so). Chapters 4 and 5 price and track
#: with chapter 2's health model and chapter 3's valuations (:mod:`fupan.io.cache`): a model
#: whose own chapter failed is not one to build a recommendation or an alert on.
NEEDS: dict[str, tuple[str, ...]] = {
    "04_strategy_simulation": ("02_churn_root_cause", "03_ltv_loss"),
    "05_kpi_tracking": ("02_churn_root_cause", "03_ltv_loss"),
}


#: How long a notebook process gets to shut its kernel down after SIGTERM.
STOP_GRACE_SECONDS = 20

#: What the runner writes to a notebook process started with :data:`WAIT_FLAG`, once it
#: may run (GO) or will not (STOP; so does the end of its stdin, e.g. when the runner died).
GO, STOP = "go", "stop"
WAIT_FLAG = "--wait-for-go"


@dataclass
class _Job:
    """A notebook process: warming (starting its kernel, importing), parked (warm, waiting
    for its go), or running its notebook (``started`` set when it was released)."""

    nb: str
    out: Path
    result: Path
    proc: subprocess.Popen[bytes]
    started: float = 0.0
    ready: Path | None = None

    @property
    def parked(self) -> bool:
        """Warm and waiting: no CPU used until its go (or it has ended)."""
        return self.proc.poll() is not None or bool(self.ready and self.ready.exists())

    def _say(self, word: str) -> None:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write(f"{word}\n".encode())
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass  # the process has ended: its outcome says how

    def release(self) -> None:
        """Go: execute the notebook now (on the kernel it warmed)."""
        self.started = time.perf_counter()
        self._say(GO)

    def retire(self) -> None:
        """Stop a process whose notebook will not run: it shuts its kernel down and exits."""
        self._say(STOP)

    def remove_files(self) -> None:
        """Remove the files the runner and the process exchanged (spec, result, ready)."""
        for f in (self.result, self.result.with_name(f".{self.nb}.job.json"), self.ready):
            if f is not None:
                f.unlink(missing_ok=True)


def _execute_all(
    params: Params,
    nb_dir: Path,
    tmp: Path,
    passed: dict[str, Any],
    timings: dict[str, float],
    log: Callable[[str], None],
    windows: dict[str, tuple[float, float]] | None = None,
    expected: dict[str, float] | None = None,
) -> list[ChapterFailure]:
    """Execute the run's notebooks, up to ``params.parallel_notebooks`` at once.

    Each notebook runs in its own process (which starts its own kernel), so an interrupt
    stops every running notebook and its kernel, and each process's memory is its own. A
    notebook starts once what it waits for (:data:`WAITS_FOR`) is done; of those ready,
    the ones others wait for first, then the params' order (one at a time: the params'
    order). A failed notebook does not stop the others: those that need it
    (:data:`NEEDS`) are skipped, the rest run. Returns the failed and skipped notebooks.

    While a slot is idle, the next notebook still waiting for its inputs is warmed
    (:class:`_Warming`): its process starts its kernel and imports its first cell's modules,
    then waits, using no CPU, until its inputs are done (go) or have failed (stop).

    Progress lines count up as notebooks start and finish (``[2/6]`` after ``[1/6]``,
    whichever notebook that is), with the elapsed time and an estimate of what is left
    (:class:`Progress`); a notebook still running says so every
    :data:`HEARTBEAT_SECONDS`, with the cell it is in. ``windows`` receives each
    notebook's (start, end) wall-clock times, from its go.
    """
    order = list(params.notebooks)
    waits = {
        nb: {d for d in WAITS_FOR.get(nb, ()) if d in order[: order.index(nb)]} for nb in order
    }
    needs = {nb: {d for d in NEEDS.get(nb, ()) if d in order} for nb in order}
    windows = windows if windows is not None else {}
    # without fcntl (Windows) results.json has no lock: one notebook at a time
    slots = max(1, params.parallel_notebooks) if results_lock_available() else 1
    progress = Progress(order, slots, expected or {})
    pending, running, done = list(order), {}, set()
    warm = _Warming(slots, lambda nb: _start(nb, nb_dir, tmp, passed, params, slots))
    memory = MemoryWatch()
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
                warm.drop(nb)
                failures.append(ChapterFailure(nb, "", needs=tuple(sorted(needs[nb] & lost))))
                log(progress.finished(nb, failures[-1].line()))
            while len(running) < slots:
                settled = done | lost
                nxt = next((nb for nb in pending if waits[nb] <= settled), None)
                job = warm.take(nxt, len(running)) if nxt else None
                if job is None:
                    break
                pending.remove(nxt)
                log(progress.started(nxt))
                job.release()
                running[nxt] = job
                windows[nxt] = (time.time(), time.time())
            warm.ahead(pending, len(running))
            memory.sample(running)
            finished = [job for job in running.values() if job.proc.poll() is not None]
            for job in finished:
                del running[job.nb]
                timings[job.nb] = round(time.perf_counter() - job.started, 3)
                windows[job.nb] = (windows[job.nb][0], time.time())
                failure = _outcome(job)
                if failure:
                    failures.append(failure)
                    log(progress.finished(job.nb, failure.error))
                    continue
                done.add(job.nb)
                log(progress.finished(job.nb, f"done in {timings[job.nb]:.1f}s"))
            if not finished:
                for line in progress.heartbeat(running):
                    log(line)
                time.sleep(0.1)
    except (_Terminated, KeyboardInterrupt) as exc:
        where = "; ".join(f"notebook {j.nb}, {_running_cell(j.out)}" for j in running.values())
        _stop({**running, **warm.jobs})
        raise RunError(f"run interrupted ({exc or 'SIGINT'}) in {where or 'a notebook'}") from None
    finally:
        _stop({**running, **warm.jobs})
        warm.reap()
    note = memory.note(timings, windows, slots)
    if note:
        log(note)
    return failures


#: A warm process is started only while the machine has at least this share of its
#: memory available: an idle warm kernel holds ~300 MB of imported modules.
WARM_MIN_AVAILABLE = 0.25


class _Warming:
    """The notebook processes started ahead of their go (see :func:`_execute_all`).

    A process that is warming (starting its kernel, importing) uses a CPU: it takes a slot,
    so the running notebooks and the warming ones together are never more than the slots,
    and a warm process starts only while a slot is idle. A parked one (warm, waiting for
    its go) uses no CPU but holds memory: at most ``slots`` warm processes wait at once,
    and none is started while less than :data:`WARM_MIN_AVAILABLE` of the machine's memory
    is available.
    """

    def __init__(self, slots: int, start: Callable[[str], _Job]):
        self.slots, self.start = slots, start
        self.jobs: dict[str, _Job] = {}
        self.retired: list[_Job] = []

    def warming(self) -> int:
        return sum(not job.parked for job in self.jobs.values())

    def take(self, nb: str, running: int) -> _Job | None:
        """The process to release for ``nb``: its warm one, else a new one if a slot is free
        (a warming process holds its slot until it is parked)."""
        job = self.jobs.pop(nb, None)
        if job is not None and job.proc.poll() is None:
            return job
        if job is not None:  # it died while parked: start it again, its outcome unread
            job.remove_files()
        if running + self.warming() >= self.slots:
            return None
        return self.start(nb)

    def ahead(self, pending: list[str], running: int) -> None:
        """Warm the next notebook still waiting for its inputs, when a slot is idle."""
        if running + self.warming() >= self.slots or len(self.jobs) >= self.slots:
            return
        nxt = next((nb for nb in pending if nb not in self.jobs), None)
        if nxt is not None and memory_available_share() >= WARM_MIN_AVAILABLE:
            self.jobs[nxt] = self.start(nxt)

    def drop(self, nb: str) -> None:
        """``nb`` will not run (its input failed): stop its warm process."""
        job = self.jobs.pop(nb, None)
        if job is not None:
            job.retire()
            self.retired.append(job)

    def reap(self) -> None:
        """Wait for the stopped processes to shut their kernels down (kill them after the
        grace time), and remove their files."""
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for job in self.retired:
            try:
                job.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                job.proc.kill()
                job.proc.wait()
            job.remove_files()
        self.retired.clear()


#: A notebook still running after this long says so (and every this often again).
HEARTBEAT_SECONDS = 30.0


class Progress:
    """The review's progress lines: numbered as notebooks finish, with elapsed time and
    an estimate of the time left.

    The estimate uses each notebook's time in the last run (``expected``) when there is
    one, else the mean time of the notebooks finished so far, and divides the work left
    by the notebooks running at once.
    """

    def __init__(self, order: list[str], slots: int, expected: dict[str, float]):
        self.order, self.slots, self.expected = list(order), max(1, slots), dict(expected)
        self.total = len(order)
        self.t0 = time.monotonic()
        self.begun: dict[str, float] = {}
        self.took: dict[str, float] = {}
        self.beat: dict[str, float] = {}

    def _head(self) -> str:
        return f"[fupan] [{len(self.took)}/{self.total}]"

    def started(self, nb: str) -> str:
        self.begun[nb] = self.beat[nb] = time.monotonic()
        return f"[fupan] {nb} started ({len(self.begun)} of {self.total} begun, {clock(self.elapsed())} elapsed)"

    def finished(self, nb: str, what: str) -> str:
        now = time.monotonic()
        self.took[nb] = now - self.begun.get(nb, now)
        self.beat.pop(nb, None)
        left = self.remaining()
        tail = (
            f"; about {clock(left)} left"
            if left is not None and len(self.took) < self.total
            else ""
        )
        text = what if what.startswith(("notebook ", "run ")) else f"{nb} {what}"
        return f"{self._head()} {text} ({clock(self.elapsed())} elapsed{tail})"

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def remaining(self) -> float | None:
        """Seconds of work left over the slots, or None before anything can be said."""
        now = time.monotonic()
        ran = [t for nb, t in self.took.items() if t > 0]
        typical = sum(ran) / len(ran) if ran else None
        work = 0.0
        for nb in self.order:
            if nb in self.took:
                continue
            guess = self.expected.get(nb, typical)
            if guess is None:
                return None
            work += max(0.0, guess - (now - self.begun[nb])) if nb in self.begun else guess
        return work / self.slots

    def heartbeat(self, running: dict[str, _Job]) -> list[str]:
        now = time.monotonic()
        lines = []
        for nb, job in running.items():
            if now - self.beat.get(nb, now) >= HEARTBEAT_SECONDS:
                self.beat[nb] = now
                lines.append(
                    f"[fupan] {nb} running for {clock(now - self.begun[nb])}, in "
                    f"{_running_cell(job.out)}"
                )
        return lines


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
    nb: str, nb_dir: Path, tmp: Path, passed: dict[str, Any], params: Params, slots: int
) -> _Job:
    """Start ``nb``'s process: it starts its kernel, imports, and waits for its go."""
    out = tmp / "notebooks" / f"{nb}.ipynb"
    spec = tmp / "notebooks" / f".{nb}.job.json"
    result = tmp / "notebooks" / f".{nb}.result.json"
    ready = tmp / "notebooks" / f".{nb}.warm"
    spec_data = {
        "nb": nb,
        "src": str(nb_dir / f"{nb}.ipynb"),
        "out": str(out),
        # the kernel works in the run's scratch folder (removed before the run is swapped
        # in): never in the notebooks' (the installed package may be read-only) nor
        # wherever fupan was started, and a stray file (derby.log, …) does not reach the report
        "cwd": str(paths.work_dir(tmp)),
        "parameters": passed,
        "timeout": params.cell_timeout_seconds,
        "result": str(result),
        "ready": str(ready),
    }
    paths.work_dir(tmp).mkdir(exist_ok=True)
    write_json_atomic(spec, spec_data)
    proc = subprocess.Popen(
        [sys.executable, "-m", "fupan.run.execute", str(spec), WAIT_FLAG],
        env=_env(slots),
        stdin=subprocess.PIPE,
        preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
    )
    return _Job(nb, out, result, proc, ready=ready)


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
        job.remove_files()
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


#: The kernel's command-line options: its own start-up chatter (transport warnings) is not
#: a user's concern; jupyter_client interrupts a kernel before shutting it down, and a kernel
#: inside a handler then logs "KeyboardInterrupt caught" at ERROR to our terminal (cell errors
#: still reach the notebook and the RunError). nbclient adds the in-memory history to a
#: kernel it starts itself; a warm kernel gets it here.
KERNEL_ARGS = ("--IPKernelApp.log_level=CRITICAL",)
WARM_KERNEL_ARGS = (*KERNEL_ARGS, "--HistoryManager.hist_file=:memory:")

#: Modules every notebook's first cell leads to beyond its own imports (``start`` opens the
#: run's data with DuckDB): a warm kernel imports them too.
WARM_IMPORTS = ("duckdb",)


def warm_code(src: Path) -> str:
    """What a warm kernel runs before its go: the imports of the notebook's first code cell
    (after its parameters) and :data:`WARM_IMPORTS`, nothing else (a statement with an
    effect beyond importing stays for the notebook to run)."""
    import ast

    try:
        cells = json.loads(Path(src).read_text(encoding="utf-8"))["cells"]
    except (OSError, ValueError, KeyError):
        return ""
    code = [
        c
        for c in cells
        if c.get("cell_type") == "code"
        and "parameters" not in c.get("metadata", {}).get("tags", [])
    ]
    lines = [f"import {m}" for m in WARM_IMPORTS]
    if code:
        source = "".join(code[0].get("source", ""))
        try:
            tree = ast.parse(source)
        except SyntaxError:
            tree = ast.Module(body=[], type_ignores=[])
        lines += [ast.unparse(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines)


async def _warm_up(km: Any, code: str, timeout: int) -> None:
    kc = km.client()
    kc.start_channels()
    try:
        await kc.wait_for_ready(timeout=60)
        if code:
            # silent: no output, no history, the execution count stays at 0
            await kc.execute_interactive(
                code, silent=True, store_history=False, timeout=timeout, output_hook=lambda m: None
            )
    finally:
        kc.stop_channels()


def _shutdown(km: Any) -> None:
    """Shut a kernel down as nbclient does its own (politely, then killed)."""
    from jupyter_core.utils import run_sync

    try:
        if run_sync(km.is_alive)():
            run_sync(km.shutdown_kernel)(now=False)
    except Exception:  # noqa: BLE001 - a kernel that will not stop politely is killed
        try:
            run_sync(km.shutdown_kernel)(now=True)
        except Exception:  # noqa: BLE001
            pass
    finally:
        try:
            run_sync(km.cleanup_resources)()
        except Exception:  # noqa: BLE001
            pass


@contextmanager
def warm_kernel(src: Path, cwd: Path, sockets: dict[str, Any], timeout: int) -> Iterator[Any]:
    """A kernel started and warmed for notebook ``src`` (:func:`warm_code`), shut down on exit.

    It is the kernel papermill would start: ``python3``, in ``cwd``, this process's
    environment, the sockets of :func:`kernel_sockets`. Yields None when it could not be
    started or warmed: papermill then starts one itself and reports what fails.
    """
    from jupyter_client.manager import AsyncKernelManager
    from jupyter_core.utils import run_sync

    km: Any = AsyncKernelManager(kernel_name="python3", **sockets)
    try:
        try:
            run_sync(km.start_kernel)(extra_arguments=list(WARM_KERNEL_ARGS), cwd=str(cwd))
            run_sync(_warm_up)(km, warm_code(src), timeout)
        except Exception:  # noqa: BLE001 - a cold start reports the problem in its cell
            _shutdown(km)
            km = None
        yield km
    finally:
        if km is not None:
            _shutdown(km)


def execute_notebook(
    nb: str,
    src: Path,
    out: Path,
    parameters: dict[str, Any],
    timeout: int,
    cwd: Path,
    km: Any = None,
    sockets: dict[str, Any] | None = None,
) -> None:
    """Execute one notebook with papermill; raise :class:`RunError` naming its cell.

    ``km``: a kernel manager whose kernel is started (:func:`warm_kernel`, with ``sockets``);
    the caller shuts it down. Without one papermill starts a kernel and shuts it down.
    """
    import papermill as pm

    try:
        with kernel_sockets() if km is None else nullcontext(sockets or {}) as sockets:
            pm.execute_notebook(
                str(src),
                str(out),
                parameters=parameters,
                kernel_name="python3",
                progress_bar=False,
                execution_timeout=timeout,
                cwd=str(cwd),
                log_output=False,
                extra_arguments=list(KERNEL_ARGS),
                **({"km": km} if km is not None else {}),
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


def _notebook_process(spec_file: str, wait: bool = False) -> int:
    """``python -m fupan.run.execute SPEC [--wait-for-go]``: one notebook of a run, in its
    own process.

    With ``--wait-for-go`` it starts and warms its kernel (:func:`warm_kernel`), touches the
    spec's ``ready`` file, and waits for a line on stdin: :data:`GO` executes the notebook
    on that kernel; anything else (:data:`STOP`, the end of stdin) shuts it down unrun.
    """
    spec = json.loads(Path(spec_file).read_text(encoding="utf-8"))
    signal.signal(signal.SIGTERM, _on_term)
    skip_slow_imports()
    args = (
        spec["nb"],
        Path(spec["src"]),
        Path(spec["out"]),
        spec["parameters"],
        int(spec["timeout"]),
        Path(spec["cwd"]),
    )
    try:
        if not wait:
            execute_notebook(*args)
        else:
            import papermill  # noqa: F401 - paid while parked, not after the go

            with kernel_sockets() as sockets, warm_kernel(args[1], args[5], sockets, args[4]) as km:
                if spec.get("ready"):
                    Path(spec["ready"]).touch()
                if sys.stdin.readline().strip() != GO:
                    return 0
                execute_notebook(*args, km=km, sockets=sockets)
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
    raise SystemExit(_notebook_process(sys.argv[1], wait=WAIT_FLAG in sys.argv[2:]))
