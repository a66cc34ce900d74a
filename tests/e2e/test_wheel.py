"""The installed tool (issue 20): a wheel in a fresh virtual environment outside the
repository runs `fupan demo-data` and `fupan review` in an empty folder, and writes only
there (outputs were tied to the checkout's PROJECT_ROOT). The install and the review are
conftest's `installed_review` (`tests/installed.py`); the browser test checks its deck."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_wheel_installs_and_reviews_from_an_empty_folder(installed_review):
    own, work = installed_review.own, installed_review.work
    assert Path(installed_review.notebook_dir) == own / "fupan" / "notebooks"
    assert "review" in installed_review.help
    deck = installed_review.deck
    assert deck == work / "reports" / "annual_review-2026-10-31" / "deck.html"
    assert deck.exists()
    manifest = json.loads((deck.parent / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["git_commit"] is None  # not the repository the venv happens to sit in
    assert len(manifest["notebooks"]) == 7 and not manifest.get("failed")
    # nothing written into the installed package or the checkout
    assert not (own / "fupan" / "reports").exists() and not (own / "reports").exists()
    assert not list((own / "fupan" / "notebooks").glob("*.tmp*"))
