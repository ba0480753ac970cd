"""Shared fixtures. Tests that need ../shared, a model, Rasa or a Debian program skip with a clear reason."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from assistant.settings import Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(__import__("os").environ.get("ASSISTANT_SHARED_DIR", ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    """A path under ../shared, or a skip saying it is missing."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data missing: {p} (tests read ../shared beside the clone)")
    return p


def need_program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (scripts/setup.sh installs it from Debian)")
    return path


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings with var/ in a temporary folder and a fresh SQLite database."""
    import os

    env = dict(os.environ)
    env["ASSISTANT_VAR_DIR"] = str(tmp_path / "var")
    (tmp_path / "var").mkdir()
    return load_settings(env)
