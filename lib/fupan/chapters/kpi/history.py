"""The KPI history: ``<reports>/kpi_history.parquet``, one row per (month, kpi), replaced
month by month atomically under a lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from fupan.chapters.kpi.catalogue import CATALOGUE
from fupan.core.params import Params

HISTORY_COLUMNS = [
    "month",
    "kpi",
    "value",
    "n",
    "status",
    "reason",
    "target",
    "alert",
    "complete",
    "fingerprint",
    "run",
    "computed_at",
]


def history_path(
    params: Params, run_dir: str | Path | None = None, reports_dir: str | Path | None = None
) -> Path | None:
    """Where the KPI history lives: ``kpi.history_file`` in the reports folder.

    The reports folder is ``reports_dir`` or, inside a run, the folder holding the run
    folder. ``None`` when neither is known (a notebook opened on its own).
    """
    f = Path(params.kpi.history_file)
    if f.is_absolute():
        return f
    if reports_dir:
        return Path(reports_dir) / f
    if run_dir:
        return Path(run_dir).resolve().parent / f
    return None


def empty_history() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=object) for c in HISTORY_COLUMNS})


def read_history(path: str | Path | None) -> pd.DataFrame:
    """The KPI history table (empty when there is none yet)."""
    if path is None or not Path(path).exists():
        return empty_history()
    df = pd.read_parquet(path)
    missing = [c for c in HISTORY_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path} is not a KPI history (missing columns {missing})")
    return df[HISTORY_COLUMNS]


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    # Two runs finishing together must not lose each other's months.
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def write_history(path: str | Path, rows: pd.DataFrame) -> pd.DataFrame:
    """Replace the months in ``rows`` in the history, atomically, and return the new history.

    The other months are untouched; the file is written to a temporary file beside it and
    moved into place, under a lock, so a reader never sees half a table.
    """
    path = Path(path)
    rows = rows[HISTORY_COLUMNS].copy()
    dup = rows.duplicated(["month", "kpi"])
    if dup.any():
        raise ValueError(
            f"history rows repeat (month, kpi): {rows[dup][['month', 'kpi']].values.tolist()[:5]}"
        )
    with _locked(path):
        old = read_history(path)
        keep = old[~old.month.isin(set(rows.month))]
        new = pd.concat([keep, rows], ignore_index=True) if len(keep) else rows
        order = {k: i for i, k in enumerate(CATALOGUE)}
        new = new.assign(_o=new.kpi.map(order).fillna(len(order))).sort_values(
            ["month", "_o", "kpi"]
        )
        new = new.drop(columns="_o").reset_index(drop=True)
        for col in ("value", "n", "target", "alert"):
            new[col] = pd.to_numeric(new[col], errors="coerce").astype(float)
        new["complete"] = new.complete.astype(bool)
        for col in ("month", "kpi", "status", "fingerprint", "run", "computed_at"):
            new[col] = new[col].astype(str)
        new["reason"] = new.reason.astype(object).where(new.reason.notna(), None)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        try:
            new.to_parquet(tmp, index=False)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    return new
