"""Every module of ours has a place in the layers of ``.importlinter`` (checked by ``lint-imports`` in
``make test``): a new module that no layer names would escape the one-way check. And our modules import
each other at the module top, not inside functions (issue #18): a lazy import hides a cycle or an upward
import from the reader, even though ``lint-imports`` counts it."""

from __future__ import annotations

import ast
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
    return set(our_module_paths())


def our_module_paths() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if "migrations" in parts:  # alembic scripts, loaded by alembic
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
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


# Modules that may import one of our modules inside a function, with the reason. Optional third-party engines
# (faster_whisper, vosk, sherpa_onnx, onnxruntime/misaki, pyttsx3, sounddevice, playwright) are imported lazily
# inside our engine modules; those are third-party imports and need no entry here.
LAZY_IMPORTS_ALLOWED: dict[str, str] = {}


def _ours(name: str) -> bool:
    return name.split(".")[0] in PACKAGES


def function_level_imports(source: str) -> list[str]:
    """``line: what`` for every import of our modules inside a function: ``import``/``from`` statements,
    relative imports and ``importlib.import_module("...")``/``__import__("...")`` with a literal name."""
    found = set()
    for fn in ast.walk(ast.parse(source)):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or _ours(node.module or "")):
                found.add((node.lineno, f"from {'.' * node.level}{node.module or ''} import ..."))
            elif isinstance(node, ast.Import):
                found.update((node.lineno, f"import {a.name}") for a in node.names if _ours(a.name))
            elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
                callee = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
                name = node.args[0].value
                if callee in ("import_module", "__import__") and isinstance(name, str) and _ours(name):
                    found.add((node.lineno, f"{callee}({name!r})"))
    return [f"{line}: {what}" for line, what in sorted(found)]


def test_function_level_import_scan_finds_each_form():
    source = (
        "import assistant.settings\n"
        "def f():\n    from assistant.errors import AssistantError\n"
        "async def g():\n    import telephony.sip\n    from . import sibling\n"
        "def h():\n    def inner():\n        importlib.import_module('dialect_models.vocab')\n"
        "def third_party():\n    import faster_whisper\n    from sqlalchemy import select\n"
    )
    assert function_level_imports(source) == [
        "3: from assistant.errors import ...", "5: import telephony.sip", "6: from . import ...",
        "9: import_module('dialect_models.vocab')",
    ]


def test_our_modules_are_imported_at_the_module_top():
    lazy = {}
    for module, path in sorted(our_module_paths().items()):
        found = function_level_imports(path.read_text(encoding="utf-8"))
        if found and module not in LAZY_IMPORTS_ALLOWED:
            lazy[module] = found
    assert lazy == {}, f"move these imports to the module top (or fix the cycle that keeps them inside): {lazy}"


def test_every_allowed_lazy_import_is_still_needed():
    modules = our_modules()
    assert sorted(m for m in LAZY_IMPORTS_ALLOWED if m not in modules) == []


def test_every_import_of_ours_names_a_module_that_exists():
    """``lint-imports`` skips an import of a module that does not exist (say, after a move); the import
    would only fail when that code runs."""
    modules = our_modules() | set(PACKAGES)
    missing = {}
    for module, path in sorted(our_module_paths().items()):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            gone = [n for n in names if _ours(n) and n not in modules]
            if gone:
                missing.setdefault(module, []).extend(f"{node.lineno}: {n}" for n in gone)
    assert missing == {}
