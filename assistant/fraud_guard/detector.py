"""Scam-pattern detector over the running transcript of one call.

Feed turns one at a time (``CallWatch.add_turn(speaker, text)``) as a live call produces them; each turn
returns a ``RiskUpdate`` with the call's risk so far (0..1), the likely scam type and the evidence phrases.

How the risk is made (all offline, pure Python, ≈ 0.2 ms CPU per turn):

1. **Cue layer** (``cues.py``): weighted, negation-aware patterns, per speaker, for what the caller *asks the
   elder to do* (transfer, codes, card numbers, remote-control apps, cash pick-up, prepaid fees), the
   pressure around it (secrecy, urgency, threats, blocking verification: "不用问你儿子"), and genuine-call
   evidence (the caller shows/reads a code to the elder instead of asking for one, invites a call-back to
   110 or the official number, promises never to ask, money flows to the elder, in person). A request named
   as a warning ("不要把验证码告诉任何人") counts for the genuine side.
2. **Learned combiner** (``Combiner``, ``combiner_weights.json``, trained by ``train.py``): a sign-constrained
   logistic regression over ``call_features`` (who asked whom for what, the combinations, the hand-weighted
   cue sum as a prior, and the char n-gram style logit over the caller's turns, ``ngram.py``). Its bias is
   shifted so the operating point chosen on out-of-fold training scores is risk 0.5. ``RiskUpdate.reasons``
   names the strongest contributions.
3. Without combiner weights (``learned=False`` or no file) the previous hand-weighted sum is used:
   ``sigmoid(BIAS + cues + combination + clip(ngram))``.

The call is flagged when risk crosses ``settings.fraud.flag_threshold`` (sticky for the call). Evidence from
outside the transcript (``add_context``) keeps its hand weight on top of either.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

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
_NOPUNCT_NEGATION_WINDOW = 7  # the same without punctuation (no clause to bound it)
_NOPUNCT_FRAME_WINDOW = 16  # a warning frame must be this close to a request in unpunctuated text
_CLAUSE_PUNCT = re.compile(r"[,.!?;，。！？；…]")
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
    # why: the strongest learned contributions, e.g. "要求转账/汇款 +1.9", "邀请老人自行核实 -0.8"
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Combiner:
    """The learned layer: logistic regression over ``call_features`` (trained by ``train.py``).

    ``bias`` is shifted at training time so that the operating point chosen on the development split maps
    to risk 0.5 (``settings.fraud.flag_threshold``'s default).
    """

    weights: dict[str, float]
    bias: float
    meta: dict

    def contributions(self, feats: dict[str, float]) -> list[tuple[str, float]]:
        return [(k, self.weights[k] * v) for k, v in feats.items() if k in self.weights and v]

    def logit(self, feats: dict[str, float]) -> float:
        return self.bias + sum(c for _, c in self.contributions(feats))

    @classmethod
    def load(cls, path: Path) -> Combiner:
        data = json.loads(path.read_text(encoding="utf-8"))
        return cls(weights={k: float(v) for k, v in data["weights"].items()}, bias=float(data["bias"]),
                   meta=data.get("meta", {}))

    def save(self, path: Path) -> None:
        data = {"meta": self.meta, "bias": round(self.bias, 5),
                "weights": {k: round(v, 5) for k, v in sorted(self.weights.items())}}
        path.write_text(json.dumps(data, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")


COMBINER_PATH = Path(__file__).with_name("combiner_weights.json")
# the same layer trained without the n-gram feature (cue/direction features only; no corpus-derived weights)
COMBINER_NO_NGRAM_PATH = Path(__file__).with_name("combiner_weights_cues.json")


def load_default_combiner(path: Path | None = None) -> Combiner | None:
    p = path or COMBINER_PATH
    return Combiner.load(p) if p.exists() else None


NGRAM_FEATURE_CLIP = 4.0
_GENUINE_CATEGORIES = frozenset(c.category for c in C.CUES if c.weight < 0)


def call_features(evidence: list[Evidence], ngram_logit: float | None, *, prior: float | None = None) -> dict[str, float]:
    """What the learned layer sees about a call so far: who asked whom for what, and how.

    - ``ask:<category>``: the caller asked for / pushed it (not as a warning); 1, +0.25 per further turn
      (max 1.5). Categories are the cue table's (transfer, code, card, remote, secrecy, block_verify, …).
    - ``gen:<category>``: genuine-call evidence from the caller (shows the code on the screen and reads it
      to the elder, invites a call-back to the official number, promises never to ask, money flows *to* the
      elder, in person).
    - ``warned``: requests the caller named as warnings ("不要把验证码告诉任何人"), 0..1.
    - ``callee:complied``: the elder says they are doing it.
    - ``combo:*``: a money or credential request together with pressure; two different requests.
    - ``ngram``: the char n-gram style model's logit over the caller's turns, clipped to ±4 and scaled.
    - ``prior``: the hand-weighted cue sum (``CallWatch._cue_logit``: the fraud-literature weights of the cue
      table), scaled; the learner decides how far to trust it against the per-category features.
    """
    turns: dict[str, set[int]] = {}
    warned = 0
    callee: set[str] = set()
    for e in evidence:
        if e.speaker != "caller":
            if e.weight > 0 and not e.warning:
                callee.add(e.category)
            continue
        if e.warning:
            warned += 1
            continue
        if e.category not in _CATEGORY_NAMES:  # context evidence (add_context): scored by hand weight
            continue
        turns.setdefault(e.category, set()).add(e.turn)
    f: dict[str, float] = {}
    for cat, ts in turns.items():
        prefix = "gen:" if cat in _GENUINE_CATEGORIES else "ask:"
        f[prefix + cat] = 1.0 + 0.25 * min(2, len(ts) - 1)
    cats = {c for c in turns if c not in _GENUINE_CATEGORIES}
    if warned:
        f["warned"] = min(3, warned) / 3
    if callee:
        f["callee:complied"] = 1.0
    money, cred, pressure = cats & C.MONEY_CATEGORIES, cats & C.CREDENTIAL_CATEGORIES, cats & C.PRESSURE_CATEGORIES
    if money and pressure:
        f["combo:money_pressure"] = 1.0
    if cred and pressure:
        f["combo:cred_pressure"] = 1.0
    if len(cats & C.REQUEST_CATEGORIES) >= 2:
        f["combo:two_requests"] = 1.0
    if prior is not None:
        f["prior"] = prior / 4.0
    if ngram_logit is not None:
        f["ngram"] = max(-NGRAM_FEATURE_CLIP, min(NGRAM_FEATURE_CLIP, ngram_logit)) / NGRAM_FEATURE_CLIP
    return f


_CATEGORY_NAMES = frozenset(c.category for c in C.CUES)
_LABEL_BY_CATEGORY: dict[str, str] = {}
for _cue in C.CUES:
    _LABEL_BY_CATEGORY.setdefault(_cue.category, _cue.label)
_FEATURE_LABELS = {
    "warned": "来电把这些要求当作'骗子的做法'来提醒",
    "callee:complied": "老人已在照做",
    "combo:money_pressure": "要钱 + 施压",
    "combo:cred_pressure": "要验证码/卡号 + 施压",
    "combo:two_requests": "提出两种以上的要求",
    "ngram": "说话方式像诈骗对话(n-gram)",
    "prior": "线索表总分(专家权重)",
}


def feature_label(name: str) -> str:
    if name in _FEATURE_LABELS:
        return _FEATURE_LABELS[name]
    return _LABEL_BY_CATEGORY.get(name.split(":", 1)[-1], name)


@dataclass(kw_only=True)
class ScamDetector:
    """Stateless and shared across calls: holds the cue table and the n-gram weights."""

    threshold: float = 0.5
    ngram: NgramModel | None = None
    use_ngram: bool = True
    # the learned layer; None → the hand-weighted cue sum below (the fallback when no weights are shipped)
    combiner: Combiner | None = None

    @classmethod
    def default(cls, *, threshold: float = 0.5, use_ngram: bool = True, learned: bool = True) -> ScamDetector:
        combiner = load_default_combiner() if learned else None
        if combiner is not None and not use_ngram:
            combiner = load_default_combiner(COMBINER_NO_NGRAM_PATH)
        detector = cls(threshold=threshold, ngram=load_default_model() if use_ngram else None, use_ngram=use_ngram,
                       combiner=combiner)
        detector.match_turn("预热", speaker="caller", turn=0)  # load zhconv's tables now, not on the first turn
        return detector

    def watch(self) -> CallWatch:
        return CallWatch(detector=self)

    # -- per-turn cue matching ---------------------------------------------------------------------

    def match_turn(self, text: str, *, speaker: str, turn: int) -> list[Evidence]:
        norm = normalize(text)
        found: list[Evidence] = []
        # recognised speech has no punctuation: one "clause" is then the whole turn, so negations and warning
        # frames are looked for only near the match (``_NOPUNCT_*`` characters), not across the turn
        punctuated = _CLAUSE_PUNCT.search(norm) is not None or len(norm) <= _NOPUNCT_FRAME_WINDOW
        for sentence in split_sentences(norm):
            # a warning frame earlier in the sentence covers the clauses after it; a closing warning
            # ("…, 千祈唔好做") covers the whole sentence
            framed = C.POST_WARNING.search(sentence) is not None
            for clause in split_clauses(sentence):
                framed = framed or C.WARNING_FRAME.search(clause) is not None
                for cue in C.CUES:
                    if cue.speaker != "any" and cue.speaker != speaker:
                        continue
                    # every occurrence in the clause (an unpunctuated turn is one long clause: "不用先给钱…货到付款"
                    # holds a warning and a request); the first request wins, else the first warning
                    hit: tuple[re.Match[str], bool] | None = None
                    for m in cue.pattern.finditer(clause):
                        warning = False
                        if cue.negatable:
                            prefix = clause[: m.start()]
                            window = NEGATION_WINDOW if punctuated else _NOPUNCT_NEGATION_WINDOW
                            before = _NOT_NEGATIONS.sub("", prefix[-window:])
                            if not punctuated:
                                prefix = prefix[-_NOPUNCT_FRAME_WINDOW:]
                            negated = C.NEGATOR.search(before) is not None or (
                                cue.inner_negation and _INNER_NEGATION.search(m.group(0)) is not None
                            )
                            # "为防骗子, 请您转到安全账户": a direct, un-negated ask is a request despite the frame
                            direct = C.DIRECT_ASK.search(prefix) is not None and not negated
                            warning = negated or (framed and not direct)
                        if hit is None or (hit[1] and not warning):
                            hit = (m, warning)
                        if not warning or not cue.negatable:
                            break
                    if hit is None:
                        continue
                    m, warning = hit
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
        combiner = self.detector.combiner
        reasons: tuple[str, ...] = ()
        if combiner is not None:
            feats = call_features(self.evidence, ngram_logit if self.detector.ngram is not None else None,
                                  prior=self._cue_logit())
            contrib = combiner.contributions(feats)
            # evidence from outside the transcript (add_context) keeps its hand weight
            context = sum(e.weight for e in self.evidence if e.category not in _CATEGORY_NAMES)
            logit = combiner.bias + sum(c for _, c in contrib) + context
            top = sorted(contrib, key=lambda kv: -abs(kv[1]))[:5]
            reasons = tuple(f"{feature_label(k)} {c:+.1f}" for k, c in top if abs(c) >= 0.2)
        else:
            cap = NGRAM_CAP_WITH_CUE if self._has_scam_cue() else NGRAM_CAP
            logit = self._cue_logit() + max(NGRAM_FLOOR, min(cap, ngram_logit))
        logit = max(-30.0, min(30.0, logit))
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
            reasons=reasons,
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
