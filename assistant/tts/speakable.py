"""Elder-friendly text: numbers, times, prices and phone numbers written the way people say them.

Voices read Arabic digits badly (espeak-ng reads "20" digit by digit or, in old builds, in English), and
elders follow spoken forms best. ``speakable(text, dialect=...)`` rewrites a reply before synthesis:

- ``20分钟`` → ``二十分钟``; ``2罐`` → ``两罐`` (Cantonese ``兩罐``); ``3.5`` → ``三点五``
- ``10:30`` → ``十点半``; ``9:05`` → ``九点零五分``; ``2:00`` → ``两点``
- ``15kg`` / ``15公斤`` → ``十五公斤``; ``38.5℃`` → ``三十八点五度``; ``50%`` → ``百分之五十``
- ``15.5元`` / ``¥15.5`` → ``十五块五`` (Cantonese ``十五蚊五``)
- phone numbers and codes digit by digit, in groups: ``13812345678`` → ``幺三八 幺二三四 五六七八``
  (Cantonese reads 1 as ``一``); ``拨打120`` → ``拨打幺二零``; ``2024年`` → ``二零二四年``
- ASCII punctuation becomes Chinese punctuation so the voice pauses between clauses; symbols a voice
  would spell out (``*``, ``#``, emoji, URLs) are dropped.

Pure functions, no imports beyond the standard library: unit-tested in ``tests/unit/test_tts_speakable.py``.
"""

from __future__ import annotations

import re

DIGITS_CMN = "零一二三四五六七八九"
# in phone numbers Mandarin says 幺 for 1 so that it is not confused with 七; Cantonese says 一
PHONE_DIGITS = {"cmn": "零幺二三四五六七八九", "yue": "零一二三四五六七八九"}

# measure words after which the number 2 is said 两 (兩 in Cantonese)
CLASSIFIERS = (
    "个|位|罐|瓶|桶|袋|包|盒|份|碗|杯|张|件|条|只|双|次|遍|天|日|周|星期|个月|年|岁|点|小时|钟头|刻|"
    "斤|两|公斤|千克|克|公里|里|米|层|楼|间|套|片|粒|颗|支|种|样|名|户|餐|顿|趟|辆|台|把|本|块|毛|元|蚊|"
    "個|張|條|隻|雙|週|歲|點|鐘頭|層|樓|間|顆|種|樣|戶|頓|輛|臺"
)
_FULLWIDTH = str.maketrans("０１２３４５６７８９：．％￥", "0123456789:.%¥")
_PUNCT = str.maketrans({",": "，", "!": "！", "?": "？", ";": "；", ":": "：", "(": "，", ")": "，"})
_DROP = re.compile(
    r"https?://\S+|[*#_`~^|<>\[\]{}@\\]|[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F]",
)
_PHONE_KEYWORDS = r"(?:电话|號碼|号码|手机|手機|拨打|撥打|致电|打|热线|熱線|验证码|驗證碼|尾号|尾號|编号|編號|工号|工號|订单号|訂單號|单号|單號)"


def integer_words(n: int, *, dialect: str = "cmn") -> str:
    """Cardinal number as said aloud: 20 → 二十, 105 → 一百零五, 10 → 十, 12 → 十二."""
    if n < 0:
        return ("负" if dialect == "cmn" else "負") + integer_words(-n, dialect=dialect)
    if n < 10:
        return DIGITS_CMN[n]
    units = [(100_000_000, "亿" if dialect == "cmn" else "億"), (10_000, "万" if dialect == "cmn" else "萬"),
             (1000, "千"), (100, "百"), (10, "十")]
    out: list[str] = []
    rest = n
    need_zero = False
    started = False
    for value, name in units:
        q, rest = divmod(rest, value)
        if q:
            if need_zero:
                out.append("零")
            if value == 10 and q == 1 and not started:
                out.append("十")  # 十二, not 一十二
            else:
                out.append((integer_words(q, dialect=dialect) if q >= 10 else DIGITS_CMN[q]) + name)
            started = True
            need_zero = False
        elif started:
            need_zero = True
    if rest:
        if need_zero:
            out.append("零")
        out.append(DIGITS_CMN[rest])
    return "".join(out)


