"""The installed tool (issue 20): fupan built as a wheel, installed in a fresh virtual
environment outside the repository, and run from an empty folder (`fupan demo-data`, then
an English `fupan review` of every chapter). Made once per test run by conftest's
`installed_review`; `tests/e2e/test_wheel.py` checks the install and what it wrote, and
`tests/browser/test_browser.py` checks its English deck in Chromium."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Installed:
    venv: Path
    own: Path  # the venv's site-packages, where the wheel put fupan
    work: Path  # the analyst's folder the commands ran in
    env: dict[str, str]
    notebook_dir: str  # what fupan.core.paths.notebook_dir() said in the venv
    help: str  # `fupan --help`
    deck: Path  # the English review's deck, as `fupan review` printed it

    @property
    def run_dir(self) -> Path:
        return self.deck.parent


def sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def install_and_review(root: Path, tmp: Path) -> Installed:
    """Build the wheel of the checkout at ``root``, install it, run demo-data and review."""
    # the wheel, built as pip builds it (isolated, from pyproject.toml), from a copy: the
    # build leaves build/ and *.egg-info beside the sources
    src = tmp / "src"
    skip = (".git", ".venv", "reports", "data", "build", "work", "*.egg-info", "__pycache__")
    shutil.copytree(root, src, ignore=shutil.ignore_patterns(*skip, ".venv-*", ".*_cache"))
    wheels = tmp / "wheels"
    # no PYTHONPATH for pip: with a checkout's lib/ on it, pip finds fupan's egg-info there,
    # calls it installed and installs nothing into the fresh venv
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    pip = [sys.executable, "-m", "pip"]
    sh([*pip, "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)], cwd=tmp, env=clean)
    (wheel,) = wheels.glob("fupan-*.whl")
    # A fresh venv; its dependencies come from this interpreter's site-packages, added as a
    # plain path (not a site dir: an editable fupan there must not load), after its own.
    venv = tmp / "venv"
    sh([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env={})
    py = venv / "bin" / "python"
    own = Path(
        subprocess.check_output(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    sh([*pip, "--python", str(py), "install", "--no-deps", "-q", str(wheel)], cwd=tmp, env=clean)
    # after the install: pip would otherwise take the editable fupan there as installed
    (own / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    work = tmp / "analyst"
    work.mkdir()
    fupan = str(venv / "bin" / "fupan")
    where = sh(
        [str(py), "-c", "import fupan.core.paths as p; print(p.notebook_dir())"], cwd=work, env=env
    )
    helptext = sh([fupan, "--help"], cwd=work, env=env)
    sh([fupan, "demo-data", "--out", "demo", "--customers", "300", "--seed", "3"], work, env)
    out = sh([fupan, "review", "--data", "demo", "--lang", "en"], work, env, timeout=1800)
    deck = Path(out.strip().splitlines()[-1])
    return Installed(venv, own, work, env, where.strip(), helptext, deck)
