"""Elder-friendly text rules (assistant.tts.speakable): pure functions, no voice needed."""

import pytest

from assistant.tts.speakable import (
    integer_words,
    phone_words,
    price_words,
    slower_rate_wpm,
    speakable,
    time_words,
)


@pytest.mark.parametrize(
    ("n", "words"),
    [(0, "零"), (2, "二"), (10, "十"), (12, "十二"), (20, "二十"), (105, "一百零五"), (110, "一百一十"),
     (1005, "一千零五"), (30000, "三万"), (120000, "十二万")],
)
def test_integers_are_read_as_people_say_them(n, words):
    assert integer_words(n) == words


@pytest.mark.parametrize(
    ("text", "cmn", "yue"),
    [
        ("煤气20分钟后送到", "煤气二十分钟后送到", "煤气二十分钟后送到"),
        ("上午10:30上门", "上午十点半上门", "上午十點半上门"),
        ("15kg煤气", "十五公斤煤气", "十五公斤煤气"),
        ("15公斤", "十五公斤", "十五公斤"),
        ("2罐煤气", "两罐煤气", "兩罐煤气"),
        ("共12个", "共十二个", "共十二个"),
        ("体温38.5℃", "体温三十八点五度", "体温三十八點五度"),
        ("折扣50%", "折扣百分之五十", "折扣百分之五十"),
        ("2024年5月3日", "二零二四年五月三日", "二零二四年五月三日"),
        ("3-5天", "三到五天", "三到五天"),
    ],
)
def test_numbers_times_units_per_dialect(text, cmn, yue):
    assert speakable(text, dialect="cmn") == cmn
    assert speakable(text, dialect="yue") == yue


def test_times():
    assert time_words(10, 30) == "十点半"
    assert time_words(9, 5) == "九点零五分"
    assert time_words(2, 0) == "两点"
    assert time_words(14, 15) == "十四点十五分"
    assert time_words(10, 30, dialect="yue") == "十點半"


def test_prices_mandarin_and_cantonese():
    assert price_words("15.5") == "十五块五"
    assert price_words("0.5") == "五毛"
    assert price_words("15") == "十五块"
    assert price_words("2") == "两块"
    assert price_words("15.05") == "十五块零五分"
    assert price_words("15.5", dialect="yue") == "十五蚊五"
    assert speakable("价格15.5元") == "价格十五块五"
    assert speakable("¥30") == "三十块"


def test_phone_numbers_digit_by_digit_with_yao_in_mandarin():
    assert speakable("请拨打13812345678") == "请拨打幺三八 幺二三四 五六七八"
    assert speakable("请拨打13812345678", dialect="yue") == "请拨打一三八 一二三四 五六七八"
    assert speakable("电话是 021-62345678") == "电话是 零二幺 六二三四 五六七八"
    # short service numbers after 拨打/电话 are digits too, not 一百二十
    assert speakable("有事拨打120。") == "有事拨打幺二零。"
    assert speakable("验证码 4821") == "验证码 四八二幺"
    assert phone_words("138-1234-5678") == "幺三八 幺二三四 五六七八"


def test_blood_pressure_and_punctuation():
    assert speakable("血压140/90mmHg") == "血压高压一百四十，低压九十"
    assert speakable("Hello, 您好! 好的?") == "Hello，您好！好的？"
    assert speakable("第一行\n第二行") == "第一行。第二行"
    assert speakable("**注意** 🙂") == "注意"


def test_slower_lowers_rate_but_not_below_minimum():
    assert slower_rate_wpm(130, step_wpm=20, min_wpm=80) == 110
    assert slower_rate_wpm(90, step_wpm=20, min_wpm=80) == 80
