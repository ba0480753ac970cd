"""The offline dialogue of ``assistant eval emergencies`` reads weak consequences back as the processor does,
and the read-back band is calibrated by its rule (issue #27)."""

from __future__ import annotations

from assistant.dialogue.decision import Thresholds
from assistant.dialogue.eval_emergencies import Heard, calibrate_read_back, run_call

TH = Thresholds(confirm_below_score=0.45, confirm_below_asr=0.55)


def _h(text: str, asr: float, intent: str, nlu: float, gold: str = "") -> Heard:
    return Heard(key=text, lang="cmn", text=text, asr_confidence=asr, intent=intent, nlu_confidence=nlu, gold=gold)


TV_AD = _h("本身有肚本肚肚奶特殊不出", 0.47, "checkin_unwell", 0.92)
STORY = _h("从前有座山山里有座庙", 0.6, "nlu_fallback", 0.5)


def test_a_tv_ad_heard_as_unwell_is_read_back_and_nothing_is_booked():
    c = run_call([TV_AD, STORY, STORY], TH)
    assert not any(k.startswith("action:") for k in c) and c["read_back"] == 1
    # before: the same call booked an "unwell" call-back
    assert run_call([TV_AD, STORY, STORY], Thresholds())["action:checkin_unwell"] == 1


def test_a_yes_or_the_same_words_again_book_it():
    assert run_call([TV_AD, _h("是", 0.8, "affirm", 0.9)], TH)["action:checkin_unwell"] == 1
    assert run_call([TV_AD, TV_AD], TH)["action:checkin_unwell"] == 1


def test_two_read_backs_declined_are_the_keypad_menu():
    no = _h("不是", 0.8, "deny", 0.9)
    c = run_call([TV_AD, no, TV_AD, no], TH)
    assert c["misunderstanding"] == 1 and not any(k.startswith("action:") for k in c)


def test_band_is_the_widest_in_budget_covering_non_request_turns():
    requests = [_h(f"r{i}", 0.8, "checkin_unwell", 0.9, gold="checkin_unwell") for i in range(7)]
    requests.append(_h("weak", 0.5, "checkin_unwell", 0.8, gold="checkin_unwell"))  # asr 0.5, score 0.4
    band = calibrate_read_back(clip_turns=[_h("story", 0.45, "health_consult", 0.5)], spoken_requests=requests,
                               th=Thresholds())
    # budget: a quarter of 8 = 2; only "weak" can be read back without reading back the clear ones (score 0.72)
    assert band["true_requests_read_back"] == 1
    assert band["confirm_below_score"] <= 0.7 and band["confirm_below_asr"] <= 0.8
    assert band["confirm_below_score"] > 0.4 or band["confirm_below_asr"] > 0.5  # "weak" is in the band
