"""The environment specs agree, the Makefile offers what the README promises."""

from __future__ import annotations

import re
import subprocess
import tomllib

import yaml
from conftest import ROOT


def _norm(req: str) -> str:
    return re.sub(r"\s+", "", req).lower()


def test_environment_yml_matches_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(r) for r in project["dependencies"] + project["optional-dependencies"]["dev"]}
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    listed = {_norm(r) for r in pip if not r.startswith("-e")}
    assert listed == wanted, (
        f"only in environment.yml: {listed - wanted}; only in pyproject: {wanted - listed}"
    )
    assert any(r.startswith("-e .") for r in pip), (
        "environment.yml must install the project itself (-e .)"
    )


def test_make_help_is_default_and_lists_targets():
    out = subprocess.run(
        ["make", "-s", "-C", str(ROOT)], capture_output=True, text=True, check=True
    ).stdout
    for target in ("setup", "data", "review", "monthly", "lab", "test", "bench", "lint", "clean"):
        assert re.search(rf"\b{target}\b", out), f"make help does not list {target}"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    assert "make test" in (ROOT / "README.md").read_text()


def test_lib_fupan_is_tracked_by_git():
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "lib/fupan/io/data.py"], cwd=ROOT
    ).returncode
    assert ignored == 1, "lib/fupan is ignored by .gitignore: it would never be committed"


def test_wheel_lists_every_subpackage():
    # setuptools gets an explicit package list; a new subpackage left out of it is missing
    # from the wheel, and `fupan` fails only when installed (the wheel test is slow)
    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    lib = ROOT / "lib"
    found = {
        ".".join(p.parent.relative_to(lib).parts)
        for p in (lib / "fupan").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert found <= listed, f"add {sorted(found - listed)} to [tool.setuptools] packages"
