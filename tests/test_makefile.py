"""The README's commands: `make install` (run by `make run`) installs only what changed."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")


def dry_run(*args: str) -> str:
    """What ``make`` would run (``-n``), without running it."""
    found = subprocess.run(
        ["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return found.stdout


def test_an_installed_checkout_installs_nothing() -> None:
    subprocess.run(["make", "-s", "install"], cwd=ROOT, check=True, capture_output=True)
    assert "pip install" not in dry_run("install")


def test_a_changed_pyproject_installs_again() -> None:
    assert "pip install" in dry_run("-W", "pyproject.toml", "install")
