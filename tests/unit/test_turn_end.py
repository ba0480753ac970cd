"""The words half of the end of a turn: does the text heard so far look unfinished (assistant/text/turn_end.py)?"""

import pytest

from assistant.text.turn_end import sounds_unfinished, unfinished_tail


@pytest.mark.parametrize("text, tail", [
    ("", "nothing heard"),
    ("   ", "nothing heard"),
    ("我想订两罐煤气，", "comma"),  # the recogniser's own comma: a clause, more to come
    ("我要订煤气嗯", "嗯"),
    ("呃", "呃"),
    ("我想订煤气然后", "然后"),
    ("然后", "然后"),  # a connective alone: more to come
    ("送到我家就是", "就是"),
    ("我要那个", "那个"),
    ("还有", "还有"),
    ("我和", "和"),
    ("跟我儿子跟", "跟"),
    ("因为", "因为"),
    ("我今天不舒服所以", "所以"),
    ("如果明天下雨的话", "的话"),
    ("但是", "但是"),
    ("我要十五公斤的", "的"),
    ("我想", "想"),
    ("我要", "要"),
    ("我需要", "需要"),
    ("我觉得", "觉得"),
    ("帮我", "帮我"),
    ("我的电话是", "是"),
    ("我想订", "订"),
    ("麻烦你把", "把"),
    ("我要两", "两"),
    ("我要2", "2"),
    ("我要两罐", "两罐"),
    ("我要2罐", "2罐"),
    ("给我叫三个", "三个"),
    ("我同埋", "同埋"),  # Cantonese "and"
    ("目前工厂产量已经", "已经"),  # an adverb before its verb (a cut in the paused bench, session 9)
    ("煤气我马上", "马上"),
    ("我想訂", "订"),  # traditional script as whisper may write it
])
def test_an_unfinished_sentence_is_told_by_its_last_word(text, tail):
    assert unfinished_tail(text) == tail
    assert sounds_unfinished(text)


@pytest.mark.parametrize("text", [
    "我想订两罐十五公斤的煤气",
    "我想订两罐十五公斤的煤气。",
    "今天下午送",
    "帮我叫一辆车",
    "我肚子痛得要命",
    "换一首歌。",
    "对，没问题",
    "要", "不要", "是", "不是", "可以", "不可以", "不用", "我不想",  # short answers: alone or negated
    "是的", "好的", "对的", "真的",  # yes-words that end in 的
    "我也是", "我也要",
    "两", "3", "15",  # only a number: how many, or a menu key
    "今天下午三点", "下星期一", "初五", "第一",  # a time, a day or a rank ends with a number and is whole
    "我想订煤氣",
])
def test_a_sentence_that_may_be_complete_is_not_held(text):
    assert unfinished_tail(text) is None
    assert not sounds_unfinished(text)
