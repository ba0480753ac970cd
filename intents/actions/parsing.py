"""Slot values from what the elder said (pure functions, no Rasa import; unit-tested from the assistant env).

Input is already normalised (simplified script, no punctuation, digits for counted numerals), but every
parser also copes with raw text by normalising it first. Each parser returns a canonical value or None.
Spoken read-backs use ``speak_*`` helpers that write numbers as Chinese numerals (clearer in TTS).
"""

from __future__ import annotations

import re

try:  # inside the action server (cwd = intents/)
    from components.normalize import cn_number, normalize
except ModuleNotFoundError:  # imported as intents.actions.parsing in the assistant's tests
    from intents.components.normalize import cn_number, normalize  # type: ignore[no-redef]


def _has(text: str, *words: str) -> bool:
    return any(w in text for w in words)


# -- yes / no --------------------------------------------------------------------------------------------
_NO_WORDS = ("不对", "唔啱", "不是", "唔系", "错", "不要", "唔要", "不用", "唔使", "唔洗", "不需要", "唔需要", "改", "不行", "唔得", "没有", "冇")
_YES_WORDS = ("对", "啱", "是", "系", "好", "可以", "得", "要", "需要", "冇错", "没错", "ok", "行", "嗯", "确认")


def parse_yes_no(text: str, *, intent: str | None = None) -> bool | None:
    """True / False from affirm / deny (the intent wins) or from the words; None when unclear."""
    if intent == "affirm":
        return True
    if intent == "deny":
        return False
    t = normalize(text)
    if not t:
        return None
    if _has(t, "冇错", "没错", "冇问题", "没问题"):
        return True
    if _has(t, *_NO_WORDS):
        return False
    if _has(t, *_YES_WORDS):
        return True
    return None


_CANCEL_WORDS = ("取消", "不要了", "唔要喇", "唔要啦", "唔要了", "算了", "算啦", "算数", "唔订", "不订了")


def is_cancel(text: str) -> bool:
    return _has(normalize(text), *_CANCEL_WORDS)


# -- gas ---------------------------------------------------------------------------------------------------
def parse_gas_size(text: str) -> str | None:
    t = normalize(text)
    m = re.search(r"(\d+)(?:公斤|kg|千克)", t)
    if m:
        kg = int(m.group(1))
        return {15: "15kg", 5: "5kg", 50: "50kg", 14: "15kg", 12: "15kg", 2: "5kg", 6: "5kg"}.get(kg)
    if _has(t, "大罐", "大樽", "大瓶", "大桶", "大支", "大嘅", "大的", "大个", "要大", "大号"):
        return "15kg"
    if _has(t, "细樽", "小罐", "小瓶", "细罐", "细嘅", "小的", "细个", "要细", "小号", "细支"):
        return "5kg"
    if _has(t, "30斤", "卅斤", "三十斤"):
        return "15kg"
    if _has(t, "10斤", "十斤"):
        return "5kg"
    if _has(t, "平时", "照旧", "老样子", "同上次", "一样", "照常", "惯常"):
        return "usual"
    return None


# 罐 (guàn) comes back from ASR as its near-homophones 贯/冠/灌/管/关/官/馆 often enough to accept them
# after a number (CI saw "大官一官" for "大罐，一罐")
_COUNT_UNITS = "罐|樽|瓶|桶|支|个|贯|冠|灌|管|关|官|馆"


def parse_quantity(text: str, *, bare_ok: bool = False, max_n: int = 5) -> int | None:
    """``2罐`` / ``两樽`` → 2. A bare number (``两``, ``3``) only when ``bare_ok`` (the question asked for it)."""
    t = normalize(text)
    m = re.search(rf"(\d+)(?:{_COUNT_UNITS})", t)
    if m is None:
        m = re.search(rf"([一二两三四五])(?:{_COUNT_UNITS})", t)
    if m is None and bare_ok:
        m = re.search(r"(\d+)", t) or re.search(r"([一二两三四五])", t)
    if m is None:
        if _has(t, "一罐", "一樽", "一瓶", "一个", "罐就够", "一罐就"):
            return 1
        return None
    raw = m.group(1)
    n = int(raw) if raw.isdigit() else cn_number(raw)
    if n is None or not 1 <= n <= max_n:
        return None
    return n


