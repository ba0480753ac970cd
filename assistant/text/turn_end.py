"""Does a sentence heard so far look unfinished? The words half of the end of a turn (issue #19).

``unfinished_tail(text)`` returns why the recognised text of a turn's audio so far (early recognition at the
decision pause) looks cut off, or None: empty text (nothing heard yet), a trailing comma, a filler (嗯, 呃),
a connective (然后, 就是, 因为, 但是, 还有, 和, 跟, ...) or an adverb before its verb (已经, 正在, 马上), a demonstrative without its noun (那个), the
structure word 的 (or 的话 / 的时候), a wish or modal without its verb (我想, 我要, 需要), a preposition or
verb without its object (把, 给, 叫, 说, 觉得, 订, 买), a number or a count word without its noun (两, 三个,
两罐). Pure: no model, no state. Errs on the side of "unfinished": its cost is a longer wait, the cost of the
other mistake is an elder cut off mid-order.

Exceptions (short complete answers): the word alone (要, 是, 可以), negated (不要, 不是, 不用), the yes-words
ending in 的 (是的, 好的, 对的), and a text that is only a number (an answer to "how many?" or a menu key).
"""

from __future__ import annotations

import re

from assistant.text.normalize import strip_punctuation, to_simplified

# trailing punctuation the recogniser writes inside a sentence
_OPEN_PUNCTUATION = ("，", ",", "、", "…", "...", "；", ";", "：", ":", "—", "-")
FILLERS = ("嗯", "呃", "额", "唔")
# connectives and discourse words that announce more (Mandarin; then Cantonese)
CONNECTIVES = (
    "然后", "就是", "还有", "而且", "并且", "因为", "所以", "如果", "但是", "可是", "不过", "要是", "或者",
    "还是", "以及", "另外", "接着", "比如", "那么", "然而", "只是", "只要", "虽然", "的话", "的时候", "和", "跟",
    "与", "或", "而", "那", "这", "就", "还", "都", "又", "再", "很", "太", "比较", "非常", "特别",
    "同埋", "跟住", "即系", "即係", "但系", "但係", "咁", "噉",
    # adverbs that stand before their verb (目前工厂产量已经…)
    "已经", "正在", "马上", "刚刚", "一直", "总是", "经常", "常常", "曾经", "快要", "将要", "立刻", "先", "才",
)
DEMONSTRATIVES = ("那个", "这个", "那些", "这些", "哪个", "那种", "这种", "嗰个", "嗰個", "呢个", "呢個")
STRUCTURE = ("的", "之")
COMPLETE_DE = ("是的", "好的", "对的", "行的", "真的", "可以的", "知道的", "没事的", "会的")
COMPLETE = ("也是", "也要", "都是", "都要")  # "me too": complete short answers
# wanting / modal verbs: complete alone or negated (要, 不要), unfinished after a subject (我要)
MODALS = ("想要", "需要", "打算", "准备", "希望", "应该", "可以", "能够", "想", "要", "能", "会")
# prepositions and verbs that take an object or a clause
NEEDS_OBJECT = (
    "觉得", "认为", "告诉", "麻烦", "帮我", "给我", "请你", "住在", "放在", "打给", "送给", "我是", "我叫", "叫做",
    "把", "被", "给", "对于", "关于", "向", "从", "往", "比", "离", "替", "为", "让", "叫", "帮", "请", "找",
    "订", "买", "说", "问", "打", "是",
)
NEGATIONS = ("不", "没", "别", "甭", "唔", "冇")
_NUMERAL = "0-9零〇一二两三四五六七八九十百千万几"
COUNT_WORDS = "个罐瓶袋盒包桶件份碗杯张位条只台块箱"
_BARE_NUMBER = re.compile(rf"[{_NUMERAL}]+")
_NUMBER_TAIL = re.compile(rf"[{_NUMERAL}]+[{COUNT_WORDS}]?$")
DAY_WORDS = ("星期", "礼拜", "周", "初", "第")  # 星期一, 初五, 第一: a day or a rank, not a count


def _plain(text: str) -> str:
    return strip_punctuation(to_simplified(text))


def unfinished_tail(text: str) -> str | None:
    """Why ``text`` (a recogniser's output for the speech so far) looks unfinished, or None if it may be complete."""
    stripped = text.strip()
    if stripped.endswith(_OPEN_PUNCTUATION):
        return "comma"
    words = _plain(stripped)
    if not words:
        return "nothing heard"
    for filler in FILLERS:
        if words.endswith(filler):
            return filler
    if _BARE_NUMBER.fullmatch(words):
        return None  # only a number: an answer to "how many?" or a menu key
    number = _NUMBER_TAIL.search(words)
    if number and not words[: number.start()].endswith(DAY_WORDS):
        return number.group(0)
    for tail in DEMONSTRATIVES + CONNECTIVES:
        if words.endswith(tail):
            return tail
    if words.endswith(STRUCTURE) and not words.endswith(COMPLETE_DE):
        return words[-1]
    if words.endswith(COMPLETE):
        return None
    for tail in MODALS + NEEDS_OBJECT:
        if words.endswith(tail):
            before = words[: -len(tail)]
            if (tail in NEEDS_OBJECT and len(tail) > 1) or (before and not before.endswith(NEGATIONS)):
                return tail
            break  # a modal or a one-character verb alone or negated: a complete short answer (要, 不是)
    return None


def sounds_unfinished(text: str) -> bool:
    return unfinished_tail(text) is not None
