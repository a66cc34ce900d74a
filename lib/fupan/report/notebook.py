"""The few lines every notebook starts with, in one place.

A notebook calls :func:`start` with its parameters and gets a :class:`Context`: the
validated params, the dataset, the results recorder, number formats and labels in the
run's language.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from fupan.core import i18n
from fupan.core import params as fparams
from fupan.io import data as fdata
from fupan.io import exports
from fupan.io.dataset import Dataset
from fupan.report import charts, show
from fupan.report.results import Recorder

#: Names a params file for every notebook opened without one (Lab, a bare papermill call).
PARAMS_ENV = "FUPAN_PARAMS"
#: Where a notebook run on its own (``run_dir`` empty) writes results.json and exports/: the
#: same folder fupan.report.results and fupan.io.exports fall back to.
SCRATCH_DIR = Path(tempfile.gettempdir()) / "fupan-scratch"


def find_params(params_file: str | os.PathLike[str]) -> Path:
    """The params file a notebook means, whatever folder its kernel started in.

    A notebook runs from the repository root (``papermill notebooks/x.ipynb out.ipynb``),
    from ``notebooks/`` (JupyterLab, ``papermill --cwd notebooks``) or from anywhere the
    runner chooses, so a relative default such as ``params/annual_review.yaml`` cannot be
    read against the working folder alone. Looked for, in order:

    1. ``$FUPAN_PARAMS`` when ``params_file`` is empty;
    2. ``params_file`` as given (absolute, or relative to the working folder);
    3. ``params_file`` relative to each folder above the working folder, nearest first
       (so ``params/annual_review.yaml`` is found from ``notebooks/``).

    Raises
    ------
    FileNotFoundError
        naming the places looked and how to point the notebook at a file.
    """
    given = str(params_file) or os.environ.get(PARAMS_ENV, "")
    if not given:
        raise FileNotFoundError(
            "no params file: set the notebook's params_file parameter "
            f"(papermill -p params_file my.yaml) or the {PARAMS_ENV} environment variable"
        )
    path = Path(given).expanduser()
    if path.is_absolute():
        tried = [path]
    else:
        cwd = Path.cwd()
        tried = [folder / path for folder in (cwd, *cwd.parents)]
    for candidate in tried:
        if candidate.is_file():
            return candidate.resolve()
    shown = ", ".join(str(t) for t in tried[:3]) + (", ..." if len(tried) > 3 else "")
    raise FileNotFoundError(
        f"params file not found: {given} (looked in {shown}). Pass an absolute path "
        "(papermill -p params_file /path/to/my.yaml), a path relative to the folder you run "
        f"from, or set {PARAMS_ENV}"
    )


@dataclass
class Context:
    params: fparams.Params
    data: Dataset
    results: Recorder
    fmt: i18n.Fmt
    run_dir: str
    params_file: str = ""
    #: the chapter's key in results.json's ``skipped`` (churn, ltv, simulation): where
    #: :meth:`show` records a slide's reasons for what it cannot show
    section: str = ""

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
        from fupan.io import privacy

        if not self.params.privacy.mask_pii:
            return df
        return privacy.mask_pii(df, privacy.resolve_salt(self.params.privacy.salt))

    def export(self, df: pd.DataFrame, name: str, xlsx: bool = True) -> None:
        """Write ``exports/<name>.csv`` (and ``.xlsx``) into the run folder.

        Returns nothing: a cell ending in an export would otherwise show the written paths
        as its output (``[PosixPath('/tmp/fupan-scratch/exports/...')]``).
        """
        exports.write(df, self.run_dir or None, name, xlsx=xlsx)

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

    def show(self, slide: Any, figure: Any = None) -> bool:
        """Record a slide (a :class:`fupan.chapters.slide.Slide`) and put it on the deck.

        Its ``records`` go to results.json and its reasons (``skips``, and ``skip`` for a
        slide that cannot be made) under :attr:`section`; then the title and finding, the
        missing-table line, tiles, table, chart, notes, in this order; then its exports are
        written. ``figure`` draws the chart: a function of the slide's ``chart`` frame
        returning a matplotlib Figure, Axes or array of Axes, called only when the slide is
        made and has a chart frame. Returns whether the slide is made (``skip`` unset).
        """
        if not self.section and (slide.skips or slide.skip):
            raise ValueError("set nb.section (the chapter's key) before showing a skip")
        slide.record(self.results, self.section)
        show.slide(slide.title, slide.finding)
        if slide.missing:
            self.missing(slide.missing)
        if slide.skip:
            return False
        if slide.tiles:
            show.kpis(slide.tiles)
        if slide.table is not None:
            self.table(slide.table, slide.max_rows, slide.formats, slide.columns)
        if figure is not None and slide.chart is not None:
            show.figure(_figure(figure(slide.chart)))
        for text in slide.notes:
            show.note(text)
        for name, frame in slide.exports.items():
            self.export(frame, name)
        return True


def _figure(drawn: Any) -> Any:
    """The matplotlib Figure of what a plot function returned (Figure, Axes, array of Axes)."""
    if hasattr(drawn, "savefig"):
        return drawn
    if hasattr(drawn, "figure"):
        return drawn.figure
    return _figure(next(iter(drawn)))


def start(
    params_file: str,
    run_dir: str = "",
    data: str = "",
    as_of: str = "",
    lang: str = "",
    seed: int = -1,
) -> Context:
    """Load params (with the notebook's overrides), style charts, open the run's data.

    ``params_file`` is found as :func:`find_params` says; with ``run_dir`` empty, results
    and exports go to :data:`SCRATCH_DIR`.
    """
    path = find_params(params_file)
    params = fparams.load(
        path,
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
        params_file=str(path),
    )
