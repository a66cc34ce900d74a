"""Shared fixtures: params files (make_params), the tiny hand-made dataset, generated demos
and the session's end-to-end review, each made once per session where tests only read it."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import settings

TESTS = Path(__file__).parent
ROOT = TESTS.parent
# tests/ is on sys.path through `pythonpath` in pyproject.toml (also for tests in subfolders)
warnings.filterwarnings("ignore", message=".*infer_string.*")

import paramfile  # noqa: E402
import tiny  # noqa: E402

# Property tests draw the same examples on every run, so CI's verdict depends on the commit
# alone: a new random draw could otherwise turn a landed commit red. To search afresh while
# developing, run with FUPAN_HYPOTHESIS=explore.
settings.register_profile("deterministic", derandomize=True, database=None)
settings.register_profile("explore")
settings.load_profile(os.environ.get("FUPAN_HYPOTHESIS", "deterministic"))


@pytest.fixture
def make_params(tmp_path: Path):
    """Write a params file: `make_params(data, extra, *, folder, load, **fields)`.

    The one way tests build params (see `paramfile.write` for the fields). It writes into
    `folder` (default: the test's tmp_path) and returns the path, or the loaded `Params`
    with `load=True`. `data=None` points `data.source` at the folder itself.
    """
    from fupan.core import params as fparams

    def make(
        data=None, extra: str = "", *, folder: Path | None = None, load: bool = False, **fields
    ):
        folder = Path(folder) if folder is not None else tmp_path
        path = paramfile.write(folder, folder if data is None else data, extra, **fields)
        return fparams.load(path) if load else path

    return make


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return tiny.write(tmp_path / "data")


@pytest.fixture
def tiny_params(tmp_path: Path, tiny_data: Path) -> Path:
    return tiny.params_file(tmp_path, tiny_data)


def shared_folder(
    tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], object]
) -> Path:
    """``<base>/<name>/data``, written by ``build`` once per test run.

    Under pytest-xdist every worker has its own session, so a session fixture would be
    built once per worker; the first worker to get here builds the folder under a file
    lock in the folder the workers' temporary folders share, and the others wait for it
    and read it (pytest-xdist's documented pattern for session fixtures). Deterministic
    builds only (seeded), and the folder is read-only for the tests.
    """
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / name
    out = root / "data"
    with open(base / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "done").exists():
            shutil.rmtree(root, ignore_errors=True)  # a build that died half-way
            build(out)
            (root / "done").touch()
    return out


@pytest.fixture(scope="session")
def demo_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,500 generated customers (all eight tables, truth.json), made once per test run
    (shared by the xdist workers). Read-only."""
    demo = pytest.importorskip("fupan.demo")
    return shared_folder(
        tmp_path_factory, "demo1500", lambda out: demo.generate(out, customers=1500, seed=7)
    )


@pytest.fixture(scope="session")
def demo_default(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default demo (5,000 customers, seed 42: what `make data` writes), made once per
    test run (shared by the xdist workers) for the chapters' acceptance tests. Read-only:
    copy it before changing a table."""
    demo = pytest.importorskip("fupan.demo")
    return shared_folder(
        tmp_path_factory, "demo5k", lambda out: demo.generate(out, customers=5000, seed=42)
    )


def _golden_tool():
    """tools/golden.py as a module (its CUSTOMERS, DEMO_SEED and comparison)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("fupan_golden", ROOT / "tools" / "golden.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def golden_tool():
    return _golden_tool()


@pytest.fixture(scope="session")
def review_run(tmp_path_factory: pytest.TempPathFactory, golden_tool):
    """One full `fupan review` with the shipped params/annual_review.yaml (every notebook it
    lists) on the golden demo data (300 customers, seed 1; `work/data`), run once per session.

    It is the run `tools/golden.py` pins, so tests/test_golden.py compares this run with
    tests/golden/ instead of running its own; the reproducibility test runs it a second time.
    """
    from fupan import demo
    from fupan.core import params as fparams
    from fupan.run import runner

    work = tmp_path_factory.mktemp("review")
    data = work / "data"
    demo.generate(data, customers=golden_tool.CUSTOMERS, seed=golden_tool.DEMO_SEED)
    pf = ROOT / "params" / "annual_review.yaml"
    params = fparams.load(pf, **{"data.source": str(data)})
    return runner.run(params, pf, reports_dir=work / "reports", log=lambda m: None)


@pytest.fixture(scope="session")
def installed_review(tmp_path_factory: pytest.TempPathFactory):
    """fupan built as a wheel, installed in a fresh venv and run from an empty folder: an
    English review of every chapter on 300 demo customers (`tests/installed.py`), once per
    session. The wheel test checks the install; the browser test checks the English deck."""
    import installed

    return installed.install_and_review(ROOT, tmp_path_factory.mktemp("wheel"))


# session-scoped, and defined here once: a module-scoped browser would tie the tests that
# read the session's review, the installed wheel's review and the tiny deck into one group
# on one worker (the groups below); a worker that needs Chromium starts its own (about a
# second). A second definition (a module importing this fixture) would start a second
# Playwright in the same thread, which Playwright refuses.
@pytest.fixture(scope="session")
def browser():
    """Debian's headless Chromium through Playwright, for the deck checks."""
    from chromium import ARGS, CHROMIUM

    if not CHROMIUM:
        pytest.skip("Debian chromium is not installed (make browser-deps installs it as root)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


def assign_by_frame(frame: pd.DataFrame, rules: list) -> pd.Series:
    """segments.assign_rules as first written (the reference its replacement must equal): a frame of masks reduced row by row."""
    masks = pd.DataFrame(
        {r.code: r.predicate(frame).fillna(False).astype(bool) for r in rules}, index=frame.index
    )
    hits = masks.sum(axis=1)
    if len(frame) and not (hits == 1).all():
        bad = frame.index[hits != 1][:5].tolist()
        raise ValueError(f"segment rules are not mutually exclusive and exhaustive (rows {bad})")
    return masks.idxmax(axis=1) if len(frame) else pd.Series([], dtype=object, index=frame.index)


# ------------------------------------------------------------------ running on two workers
# `make test` runs `pytest -n 2 --dist loadgroup --no-loadscope-reorder` (pytest-xdist).
# Each worker has its own session, so tests that read one expensive build made by a
# module-scoped fixture or by the session's review must run on one worker, or each worker
# builds it again. The groups below are the connected sets of tests that share such a
# build; xdist hands each group to one worker whole. The demo data folders are shared
# through `shared_folder` instead and need no group.

#: session fixtures that run a review: their users share the worker that made it
SESSION_RUNS = ("review_run", "installed_review")


def _builds(item: pytest.Item) -> list[str]:
    """The expensive builds an item reads: session reviews, and module- or class-scoped
    fixtures (one build per parameter of a parametrised one)."""
    names = getattr(item, "fixturenames", ())
    keys = [f"session:{n}" for n in SESSION_RUNS if n in names]
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    indices = getattr(getattr(item, "callspec", None), "indices", {})
    for name in names:
        fixture = (defs.get(name) or [None])[-1]
        if fixture is not None and fixture.scope in ("module", "class"):
            where = item.nodeid.split("::")[0]
            keys.append(f"{where}:{name}:{indices.get(name, '')}")
    return keys


def _groups(items: list[pytest.Item]) -> dict[int, str]:
    """Item index -> group name, for the items that share a build (union-find)."""
    parent: dict[str, str] = {}

    def find(k: str) -> str:
        while parent.setdefault(k, k) != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k

    keyed = {i: _builds(item) for i, item in enumerate(items)}
    for keys in keyed.values():
        for k in keys[1:]:
            parent[find(k)] = find(keys[0])
    # a readable, stable name without '@' or brackets (xdist splits the node id there)
    return {
        i: "".join(c if c.isalnum() or c in "/._:-" else "_" for c in find(keys[0]))
        for i, keys in keyed.items()
        if keys
    }


def _group_file(controller_pid: int) -> Path:
    return Path(tempfile.gettempdir()) / f"fupan-xdist-groups-{controller_pid}.json"


class _Groups:
    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        """Mark the groups (`xdist_group`) and, on an xdist worker, write them for the
        controller's scheduler below (pytest 9 keeps a node id where xdist 3.8's loadgroup
        can no longer append the group, so the marks alone do nothing there)."""
        groups = _groups(items)
        for i, group in groups.items():
            items[i].add_marker(pytest.mark.xdist_group(group))
        if os.environ.get("PYTEST_XDIST_WORKER"):
            path = _group_file(os.getppid())  # the workers are the controller's children
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({items[i].nodeid: g for i, g in groups.items()}))
            os.replace(tmp, path)  # both workers write the same map


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_Groups(), "fupan-xdist-groups")


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """`--dist loadgroup` with the groups the workers wrote: a group goes to one worker
    whole, every other test alone (xdist's loadscope with our scope of a node id)."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # the workers have collected before scheduling starts
                path = _group_file(os.getpid())
                self.groups = json.loads(path.read_text()) if path.exists() else {}
                path.unlink(missing_ok=True)
            return self.groups.get(nodeid, nodeid)

    return GroupScheduling(config, log)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the heaviest work first (after pytest's own ordering by fixture), so that
    neither worker is left with a long group at the end: longest first. A group weighs 10
    per slow test and 1 per other test, and 50 more per session review it makes (a review
    of every chapter through the runner costs what five slow tests do, however few tests
    read it); a test outside the groups weighs alone. The order within a group, and so
    within a module, is kept."""
    weight: dict[str, int] = {}
    group = {}
    reviews: set[tuple[str, str]] = set()
    for i, item in enumerate(items):
        mark = item.get_closest_marker("xdist_group")
        w = 10 if item.get_closest_marker("slow") else 1
        key = mark.args[0] if mark else f"item:{i}"
        for name in SESSION_RUNS:
            if name in getattr(item, "fixturenames", ()) and (key, name) not in reviews:
                reviews.add((key, name))
                w += 50
        group[i] = key
        weight[key] = weight.get(key, 0) + w
    items[:] = [items[i] for i in sorted(range(len(items)), key=lambda i: (-weight[group[i]], i))]
