"""Time and peak memory of a whole command, children included (papermill kernels, Spark JVMs)."""

from __future__ import annotations

import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psutil


@dataclass
class Measurement:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str
    # (seconds since start, line) for every stdout line, as it was printed
    lines: list[tuple[float, str]] = field(default_factory=list)
    # CPU seconds (user + system) of the command and every descendant it waited for
    cpu_seconds: float = 0.0
    # mean 1-minute load average while it ran (the machine is shared: > cores = contention)
    load_mean: float = 0.0
    # when the peak was seen (seconds since start) and what each child held then (MB, by
    # the child's last argument: a review's notebook job files name the notebook)
    peak_at: float = 0.0
    peak_parts: dict[str, float] = field(default_factory=dict)
    # why the command was stopped before it ended ("" when it ran to its end): over the
    # time limit or the memory limit given to run()
    stopped: str = ""


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total


def _parts(proc: psutil.Process) -> dict[str, float]:
    """MB held by the command itself and by each direct child with its descendants."""
    parts = {"(command)": 0.0}
    try:
        parts["(command)"] = proc.memory_info().rss / 2**20
        children = proc.children()
    except psutil.NoSuchProcess:
        return parts
    for child in children:
        try:
            label = child.cmdline()[-1].rsplit("/", 1)[-1]
        except (psutil.NoSuchProcess, psutil.AccessDenied, IndexError):
            label = str(child.pid)
        parts[label] = parts.get(label, 0.0) + _tree_rss(child) / 2**20
    return parts


def _tree_cpu(proc: psutil.Process, seen: dict[int, float]) -> None:
    """Record the CPU seconds each process of the tree has used so far (by pid)."""
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            t = p.cpu_times()
            seen[p.pid] = t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass


def _stop_tree(proc: psutil.Process) -> None:
    """End the command and every descendant (a Spark JVM outlives a killed Python parent)."""
    try:
        procs = [*proc.children(recursive=True), proc]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def run(
    cmd: list[str],
    interval: float = 0.1,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    max_rss_mb: float | None = None,
) -> Measurement:
    """Run ``cmd``; sample the resident memory of its whole process tree every ``interval`` s.

    Peak memory is the largest sum of the resident set sizes of the command and all its
    descendants seen at one sample (shared pages count once per process: an upper bound).
    With ``timeout`` (seconds) or ``max_rss_mb``, the tree is killed once it passes either
    limit, and ``stopped`` says which; what it printed until then is kept.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    popen = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd, bufsize=1
    )
    lines: list[tuple[float, str]] = []
    err: list[str] = []

    def read_out() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            lines.append((time.perf_counter() - start, line.rstrip("\n")))

    def read_err() -> None:
        assert popen.stderr is not None
        for line in popen.stderr:
            err.append(line)
            if len(err) > 4000:  # keep the tail of a chatty process
                del err[:2000]

    readers = [threading.Thread(target=read_out), threading.Thread(target=read_err)]
    for t in readers:
        t.daemon = True
        t.start()
    proc = psutil.Process(popen.pid)
    peak = 0
    peak_at = 0.0
    peak_parts: dict[str, float] = {}
    loads: list[float] = []
    stopped = ""
    tree_cpu: dict[int, float] = {}
    samples = 0
    while popen.poll() is None:
        now = _tree_rss(proc)
        if now > peak:
            peak, peak_at = now, time.perf_counter() - start
            peak_parts = _parts(proc)
        loads.append(os.getloadavg()[0])
        elapsed = time.perf_counter() - start
        samples += 1
        if samples % 10 == 0:
            _tree_cpu(proc, tree_cpu)
        if timeout is not None and elapsed > timeout:
            stopped = f"time limit {timeout:,.0f} s"
        elif max_rss_mb is not None and now / 2**20 > max_rss_mb:
            stopped = f"memory limit {max_rss_mb:,.0f} MB"
        if stopped:
            _tree_cpu(proc, tree_cpu)
            _stop_tree(proc)
            popen.wait()
            break
        time.sleep(interval)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # A grandchild nobody waits for (a Spark JVM, a killed command's children) is reaped
    # by init: its CPU time is not in our rusage. The last sample of every process the tree
    # had (each second) counts it; the larger of the two is kept.
    cpu = max(cpu, sum(tree_cpu.values()))
    for t in readers:
        t.join(timeout=10)
    return Measurement(
        seconds,
        peak / 2**20,
        popen.returncode,
        "\n".join(line for _, line in lines),
        "".join(err),
        lines,
        cpu,
        sum(loads) / len(loads) if loads else os.getloadavg()[0],
        peak_at,
        peak_parts,
        stopped,
    )