_DAY_WORDS = (
    ("今天", "今天"), ("今日", "今天"), ("而家", "今天"), ("现在", "今天"),
    ("明天", "明天"), ("听日", "明天"), ("明日", "明天"),
    ("后天", "后天"), ("后日", "后天"),
)
_PART_WORDS = (
    ("上午", "上午"), ("上昼", "上午"), ("朝早", "上午"), ("早上", "上午"), ("早晨", "上午"),
    ("中午", "中午"), ("晏昼", "中午"),
    ("下午", "下午"), ("下昼", "下午"),
    ("晚上", "晚上"), ("夜晚", "晚上"), ("夜晚黑", "晚上"), ("傍晚", "晚上"),
)
_WEEKDAY_RE = re.compile(r"(下个|下|这个|今个|呢个)?(?:星期|礼拜|周)([一二三四五六日天1-7])")
_DATE_RE = re.compile(r"(?:(\d{1,2})月)?(\d{1,2})(?:号|日)")
_CLOCK_RE = re.compile(r"(\d{1,2})点(半|\d{1,2}分?)?")


def parse_when(text: str) -> str | None:
    """A day / part of day / clock time, as a short canonical Chinese phrase (``明天上午``, ``尽快``)."""
    t = normalize(text)
    if _has(t, "尽快", "越快越好", "马上", "即刻", "快啲", "快点", "越早越好", "急") and not _has(t, "不急", "唔急"):
        return "尽快"
    parts: list[str] = []
    for word, canon in _DAY_WORDS:
        if word in t and canon not in parts:
            parts.append(canon)
            break
    m = _WEEKDAY_RE.search(t)
    if m:
        day = m.group(2).replace("天", "日").replace("7", "日")
        parts.append(("下" if m.group(1) and "下" in m.group(1) else "") + "星期" + day)
    m = _DATE_RE.search(t)
    if m and not parts:
        parts.append((f"{m.group(1)}月" if m.group(1) else "") + f"{m.group(2)}号")
    for word, canon in _PART_WORDS:
        if word in t:
            parts.append(canon)
            break
    m = _CLOCK_RE.search(t)
    if m:
        parts.append(m.group(0))
    if not parts and _has(t, "随便", "几时都得", "什么时候都行", "都可以", "都得", "无所谓"):
        return "任何时间"
    return "".join(parts) or None


# -- meals -----------------------------------------------------------------------------------------------
_MEALS = (
    ("breakfast", ("早餐", "早饭", "早点", "朝早", "早上")),
    ("lunch", ("午餐", "午饭", "中午", "晏昼", "中饭", "晏")),
    ("dinner", ("晚餐", "晚饭", "夜晚", "晚上", "夜饭", "晚")),
)
MEAL_NAMES = {"breakfast": ("早餐", "早餐"), "lunch": ("午餐", "午餐"), "dinner": ("晚餐", "晚餐")}


def parse_meals(text: str) -> list[str] | None:
    t = normalize(text)
    if _has(t, "三餐", "3餐", "全部", "三顿", "3顿", "一日三餐", "每餐"):
        return ["breakfast", "lunch", "dinner"]
    found = [name for name, words in _MEALS if _has(t, *words)]
    return found or None


