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


def run(
    cmd: list[str],
    interval: float = 0.1,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
) -> Measurement:
    """Run ``cmd``; sample the resident memory of its whole process tree every ``interval`` s.

    Peak memory is the largest sum of the resident set sizes of the command and all its
    descendants seen at one sample (shared pages count once per process: an upper bound).
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
    while popen.poll() is None:
        now = _tree_rss(proc)
        if now > peak:
            peak, peak_at = now, time.perf_counter() - start
            peak_parts = _parts(proc)
        loads.append(os.getloadavg()[0])
        time.sleep(interval)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
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
    )
