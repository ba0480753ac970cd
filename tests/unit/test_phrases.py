"""The one table of what the bot says (assistant/phrases.py): both dialects, nothing defined twice, the
platform's name from the settings, and the warm-up set equal to what the bot can say word for word."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from assistant.phrases import DIALECTS, PHRASES, PIECES, Phrasebook, fields_of
from assistant.settings import load_settings
from assistant.tts import registry
from assistant.tts.registry import fixed_clauses, split_clauses

ROOT = Path(__file__).resolve().parents[2]
# every module that speaks to a caller: none of them may write a sentence of its own
SPEAKERS = [
    "telephony/gateway.py", "telephony/scheduler.py", "telephony/engine.py", "telephony/handover.py",
    "telephony/screening.py", "telephony/broadcasts.py", "telephony/followups.py",
    "telephony/medication.py",
    "assistant/dialogue/processor.py", "assistant/fraud_guard/identity.py", "assistant/fraud_guard/guard.py",
    "assistant/fraud_guard/pii_gate.py", "assistant/pipeline.py", *sorted(
        str(p.relative_to(ROOT)) for p in (ROOT / "intents" / "actions").rglob("*.py")),
]
_CJK = re.compile(r"[\u4e00-\u9fff]")
_SENTENCE_END = re.compile(r"[。？！]")
# characters whose simplified form differs: the table writes Cantonese in simplified characters
_TRADITIONAL = set("係個會們聽話電說對來時還為幫轉請線號樣點體經記時間專撳聯絡處")


def test_every_key_has_both_dialects_with_the_same_fields():
    for table in (PHRASES, PIECES):
        for key, texts in table.items():
            assert tuple(texts) == DIALECTS, key
            assert fields_of(texts["cmn"]) == fields_of(texts["yue"]), key
            assert all(t.strip() for t in texts.values()), key


def test_no_phrase_is_defined_twice():
    assert not set(PHRASES) & set(PIECES)
    for dialect in DIALECTS:
        seen: dict[str, str] = {}
        for key, texts in [*PHRASES.items(), *PIECES.items()]:
            assert texts[dialect] not in seen, (dialect, key, seen.get(texts[dialect]))
            seen[texts[dialect]] = key


def test_cantonese_is_cantonese_in_simplified_characters():
    yue = "".join(texts["yue"] for texts in [*PHRASES.values(), *PIECES.values()])
    assert not set(yue) & _TRADITIONAL, sorted(set(yue) & _TRADITIONAL)
    assert sum(yue.count(w) for w in ("嘅", "唔", "系", "咗", "啲", "咩", "揿")) >= 50


def _string_constants(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        id(node.body[0].value) for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
        and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
    }
    return [(n.lineno, n.value) for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in docstrings]


@pytest.mark.parametrize("module", SPEAKERS)
def test_speaking_modules_take_their_sentences_from_the_table(module):
    """A sentence written anywhere else would be a second table (and would not be warmed)."""
    own = [(line, s) for line, s in _string_constants(ROOT / module) if _CJK.search(s) and _SENTENCE_END.search(s)]
    assert not own, own


def _used_keys() -> str:
    return "\n".join((ROOT / m).read_text(encoding="utf-8") for m in SPEAKERS)


def test_every_phrase_is_said_somewhere():
    """The table holds only what the bot really says, so warming it warms nothing it never says."""
    code = _used_keys()
    slots = set(re.findall(r'"((?:gas|meal|repair|appt)_\w+)"', code))
    for key in [*PHRASES, *PIECES]:
        if f'"{key}"' in code:
            continue
        prefix, _, slot = key.partition("_")
        if prefix in ("ask", "retry") and slot in slots:  # action_ask_<slot> says ask_<slot> / retry_<slot>
            continue
        if key.startswith("family_what_"):  # family_what_<alert kind>
            assert key.removeprefix("family_what_") in code, key
            continue
        pytest.fail(f"{key} is in the table but nothing says it")


def test_say_fills_fields_names_the_platform_and_falls_back_to_mandarin():
    p = Phrasebook(platform_name="颐康通")
    assert p.say("greeting", "yue") == "你好，我系颐康通语音助手。请问有咩可以帮到你？"
    assert p.say("greeting", "fr") == p.say("greeting", None) == "您好，我是颐康通语音助手。请问有什么可以帮您？"
    assert p.say("order_placed", "cmn", order_id="1 2 3 4").endswith("单号是1 2 3 4。")
    with pytest.raises(KeyError):
        p.say("order_placed", "cmn")  # a missing field is a bug, not something to speak around
    assert p.piece("proof_caller", "yue") == "颐康通打嚟"
    # one name for the assistant everywhere: <platform>语音助手
    texts = "".join(t for texts in PHRASES.values() for t in texts.values())
    assert texts.count("语音助手") == texts.count("{platform}语音助手") >= 4


def test_the_platform_name_comes_from_the_settings():
    from telephony.gateway import Gateway, greeting_text

    s = load_settings(env={"ASSISTANT_PLATFORM_NAME": "颐康通"})
    assert s.platform.name == "颐康通" and load_settings(env={}).platform.name == "平安通"
    gateway = Gateway(settings=s, pipeline_factory=lambda **_: None, port=0)
    for kind in ("known", "unknown"):
        assert "我是颐康通语音助手" in greeting_text(phrases=gateway.phrases, dialect="cmn", kind=kind)
    assert gateway.escalation.phrases.platform_name == "颐康通"
    from telephony.scheduler import CareCallRunner

    runner = CareCallRunner(gateway=gateway, ledger_record=None)
    assert runner.phrases.platform_name == "颐康通"  # care calls and their call-backs name it too


# realistic values for the fields: the clauses around them must be the warmed ones
SAMPLE_FIELDS = {"order_id": "1 2 3 4", "code": "4 8 2 1", "name": "王秀兰", "what": "按了紧急求助", "size": "十五公斤",
                 "quantity": "两罐", "place": "送到您登记的地址。", "when": "明天上午", "meals": "午餐", "days": "明天",
                 "diet": "少盐", "item": "水管", "urgency": "不急", "hospital": "中心医院", "department": "眼科",
                 "escort": "不用人陪", "n": "2", "elder": "王秀兰",
                 "message": "明天上午全市停水。", "medicine": "降压药"}


def test_warm_up_set_is_what_the_bot_says_word_for_word():
    """Clause by clause (as the voice synthesises and caches them): the warmed clauses are exactly the
    clauses of the bot's utterances that do not hold a field's value."""
    p = Phrasebook(platform_name="颐康通")
    said_fixed = set()
    for key, texts in PHRASES.items():
        for dialect in DIALECTS:
            values = {f: SAMPLE_FIELDS[f] for f in fields_of(texts[dialect]) - {"platform"}}
            said_fixed |= {(dialect, c) for c in split_clauses(p.say(key, dialect, **values))
                           if not any(v in c for v in values.values())}
    warmed = set(fixed_clauses(p))
    assert warmed == said_fixed, (sorted(warmed - said_fixed)[:5], sorted(said_fixed - warmed)[:5])
    assert len(warmed) == len(fixed_clauses(p))  # each once
    # what the gateway itself says is among them (start-up used to warm a greeting it never said)
    from telephony.gateway import GREETING_KEYS

    for dialect in DIALECTS:
        for key in [*GREETING_KEYS.values(), "time_limit_goodbye"]:
            assert {(dialect, c) for c in split_clauses(p.say(key, dialect))} <= warmed


async def test_start_up_and_pre_render_warm_the_table_with_the_configured_name(settings, monkeypatch):
    """``registry.warm`` (start-up and ``python -m assistant.tts.prerender``) synthesises exactly the
    table's fixed clauses, with the deployment's platform name."""
    s = dataclasses.replace(settings, platform=dataclasses.replace(settings.platform, name="颐康通"))
    synthesized: list[tuple[str, str]] = []

    async def fake_synthesize(text, *, dialect, **_):
        synthesized.append((dialect, text))

    async def no_engine(name, *, settings):
        return None

    monkeypatch.setattr(registry, "synthesize", fake_synthesize)
    monkeypatch.setattr(registry, "get_engine", no_engine)
    report = await registry.warm(settings=s)
    assert synthesized == fixed_clauses(Phrasebook(platform_name="颐康通")) and report.failed == 0
    assert any("颐康通" in c for _, c in synthesized) and not any("平安通" in c for _, c in synthesized)
