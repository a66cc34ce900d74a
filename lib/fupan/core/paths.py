"""Where fupan reads and writes, as every command-line tool does it.

* Reports go to ``--out``, else the ``reports_dir`` the params name (relative to the params
  file), else ``reports/`` under the current folder: never into the installed package or
  the checkout it came from.
* Data and side files (benchmarks, scenarios) are relative to the params file.
* Both are decided once, when a params file is loaded: :class:`RunContext` holds every
  path a run reads or writes, absolute, and the loader, the runner and the CLI read it
  (``params.context``) instead of resolving again.
* The notebooks and the example params ship inside the package (a wheel install works);
  a source checkout uses its own ``notebooks/`` and ``params/``.

Nothing here imports more than the standard library: the CLI calls it before it knows
which command runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # fupan/, not fupan/core
#: The checkout a source install runs from (``lib/fupan`` -> the repository).
CHECKOUT = PACKAGE_ROOT.parent.parent


def is_checkout(folder: Path = CHECKOUT) -> bool:
    """Whether ``folder`` is fupan's source checkout (not site-packages' parent)."""
    return (folder / "pyproject.toml").is_file() and (folder / "lib" / "fupan").is_dir()


def notebook_dir() -> Path:
    """The chapter notebooks: the checkout's ``notebooks/`` (what an analyst edits), else
    the copy the wheel installs as package data (``fupan/notebooks``)."""
    if is_checkout() and (CHECKOUT / "notebooks").is_dir():
        return CHECKOUT / "notebooks"
    return PACKAGE_ROOT / "notebooks"


def example_params(name: str) -> Path:
    """A params file fupan ships (``annual_review.yaml``, ``monthly.yaml``): the
    checkout's ``params/``, else the installed copy (``fupan/examples``)."""
    if is_checkout() and (CHECKOUT / "params" / name).is_file():
        return CHECKOUT / "params" / name
    return PACKAGE_ROOT / "examples" / name


def absolute(path: str, folder: str | Path | None) -> str:
    """``path`` from a params file, absolute against ``folder`` (URLs, absolute paths, and
    any path when there is no folder, unchanged)."""
    if "://" in path or Path(path).is_absolute() or not folder:
        return path
    return str((Path(folder) / path).resolve())


#: A run folder's scratch folder: the staged tables, the kernels' working folder and the
#: model cache; removed before the run is swapped into place.
WORK_NAME = "work"
#: The fitted models the notebooks of one run share (:mod:`fupan.io.cache`), in :data:`WORK_NAME`.
CACHE_NAME = "cache"


def work_dir(run_folder: str | Path) -> Path:
    """The scratch folder of a run folder (the finished one or the one being built)."""
    return Path(run_folder) / WORK_NAME


def cache_dir(run_folder: str | Path) -> Path:
    """The model cache of a run folder (:mod:`fupan.io.cache`)."""
    return work_dir(run_folder) / CACHE_NAME


@dataclass(frozen=True)
class RunContext:
    """Where one run reads and writes, every path absolute: made once when its params
    file is loaded (:func:`fupan.core.params.load`).

    Attributes
    ----------
    params_file : the params file, or None for params not read from a file.
    base_dir : its folder: data and side files named relatively are found there.
    data : the data source: an absolute path, or a URL as given.
    benchmarks_file, scenarios_file : the side files as named in the params, absolute
        (None when the params name none; the packaged fallbacks are the loader's choice).
    reports_dir : where runs go unless ``--out`` says otherwise: the params'
        ``reports_dir`` (relative to the params file), else ``reports/`` under the folder
        fupan was started in.
    run_name : the run folder's name, the kind of review and its as-of date
        (``annual_review-2026-10-31``; not the run's display name, ``params.name``).
    key : the params values the paths were made from (a changed copy makes a new context).
    """

    params_file: Path | None
    base_dir: Path | None
    data: str
    benchmarks_file: Path | None
    scenarios_file: Path | None
    reports_dir: Path
    run_name: str = ""
    key: tuple[Any, ...] = field(default=(), repr=False, compare=False)

    def reports(self, override: str | Path | None = None) -> Path:
        """The reports folder: ``override`` (``--out``, relative to the current folder),
        else :attr:`reports_dir`."""
        if override:
            return Path(override).expanduser().resolve()
        return self.reports_dir

    def for_run(self, override: str | Path | None = None, name: str | None = None) -> RunContext:
        """This context for one run: its reports folder ``override`` (``--out``, relative to
        the current folder) and its folder's name ``name`` (the monthly runs name theirs by
        month), each when given."""
        return replace(self, reports_dir=self.reports(override), run_name=name or self.run_name)

    @property
    def run_dir(self) -> Path:
        """The finished run's folder: :attr:`run_name` in :attr:`reports_dir`."""
        return self.reports_dir / self.run_name

    @property
    def failed_dir(self) -> Path:
        """Where a failed run is kept for inspection (beside :attr:`run_dir`)."""
        return self.reports_dir / f"{self.run_name}.failed"

    def staging_dir(self, pid: int | None = None) -> Path:
        """The folder a run is built in by process ``pid`` (this one when None), hidden
        beside :attr:`run_dir` until it is swapped into place."""
        return self.reports_dir / f".{self.run_name}.tmp-{os.getpid() if pid is None else pid}"


def reports_dir(params: Any = None, override: str | Path | None = None) -> Path:
    """The reports folder, absolute: ``override`` (``--out``, relative to the current
    folder), else ``params.reports_dir`` (relative to the params file), else
    ``./reports`` (:meth:`RunContext.reports`)."""
    if params is not None:
        return params.context.reports(override)
    if override:
        return Path(override).expanduser().resolve()
    return (Path.cwd() / "reports").resolve()
