"""Scam-pattern detector over the running transcript of one call.

Feed turns one at a time (``CallWatch.add_turn(speaker, text)``) as a live call produces them; each turn
returns a ``RiskUpdate`` with the call's risk so far (0..1), the likely scam type and the evidence phrases.

How the risk is made (all offline, pure Python, well under 1 ms per turn):

1. **Cue layer** (``cues.py``): weighted, negation-aware patterns for what a scammer *asks the elder to do*
   (transfer, codes, card numbers, remote-control apps, cash pick-up, prepaid fees) and the pressure around
   it (secrecy, urgency, threats, authority, prizes, guaranteed returns, a relative in trouble). Each
   category counts once per call (its strongest cue; a repeat in a later turn adds 25 %). Genuine-call
   evidence (the caller tells the elder to hang up and ring the number on their own card, promises never to
   ask for codes, offers in-person settlement) subtracts, capped, and cannot cancel a real request.
2. **Combination**: a money or credential request together with pressure is what makes a scam; that pair
   earns a bonus. Pressure alone (a police officer warning about scams) stays below threshold.
3. **Char n-gram model** (``ngram.py``) on the *caller's* turns only, trained on the corpus but with its
   contribution capped at ``NGRAM_CAP`` log-odds, so the corpus's style cannot flag a call on its own.

``risk = sigmoid(BIAS + cues + combination + clip(ngram))``; the call is flagged when risk crosses
``settings.fraud.flag_threshold`` (sticky for the call).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from assistant.fraud_guard import cues as C
from assistant.fraud_guard.ngram import NgramModel, load_default_model
from assistant.fraud_guard.text import normalize, split_clauses, split_sentences

BIAS = -2.6
# log-odds the style model may add: never enough to flag a call on its own (BIAS is lower); more once the
# caller has said something scam-like (a story or a request), so it can tip a borderline call
NGRAM_CAP = 1.0
NGRAM_CAP_WITH_CUE = 1.8
NGRAM_FLOOR = -2.0
GENUINE_CAP = -2.0
NEGATION_WINDOW = 14  # characters before a request, within its clause
REPEAT_BONUS = 0.25
COMBO_MONEY_PRESSURE = 1.2
COMBO_CREDENTIAL_PRESSURE = 1.0
COMBO_TWO_REQUESTS = 0.6

_INNER_NEGATION = re.compile(r"(没有|没|未|冇|无|不|唔)")
_NOT_NEGATIONS = re.compile(r"(不如|不然|不过|不好意思|不是吗|唔该|不少|没事|冇事|唔系|不知|不同|不到)")


@dataclass(frozen=True, kw_only=True)
class Evidence:
    cue: str
    category: str
    weight: float
    phrase: str  # the matched words, as the speaker said them (normalised)
    turn: int
    speaker: str
    label: str
    warning: bool = False  # a request mentioned as a warning ("不要转账") — genuine evidence


@dataclass(frozen=True, kw_only=True)
class RiskUpdate:
    turn: int
    risk: float
    logit: float
    scam_type: str | None
    evidence: tuple[Evidence, ...]
    new_evidence: tuple[Evidence, ...]
    flagged: bool
    just_flagged: bool
    ngram_logit: float


@dataclass(kw_only=True)
class ScamDetector:
    """Stateless and shared across calls: holds the cue table and the n-gram weights."""

    threshold: float = 0.5
    ngram: NgramModel | None = None
    use_ngram: bool = True

    @classmethod
    def default(cls, *, threshold: float = 0.5, use_ngram: bool = True) -> ScamDetector:
        detector = cls(threshold=threshold, ngram=load_default_model() if use_ngram else None, use_ngram=use_ngram)
        detector.match_turn("预热", speaker="caller", turn=0)  # load zhconv's tables now, not on the first turn
        return detector

    def watch(self) -> CallWatch:
        return CallWatch(detector=self)

    # -- per-turn cue matching ---------------------------------------------------------------------

    def match_turn(self, text: str, *, speaker: str, turn: int) -> list[Evidence]:
        norm = normalize(text)
        found: list[Evidence] = []
        for sentence in split_sentences(norm):
            # a warning frame earlier in the sentence covers the clauses after it; a closing warning
            # ("…, 千祈唔好做") covers the whole sentence
            framed = C.POST_WARNING.search(sentence) is not None
            for clause in split_clauses(sentence):
                framed = framed or C.WARNING_FRAME.search(clause) is not None
                for cue in C.CUES:
                    if cue.speaker != "any" and cue.speaker != speaker:
                        continue
                    m = cue.pattern.search(clause)
                    if m is None:
                        continue
                    warning = False
                    if cue.negatable:
                        prefix = clause[: m.start()]
                        before = _NOT_NEGATIONS.sub("", prefix[-NEGATION_WINDOW:])
                        negated = C.NEGATOR.search(before) is not None or (
                            cue.inner_negation and _INNER_NEGATION.search(m.group(0)) is not None
                        )
                        # "为防骗子, 请您转到安全账户": a direct, un-negated ask is a request despite the frame
                        direct = C.DIRECT_ASK.search(prefix) is not None and not negated
                        warning = negated or (framed and not direct)
                    found.append(
                        Evidence(
                            cue=cue.name,
                            category=cue.category,
                            weight=cue.weight,
                            phrase=m.group(0),
                            turn=turn,
                            speaker=speaker,
                            label=cue.label,
                            warning=warning,
                        )
                    )
        return found


_CUE_BY_NAME = {c.name: c for c in C.CUES}


@dataclass(kw_only=True)
class CallWatch:
    """The running state of one call. Not thread-safe; one per call."""

    detector: ScamDetector
    turns: int = 0
    evidence: list[Evidence] = field(default_factory=list)
    flagged: bool = False
    flagged_at_turn: int | None = None
    max_risk: float = 0.0
    last: RiskUpdate | None = None
    _ngram_state: object | None = None

    def add_turn(self, speaker: str, text: str) -> RiskUpdate:
        speaker = "caller" if speaker == "caller" else "callee"
        self.turns += 1
        new = self.detector.match_turn(text, speaker=speaker, turn=self.turns)
        self.evidence.extend(new)
        model = self.detector.ngram
        if model is not None:
            if self._ngram_state is None:
                self._ngram_state = model.new_state()
            if speaker == "caller":
                model.update(self._ngram_state, text)
        return self._rescore(new)

    def _has_scam_cue(self) -> bool:
        return any(
            e.speaker == "caller" and e.weight >= 0.8 and not e.warning and e.category not in ("urgency",)
            for e in self.evidence
        )

    def add_context(self, *, cue: str, weight: float, label: str, phrase: str = "") -> RiskUpdate:
        """Evidence from outside the transcript (e.g. "claims to be 平安通 but no ledger entry"); rescored now."""
        if any(e.cue == cue for e in self.evidence):
            return self.last or self._rescore([])
        ev = Evidence(cue=cue, category=cue, weight=weight, phrase=phrase or label, turn=self.turns,
                      speaker="caller", label=label)
        self.evidence.append(ev)
        return self._rescore([ev])

    def _rescore(self, new: list[Evidence]) -> RiskUpdate:
        ngram_logit = 0.0
        if self.detector.ngram is not None and self._ngram_state is not None:
            ngram_logit = self.detector.ngram.logit(self._ngram_state)
        cap = NGRAM_CAP_WITH_CUE if self._has_scam_cue() else NGRAM_CAP
        logit = self._cue_logit() + max(NGRAM_FLOOR, min(cap, ngram_logit))
        risk = 1.0 / (1.0 + math.exp(-logit))
        self.max_risk = max(self.max_risk, risk)
        just = False
        if not self.flagged and risk >= self.detector.threshold:
            self.flagged, just, self.flagged_at_turn = True, True, self.turns
        self.last = RiskUpdate(
            turn=self.turns,
            risk=round(risk, 4),
            logit=round(logit, 3),
            scam_type=self.scam_type(),
            evidence=tuple(e for e in self.evidence if e.weight > 0 and not e.warning),
            new_evidence=tuple(new),
            flagged=self.flagged,
            just_flagged=just,
            ngram_logit=round(ngram_logit, 3),
        )
        return self.last

    # -- scoring ------------------------------------------------------------------------------------

    def _category_scores(self) -> dict[str, float]:
        best: dict[str, float] = {}
        turns_seen: dict[str, set[int]] = {}
        genuine = 0.0
        for e in self.evidence:
            if e.warning:
                # a request named as a warning: genuine evidence, capped below with the rest
                genuine -= 0.4
                continue
            if e.weight < 0:
                genuine += e.weight
                continue
            best[e.category] = max(best.get(e.category, 0.0), e.weight)
            turns_seen.setdefault(e.category, set()).add(e.turn)
        scores = {k: v * (1.0 + REPEAT_BONUS * min(2, len(turns_seen[k]) - 1)) for k, v in best.items()}
        scores["_genuine"] = max(GENUINE_CAP, genuine)
        return scores

    def _cue_logit(self) -> float:
        s = self._category_scores()
        genuine = s.pop("_genuine")
        caller_cats = {e.category for e in self.evidence if not e.warning and e.weight > 0 and e.speaker == "caller"}
        money = caller_cats & C.MONEY_CATEGORIES
        cred = caller_cats & C.CREDENTIAL_CATEGORIES
        pressure = caller_cats & C.PRESSURE_CATEGORIES
        total = BIAS + sum(s.values())
        if money and pressure:
            total += COMBO_MONEY_PRESSURE
        if cred and pressure:
            total += COMBO_CREDENTIAL_PRESSURE
        if len(caller_cats & C.REQUEST_CATEGORIES) >= 2:
            total += COMBO_TWO_REQUESTS
        # genuine evidence cannot cancel a strong request: it only offsets pressure and weak asks
        strong = bool(caller_cats & {"safe_account", "code", "card", "remote", "cash", "coach_lie"})
        total += genuine * (0.35 if strong else 1.0)
        return total

    def scam_type(self) -> str | None:
        votes: dict[str, float] = {}
        claims_platform = False
        for e in self.evidence:
            if e.warning or e.speaker != "caller":
                continue
            cue = _CUE_BY_NAME.get(e.cue)
            if cue is None:  # context evidence (add_context)
                if e.cue == "platform_claim_no_ledger":
                    claims_platform = True
                continue
            if cue.name == "platform_claim":
                claims_platform = True
                continue
            if cue.scam_type and cue.weight > 0:
                votes[cue.scam_type] = max(votes.get(cue.scam_type, 0.0), cue.weight) + 0.01 * len(votes)
        if claims_platform and any(
            (e.category in C.REQUEST_CATEGORIES or e.cue == "platform_claim_no_ledger")
            and not e.warning and e.speaker == "caller"
            for e in self.evidence
        ):
            return C.PLATFORM
        if not votes:
            return None
        # the story (who they pretend to be) outranks the generic ask (transfer/code) when both are present
        story = {k: v for k, v in votes.items() if k not in (C.SAFE_ACCOUNT, C.BANK, C.PRIZE)}
        if C.SAFE_ACCOUNT in votes and any(e.category == "safe_account" for e in self.evidence if not e.warning):
            return C.SAFE_ACCOUNT
        pick = story or votes
        return max(pick.items(), key=lambda kv: kv[1])[0]

    def evidence_phrases(self, limit: int = 8) -> list[str]:
        seen: list[str] = []
        for e in sorted(self.evidence, key=lambda e: -e.weight):
            if e.weight <= 0 or e.warning or e.phrase in seen:
                continue
            seen.append(e.phrase)
            if len(seen) >= limit:
                break
        return seen


def score_dialogue(detector: ScamDetector, turns: list[dict]) -> tuple[float, int | None, CallWatch]:
    """Run a whole dialogue turn by turn; returns (max risk, turn flagged or None, watch)."""
    watch = detector.watch()
    for t in turns:
        watch.add_turn(t.get("speaker", "caller"), t.get("text", ""))
    return watch.max_risk, watch.flagged_at_turn, watch
