"""What the pipeline itself says when the dialogue cannot: short sentences, Mandarin and Cantonese.

Rasa's own replies live in ``intents/domain.yml``; these cover what happens when recognition fails,
Rasa is unreachable, or the elder uses the keypad.
"""

from __future__ import annotations

PROMPTS: dict[str, dict[str, str]] = {
    "not_heard": {
        "cmn": "对不起，我没听清。请您再说一遍。",
        "yue": "唔好意思，我听唔清楚。请你再讲一次。",
    },
    "keypad_menu": {
        "cmn": "我还是没听清。您可以按键：按一，一切都好；按二，需要帮助；按零，转人工。",
        "yue": "我都係听唔清楚。你可以㩒掣：㩒一，一切都好；㩒二，需要帮手；㩒零，转人工。",
    },
    "dialogue_down": {
        "cmn": "对不起，系统有点忙。我帮您转接人工客服，请不要挂机。",
        "yue": "唔好意思，系统有啲忙。我帮你转接人工，请唔好收线。",
    },
    "handover": {
        "cmn": "好的，正在为您转接工作人员，请稍等。",
        "yue": "好，而家帮你转接职员，请等一等。",
    },
    "emergency_question": {
        "cmn": "您是需要帮助吗？说'是'或按一。",
        "yue": "你系咪要人帮手？讲'系'或者㩒一。",
    },
    "not_understood_question": {
        "cmn": "对不起，我没听清。您是需要帮助吗？要帮助请说'是'或按一，不是的话请再说一遍。",
        "yue": "唔好意思，我听唔清楚。你系咪要人帮手？要就讲'系'或者㩒一，唔系就请你再讲一次。",
    },
    "emergency_person": {
        "cmn": "别怕，我马上帮您接通工作人员，请不要挂机。",
        "yue": "唔使惊，我即刻帮你接职员，请唔好收线。",
    },
    "emergency_cancelled": {
        "cmn": "好的，没事就好。您还需要什么？",
        "yue": "好，冇事就好。你仲有乜需要？",
    },
    "keypad_fine": {
        "cmn": "好的，知道您一切都好。祝您身体健康，再见。",
        "yue": "好，知道你一切都好。祝你身体健康，拜拜。",
    },
    "keypad_help": {
        "cmn": "收到，您需要帮助。工作人员马上联系您，请不要挂机。",
        "yue": "收到，你需要帮手。职员即刻联络你，请唔好收线。",
    },
}


def prompt(key: str, dialect: str | None) -> str:
    texts = PROMPTS[key]
    return texts.get(dialect or "cmn", texts["cmn"])
