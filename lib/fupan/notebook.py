"""The few lines every notebook starts with, in one place.

A notebook calls :func:`start` with its parameters and gets a :class:`Context`: the
validated params, the dataset, the results recorder, number formats and labels in the
run's language.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fupan import charts, exports, i18n, show
from fupan import data as fdata
from fupan import params as fparams
from fupan.results import Recorder


@dataclass
class Context:
    params: fparams.Params
    data: fdata.Dataset
    results: Recorder
    fmt: i18n.Fmt
    run_dir: str

    @property
    def lang(self) -> str:
        return self.params.lang

    @property
    def as_of(self) -> pd.Timestamp:
        return pd.Timestamp(self.params.as_of)

    def t(self, key: str, **values: Any) -> str:
        return i18n.t(key, self.lang, **values)

    def record(self, key: str, value: Any) -> Any:
        return self.results.record(key, value)

    def tier(self, tier: str) -> str:
        return self.params.tier_label(tier)

    def has(self, table: str) -> bool:
        return self.data.has(table)

    def missing(self, table: str) -> None:
        """Put the 'table missing, section skipped' line on the current slide."""
        show.missing(
            table,
            i18n.t("deck.missing_table", self.lang, table=i18n.t(f"table.{table}", self.lang)),
        )

    def mask(self, df: pd.DataFrame) -> pd.DataFrame:
        """The table as the deck may show it: PII hashed when ``privacy.mask_pii`` is on."""
        from fupan import privacy

        if not self.params.privacy.mask_pii:
            return df
        return privacy.mask_pii(df, privacy.resolve_salt(self.params.privacy.salt))

    def export(self, df: pd.DataFrame, name: str, xlsx: bool = True) -> list[Path]:
        return exports.write(df, self.run_dir or None, name, xlsx=xlsx)

    def table(
        self,
        df: pd.DataFrame,
        max_rows: int = 12,
        formats: dict[str, Any] | None = None,
        columns: dict[str, str] | None = None,
    ) -> None:
        """Show a table with translated headers, cut to ``max_rows``."""
        shown = df.rename(columns=columns) if columns else df
        if columns and formats:
            formats = {columns.get(k, k): v for k, v in formats.items()}
        show.table(
            shown,
            max_rows=max_rows,
            formats=formats,
            more_label=i18n.t("deck.more_rows", self.lang, shown="{shown}", total="{total}"),
        )


def start(
    params_file: str,
    run_dir: str = "",
    data: str = "",
    as_of: str = "",
    lang: str = "",
    seed: int = -1,
) -> Context:
    """Load params (with the notebook's overrides), style charts, open the run's data."""
    params = fparams.load(
        params_file,
        **{"data.source": data, "as_of": as_of, "lang": lang, "seed": seed if seed >= 0 else None},
    )
    charts.setup()
    ds = fdata.connect(params, run_dir or None)
    return Context(
        params=params,
        data=ds,
        results=Recorder(run_dir or None),
        fmt=i18n.Fmt.from_params(params),
        run_dir=run_dir,
    )
