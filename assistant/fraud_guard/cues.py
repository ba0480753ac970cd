"""The cue table: what a scammer *asks the elder to do*, and what a genuine caller says instead.

The cues themselves are data, in ``cues.toml`` next to this file (loaded once, at import).

Patterns run on ``text.normalize``d turns (simplified script, so traditional input matches too), one clause
at a time. Each cue has a category; a call's risk sums the strongest cue per category (repeats add a
little), so a long friendly call does not drift upwards on small talk. Request cues are *negation-aware*:
"不要转账" / "唔好讲验证码" / "骗子会叫您转账" are warnings, not requests, and count for the genuine side.

Weights are log-odds contributions used by the hand-weighted fallback and, summed, as the ``prior`` feature
of the learned combiner (``train.py``, #20), which learns its own weight per category. They were set by hand from the fraud literature (公安部 反诈 cases, 96110
scripts) and checked against ``tests/data/fraud_hardcases_own.jsonl``; see ``detector.py`` for how they
combine.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Speaker = Literal["caller", "callee", "any"]

# scam types reported to operators (Chinese, as the console shows them)
SAFE_ACCOUNT = "安全账户/转账"
POLICE = "冒充公检法"
FAMILY = "冒充亲友/猜猜我是谁"
SERVICE = "冒充客服/退款"
HEALTH = "保健品/免费体检"
INVEST = "高息理财/以房养老"
PLATFORM = "冒充平安通"
PRIZE = "中奖/预付费"
INSURANCE = "冒充医保/社保"
BANK = "冒充银行/验证码"
OTHER = "其他可疑来电"


@dataclass(frozen=True, kw_only=True)
class Cue:
    name: str
    category: str  # one contribution per category per call (strongest wins)
    weight: float  # log-odds; negative = evidence for a genuine call
    pattern: re.Pattern[str]
    speaker: Speaker = "caller"
    scam_type: str | None = None
    # a request cue inside a negated / warning clause becomes a warning (genuine evidence)
    negatable: bool = True
    # the match itself may hold the negation ("账户没有发现异常")
    inner_negation: bool = False
    label: str = ""


# negators just before a request ("不要转账", "唔好讲", "千万别", "不会问您要")
NEGATOR = re.compile(
    r"(不要|不用|不必|不需要|无需|毋须|别|不会|绝不|从不|从来不|决不|不能|不可以|不得|切勿|勿|千万别|千万不要|"
    r"唔好|唔使|唔会|唔需要|咪|冇|没有|没|不|唔|莫|并非|并不)"
)
# the clause describes what scammers do, or is advice ("凡是…都是骗子", "如果有人叫您…")
WARNING_FRAME = re.compile(
    r"(骗子|诈骗|骗案|骗局|冒充|假的|假冒|呃人|老千|扮|凡是|如果有人|若有人|有人会|有人叫|有人话|有人打电话|"
    r"如果佢|如果他|如果对方|若果有人|假如有人|要是有人|万一有人|"
    r"都系假|都是假|都是骗|都系骗|骗人|小心|提防|防骗|反诈|警惕|典型)"
)

# said *after* a described request in the same sentence: "…叫你转钱, 千祈唔好做" (no family object, so a
# scammer's "千万不要告诉家人" is not mistaken for a warning)
POST_WARNING = re.compile(
    r"(千祈唔好做|千万不要照做|千万别照做|千万别做|千万不要做|唔好照做|不要照做|别照做|唔好信|不要信|别信|千祈唔好信|"
    r"都是骗|都系骗|就是骗|就系骗|系骗子|是骗子|都是假|都系假|千祈唔好理|不要理)"
)

# a direct ask addressed to the elder ("请您…", "你要…", "麻烦你…") — a request even inside a warning frame
DIRECT_ASK = re.compile(r"(请您|请你|您需要|你需要|你要|您要|麻烦您|麻烦你|需要您|需要你|你必须|您必须|你得|您得|你先|您先|你就|帮我|你同我|你帮我)")

# scam_type names of cues.toml → the type reported to operators
SCAM_TYPES = {"safe_account": SAFE_ACCOUNT, "police": POLICE, "family": FAMILY, "service": SERVICE, "health": HEALTH,
              "invest": INVEST, "platform": PLATFORM, "prize": PRIZE, "insurance": INSURANCE, "bank": BANK, "other": OTHER}
CUE_TABLE = Path(__file__).with_name("cues.toml")
_CUE_FIELDS = {"name", "category", "weight", "pattern", "speaker", "scam_type", "negatable", "inner_negation", "label"}


def load_cues(path: Path = CUE_TABLE) -> tuple[Cue, ...]:
    """The cue table (``cues.toml``: one ``[[cue]]`` per pattern, in the order they are tried)."""
    cues = []
    for row in tomllib.loads(path.read_text(encoding="utf-8"))["cue"]:
        unknown = set(row) - _CUE_FIELDS
        if unknown:
            raise ValueError(f"{path.name}: cue {row.get('name')!r} has unknown fields {sorted(unknown)}")
        cues.append(Cue(
            name=row["name"], category=row.get("category", row["name"]), weight=float(row["weight"]),
            pattern=re.compile(row["pattern"]), speaker=row.get("speaker", "caller"),
            scam_type=SCAM_TYPES[row["scam_type"]] if "scam_type" in row else None,
            negatable=row.get("negatable", True), inner_negation=row.get("inner_negation", False),
            label=row.get("label", ""),
        ))
    return tuple(cues)


CUES: tuple[Cue, ...] = load_cues()

REQUEST_CATEGORIES = frozenset(
    {"safe_account", "transfer", "transfer_word", "pay", "fee", "cash", "code", "card", "id_number", "remote", "callback_number"}
)
MONEY_CATEGORIES = frozenset({"safe_account", "transfer", "transfer_word", "pay", "fee", "cash"})
CREDENTIAL_CATEGORIES = frozenset({"code", "card", "remote"})
PRESSURE_CATEGORIES = frozenset(
    {"secrecy", "coach_lie", "block_verify", "account_alarm", "invest_pitch", "parcel", "kidnap", "urgency", "threat", "authority", "transfer_call", "insurance", "family", "family_trouble",
     "prize", "refund", "invest", "miracle"}
)
