"""How much memory a run's notebooks hold, and whether the run was memory-bound.

Each kernel holds what it reads: at 1M customers chapters 4 and 5 peaked together. The
runner samples each running notebook's process tree (:class:`MemoryWatch`) and, when the
run's peak came near the memory the machine had, logs which notebooks held how much and
what ``parallel_notebooks: 1`` would cost in time (:func:`memory_note`).
"""

from __future__ import annotations

import math
import time
from typing import Any


def clock(seconds: float) -> str:
    """``42s``, ``3m05s``: the runner's elapsed times and estimates, and this module's."""
    s = max(0, int(round(seconds)))
    return f"{s}s" if s < 60 else f"{s // 60}m{s % 60:02d}s"


def memory_available_share() -> float:
    """The share of the machine's memory available now (1.0 when it cannot be read)."""
    try:
        import psutil

        vm = psutil.virtual_memory()
        return vm.available / vm.total
    except (ImportError, OSError):
        return 1.0


def _tree_rss(pid: int) -> int:
    """Resident bytes of a process and its descendants (a notebook process and its kernel)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


#: A run is memory-bound when at its peak the notebooks held at least this share of the
#: memory they could have had: their own plus what the machine still had available.
MEMORY_BOUND_SHARE = 0.8


class MemoryWatch:
    """The running notebooks' memory (each notebook process with its kernel), sampled about
    once a second: their sizes when their sum was highest, and the memory the machine still
    had available at that moment (psutil; without it nothing is sampled)."""

    def __init__(self, every: float = 1.0):
        self.every, self.last = every, -math.inf
        self.peak: dict[str, int] = {}
        self.available = 0
        try:
            import psutil  # noqa: F401
        except ImportError:
            self.every = math.inf

    def sample(self, running: dict[str, Any]) -> None:
        now = time.monotonic()
        if not running or now - self.last < self.every:
            return
        self.last = now
        import psutil

        sizes = {nb: _tree_rss(job.proc.pid) for nb, job in running.items()}
        if sum(sizes.values()) > sum(self.peak.values()):
            self.peak, self.available = sizes, psutil.virtual_memory().available

    def note(
        self, timings: dict[str, float], windows: dict[str, tuple[float, float]], slots: int
    ) -> str | None:
        """The log line of :func:`memory_note` for this run (None when not memory-bound)."""
        ran = {nb: timings[nb] for nb in windows if nb in timings}
        if not self.peak or not ran:
            return None
        wall = max(end for _, end in windows.values()) - min(s for s, _ in windows.values())
        return memory_note(self.peak, self.available, ran, wall, slots)


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def memory_note(
    peak: dict[str, int],
    available: int,
    seconds: dict[str, float],
    wall: float,
    slots: int,
) -> str | None:
    """The log line saying a run was memory-bound, or None when it was not.

    Parameters
    ----------
    peak : each notebook's resident bytes (process and kernel) when their sum was highest.
    available : bytes the machine still had available at that moment.
    seconds : each notebook's time; their sum is what the notebooks would take one at a
        time (``parallel_notebooks: 1``; a little more: no kernel is warmed ahead then).
    wall : seconds from the first notebook's start to the last one's end, side by side.

    The run is memory-bound when the notebooks held at least :data:`MEMORY_BOUND_SHARE` of
    ``held + available``. Several notebooks at the peak: one at a time would give each the
    memory alone, at the cost in time the line states. One notebook: running one at a time
    would not lower the peak.
    """
    held = sum(peak.values())
    room = held + available
    if not held or held < MEMORY_BOUND_SHARE * room:
        return None
    sizes = ", ".join(f"{nb} {_gb(b)}" for nb, b in sorted(peak.items(), key=lambda x: -x[1]))
    head = (
        f"[fupan] memory-bound run: at its peak the notebooks held {_gb(held)} "
        f"({sizes}) with {_gb(available)} left available ({held / room:.0%} of {_gb(room)})"
    )
    if len(peak) < 2 or slots < 2:
        return f"{head}; one notebook alone: parallel_notebooks: 1 would not lower this peak"
    serial = sum(seconds.values())
    return (
        f"{head}; parallel_notebooks: 1 would run them one at a time, each with the memory "
        f"alone: the notebooks would take about {clock(serial)} in a row instead of "
        f"{clock(wall)} side by side (+{clock(max(0.0, serial - wall))})"
    )