def parse_days(text: str) -> str | None:
    t = normalize(text)
    if _has(t, "每天", "日日", "天天", "每日", "长期", "一直"):
        m = re.search(r"(\d+)(?:个)?(?:星期|礼拜|周)", t)
        return f"每天，{m.group(1)}个星期" if m else "每天"
    if _has(t, "星期一到星期五", "礼拜一到礼拜五", "周一到周五", "工作日", "返工日"):
        return "星期一到星期五"
    m = re.search(r"(\d+)(?:个)?(?:星期|礼拜)", t) or re.search(r"(\d+)周", t)
    if m:
        return f"{m.group(1)}个星期"
    m = re.search(r"(\d+)(?:天|日)", t)
    if m and int(m.group(1)) <= 31:
        return f"{m.group(1)}天"
    when = parse_when(t)
    if when and when not in {"尽快", "任何时间"}:
        return when
    if when == "尽快":
        return "今天"
    return None


_DIETS = (
    ("soft", ("软", "烂", "易咬", "好咬", "咬唔到", "咬不动", "牙唔好", "牙不好", "稀饭", "粥", "糊")),
    ("low_salt", ("少盐", "低盐", "淡", "唔好咸", "不要咸", "不要太咸", "唔好太咸", "血压")),
    ("diabetic", ("糖尿", "无糖", "少糖", "冇糖", "血糖", "唔好甜", "不要甜")),
    ("low_fat", ("少油", "清淡", "唔好油", "不要油")),
    ("vegetarian", ("素", "斋")),
)
DIET_NAMES = {"soft": "软一点", "low_salt": "少盐", "diabetic": "糖尿病餐", "low_fat": "少油", "vegetarian": "素食", "none": "没有特别要求"}


def parse_diet(text: str, *, intent: str | None = None) -> list[str] | None:
    t = normalize(text)
    found = [name for name, words in _DIETS if _has(t, *words)]
    if found:
        return found
    if intent == "deny" or _has(t, "没有", "冇", "无", "都得", "都可以", "正常", "普通", "随便", "无所谓", "不用", "唔使"):
        return ["none"]
    return None


# -- repairs ---------------------------------------------------------------------------------------------
_REPAIR_ITEMS = (
    ("水管漏水", ("漏水", "爆水管", "水管", "水喉", "渗水", "滴水")),
    ("水龙头", ("水龙头", "龙头", "水掣")),
    ("马桶", ("马桶", "坐厕", "厕所", "冲水", "屎坑")),
    ("热水器", ("热水器", "冇热水", "没有热水", "热水炉")),
    ("电灯", ("灯", "光管")),
    ("电路", ("跳闸", "冇电", "没电", "停电", "插座", "插苏", "电线", "电掣", "总掣")),
    ("门锁", ("门锁", "锁", "开唔到门", "开不了门", "门")),
    ("空调", ("空调", "冷气")),
    ("炉具", ("煤气炉", "炉头", "炉", "煮唔到")),
    ("窗户", ("窗",)),
    ("冰箱", ("冰箱", "雪柜")),
    ("电视", ("电视",)),
    ("洗衣机", ("洗衣机",)),
)
_GENERIC_REPAIR = ("维修", "修理", "整嘢", "修嘢", "报修", "师傅", "坏咗", "坏了", "有嘢坏", "有东西坏", "帮我整", "帮我修")


def parse_repair_item(text: str, *, free_text_ok: bool = False) -> str | None:
    t = normalize(text)
    for name, words in _REPAIR_ITEMS:
        if _has(t, *words):
            return name
    if free_text_ok and len(t) >= 2:
        rest = t
        for w in _GENERIC_REPAIR + ("我", "想", "要", "搵", "找", "个", "嘅", "的", "屋企", "家里", "请", "唔该"):
            rest = rest.replace(w, "")
        return t if len(rest) >= 2 else None
    return None


