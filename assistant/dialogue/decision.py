"""One calibrated decision per turn (issue #27): act, raise an emergency, ask about one, or "say again".

The dialogue used to act on the NLU's top intent whatever recognition had heard: garbled Cantonese story
lines became SOS calls to a daughter in another city. Now every spoken turn gets one decision from the ASR
confidence, the NLU's intent and confidence, an emergency keyword spotter and the dialogue state:

- ``emergency``: act at once (SOS alert, family told): the NLU says ``emergency`` confidently on a clear
  enough recognition, or a strong emergency keyword (救命, 跌低, 心口痛 …) was recognised clearly enough.
- ``ask_emergency``: something sounds like an emergency but not clearly: ask one short question (yes / key 1
  / silence / anything unclear → a person, "unconfirmed emergency"; a clear no → carry on).
- ``act``: hand the text to Rasa (orders, bookings, check-in answers, yes/no ...).
- ``confirm``: a consequence that nothing reads back (an "unwell" alert, a nurse call-back, "I'm fine" closing a
  care call: ``CONFIRM_INTENTS``) understood on weak evidence (the score or the ASR confidence in the band below
  ``confirm_below_score`` / ``confirm_below_asr``): read back what was understood and ask yes / no; act only on
  a yes (key 1, 对, 是 …) or the same request said again. Orders and bookings read themselves back before they
  are placed (their forms' last slot): they are never asked twice.
- ``not_heard``: below the thresholds nothing with consequences happens: "sorry, say that again", and after
  ``max_failed_turns`` the keypad menu.

Thresholds live in ``DialogueSettings`` (``decision_*``); their defaults were calibrated by
``assistant eval emergencies --calibrate`` on a calibration split (see ``eval_emergencies.py``).
Typed text and keypad presses carry no ASR confidence and are trusted (``asr_confidence=None``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from assistant.dialogue.emergency_spotter import Spotting, spot
from assistant.text.normalize import strip_punctuation, to_simplified

Action = Literal["act", "confirm", "emergency", "ask_emergency", "not_heard"]
# why the emergency question is asked: emergency evidence, or turns in a row not understood
QuestionRoute = Literal["evidence", "not_understood"]
Answer = Literal["yes", "no", "unclear"]

# intents whose turn has no consequence when acted on by mistake (a repetition, a slower voice, a hello)
UNWELL_INTENT = "checkin_unwell"
HARMLESS_INTENTS = frozenset({"repeat", "slower", "greet", "nlu_fallback", "out_of_scope"})
# intents whose action has a consequence nothing reads back first (intents/actions/care.py, turns.py: an
# "unwell" operator alert and call-back, a nurse call-back; "I'm fine" closes a care call's question, see
# telephony/scheduler.py INTENT_OUTCOMES). Orders and bookings read the order back before placing it; a hand-over
# (request_human) and the emergency path put a person on the line, the safe side of a mistake
CONFIRM_INTENTS = frozenset({"checkin_unwell", "health_consult", "checkin_well"})
# spoken keypad-menu choices: the whole utterance must be the choice ("二", "按二", "第二个", "转人工")
MENU_WORDS = {
    "1": ("一", "1", "第一", "第一个", "按一", "㩒一", "揿一", "一号"),
    "2": ("二", "2", "两", "第二", "第二个", "按二", "㩒二", "揿二", "二号"),
    "0": ("零", "0", "按零", "㩒零", "揿零", "人工", "转人工", "接线员"),
}
_YES_WORDS = ("是", "系", "係", "对", "啱", "要", "好", "嗯", "需要", "救命", "帮我", "帮手", "快", "有", "一", "1")
_NO_WORDS = ("不是", "唔系", "唔係", "不要", "唔要", "没事", "冇事", "无事", "不用", "唔使", "没有", "冇", "我很好", "我好好", "好好", "不需要", "唔需要")


@dataclass(frozen=True, kw_only=True)
class Thresholds:
    """See ``DialogueSettings.decision_*``. A *score* is ASR confidence × NLU confidence (typed text: NLU alone)."""

    act_min_asr: float = 0.3
    act_min_score: float = 0.35
    emergency_now_min_score: float = 0.3
    keyword_now_min_asr: float = 0.5
    emergency_ask_min_score: float = 0.3
    ask_min_asr: float = 0.1
    answer_min_asr: float = 0.3
    question_after_failed_turns: int = 1  # turns in a row not understood → the emergency question (0: never)
    confirm_below_score: float = 0.0  # a CONFIRM_INTENTS act with a score below this is read back and asked first
    confirm_below_asr: float = 0.0  # … or heard at an ASR confidence below this

    @classmethod
    def from_settings(cls, dialogue: object) -> Thresholds:
        names = cls.__dataclass_fields__
        return cls(**{n: getattr(dialogue, f"decision_{n}") for n in names if hasattr(dialogue, f"decision_{n}")})


@dataclass(frozen=True, kw_only=True)
class Decision:
    action: Action
    reason: str
    spotting: Spotting = field(default_factory=Spotting)

    def detail(self) -> dict[str, object]:
        return {"decision": self.action, "reason": self.reason, "keywords": self.spotting.summary()}


def decide(
    *,
    text: str,
    asr_confidence: float | None,
    intent: str | None,
    nlu_confidence: float,
    thresholds: Thresholds,
    in_form: bool = False,
) -> Decision:
    """The one decision for a spoken (or typed) turn that is not an answer to the emergency question."""
    th = thresholds
    asr = 1.0 if asr_confidence is None else asr_confidence
    spotting = spot(text)
    nlu_emergency = intent == "emergency"
    # 1. clear emergencies act at once: the NLU sure on a clear recognition, or a strong keyword heard clearly
    if nlu_emergency and asr * nlu_confidence >= th.emergency_now_min_score and asr >= th.act_min_asr:
        return Decision(action="emergency", reason="nlu", spotting=spotting)
    if asr >= th.keyword_now_min_asr and any(h.strong and not h.by_sound for h in spotting.hits):
        return Decision(action="emergency", reason="keyword", spotting=spotting)
    # 2. what the turn would be without the emergency question
    base = _gate(asr=asr, intent=intent, nlu_confidence=nlu_confidence, th=th, in_form=in_form)
    # an elder who says she is unwell in emergency words ("帮帮忙，我不舒服得很") is asked, not booked a call-back:
    # yes or silence puts a person on the line now (the 2026-12-07 CI run: an "unwell" call-back was all she got)
    unwell_in_emergency_words = intent == UNWELL_INTENT and any(not h.by_sound for h in spotting.hits)
    if base == "act" and intent not in HARMLESS_INTENTS and not nlu_emergency and not unwell_in_emergency_words:
        # understood as something else with consequences (a nurse call-back for "头晕正唔正常?", an order):
        # a weak keyword does not turn it into an emergency question
        if intent in CONFIRM_INTENTS and asr_confidence is not None:
            weak = _weak_evidence(asr=asr, score=asr * nlu_confidence, th=th)
            if weak:
                return Decision(action="confirm", reason=weak, spotting=spotting)
        return Decision(action="act", reason="confident", spotting=spotting)
    # 3. something sounds like an emergency, not clearly: one short question
    if asr >= th.ask_min_asr and spotting.any:
        return Decision(action="ask_emergency", reason="keyword", spotting=spotting)
    if nlu_emergency and asr * nlu_confidence >= th.emergency_ask_min_score:
        return Decision(action="ask_emergency", reason="nlu_uncertain", spotting=spotting)
    if nlu_emergency:  # never hand an unclear emergency to Rasa: its rule would raise the SOS
        return Decision(action="not_heard", reason="emergency_below_threshold", spotting=spotting)
    return Decision(action=base, reason=_REASONS[base], spotting=spotting)


_REASONS = {"act": "confident", "not_heard": "below_threshold"}


def _weak_evidence(*, asr: float, score: float, th: Thresholds) -> str | None:
    """Why an act on a consequence nothing reads back is asked first ("weak_score", "weak_asr"), or None."""
    if score < th.confirm_below_score:
        return "weak_score"
    if asr < th.confirm_below_asr:
        return "weak_asr"
    return None


def _gate(*, asr: float, intent: str | None, nlu_confidence: float, th: Thresholds, in_form: bool) -> Action:
    """Act or "say that again" for a turn that is not an emergency."""
    if asr < th.act_min_asr:
        return "not_heard"
    if intent in HARMLESS_INTENTS or intent is None:
        return "act"
    if asr * nlu_confidence >= th.act_min_score:
        return "act"
    # inside a form a slot answer often parses as a weak request ("十五公斤" → order_gas 0.4): the form reads it;
    # an interruption with its own consequence (a nurse call-back, a hand-over) must be sure
    return "act" if in_form and intent not in _FORM_INTERRUPTS else "not_heard"


# intents that interrupt a form with their own consequence (intents/actions/actions.py INTERRUPT_INTENTS)
_FORM_INTERRUPTS = frozenset({"emergency", "request_human", "health_consult", "goodbye", "ask_identity", "report_suspicious_call",
                              "checkin_unwell"})


def not_understood(decision: Decision, *, intent: str | None, spoken: bool, in_form: bool) -> bool:
    """A spoken turn that counts towards "not understood N times in a row": heard too badly, or heard and
    understood as nothing (``nlu_fallback`` outside a form; inside one a plain slot answer parses as that)."""
    if decision.action == "not_heard":
        return True
    return spoken and not in_form and decision.action == "act" and intent in (None, "nlu_fallback", "out_of_scope")


def _compact(text: str) -> str:

    return strip_punctuation(to_simplified(text or ""))


def spoken_menu_choice(text: str) -> str | None:
    """The keypad key a spoken answer to the keypad menu names, only when the answer is just that choice.

    A digit inside an unrelated sentence ("第二掌劳就请嘅成班…") is not a menu choice.
    """
    t = _compact(text).rstrip("啊呀吖啦喇呢吧")
    for key, words in MENU_WORDS.items():
        if t in words:
            return key
    return None


ConfirmAnswer = Literal["yes", "no", "other"]
# a yes to the read-back acts: only short answers made of a yes (a "是" inside a story line is no yes)
_CONFIRM_YES = ("是", "是的", "是啊", "对", "对的", "对啊", "系", "係", "系呀", "啱", "啱呀", "要", "要啊", "好", "好的",
                "好啊", "嗯", "需要", "可以", "行", "一", "1", "按一", "揿一", "㩒一")
# a no to the read-back ("没事 / 我很好" is no answer here: to "are you fine?" it is a yes; it is taken as a new turn)
_CONFIRM_NO = ("不是", "唔系", "唔係", "不对", "唔啱", "唔对", "不要", "唔要", "不用", "唔使", "不需要", "唔需要", "错", "搞错")


def classify_confirm_answer(*, text: str, asr_confidence: float | None, intent: str | None, nlu_confidence: float,
                            thresholds: Thresholds) -> ConfirmAnswer:
    """The answer to a read-back ("您是说身体不舒服，要我们安排人给您回电吗？"): ``yes`` acts (a whole answer that is
    a yes, heard clearly: a yes causes the action), ``no`` acts on nothing; ``other`` (anything else, a new
    request, an emergency) is taken as a new turn. Silence is the caller's (no action)."""
    t = _compact(text).rstrip("啊呀吖啦喇呢吧咯")
    asr = 1.0 if asr_confidence is None else asr_confidence
    if not t or asr < thresholds.answer_min_asr or spot(t).any:
        return "other"
    if (len(t) <= 8 and any(t.startswith(w) for w in _CONFIRM_NO)) or t in ("没有", "冇", "无"):
        return "no"
    if t in _CONFIRM_YES:
        return "yes"
    score = asr * nlu_confidence
    if len(t) <= 6 and score >= thresholds.act_min_score and intent in ("affirm", "deny"):
        return "yes" if intent == "affirm" else "no"
    return "other"


