"""The intent classifier's pinyin views against real whisper-base mistakes (recorded from
`assistant eval nlu --spoken --phone`: our TTS, the 8 kHz line, whisper-base). Each transcript has the wrong
characters but nearly the right sound; the character view alone got every one of these wrong."""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.rasa]

HEARD = [
    ("我想定三官没请", "order_gas"),  # 我想订3罐煤气
    ("将我安排做完餐", "order_meal"),  # 帮我安排送晚餐
    ("最近能吃能水", "checkin_well"),  # 最近能吃能睡
    ("感觉没什么厉情", "checkin_unwell"),  # 感觉没什么力气
    ("这几天老是可怂", "checkin_unwell"),  # 这几天老是咳嗽
    ("我需要以约付茶血糖", "book_appointment"),  # 我需要预约复查血糖
]


def _parse(rasa_url: str, text: str, token: str) -> str:
    req = urllib.request.Request(
        f"{rasa_url}/model/parse?token={token}", data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.load(resp)["intent"]["name"]


def test_homophone_transcripts_get_the_intended_intent(served):
    got = {text: _parse(served.rasa_url, text, served.rasa_token) for text, _ in HEARD}
    wrong = {text: (got[text], gold) for text, gold in HEARD if got[text] != gold}
    assert len(wrong) <= 1, wrong  # one miss allowed: retraining may move a borderline case
