"""Per-dialect domain vocabulary (``dialect_models/vocab/<dialect>.txt``, package data).

Sections (``[name]`` headers) hold one phrase per line; ``a | b | c`` lists synonyms whose first member is
the canonical answer. Closed prompts use a section as a grammar (``grammar("cmn", "yes_no")``); open prompts
use ``hotwords`` (services, districts, hospitals) for biasing; ``[prompt]`` is whisper's initial prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

DIALECTS = ("cmn", "yue")
HOTWORD_SECTIONS = ("services", "districts", "hospitals")


@dataclass(frozen=True, kw_only=True)
class Vocabulary:
    dialect: str
    sections: dict[str, tuple[tuple[str, ...], ...]]  # section → entries → synonyms (canonical first)

    def grammar(self, name: str) -> list[str]:
        """Every phrase of a section, synonyms included (what a closed prompt accepts)."""
        return [p for entry in self._section(name) for p in entry]

    def canonical(self, name: str, phrase: str) -> str:
        """The canonical member of the entry holding ``phrase`` (``phrase`` itself when not found)."""
        for entry in self._section(name):
            if phrase in entry:
                return entry[0]
        return phrase

    def hotwords(self, sections: tuple[str, ...] = HOTWORD_SECTIONS) -> list[str]:
        return [entry[0] for name in sections for entry in self.sections.get(name, ())]

    @property
    def prompt(self) -> str:
        lines = self.sections.get("prompt", ())
        return "".join(entry[0] for entry in lines)

    def _section(self, name: str) -> tuple[tuple[str, ...], ...]:
        if name not in self.sections:
            raise KeyError(f"no [{name}] section in the {self.dialect} vocabulary")
        return self.sections[name]


def parse_vocabulary(text: str, *, dialect: str) -> Vocabulary:
    sections: dict[str, list[tuple[str, ...]]] = {}
    current: list[tuple[str, ...]] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), [])
            continue
        if current is None:
            raise ValueError(f"{dialect} vocabulary: phrase {line!r} before any [section]")
        current.append(tuple(p.strip() for p in line.split("|") if p.strip()))
    return Vocabulary(dialect=dialect, sections={k: tuple(v) for k, v in sections.items()})


@lru_cache(maxsize=8)
def load_vocabulary(dialect: str) -> Vocabulary:
    if dialect not in DIALECTS:
        raise KeyError(f"no vocabulary for dialect {dialect!r} (known: {', '.join(DIALECTS)})")
    text = resources.files("dialect_models").joinpath("vocab", f"{dialect}.txt").read_text(encoding="utf-8")
    return parse_vocabulary(text, dialect=dialect)
