"""Slot parsing and text normalisation used by the actions and the NLU component (pure, no Rasa needed)."""

from __future__ import annotations

import pytest

from intents.actions import parsing
from intents.components.normalize import cn_number, normalize


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("我想叫兩樽十五公斤嘅石油氣，唔該！", "我想叫2樽15公斤嘅石油气唔该"),
        ("聽日三點半覆診", "听日3点半覆诊"),
        ("今天 天气 怎么样?", "今天天气怎么样"),
        ("我要一下", "我要一下"),  # a numeral that counts nothing stays
        ("ＡＢＣ１２３", "abc123"),
    ],
)
def test_normalize_script_punctuation_numerals(raw, expected):
    assert normalize(raw) == expected


def test_cn_number():
    assert [cn_number(x) for x in ("十五", "二十", "两", "一百", "一五", "廿")] == [15, 20, 2, 100, 15, None]


def test_gas_size_and_quantity():
    assert parsing.parse_gas_size("我想叫兩樽十五公斤石油氣") == "15kg"
    assert parsing.parse_gas_size("细樽就得") == "5kg"
    assert parsing.parse_gas_size("同上次一样") == "usual"
    assert parsing.parse_gas_size("我要煤气") is None
    assert parsing.parse_quantity("要三罐") == 3
    assert parsing.parse_quantity("兩", bare_ok=True) == 2
    assert parsing.parse_quantity("兩") is None  # a bare number only answers "how many?"
    assert parsing.parse_quantity("要20罐", bare_ok=True) is None  # more than an elder's home holds


def test_when():
    assert parsing.parse_when("聽日朝早") == "明天上午"
    assert parsing.parse_when("下个礼拜三下昼三点") == "下星期三下午3点"
    assert parsing.parse_when("越快越好") == "尽快"
    assert parsing.parse_when("唔急，后天") == "后天"
    assert parsing.parse_when("嗯") is None


def test_meal_slots():
    assert parsing.parse_meals("午饭同晚饭") == ["lunch", "dinner"]
    assert parsing.parse_meals("一日三餐") == ["breakfast", "lunch", "dinner"]
    assert parsing.parse_days("一個星期") == "1个星期"
    assert parsing.parse_days("每天") == "每天"
    assert parsing.parse_diet("要軟啲 少鹽") == ["soft", "low_salt"]
    assert parsing.parse_diet("我有糖尿病") == ["diabetic"]
    assert parsing.parse_diet("冇") == ["none"]
    assert parsing.parse_diet("嗯") is None


def test_repair_and_appointment_slots():
    assert parsing.parse_repair_item("廁所沖唔到水") == "马桶"
    assert parsing.parse_repair_item("大门关不上") == "门锁"
    assert parsing.parse_repair_item("阳台的晾衣架断了", free_text_ok=True) == "阳台的晾衣架断了"
    assert parsing.parse_repair_item("我要维修", free_text_ok=True) is None
    assert parsing.parse_urgency("好急呀") == "urgent"
    assert parsing.parse_urgency("唔急") == "normal"
    assert parsing.parse_urgency("系", asked=True) == "urgent"
    assert parsing.parse_hospital("去中心醫院") == "江门市中心医院"
    assert parsing.parse_hospital("江海人民医院") == "江海区人民医院"
    assert parsing.parse_hospital("去北街卫生院", free_text_ok=True) == "社区卫生服务中心"
    assert parsing.parse_department("睇眼") == "眼科"
    assert parsing.parse_department("看泌尿科", free_text_ok=True) == "看泌尿科"
    assert parsing.parse_escort("唔使 我個仔陪我去") is False
    assert parsing.parse_escort("要人陪") is True
    assert parsing.parse_escort("", intent="affirm") is True


def test_yes_no_and_cancel():
    assert parsing.parse_yes_no("啱啊") is True
    assert parsing.parse_yes_no("唔啱") is False
    assert parsing.parse_yes_no("不对 要三罐") is False
    assert parsing.parse_yes_no("冇错") is True
    assert parsing.parse_yes_no("嗯嗯那个") is True
    assert parsing.parse_yes_no("那个") is None
    assert parsing.parse_yes_no("随便", intent="deny") is False
    assert parsing.is_cancel("算了唔要喇") and not parsing.is_cancel("要两罐")


def test_speak_number():
    assert [parsing.speak_number(n) for n in (1, 2, 10, 15, 20, 35)] == ["一", "两", "十", "十五", "二十", "三十五"]


def test_quantity_accepts_asr_homophones_of_guan():
    assert parsing.parse_quantity("我想订两贯15公斤的煤气") == 2
    assert parsing.parse_quantity("要三冠") == 3
    assert parsing.parse_quantity("要15公斤的大关一关今天下午送") == 1
    assert parsing.parse_quantity("要15公斤的大官一官今天下午送") == 1  # seen in CI
    assert parsing.parse_quantity("两馆") == 2
    assert parsing.parse_quantity("我习惯了") is None
