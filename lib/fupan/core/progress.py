"""Progress bars for the steps that take a while (tqdm, as notebook users expect).

A bar appears only where someone watches: in a Jupyter front end (JupyterLab, Notebook)
and in a terminal. Executed headless (``fupan review``, papermill, cron) nothing is
drawn, so the run's notebooks and log stay as they were. ``FUPAN_PROGRESS=0`` hides the
bars everywhere, ``FUPAN_PROGRESS=1`` shows them everywhere (e.g. with ``papermill
--log-output`` to watch a long cell). A bar is drawn only after :data:`DELAY` seconds, so
quick loops stay silent. Wrapping a loop changes nothing it computes.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any, TypeVar

T = TypeVar("T")

ENV = "FUPAN_PROGRESS"
#: seconds a loop runs before its bar appears
DELAY = 2.0
_ON = {"1", "true", "yes", "on"}
_OFF = {"0", "false", "no", "off"}


def _in_jupyter_front_end() -> bool:
    """An IPython kernel started by a Jupyter server (Lab, Notebook) for an open notebook.

    jupyter_server names the notebook in ``JPY_SESSION_NAME`` when it starts a kernel;
    papermill and nbclient do not, so a headless run is not mistaken for someone watching.
    """
    if "ipykernel" not in sys.modules or not os.environ.get("JPY_SESSION_NAME"):
        return False
    ip = sys.modules.get("IPython")
    shell = ip.get_ipython() if ip is not None else None  # type: ignore[attr-defined]
    return shell is not None and "IPKernelApp" in shell.config


def _terminal() -> bool:
    stream = sys.__stderr__
    return stream is not None and stream.isatty()


def enabled() -> bool:
    """Whether a progress bar would be drawn here (see the module's docstring)."""
    value = os.environ.get(ENV, "").strip().lower()
    if value in _OFF:
        return False
    if value in _ON:
        return True
    return _in_jupyter_front_end() or _terminal()


def _bar_class() -> Any:
    # a widget only where a front end draws it: ipykernel is also imported by papermill
    # runs and test harnesses, where a widget would print nothing a person can read
    if _in_jupyter_front_end():
        try:
            import ipywidgets  # noqa: F401  (tqdm.notebook draws with it)
            from tqdm.notebook import tqdm

            return tqdm
        except ImportError:
            pass  # no widgets: a text bar on the cell's stderr
    from tqdm.std import tqdm

    return tqdm


def bar(
    iterable: Iterable[T], desc: str, total: int | None = None, unit: str = "it"
) -> Iterable[T]:
    """``iterable`` itself, or wrapped in a tqdm bar when :func:`enabled`.

    Parameters
    ----------
    iterable : the loop's items; consumed lazily, in order, exactly as without a bar.
    desc : what the loop does, in a few words ("bootstrap refits").
    total : the number of items when ``iterable`` has no length (a generator).
    unit : what one item is.
    """
    if not enabled():
        return iterable
    try:
        cls = _bar_class()
    except ImportError:  # tqdm comes with papermill; without it, no bar
        return iterable
    kwargs: dict[str, Any] = {
        "desc": desc,
        "total": total,
        "unit": unit,
        "leave": False,
        "delay": DELAY,
    }
    if cls.__module__ == "tqdm.std":
        kwargs.update(mininterval=1.0, file=sys.stderr, dynamic_ncols=True)
    try:
        return cls(iterable, **kwargs)
    except TypeError:  # a tqdm older than 4.60 (no ``delay``): no bar rather than a failure
        return iterable