def number_words(token: str, *, dialect: str = "cmn") -> str:
    """Integer or decimal string as said aloud: "3.5" → 三点五, "20" → 二十, "0.75" → 零点七五."""
    point = "点" if dialect == "cmn" else "點"
    if "." in token:
        whole, frac = token.split(".", 1)
        frac = frac.rstrip("0")
        head = integer_words(int(whole or "0"), dialect=dialect)
        if not frac:
            return head
        return head + point + "".join(DIGITS_CMN[int(d)] for d in frac)
    return integer_words(int(token), dialect=dialect)


def digits_words(digits: str, *, dialect: str = "cmn", phone: bool = True) -> str:
    table = PHONE_DIGITS.get(dialect, PHONE_DIGITS["cmn"]) if phone else DIGITS_CMN
    return "".join(table[int(d)] for d in digits if d.isdigit())


def phone_words(number: str, *, dialect: str = "cmn") -> str:
    """A phone number or code digit by digit, grouped the way people read it (3-4-4, 4-4, or as written)."""
    groups: list[str] = []
    for d in (g for g in re.split(r"[\s\-]+", number.strip()) if g):
        if len(d) == 11 and d.startswith("1"):
            groups += [d[:3], d[3:7], d[7:]]
        elif len(d) > 5:
            groups += [d[i : i + 4] for i in range(0, len(d), 4)]
        else:
            groups.append(d)
    return " ".join(digits_words(g, dialect=dialect) for g in groups)


def time_words(hour: int, minute: int, *, dialect: str = "cmn") -> str:
    """10:30 → 十点半; 9:05 → 九点零五分; 2:00 → 两点; 14:15 → 十四点十五分."""
    point = "点" if dialect == "cmn" else "點"
    two = "两" if dialect == "cmn" else "兩"
    h = two if hour == 2 else integer_words(hour, dialect=dialect)
    if minute == 0:
        return h + point
    if minute == 30:
        return h + point + "半"
    m = ("零" + DIGITS_CMN[minute]) if minute < 10 else integer_words(minute, dialect=dialect)
    return h + point + m + "分"


def price_words(amount: str, *, dialect: str = "cmn") -> str:
    """15.5 → 十五块五 (Cantonese 十五蚊五); 0.5 → 五毛; 15.05 → 十五块零五分; 15 → 十五块."""
    whole_s, _, frac = amount.partition(".")
    whole = int(whole_s or "0")
    frac = (frac + "00")[:2]
    jiao, fen = int(frac[0]), int(frac[1])
    if dialect == "yue":
        unit, dime = "蚊", "毫"
    else:
        unit, dime = "块", "毛"
    parts: list[str] = []
    if whole:
        parts.append(_two_or(whole, dialect) + unit)
    if jiao:
        parts.append(DIGITS_CMN[jiao] if whole and not fen else _two_or(jiao, dialect) + dime)
        if whole and fen:
            parts[-1] = DIGITS_CMN[jiao] + dime
    if fen:
        if whole and not jiao:
            parts.append("零")
        parts.append(DIGITS_CMN[fen] + ("分" if dialect == "cmn" else "仙"))
    return "".join(parts) or ("零" + unit)


def _two_or(n: int, dialect: str) -> str:
    if n == 2:
        return "两" if dialect == "cmn" else "兩"
    return integer_words(n, dialect=dialect)


