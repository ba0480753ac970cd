"""Every module of ours has a place in the layers of ``.importlinter`` (checked by ``lint-imports`` in
``make test``): a new module that no layer names would escape the one-way check."""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("assistant", "telephony", "dialect_models")


def layered_modules() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter", encoding="utf-8")
    out: set[str] = set()
    for line in config["importlinter:contract:layers"]["layers"].splitlines():
        for item in line.replace("|", ":").split(":"):
            if item.strip():
                out.add(item.strip().strip("()"))
    return out


def our_modules() -> set[str]:
    out = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:  # alembic scripts, loaded by alembic
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out.add(".".join(parts))
    return out


def test_every_module_is_in_a_layer():
    layers = layered_modules()
    unplaced = sorted(
        m for m in our_modules()
        if m not in PACKAGES and not any(m == layer or m.startswith(layer + ".") for layer in layers)
        and not any(layer.startswith(m + ".") for layer in layers)  # a package whose modules are placed one by one
    )
    assert unplaced == [], f"add these modules to a layer in .importlinter: {unplaced}"


def test_every_layer_names_a_module():
    modules = our_modules()
    assert sorted(layer for layer in layered_modules() if layer not in modules) == []
