"""The installed tool (issue 20): a wheel in a fresh virtual environment outside the
repository runs `fupan demo-data` and `fupan review` in an empty folder, and writes only
there (outputs were tied to the checkout's PROJECT_ROOT)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from conftest import ROOT

pytestmark = pytest.mark.slow


def _sh(cmd: list[str], cwd: Path, env: dict[str, str], timeout: int = 900) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_wheel_installs_and_reviews_from_an_empty_folder(tmp_path):
    # the wheel, built as pip builds it (isolated, from pyproject.toml), from a copy: the
    # build leaves build/ and *.egg-info beside the sources
    src = tmp_path / "src"
    skip = (".git", ".venv", "reports", "data", "build", "work", "*.egg-info", "__pycache__")
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*skip, ".venv-*", ".*_cache"))
    wheels = tmp_path / "wheels"
    # no PYTHONPATH for pip: with a checkout's lib/ on it, pip finds fupan's egg-info there,
    # calls it installed and installs nothing into the fresh venv
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    _sh(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheels), str(src)],
        cwd=tmp_path,
        env=clean,
    )
    (wheel,) = wheels.glob("fupan-*.whl")
    # A fresh venv; its dependencies come from this interpreter's site-packages, added as a
    # plain path (not a site dir: an editable fupan there must not load), after its own.
    venv = tmp_path / "venv"
    _sh([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path, env={})
    py = venv / "bin" / "python"
    own = Path(
        subprocess.check_output(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    _sh(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        cwd=tmp_path,
        env=clean,
    )
    # after the install: pip would otherwise take the editable fupan there as installed
    (own / "zz_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    work = tmp_path / "analyst"
    work.mkdir()
    fupan = str(venv / "bin" / "fupan")
    where = _sh(
        [str(py), "-c", "import fupan.core.paths as p; print(p.notebook_dir())"], cwd=work, env=env
    )
    assert Path(where.strip()) == own / "fupan" / "notebooks"
    assert "review" in _sh([fupan, "--help"], cwd=work, env=env)

    _sh([fupan, "demo-data", "--out", "demo", "--customers", "300", "--seed", "3"], work, env)
    out = _sh([fupan, "review", "--data", "demo", "--lang", "en"], work, env, timeout=1800)
    deck = Path(out.strip().splitlines()[-1])
    assert deck == work / "reports" / "annual_review-2026-10-31" / "deck.html"
    assert deck.exists()
    manifest = json.loads((deck.parent / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["git_commit"] is None  # not the repository the venv happens to sit in
    assert len(manifest["notebooks"]) == 7 and not manifest.get("failed")
    # nothing written into the installed package or the checkout
    assert not (own / "fupan" / "reports").exists() and not (own / "reports").exists()
    assert not list((own / "fupan" / "notebooks").glob("*.tmp*"))
