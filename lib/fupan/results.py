"""Headline figures of a run, recorded once and quoted everywhere.

Each notebook records its figures with :meth:`Recorder.record`; the deck's sentences quote
the value that ``record`` returned, and tests read ``results.json``. One home per number.
"""

from __future__ import annotations

import contextlib
import copy
import datetime as dt
import json
import math
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: the runner then executes one notebook at a time
    fcntl = None  # type: ignore[assignment]

import numpy as np
import pandas as pd

RESULTS_NAME = "results.json"


def to_jsonable(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN/inf to None, dates to ISO strings."""
    if isinstance(value, dict):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, pd.DataFrame):
        return to_jsonable(value.to_dict(orient="records"))
    if isinstance(value, pd.Series):
        return to_jsonable(value.to_dict())
    if isinstance(value, np.ndarray):
        return to_jsonable(value.tolist())
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if isinstance(value, (pd.Timestamp, dt.date, dt.datetime)):
        return value.isoformat()
    if value is pd.NaT or value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 2) -> None:
    """Write JSON so a reader never sees half a file.

    ``indent=None`` writes one line with the C encoder, several times faster: the
    recorder rewrites results.json on every figure, and the runner indents it once at the end.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, ensure_ascii=False, indent=indent, sort_keys=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def results_lock_available() -> bool:
    """Whether notebooks of one run may record figures at the same time (POSIX locks)."""
    return fcntl is not None


def _stamp(st: os.stat_result) -> tuple[int, int, int]:
    # every write replaces the file, so a new inode marks a change even within one mtime tick
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


class Recorder:
    """Records a run's headline figures into ``<run_dir>/results.json``.

    Parameters
    ----------
    run_dir : the run folder; when empty (a notebook opened on its own) figures go to
        ``reports/scratch`` under the working directory's project.
    """

    def __init__(self, run_dir: str | Path | None = None):
        if not run_dir:
            run_dir = Path(tempfile.gettempdir()) / "fupan-scratch"
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RESULTS_NAME
        self._seen: tuple[int, int, int] | None = None
        self._data: dict[str, Any] = {}

    def _load(self) -> dict[str, Any]:
        """The file's content, parsed again only when the file changed (another notebook of
        the run, or the runner): a review records a few hundred figures."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            self._seen, self._data = None, {}
            return {}
        stamp = _stamp(st)
        if stamp != self._seen:
            self._data = json.loads(self.path.read_text(encoding="utf-8"))
            self._seen = stamp
        return self._data

    def record(self, key: str, value: Any) -> Any:
        """Store ``value`` under a dotted key (``diagnosis.churn_rate``) and return it."""
        jsonable = to_jsonable(value)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        # Notebooks of one run execute at the same time: read, change and replace the file
        # under an exclusive lock, or one notebook's figures would overwrite another's.
        with _locked(self.run_dir / f".{RESULTS_NAME}.lock"):
            data = self._load()
            node = data
            parts = key.split(".")
            for p in parts[:-1]:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    raise ValueError(f"results key '{key}' crosses a recorded value at '{p}'")
            node[parts[-1]] = jsonable
            write_json_atomic(self.path, data, indent=None)
            self._seen, self._data = _stamp(self.path.stat()), data
        return value

    def get(self, key: str, default: Any = None) -> Any:
        node: Any = self._load()
        for p in key.split("."):
            if not isinstance(node, dict) or p not in node:
                return default
            node = node[p]
        return copy.deepcopy(node)  # the parsed file is kept: callers get their own copy

    def __getitem__(self, key: str) -> Any:
        sentinel = object()
        value = self.get(key, sentinel)
        if value is sentinel:
            raise KeyError(key)
        return value

    def all(self) -> dict[str, Any]:
        return copy.deepcopy(self._load())
