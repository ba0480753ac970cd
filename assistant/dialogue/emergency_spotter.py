"""Emergency keyword spotting: a second opinion next to the NLU's ``emergency`` intent (issue #27).

Works on the recognised text (Mandarin and Cantonese, simplified script after ``normalize_transcript``) and
on its toneless pinyin, so that whisper's sound-alike characters still count (救命 heard as 就命 or 旧命).

- **strong** patterns say an emergency outright (救命, 跌低/摔倒, 心口痛, 起唔到身, 叫白车, 着火 …). With a
  clear enough recognition they act at once; in garbled text they make the assistant ask one short question.
- **weak** patterns say something is wrong but not how badly (头晕, 唔舒服, 好辛苦 …): they ask, never act.
- a pattern right after a negation (没有/冇/唔系/不是 …) does not count ("我冇跌倒", "没有不舒服").

Matching by sound is weaker evidence than matching the characters: a sound-only match of a strong pattern
counts as weak. Only multi-syllable keywords are matched by sound (one syllable matches far too much).
Sounds are compared toneless and with the confusions of southern and elderly accents (and of whisper on a
phone line) folded together: initials n/l, zh/z, ch/c, sh/s, f/h; finals in/ing, en/eng (``fuzzy_syllable``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from assistant.text.normalize import strip_punctuation, to_simplified

# character patterns (simplified script); ``.{0,2}`` lets a few words sit in between (心口好痛, 跌咗一跤)
STRONG_PATTERNS: tuple[str, ...] = (
    r"救命", r"救救我", r"救我", r"救吓我", r"快(来|嚟|啲嚟)救",
    r"救护车", r"白车", r"(叫|打).{0,2}(120|999|一二零|九九九)", r"急救",
    r"(摔|跌|仆|跣).{0,3}(倒|跤|低|亲|落|下来|咗)", r"晕(倒|低|过去|咗|低咗)", r"倒在地",
    r"(起|爬|站|企|郁).{0,2}(不|唔).{0,1}(来|起|到身|番身|返身|稳|到)",
    r"(心口|胸口|心脏|心).{0,3}(痛|疼|闷|翳|难受|唔舒服|不舒服)",
    r"(喘|透|唞|抖|呼吸).{0,2}(不|唔).{0,1}(过|上|到|了)",
    r"(叫|喊).{0,2}(不|唔)(应|醒)", r"(冇|没有?)反应",
    r"着火", r"火烛", r"失火", r"起火", r"煤气味", r"漏气", r"煤气泄漏",
    r"中风", r"半边身", r"(流|出).{0,3}血", r"(吃|食)(错|多咗|多了)药",
    r"(动|郁)(不|唔)(了|到)", r"(冇|没有?)(晒)?知觉", r"眼前一黑",
    r"撬.{0,2}门", r"(入|进|闯进|爆入).{0,1}(屋|我家)", r"爆格",
    r"快(啲)?(来|嚟)人", r"快(啲)?叫医生", r"(不行|唔得)了", r"要死",
)
WEAK_PATTERNS: tuple[str, ...] = (
    r"头(好|很|有啲|有点)?晕", r"好晕", r"晕得", r"晕", r"(不|唔)舒服", r"难受", r"好?辛苦",
    r"痛(得|到)", r"好痛", r"很痛", r"疼得", r"(手脚|手|脚).{0,2}麻", r"(冇|没有?)(晒)?力",
    r"帮(帮|吓)(我|忙)", r"快(啲)?(来|嚟)", r"医生", r"心跳得?(好|很)?快",
    r"讲(嘢)?(讲)?(唔|不)(清|到)", r"说(话)?(说)?(不)(清|出)", r"嘴巴?歪",
)
# keywords matched by toneless pinyin too (2+ syllables, written as whisper might mishear them)
SOUND_KEYWORDS: tuple[str, ...] = (
    "救命", "救我", "救护车", "白车", "摔倒", "跌倒", "跌低", "心口痛", "胸口痛", "起不来", "起唔到身",
    "头晕", "晕倒", "着火", "火烛", "中风", "唔舒服", "不舒服", "透不过气", "喘不过气",
    # from the calibration phrasings (tests/data/emergencies_calib.tsv), never from the test set
    "救救我", "摔跤", "叫不醒", "晕过去", "站不起来", "爬不起来", "喘不上气", "呼吸困难", "救命啊",
    "动不了", "难受", "流血", "煤气味", "心脏病",
)
# accent / phone-line confusions folded together when matching by sound: initials, then finals
_FUZZY_INITIALS = (("zh", "z"), ("ch", "c"), ("sh", "s"), ("n", "l"), ("f", "h"))
_FUZZY_FINALS = (("ing", "in"), ("eng", "en"))
NEGATIONS = ("没有", "冇", "没", "唔系", "不是", "无", "未", "唔使", "不用")

_STRONG = tuple(re.compile(p) for p in STRONG_PATTERNS)
_WEAK = tuple(re.compile(p) for p in WEAK_PATTERNS)


@dataclass(frozen=True, kw_only=True)
class SpotHit:
    keyword: str  # the pattern or keyword that matched
    heard: str  # what in the text matched it
    strong: bool
    by_sound: bool = False


@dataclass(frozen=True, kw_only=True)
class Spotting:
    hits: tuple[SpotHit, ...] = ()

    @property
    def strong(self) -> bool:
        return any(h.strong for h in self.hits)

    @property
    def any(self) -> bool:
        return bool(self.hits)

    def summary(self) -> list[str]:
        return [f"{h.heard}{'~' if h.by_sound else ''}{'!' if h.strong else ''}" for h in self.hits]


def _clean(text: str) -> str:
    return strip_punctuation(to_simplified(text or "")).lower()


def _negated(text: str, start: int) -> bool:
    before = text[max(0, start - 3) : start]
    return any(before.endswith(n) for n in NEGATIONS)


@lru_cache(maxsize=4096)
def _pinyin(text: str) -> tuple[str, ...]:
    from pypinyin import Style, lazy_pinyin

    return tuple(lazy_pinyin(text, style=Style.NORMAL, errors=lambda s: list(s)))


@lru_cache(maxsize=2048)
def fuzzy_syllable(syllable: str) -> str:
    """A toneless pinyin syllable with the accent confusions folded: ``zhong`` → ``zong``, ``ning`` → ``lin``."""
    for a, b in _FUZZY_INITIALS:
        if syllable.startswith(a) and len(syllable) > len(a):
            syllable = b + syllable[len(a):]
            break
    for a, b in _FUZZY_FINALS:
        if syllable.endswith(a):
            return syllable[: -len(a)] + b
    return syllable


def _sounds(text: str) -> tuple[str, ...]:
    return tuple(fuzzy_syllable(s) for s in _pinyin(text))


@lru_cache(maxsize=1)
def _sound_keywords() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((k, _sounds(k)) for k in SOUND_KEYWORDS)


@lru_cache(maxsize=8192)
def spot(text: str, *, by_sound: bool = True) -> Spotting:
    """Emergency keywords in ``text`` (any script, any punctuation)."""
    t = _clean(text)
    if not t:
        return Spotting()
    hits: list[SpotHit] = []
    covered: set[int] = set()
    for strong, patterns in ((True, _STRONG), (False, _WEAK)):
        for pattern in patterns:
            for m in pattern.finditer(t):
                if _negated(t, m.start()) or covered.intersection(range(m.start(), m.end())):
                    continue
                covered.update(range(m.start(), m.end()))
                hits.append(SpotHit(keyword=pattern.pattern, heard=m.group(0), strong=strong))
    if by_sound:
        syllables = _sounds(t)
        # pinyin of a CJK string is one syllable per character, so indexes line up with ``t``
        if len(syllables) == len(t):
            for keyword, sound in _sound_keywords():
                n = len(sound)
                for i in range(0, len(syllables) - n + 1):
                    if syllables[i : i + n] != sound or covered.intersection(range(i, i + n)) or _negated(t, i):
                        continue
                    covered.update(range(i, i + n))
                    hits.append(SpotHit(keyword=keyword, heard=t[i : i + n], strong=False, by_sound=True))
    return Spotting(hits=tuple(hits))
