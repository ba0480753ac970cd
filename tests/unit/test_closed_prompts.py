"""After a read-back question the next utterance is a closed yes/no prompt; longer answers keep their words."""

from assistant.asr.base import AsrResult
from assistant.asr.stt_service import keep_what_was_said
from assistant.dialogue.processor import expectation


def _result(text: str, raw: str) -> AsrResult:
    return AsrResult(text=text, raw_text=raw, confidence=0.8, dialect="cmn", engine="test", model_id="test")


def test_read_back_question_expects_yes_no():
    assert expectation(["您要一罐十五公斤的煤气，送到登记的地址，对吗？"]) == "yes_no"
    assert expectation(["你要一罐石油氣，啱唔啱？"]) == "yes_no"


def test_keypad_menu_and_open_questions():
    assert expectation(["我还是没听清。您可以按键：按一，一切都好；按二，需要帮助；按零，转人工。"]) == "menu"
    assert expectation(["请问有什么可以帮您？"]) is None
    assert expectation([]) is None


def test_short_answer_keeps_the_matched_phrase():
    assert keep_what_was_said(_result("对", "对。")).text == "对"


def test_correction_keeps_the_free_text():
    r = keep_what_was_said(_result("不对", "不对，我要两罐"))
    assert r.text.startswith("不对") and ("两" in r.text or "2" in r.text)


def test_unmatched_answer_falls_back_to_free_text():
    assert keep_what_was_said(_result("", "我要送饭")).text == "我要送饭"
    assert keep_what_was_said(_result("", "")).text == ""
