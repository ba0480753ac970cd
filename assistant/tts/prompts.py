"""Fixed prompts in Mandarin and Cantonese, and the sentences the voice evaluation speaks.

Every prompt has both dialects (``tests/unit/test_tts_prompts.py`` checks it). ``warm()`` synthesizes
``all_prompts()`` at start-up, so these play from the cache. Confirmations with slot values are expanded
for the values elders use most (1–3 cans of gas, common meal counts); other values are synthesized on
first use and cached from then on.

Cantonese is written in Cantonese (嘅、唔、係、咗), in simplified characters: espeak-ng's ``yue`` voice
reads simplified and traditional characters alike.
"""

from __future__ import annotations

PROMPTS: dict[str, dict[str, str]] = {
    # short openings: split_clauses lets them stand alone, so replies that start with them play at once
    "ack": {"cmn": "好的，", "yue": "好，"},
    "please_wait": {"cmn": "请稍等，", "yue": "请等一等，"},
    "greeting": {
        "cmn": "您好，我是社区的语音助手。请问有什么可以帮您？",
        "yue": "你好，我系社区嘅语音助手。请问有咩可以帮到你？",
    },
    "greeting_known": {
        "cmn": "{name}，您好！我是社区的语音助手，今天需要什么帮助？",
        "yue": "{name}，你好！我系社区嘅语音助手，今日有咩要帮手？",
    },
    "identity_proof": {
        "cmn": "我是社区服务中心的助手。为了您的安全，我不会向您要钱，也不会问您的银行密码。",
        "yue": "我系社区服务中心嘅助手。为咗你嘅安全，我唔会问你攞钱，亦唔会问你嘅银行密码。",
    },
    "identity_code": {
        "cmn": "您可以核对这个验证码：{code}。社区的工作人员会说出同样的号码。",
        "yue": "你可以核对呢个验证码：{code}。社区嘅职员会讲出同样嘅号码。",
    },
    "menu": {
        "cmn": "订煤气请说煤气，订饭请说订饭，找人帮忙请说帮忙。",
        "yue": "订煤气请讲煤气，订饭请讲订饭，揾人帮手请讲帮手。",
    },
    "keypad_menu": {
        "cmn": "您也可以按键：订煤气按1，找人帮忙按2，转人工按0。",
        "yue": "你都可以撳掣：订煤气撳1，揾人帮手撳2，转人工撳0。",
    },
    "not_understood": {
        "cmn": "对不起，我没有听清楚。请您再说一遍。",
        "yue": "对唔住，我听唔清楚。请你再讲一次。",
    },
    "slower_ack": {
        "cmn": "好的，我说慢一点。",
        "yue": "好，我讲慢啲。",
    },
    "confirm_gas": {
        "cmn": "好的，给您订{count}罐煤气，对吗？",
        "yue": "好，同你订{count}罐煤气，啱唔啱？",
    },
    "gas_placed": {
        "cmn": "煤气已经订好了，大约{minutes}分钟后送到。",
        "yue": "煤气已经订好，大约{minutes}分钟后送到。",
    },
    "confirm_meal": {
        "cmn": "好的，给您订{count}份午饭，对吗？",
        "yue": "好，同你订{count}份午饭，啱唔啱？",
    },
    "repair_booked": {
        "cmn": "维修师傅明天{time}上门，请您在家等候。",
        "yue": "维修师傅听日{time}上门，请你喺屋企等。",
    },
    "handover": {
        "cmn": "请稍等，我帮您转接人工服务。",
        "yue": "请等一等，我帮你转接人工服务。",
    },
    # the SOS replies of intents/actions/phrases.py (family mentioned only when a message to them is on its way)
    "emergency": {
        "cmn": "别怕，我已经通知值班人员，也正在通知您的家人。请不要挂机。如果可以，请打120。",
        "yue": "唔使惊，我已经通知咗值班职员，亦都当紧通知你屋企人。请唔好收线。如果可以，请打120。",
    },
    "emergency_staff_only": {
        "cmn": "别怕，我已经通知值班人员，马上有人联系您。请不要挂机。如果可以，请打120。",
        "yue": "唔使惊，我已经通知咗值班职员，即刻有人联络你。请唔好收线。如果可以，请打120。",
    },
    "checkin": {
        "cmn": "您今天身体好吗？",
        "yue": "你今日身体好唔好？",
    },
    "fraud_warning": {
        "cmn": "请注意，这可能是诈骗电话。不要转账，也不要说出验证码。",
        "yue": "请注意，呢个可能系诈骗电话。唔好转账，亦唔好讲出验证码。",
    },
    "goodbye": {
        "cmn": "好的，祝您身体健康，再见！",
        "yue": "好，祝你身体健康，拜拜！",
    },
}

# slot values expanded at warm-up (the most frequent ones)
WARM_SLOTS: dict[str, list[dict[str, str]]] = {
    "confirm_gas": [{"count": "1"}, {"count": "2"}, {"count": "3"}],
    "gas_placed": [{"minutes": "20"}, {"minutes": "30"}, {"minutes": "40"}],
    "confirm_meal": [{"count": "1"}, {"count": "2"}],
    "repair_booked": [{"time": "9:00"}, {"time": "10:30"}, {"time": "14:00"}],
}


def prompt(name: str, dialect: str, **slots: object) -> str:
    """The text of prompt ``name`` in ``dialect`` (Mandarin when the dialect is unknown), slots filled."""
    variants = PROMPTS[name]
    text = variants.get(dialect) or variants["cmn"]
    return text.format(**{k: str(v) for k, v in slots.items()})


def all_prompts() -> list[tuple[str, str]]:
    """(dialect, text) for every prompt that needs no slot, plus the warm-up slot values."""
    out: list[tuple[str, str]] = []
    for name, variants in PROMPTS.items():
        for dialect in variants:
            if "{" not in variants[dialect]:
                out.append((dialect, variants[dialect]))
            for slots in WARM_SLOTS.get(name, []):
                out.append((dialect, prompt(name, dialect, **slots)))
    return out


# Service sentences for `assistant eval tts` (ASR round trip). References are what the voice is asked to
# say; the CER is computed against them after both sides are normalized.
EVAL_SENTENCES_CMN: tuple[str, ...] = (
    "您好，我是社区的语音助手。",
    "请问您需要订煤气吗？",
    "煤气二十分钟后送到您家。",
    "明天上午十点半有医生上门。",
    "请您按时吃药，注意休息。",
    "您的家人已经收到通知了。",
    "今天天气很冷，出门要多穿衣服。",
    "维修师傅下午两点到您家。",
    "请不要把银行密码告诉陌生人。",
    "有事请拨打社区服务电话。",
    "您今天身体感觉怎么样？",
    "午饭已经订好了，十二点送到。",
)
EVAL_SENTENCES_YUE: tuple[str, ...] = (
    "你好，我系社区嘅语音助手。",
    "请问你要唔要订煤气？",
    "煤气二十分钟后送到你屋企。",
    "听日上午十点半有医生上门。",
    "请你按时食药，注意休息。",
    "你屋企人已经收到通知。",
    "今日好冻，出街要着多件衫。",
    "维修师傅下昼两点到你屋企。",
    "唔好将银行密码话俾陌生人知。",
    "你今日身体觉得点样？",
)
