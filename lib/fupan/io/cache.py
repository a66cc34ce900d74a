"""Fitted models shared by the notebooks of one run.

Chapter 2 trains the health model that chapters 4 and 5 score with; chapter 3 values the
customers whose CLV chapters 4 and 5 quote. Every notebook runs in its own kernel, so
without this each would refit the same model on the same data: tens of seconds per refit
at 100,000 customers, and a chance for chapters to disagree. A run stages its data once
(``<run>/work``); what is computed from it is kept in ``<run>/work/cache`` as pickles,
keyed by the function, the run's params and the arguments, and deleted with ``work/``
when the run ends (the pickles hold customer data). Outside a run (a notebook opened on
its own, the tests) :attr:`Dataset.cache_dir` is ``None`` and nothing is kept.
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

from fupan.io.dataset import Dataset

T = TypeVar("T")


def key_of(ds: Dataset, name: str, args: Sequence[Any]) -> str:
    """A file name for ``name(args)`` under ``ds``'s params: any params change misses."""
    payload = json.dumps(
        [name, ds.params.model_dump(mode="json"), list(args)], sort_keys=True, default=str
    )
    return f"{name}-{hashlib.sha256(payload.encode('utf-8')).hexdigest()[:20]}.pkl"


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
            with path.open("rb") as fh:
                return pickle.load(fh)
        except Exception:  # noqa: BLE001 - a bad cache file is only a miss
            pass
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    # write then rename: a notebook that fails mid-write leaves no half file behind
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except Exception:  # noqa: BLE001 - caching is an optimisation; the value stands
        Path(tmp).unlink(missing_ok=True)
    return value
