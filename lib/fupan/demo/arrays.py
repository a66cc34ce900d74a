"""Random streams and the numpy/arrow helpers the world and its tables are built with."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class _Streams:
    """One numpy Generator per block of ``BLOCK`` customers; draws concatenate over blocks."""

    def __init__(self, seed: int, first_block: int, sizes: list[int]) -> None:
        self.sizes = sizes
        self.bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.gens = [
            np.random.Generator(
                np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(first_block + k,)))
            )
            for k in range(len(sizes))
        ]

    def cust(self, kind: str, width: int | None = None, dtype: type = np.float64) -> np.ndarray:
        out = []
        for g, s in zip(self.gens, self.sizes, strict=True):
            shape = (s,) if width is None else (s, width)
            out.append(g.random(shape, dtype) if kind == "u" else g.standard_normal(shape, dtype))
        return np.concatenate(out)

    def events(self, block_counts: np.ndarray, kind: str) -> np.ndarray:
        out = []
        for g, c in zip(self.gens, block_counts, strict=True):
            out.append(g.random(int(c)) if kind == "u" else g.standard_normal(int(c)))
        return np.concatenate(out) if out else np.zeros(0)

    def poisson_cells(self, lam: np.ndarray, valid: np.ndarray) -> np.ndarray:
        out = np.zeros(lam.shape, dtype=np.int32)
        for k, g in enumerate(self.gens):
            a, b = self.bounds[k], self.bounds[k + 1]
            m = valid[a:b]
            sub = out[a:b]
            sub[m] = g.poisson(lam[a:b][m])
        return out


def _cat(u: np.ndarray, p: tuple[float, ...] | np.ndarray) -> np.ndarray:
    cp = np.cumsum(p)
    cp = cp / cp[-1]
    return np.minimum(np.searchsorted(cp, u, side="right"), len(cp) - 1)


def _ln_noise(z: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(sigma * z - 0.5 * sigma * sigma)


# ----------------------------------------------------------------------------- context


def _ids(prefix: str, start: int, n: int, width: int) -> pa.Array:
    nums = pa.array(np.arange(start, start + n, dtype=np.int64))
    s = pc.utf8_lpad(pc.cast(nums, pa.string()), width=width, padding="0")
    return pc.binary_join_element_wise(prefix, s, "")


def _take(
    vocab: tuple[str, ...] | list[str], codes: np.ndarray, mask: np.ndarray | None = None
) -> pa.Array:
    arr = pc.take(pa.array(list(vocab), pa.string()), pa.array(np.asarray(codes, dtype=np.int64)))
    if mask is not None:
        arr = pc.if_else(pa.array(mask), pa.nulls(len(arr), pa.string()), arr)
    return arr


def _dates(days: np.ndarray) -> pa.Array:
    return pa.array(np.asarray(days, dtype=np.int32), type=pa.date32())


def _stamps(secs: np.ndarray, null: np.ndarray | None = None) -> pa.Array:
    return pa.array(np.asarray(secs, dtype=np.int64), type=pa.timestamp("s"), mask=null)


def _group_index(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Starts and lengths of runs of equal values in a sorted key array."""
    if len(keys) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    lengths = np.diff(np.concatenate([starts, [len(keys)]]))
    return starts, lengths


def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row and column of every unit in a 2-D count matrix, row-major (customer, week)."""
    flat = counts.ravel()
    nz = np.flatnonzero(flat)
    rep = flat[nz]
    cells = np.repeat(nz, rep)
    return cells // counts.shape[1], cells % counts.shape[1]


# ----------------------------------------------------------------------------- chunk
