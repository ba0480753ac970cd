"""End-to-end fixtures: the real CLI in a subprocess, real models, real Rasa servers on loopback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def need_rasa() -> None:
    if not (ROOT / ".venv-rasa" / "bin" / "python").exists():
        pytest.skip("Rasa environment missing (.venv-rasa; scripts/setup.sh creates it)")
    if not any((ROOT / "intents" / "models").glob("*.tar.gz")):
        pytest.skip("no trained Rasa model in intents/models (`assistant rasa train`)")


def need_whisper() -> None:
    from assistant.settings import load_settings

    model = load_settings().paths.models_dir / "whisper-base" / "model.bin"
    if not model.exists():
        pytest.skip(f"whisper-base model missing at {model} (`assistant models fetch whisper-base`)")


def run_cli(*args: str, env: dict[str, str] | None = None, timeout_s: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "assistant.cli", *args],
        cwd=ROOT,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
