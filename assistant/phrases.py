"""Everything the bot says, in Mandarin (``cmn``) and Cantonese (``yue``): one table for the whole product.

Read by the pipeline (gateway greetings, keypad and PIN prompts, the dialogue's own fallbacks, the fraud
guard, the hand-over) and by the Rasa actions (``intents/actions``, which run in the Rasa environment and
import this module by path: it must stay pure data plus ``str.format``, importing nothing but the standard
library). Start-up and the set-up's pre-render warm exactly the clauses of these utterances that hold no
field (``assistant.tts.registry.fixed_clauses``).

- The table itself is data, ``assistant/phrases.toml`` (loaded once, at import): ``PHRASES``, whole
  utterances; ``PIECES``, words and clauses that code composes into an utterance (the order read-backs, the
  identity proof, the family alert), never spoken alone, so never warmed.
- ``{platform}`` is the platform's name, a deployment fact (``settings.platform.name``, default 平安通);
  the assistant calls itself ``{platform}语音助手`` everywhere. Other ``{fields}`` are filled by the caller.
- Elder UX: short sentences, one question at a time, read-backs before anything is booked, and the
  keypad offered whenever speech fails. Cantonese is written in Cantonese (嘅、唔、系、咗), in simplified
  characters (the voices read both scripts alike).
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

DIALECTS = ("cmn", "yue")
DEFAULT_DIALECT = "cmn"
DEFAULT_PLATFORM_NAME = "平安通"

TABLE = Path(__file__).with_name("phrases.toml")


def _load(path: Path) -> tuple[dict[str, dict[str, str]], dict[str, dict[str, str]]]:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    return data["phrases"], data["pieces"]


# PHRASES: whole utterances; PIECES: words and clauses that code composes into an utterance
PHRASES, PIECES = _load(TABLE)

_FIELD = re.compile(r"\{(\w+)\}")


def _pick(table: dict[str, dict[str, str]], key: str, dialect: str | None) -> str:
    texts = table[key]
    return texts.get(dialect or DEFAULT_DIALECT) or texts[DEFAULT_DIALECT]


@dataclass(frozen=True, kw_only=True)
class Phrasebook:
    """The table bound to one deployment's platform name. Unknown dialects get Mandarin; a missing field
    raises ``KeyError`` (a bug, not something to speak around)."""

    platform_name: str = DEFAULT_PLATFORM_NAME

    def say(self, key: str, dialect: str | None, **fields: object) -> str:
        """The utterance ``key`` in ``dialect``, fields filled."""
        return _pick(PHRASES, key, dialect).format(platform=self.platform_name, **fields)

    def piece(self, key: str, dialect: str | None, **fields: object) -> str:
        """A word or clause that code composes into an utterance."""
        return _pick(PIECES, key, dialect).format(platform=self.platform_name, **fields)

    def utterances(self) -> list[tuple[str, str]]:
        """(dialect, text) of every utterance, the platform's name filled in and other fields left as
        ``{field}``. The prompt cache is warmed with their field-free clauses
        (``assistant.tts.registry.fixed_clauses``: at start-up and by ``python -m assistant.tts.prerender``)."""
        return [(d, texts[d].replace("{platform}", self.platform_name)) for texts in PHRASES.values() for d in DIALECTS]


def fields_of(text: str) -> set[str]:
    """The ``{fields}`` a text needs."""
    return set(_FIELD.findall(text))
