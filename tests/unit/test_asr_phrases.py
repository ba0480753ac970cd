"""Closed-prompt phrase scoring, dialect evidence, domain vocabulary and vosk grammar strings."""

from __future__ import annotations

import json

import pytest

from assistant.asr.dialect_id import cantonese_score, guess_dialect
from assistant.asr.phrases import match_phrase, phrase_similarity
from assistant.asr.vosk_engine import grammar_json
from dialect_models.vocab import load_vocabulary, parse_vocabulary

SERVICES = ["煤气", "石油气", "送餐", "维修", "预约"]


@pytest.mark.parametrize(
    ("hyp", "expected"),
    [
        ("我要没器", "煤气"),  # homophone mis-recognition
        ("帮我叫一下石油器", "石油气"),  # embedded in a longer sentence
        ("送参", "送餐"),
        ("我家水管坏了要维休", "维修"),
        ("预越", "预约"),
    ],
)
def test_phrase_matching_recovers_homophones(hyp, expected):
    m = match_phrase(hyp, SERVICES)
    assert m is not None and m.phrase == expected
    assert m.score > m.runner_up_score


def test_yes_no_negation_wins_over_its_substring():
    grammar = load_vocabulary("cmn").grammar("yes_no")
    assert load_vocabulary("cmn").canonical("yes_no", match_phrase("不是啊", grammar).phrase) == "不是"
    assert load_vocabulary("cmn").canonical("yes_no", match_phrase("是的是的", grammar).phrase) == "是"


def test_unrelated_speech_scores_low():
    m = match_phrase("今天天气怎么样", SERVICES)
    assert m is None or m.score < 0.5
    assert phrase_similarity("", "煤气") == 0.0


def test_cantonese_evidence():
    assert guess_dialect("佢哋喺度食紧饭") == "yue"
    assert guess_dialect("我们在这里吃饭没有") == "cmn"
    assert guess_dialect("煤气", default="yue") == "yue"  # no evidence either way
    assert cantonese_score("") == 0.0


@pytest.mark.parametrize("dialect", ["cmn", "yue"])
def test_vocabulary_has_every_section_the_prompts_use(dialect):
    v = load_vocabulary(dialect)
    for section in ("yes_no", "menu", "service", "services", "districts", "hospitals", "numbers", "times"):
        assert v.grammar(section), section
    assert {"蓬江", "江海", "新会", "台山", "开平", "鹤山", "恩平"} <= set(v.grammar("districts"))
    assert {"煤气", "石油气", "送餐", "维修", "预约"} <= set(v.grammar("service"))
    assert v.prompt  # whisper's initial prompt


def test_vocabulary_parser_rejects_phrases_outside_sections():
    with pytest.raises(ValueError):
        parse_vocabulary("煤气\n[services]\n", dialect="cmn")
    v = parse_vocabulary("[yes_no]\n是 | 对\n不是\n", dialect="cmn")
    assert v.grammar("yes_no") == ["是", "对", "不是"]
    assert v.canonical("yes_no", "对") == "是"


def test_vosk_grammar_offers_words_and_characters_plus_unknown():
    phrases = json.loads(grammar_json(["煤气", "送餐", "煤气"]))
    assert phrases == ["煤气", "煤 气", "送餐", "送 餐", "[unk]"]


def test_prompt_options_for_closed_and_open_questions():
    from assistant.asr.prompt_options import canonical_answer, closed_prompt, open_prompt

    yes_no = closed_prompt("yue", "yes_no")
    assert "唔系" in yes_no.grammar and yes_no.phrases is None
    assert "台山" in open_prompt("cmn").phrases and open_prompt("cmn").grammar is None
    assert canonical_answer("yue", "yes_no", "唔使") == "唔系"
    assert canonical_answer("cmn", "service", "") == ""


def test_whisper_drops_a_hypothesis_that_only_echoes_its_prompt():
    from assistant.asr.whisper_engine import _echoes_prompt

    prompt = "以下是普通话的句子，关于订煤气、送餐、维修和预约。"
    assert _echoes_prompt("以下是普通话。", prompt)
    assert not _echoes_prompt("我要订煤气", prompt)
    assert not _echoes_prompt("送餐", prompt)  # a real short answer may repeat the prompt's domain words
    assert not _echoes_prompt("订煤气", prompt)
    assert not _echoes_prompt("以下是普通话", None)


def test_whisper_drops_a_near_recital_of_its_prompt():
    from assistant.asr.whisper_engine import _echoes_prompt

    prompt = "以下是普通话的句子，关于订煤气、送餐、维修和预约。"
    assert _echoes_prompt("这次是普通话的句子关于订煤气送餐维修和预约", prompt)
    assert not _echoes_prompt("我想订煤气还要预约医生明天上午来", prompt)


def test_whisper_collapses_decoding_loops_but_keeps_real_repeats():
    from assistant.asr.whisper_engine import LOOP_RE

    assert LOOP_RE.sub(r"\1", "开始滚番起听听听听听听听") == "开始滚番起听"
    assert LOOP_RE.sub(r"\1", "说一下说一下") == "说一下说一下"
    assert LOOP_RE.sub(r"\1", "哈哈哈") == "哈哈哈"


def test_sensevoice_language_tag_gives_the_dialect():
    from assistant.asr.sherpa_engine import dialect_of

    assert dialect_of("<|yue|>", "我要叫石油气") == "yue"
    assert dialect_of("<|zh|>", "我要订煤气") == "cmn"
    assert dialect_of("<|en|>", "佢哋喺度") == "yue"  # other languages: the text's own evidence


def test_no_problem_is_a_yes_not_a_no():
    """'对，没问题' after a read-back once matched 没有 (no) because 没问题 was not an allowed answer (seen in CI)."""
    from dialect_models.vocab import load_vocabulary

    vocab = load_vocabulary("cmn")
    grammar = list(vocab.grammar("yes_no")) if callable(vocab.grammar) else list(vocab.grammar["yes_no"])
    for heard in ("对没问题", "没问题", "没有问题"):
        match = match_phrase(heard, grammar)
        assert match is not None and vocab.canonical("yes_no", match.phrase) == "是", (heard, match)
    assert vocab.canonical("yes_no", match_phrase("没有", grammar).phrase) == "不是"
