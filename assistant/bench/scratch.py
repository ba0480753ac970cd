"""The benchmarks' throwaway store: benchmark calls place orders and raise alerts (a clip saying 头晕 is a
health alert), which must never reach the operators' console or the elders' order history."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from assistant.settings import Settings


def scratch_store(settings: Settings, folder: Path) -> Settings:
    """``settings`` with the store replaced by a new SQLite file in ``folder`` (a temporary directory)."""
    return replace(settings, store=replace(settings.store, database_url=f"sqlite+aiosqlite:///{folder}/bench.db"))
