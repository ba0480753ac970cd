"""Text normalisation and the character error rate every evaluation uses."""

from __future__ import annotations

import pytest

from assistant.text.normalize import (
    cer,
    corpus_cer,
    digits_to_numerals,
    edit_distance,
    normalize_for_scoring,
    normalize_transcript,
    numerals_to_digits,
    strip_punctuation,
    to_simplified,
)


def test_traditional_to_simplified():
    assert to_simplified("我想叫石油氣，謝謝") == "我想叫石油气，谢谢"


def test_strip_punctuation_keeps_latin_word_breaks_only_when_asked():
    assert strip_punctuation("各位观众，晚上好！ OK?") == "各位观众晚上好OK"
    assert strip_punctuation("call the GP now。", keep_spaces_between_latin=True) == "call the GP now"


@pytest.mark.parametrize(
    ("spoken", "written"),
    [
        ("下午三点半", "下午3点半"),
        ("两瓶煤气", "2瓶煤气"),
        ("十二点十五分", "12点15分"),
        ("一百零五岁", "105岁"),
        ("电话一三八零零一三八零零零", "电话13800138000"),
        ("等一下", "等一下"),  # not a quantity
        ("统一", "统一"),
    ],
)
def test_numerals_to_digits_only_for_times_quantities_and_digit_strings(spoken, written):
    assert numerals_to_digits(spoken) == written


def test_digits_to_numerals_reads_numbers_and_long_digit_strings():
    assert digits_to_numerals("运距356公里") == "运距三百五十六公里"
    assert digits_to_numerals("13800138000") == "一三八零零一三八零零零"


def test_normalize_transcript_is_what_nlu_gets():
    assert normalize_transcript("我想約明天下午三點半，兩瓶石油氣。") == "我想约明天下午3点半2瓶石油气"


def test_scoring_form_makes_digits_and_characters_equal():
    assert normalize_for_scoring("減少運距356公里。") == normalize_for_scoring("减少运距三百五十六公里")


def test_edit_distance():
    assert edit_distance("abc", "abc") == 0
    assert edit_distance("abc", "abd") == 1
    assert edit_distance("abc", "") == 3
    assert edit_distance("", "ab") == 2
    assert edit_distance("换一首歌", "换首歌") == 1


def test_cer_values():
    assert cer("各位观众晚上好", "各位觀眾，晚上好！") == 0.0
    assert cer("各位观众晚上好", "各位观众玩笑好") == pytest.approx(2 / 7)
    assert cer("换一首歌", "") == 1.0
    assert cer("", "") == 0.0
    assert cer("", "多余") == 1.0
    assert cer("是", "不是啊") == pytest.approx(2.0)  # insertions can push CER above 1


def test_corpus_cer_weights_by_reference_length():
    pairs = [("换一首歌", "换一首歌"), ("各位观众晚上好", "各位观众玩笑好")]
    assert corpus_cer(pairs) == pytest.approx(2 / 11)
    assert corpus_cer([]) == 0.0
