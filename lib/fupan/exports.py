"""Tables written beside the deck (``exports/``): CSV for Excel and ``.xlsx``."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd


def write(df: pd.DataFrame, run_dir: str | Path | None, name: str, xlsx: bool = True) -> list[Path]:
    """Write ``exports/<name>.csv`` (UTF-8 with BOM, so Excel reads Chinese) and ``.xlsx``."""
    base = Path(run_dir) if run_dir else Path(tempfile.gettempdir()) / "fupan-scratch"
    out = base / "exports"
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.csv"]
    df.to_csv(paths[0], index=False, encoding="utf-8-sig")
    if xlsx:
        paths.append(out / f"{name}.xlsx")
        frame = df.copy()
        for col in frame.columns:
            # Excel has no time zones; naive timestamps keep the wall-clock value.
            if isinstance(frame[col].dtype, pd.DatetimeTZDtype):
                frame[col] = frame[col].dt.tz_localize(None)
        frame.to_excel(paths[1], index=False, engine="openpyxl")
    return paths