_UNITS = {
    "cmn": {"kg": "公斤", "KG": "公斤", "Kg": "公斤", "km": "公里", "KM": "公里", "ml": "毫升", "mL": "毫升",
            "mg": "毫克", "g": "克", "cm": "厘米", "mm": "毫米", "℃": "度", "°C": "度", "°": "度",
            "mmHg": "毫米汞柱", "h": "小时", "min": "分钟"},
    "yue": {"kg": "公斤", "KG": "公斤", "Kg": "公斤", "km": "公里", "KM": "公里", "ml": "毫升", "mL": "毫升",
            "mg": "毫克", "g": "克", "cm": "厘米", "mm": "毫米", "℃": "度", "°C": "度", "°": "度",
            "mmHg": "毫米水銀柱", "h": "個鐘", "min": "分鐘"},
}
_UNIT_RE = re.compile(r"(\d+(?:\.\d+)?)\s*(mmHg|kg|KG|Kg|km|KM|ml|mL|mg|cm|mm|min|°C|℃|°|g|h)(?![A-Za-z])")
_PHONE_RE = re.compile(
    r"(?<![\d.])(1[3-9]\d[\s\-]?\d{4}[\s\-]?\d{4}|0\d{2,3}[\s\-]\d{7,8}|\d{3,4}[\s\-]\d{3,4}[\s\-]\d{4}|\d{5,})(?![\d.])"
)
_KEYWORD_DIGITS_RE = re.compile(_PHONE_KEYWORDS + r"(是|為|为|：|:)?\s*(\d[\d\s\-]{1,}\d)(?![\d.])")
_BLOOD_PRESSURE_RE = re.compile(r"(?<![\d.])(\d{2,3})\s*/\s*(\d{2,3})(?:\s*mmHg)?")
_TIME_RE = re.compile(r"(?<!\d)([01]?\d|2[0-3])\s*[:：]\s*([0-5]\d)(?!\d)")
_PRICE_RE = re.compile(r"[¥$]\s*(\d+(?:\.\d{1,2})?)|(\d+(?:\.\d{1,2})?)\s*(?:元|块钱|块|蚊)")
_PERCENT_RE = re.compile(r"(\d+(?:\.\d+)?)\s*%")
_YEAR_RE = re.compile(r"(?<!\d)(\d{4})\s*年")
_RANGE_RE = re.compile(r"(\d+(?:\.\d+)?)\s*[-~～—]\s*(\d+(?:\.\d+)?)")
_TWO_RE = re.compile(r"(?<![\d.])2(?![\d.])\s*(?=" + CLASSIFIERS + ")")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def speakable(text: str, *, dialect: str = "cmn") -> str:
    """Rewrite ``text`` (a bot reply) into what the voice should say to an elder."""
    dialect = "yue" if dialect == "yue" else "cmn"
    s = text.translate(_FULLWIDTH)
    s = _DROP.sub("", s)
    s = re.sub(r"\s*\n+\s*", "。", s)
    # digits after 电话/验证码/拨打 ... are read one by one, even short ones (120, 110)
    s = _KEYWORD_DIGITS_RE.sub(
        lambda m: m.group(0)[: m.start(2) - m.start(0)] + phone_words(m.group(2), dialect=dialect), s
    )
    s = _PHONE_RE.sub(lambda m: phone_words(m.group(1), dialect=dialect), s)
    high, low = ("高压", "低压") if dialect == "cmn" else ("上壓", "下壓")
    s = _BLOOD_PRESSURE_RE.sub(lambda m: f"{high}{m.group(1)}，{low}{m.group(2)}", s)
    s = _YEAR_RE.sub(lambda m: digits_words(m.group(1), dialect=dialect, phone=False) + "年", s)
    s = _TIME_RE.sub(lambda m: time_words(int(m.group(1)), int(m.group(2)), dialect=dialect), s)
    s = _PRICE_RE.sub(lambda m: price_words(m.group(1) or m.group(2), dialect=dialect), s)
    s = _PERCENT_RE.sub(lambda m: ("百分之" + number_words(m.group(1), dialect=dialect)), s)
    s = _UNIT_RE.sub(lambda m: number_words(m.group(1), dialect=dialect) + _UNITS[dialect][m.group(2)], s)
    s = _RANGE_RE.sub(lambda m: f"{m.group(1)}到{m.group(2)}", s)
    s = _TWO_RE.sub("两" if dialect == "cmn" else "兩", s)
    s = _NUMBER_RE.sub(lambda m: number_words(m.group(0), dialect=dialect), s)
    s = s.translate(_PUNCT)
    s = re.sub(r"(?<=[\u4e00-\u9fff])\.(?!\d)", "。", s)
    s = re.sub(r"[ \t]+", " ", s)
    s = re.sub(r"([，。！？；、])\s+", r"\1", s)
    s = re.sub(r"[，、]+([。！？])", r"\1", s)
    s = re.sub(r"([，。！？；])[，。；]+", r"\1", s)
    return s.strip(" ，：；")


def slower_rate_wpm(current_wpm: int, *, step_wpm: int, min_wpm: int) -> int:
    """The rate after the elder asks us to speak more slowly (never below ``min_wpm``)."""
    return max(min_wpm, current_wpm - step_wpm)