def parse_urgency(text: str, *, intent: str | None = None, asked: bool = False) -> str | None:
    t = normalize(text)
    if _has(t, "不急", "唔急", "唔使急", "不用急", "慢慢", "得闲", "有空", "过几日", "过几天", "下个星期"):
        return "normal"
    if _has(t, "好急", "很急", "急", "马上", "即刻", "今日", "今天", "危险", "漏水", "冇电", "没电", "跳闸", "开唔到门", "开不了门", "爆"):
        return "urgent"
    if asked:
        yes = parse_yes_no(t, intent=intent)
        if yes is not None:
            return "urgent" if yes else "normal"
    return None


# -- appointments ----------------------------------------------------------------------------------------
_HOSPITALS = (
    ("江门市中心医院", ("中心医院", "中心")),
    ("江门市人民医院", ("江门人民医院", "市人民医院", "人民医院", "人民")),
    ("五邑中医院", ("五邑中医院", "中医院", "中医医院")),
    ("江门市妇幼保健院", ("妇幼",)),
    ("江海区人民医院", ("江海",)),
    ("新会区人民医院", ("新会",)),
    ("社区卫生服务中心", ("社区", "卫生站", "卫生院", "街坊医院", "社康", "卫生服务中心")),
)


def parse_hospital(text: str, *, free_text_ok: bool = False) -> str | None:
    t = normalize(text)
    for name, words in _HOSPITALS:
        if _has(t, *words):
            if name == "江门市人民医院" and "江海" in t:
                return "江海区人民医院"
            if name == "江门市人民医院" and "新会" in t:
                return "新会区人民医院"
            return name
    if free_text_ok:
        m = re.search(r"([\u4e00-\u9fff]{2,12}(?:医院|卫生院|诊所|医疗中心))", t)
        if m:
            return m.group(1)
    return None


_DEPARTMENTS = (
    ("心内科", ("心内", "心脏", "心口")),
    ("神经内科", ("神经", "头晕", "中风")),
    ("呼吸内科", ("呼吸", "咳", "气喘")),
    ("消化内科", ("消化", "肠胃", "胃")),
    ("内分泌科", ("内分泌", "糖尿", "血糖")),
    ("骨科", ("骨", "腰", "膝头", "膝盖", "关节")),
    ("眼科", ("眼",)),
    ("耳鼻喉科", ("耳", "鼻", "喉")),
    ("口腔科", ("口腔", "牙")),
    ("皮肤科", ("皮肤",)),
    ("中医科", ("中医", "针灸")),
    ("康复科", ("康复", "物理治疗")),
    ("外科", ("外科",)),
    ("内科", ("内科", "普通科", "全科", "门诊", "高血压", "血压")),
)


def parse_department(text: str, *, free_text_ok: bool = False) -> str | None:
    t = normalize(text)
    for name, words in _DEPARTMENTS:
        if _has(t, *words):
            return name
    if free_text_ok:
        m = re.search(r"([\u4e00-\u9fff]{1,6}科)", t)
        if m:
            return m.group(1)
    return None


def parse_escort(text: str, *, intent: str | None = None) -> bool | None:
    t = normalize(text)
    if _has(t, "唔使", "唔洗", "不用", "不需要", "唔需要", "有人陪", "仔女陪", "个仔陪", "女儿陪", "儿子陪", "家人陪", "屋企人陪", "自己去", "自己可以", "唔使陪", "不用陪", "不用人陪", "唔使人陪"):
        return False
    if _has(t, "要人陪", "需要人陪", "陪我", "冇人陪", "没人陪", "要陪"):
        return True
    return parse_yes_no(t, intent=intent)


# -- reading numbers aloud -------------------------------------------------------------------------------
_CN = "零一二三四五六七八九"


def speak_number(n: int) -> str:
    """2 → 两 (before a measure word), 15 → 十五: clearer than digits for the TTS voices."""
    if n == 2:
        return "两"
    if 0 <= n < 10:
        return _CN[n]
    if n < 20:
        return "十" + (_CN[n - 10] if n > 10 else "")
    if n < 100:
        return _CN[n // 10] + "十" + (_CN[n % 10] if n % 10 else "")
    return str(n)
