"""Fitted models shared by the notebooks of one run.

Chapter 2 trains the health model that chapters 4 and 5 score with; chapter 3 values the
customers whose CLV chapters 4 and 5 quote. Every notebook runs in its own kernel, so
without this each would refit the same model on the same data: tens of seconds per refit
at 100,000 customers, and a chance for chapters to disagree. A run stages its data once
(``<run>/work``); what is computed from it is kept in ``<run>/work/cache`` as pickles,
keyed by the function, the run's params and the arguments, and deleted with ``work/``
when the run ends (the pickles hold customer data). Outside a run (a notebook opened on
its own, the tests) :attr:`Dataset.cache_dir` is ``None`` and nothing is kept.

A data frame of plain columns (numbers, booleans, datetimes, text) is kept as Parquet
(zstd) instead: the churn status per month, most of the cache, takes a fifth to a
twentieth of its pickle's bytes (the 1M run's cache wrote 3.4 GB of pickles), and is read
back with the same dtypes, columns and values.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from fupan.io.dataset import Dataset

T = TypeVar("T")


def key_of(ds: Dataset, name: str, args: Sequence[Any]) -> str:
    """A file name for ``name(args)`` under ``ds``'s params: any params change misses."""
    payload = json.dumps(
        [name, ds.params.model_dump(mode="json"), list(args)], sort_keys=True, default=str
    )
    return f"{name}-{hashlib.sha256(payload.encode('utf-8')).hexdigest()[:20]}.pkl"


# Parquet metadata key of the frame's empty pickle: its dtypes, column index and attrs.
_META = b"fupan.frame"


def _parquet_safe(value: Any) -> bool:
    """A frame whose every column Parquet stores exactly and :func:`_read` restores."""
    if not isinstance(value, pd.DataFrame) or not isinstance(value.index, pd.RangeIndex):
        return False
    if value.index.start != 0 or value.index.step != 1 or value.index.name is not None:
        return False
    cols = value.columns
    if isinstance(cols, pd.MultiIndex) or cols.has_duplicates:
        return False
    if not all(isinstance(c, str) for c in cols):
        return False
    # numpy numbers, booleans and naive datetimes, and pandas text; not object columns
    # (None and NaN would both come back as one missing value) nor other extension types
    return all(
        isinstance(d, pd.StringDtype) or (isinstance(d, np.dtype) and d.kind in "iufbM")
        for d in value.dtypes
    )


def _write(value: Any, fh: Any) -> None:
    if _parquet_safe(value):
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(value, preserve_index=False)
        meta = dict(table.schema.metadata or {})
        meta[_META] = pickle.dumps(value.iloc[:0], protocol=pickle.HIGHEST_PROTOCOL)
        pq.write_table(table.replace_schema_metadata(meta), fh, compression="zstd")
    else:
        pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)


_PARQUET_MAGIC = b"PAR1"


def _read(path: Path) -> Any:
    with path.open("rb") as fh:
        if fh.read(4) != _PARQUET_MAGIC:
            fh.seek(0)
            return pickle.load(fh)
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    empty = pickle.loads(table.schema.metadata[_META])
    # Parquet has no second-resolution timestamps and its own text type: the frame's own
    # dtypes come back from its empty copy
    frame = table.to_pandas().astype(empty.dtypes.to_dict())
    frame.columns = empty.columns
    frame.attrs = empty.attrs
    return frame


def memo(ds: Dataset, name: str, args: Sequence[Any], compute: Callable[[], T]) -> T:
    """``compute()``, or its value from an earlier notebook of the same run.

    ``name`` and ``args`` must determine the result together with ``ds``'s tables and
    params; callers pass every argument that changes it. A cache file that cannot be read
    (an interrupted write, another library version) is recomputed and replaced.
    """
    folder = getattr(ds, "cache_dir", None)
    if folder is None:
        return compute()
    path = Path(folder) / key_of(ds, name, args)
    if path.exists():
        try:
            return _read(path)
        except Exception:  # noqa: BLE001 - a bad cache file is only a miss
            pass
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    # write then rename: a notebook that fails mid-write leaves no half file behind
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            _write(value, fh)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - caching is an optimisation; the value stands
        Path(tmp).unlink(missing_ok=True)
    return value