FailureAnswer = Literal["sos", "person", "no", "act", "unclear"]


def classify_failure_answer(*, text: str, asr_confidence: float | None, intent: str | None, nlu_confidence: float,
                            thresholds: Thresholds) -> FailureAnswer:
    """The answer to the question asked after turns not understood ("didn't catch that; do you need help?
    say yes or press 1, else say it again"). A yes there confirms no emergency (an elder whose gas order was
    misheard needs help too), so:

    - ``sos``: the answer is itself a clear emergency (``decide`` says so): the SOS, family told;
    - ``person``: yes (or emergency words heard unclearly; key 1, silence: the caller decides those): a person,
      "unconfirmed emergency" (critical, the family told only after a confirmation);
    - ``no``: a clear no: carry on;
    - ``act``: the request said again and understood this time: act on it as on any turn;
    - ``unclear``: still not understood: the keypad menu and a "misunderstanding" hand-over (a person, as two
      turns not understood always led to).
    """
    d = decide(text=text, asr_confidence=asr_confidence, intent=intent, nlu_confidence=nlu_confidence,
               thresholds=thresholds)
    if d.action == "emergency":
        return "sos"
    answer = classify_answer(text=text, asr_confidence=asr_confidence, intent=intent, nlu_confidence=nlu_confidence,
                             thresholds=thresholds)
    if answer == "no":
        return "no"
    if d.action == "act" and intent not in HARMLESS_INTENTS and intent not in ("affirm", "deny", None):
        return "act"
    if d.action == "ask_emergency" or answer == "yes":
        return "person"
    return "unclear"


def classify_answer(*, text: str, asr_confidence: float | None, intent: str | None, nlu_confidence: float,
                    thresholds: Thresholds) -> Answer:
    """The elder's answer to "do you need help?" asked on emergency evidence: only a clear no carries on
    without a person."""
    t = _compact(text).rstrip("啊呀吖啦喇呢吧咯")
    if not t:
        return "unclear"
    asr = 1.0 if asr_confidence is None else asr_confidence
    clear = asr >= thresholds.answer_min_asr
    if clear and len(t) <= 8 and any(t.startswith(w) or t == w for w in _NO_WORDS) and not spot(t).any:
        return "no"
    if clear and intent in ("deny", "checkin_well") and asr * nlu_confidence >= thresholds.act_min_score and len(t) <= 12 and not spot(t).any:
        return "no"
    if len(t) <= 6 and any(t.startswith(w) for w in _YES_WORDS):
        return "yes"
    if intent in ("affirm", "emergency") or spot(t).strong:
        return "yes"
    return "unclear"
