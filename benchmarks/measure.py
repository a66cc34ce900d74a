"""Time and peak memory of a whole command, children included (papermill kernels, Spark JVMs)."""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass

import psutil


@dataclass
class Measurement:
    seconds: float
    peak_rss_mb: float
    returncode: int
    stdout: str
    stderr: str


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


def run(cmd: list[str], interval: float = 0.1, env: dict[str, str] | None = None, cwd: str | None = None) -> Measurement:
    """Run ``cmd``; sample the resident memory of its whole process tree every ``interval`` s."""
    start = time.perf_counter()
    popen = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd)
    proc = psutil.Process(popen.pid)
    peak = 0
    while popen.poll() is None:
        peak = max(peak, _tree_rss(proc))
        time.sleep(interval)
    out, err = popen.communicate()
    return Measurement(time.perf_counter() - start, peak / 2**20, popen.returncode, out, err)
