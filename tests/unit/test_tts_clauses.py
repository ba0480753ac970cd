"""Clause splitting for streaming synthesis (the first clause plays while the rest are synthesized)."""

from assistant.tts.registry import split_clauses


def test_splits_at_sentence_and_comma_boundaries_in_order():
    text = "好的，给您订两罐煤气。大约二十分钟送到！还有别的需要吗？"
    assert split_clauses(text) == ["好的，", "给您订两罐煤气。", "大约二十分钟送到！", "还有别的需要吗？"]


def test_first_clause_is_short_for_fast_first_audio():
    clauses = split_clauses("您好，我是社区的语音助手，请问有什么可以帮您？")
    assert clauses[0] == "您好，"
    assert "".join(clauses) == "您好，我是社区的语音助手，请问有什么可以帮您？"
    # later short pieces are joined to the next one
    assert split_clauses("我是助手，好，请问有什么可以帮您？") == ["我是助手，", "好，请问有什么可以帮您？"]


def test_never_splits_inside_numbers():
    clauses = split_clauses("师傅10:30到，价格15,000元。")
    assert clauses == ["师傅10:30到，", "价格15,000元。"]


def test_tiny_tail_is_joined_and_empty_input_gives_nothing():
    assert split_clauses("请稍等。好。") == ["请稍等。好。"]
    assert split_clauses("好。") == ["好。"]
    assert split_clauses("") == []
    assert split_clauses("   ") == []
