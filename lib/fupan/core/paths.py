"""Where fupan reads and writes, as every command-line tool does it.

* Reports go to ``--out``, else the ``reports_dir`` the params name (relative to the params
  file), else ``reports/`` under the current folder: never into the installed package or
  the checkout it came from.
* Data and side files (benchmarks, scenarios) are relative to the params file
  (:meth:`fupan.core.params.Params.resolve`).
* The notebooks and the example params ship inside the package (a wheel install works);
  a source checkout uses its own ``notebooks/`` and ``params/``.

Nothing here imports more than the standard library: the CLI calls it before it knows
which command runs.
"""

from __future__ import annotations

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


def reports_dir(params: Any = None, override: str | Path | None = None) -> Path:
    """The reports folder, absolute: ``override`` (``--out``, relative to the current
    folder), else ``params.reports_dir`` (relative to the params file), else
    ``./reports``."""
    if override:
        return Path(override).expanduser().resolve()
    configured = getattr(params, "reports_dir", None)
    if configured:
        return Path(params.resolve(str(Path(configured).expanduser()))).resolve()
    return (Path.cwd() / "reports").resolve()
