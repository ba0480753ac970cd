"""Everything the bot says, in Mandarin (``cmn``, default) and Cantonese (``yue``). Short sentences, for TTS.

Cantonese is written in simplified characters like ``assistant/dialogue/system_prompts.py`` (the TTS voices
read both). ``say(key, dialect, **fields)`` picks the dialect's text and fills the fields.
"""

from __future__ import annotations

PHRASES: dict[str, dict[str, str]] = {
    # -- small talk and always-available turns --------------------------------------------------------
    "greet": {
        "cmn": "您好，我是平安通语音助手。请问有什么可以帮您？",
        "yue": "你好，我系平安通语音助手。请问有咩可以帮你？",
    },
    "goodbye": {"cmn": "好的，祝您身体健康，再见。", "yue": "好，祝你身体健康，拜拜。"},
    "anything_else": {"cmn": "好的。还有什么可以帮您？", "yue": "好。仲有咩可以帮你？"},
    "slower": {"cmn": "好的，我说慢一点。", "yue": "好，我讲慢啲。"},
    "nothing_to_repeat": {"cmn": "请问有什么可以帮您？", "yue": "请问有咩可以帮你？"},
    "handover": {"cmn": "好的，马上为您转接工作人员，请不要挂机。", "yue": "好，即刻帮你转接职员，请唔好收线。"},
    "not_understood": {
        "cmn": "对不起，我没听明白。请您再说一遍。",
        "yue": "唔好意思，我听唔明。请你再讲一次。",
    },
    "keypad_menu": {
        "cmn": "对不起，我还是没听明白。您可以按键：按一，一切都好；按二，需要帮助；按零，转人工。",
        "yue": "唔好意思，我都系听唔明。你可以㩒掣：㩒一，一切都好；㩒二，需要帮手；㩒零，转人工。",
    },
    "fraud_check": {
        # stub reply: the fraud guard (assistant/fraud_guard, issue #6) answers identity questions itself
        "cmn": "我是平安通的语音助手。我不会问您要钱，也不会问银行密码。",
        "yue": "我系平安通嘅语音助手。我唔会问你攞钱，亦都唔会问银行密码。",
    },
    # -- care ---------------------------------------------------------------------------------------------
    # what the elder hears matches what happened: the operators always have the alert; family only when a
    # configured channel carries their message (the platform's family_notice, issue #16)
    "emergency": {
        "cmn": "别怕，我已经通知值班人员，也正在通知您的家人。请不要挂机。如果可以，请打120。",
        "yue": "唔使惊，我已经通知咗值班职员，亦都当紧通知你屋企人。请唔好收线。如果可以，请打120。",
    },
    "emergency_staff_only": {
        "cmn": "别怕，我已经通知值班人员，马上有人联系您。请不要挂机。如果可以，请打120。",
        "yue": "唔使惊，我已经通知咗值班职员，即刻有人联络你。请唔好收线。如果可以，请打120。",
    },
    "emergency_alert_failed": {
        "cmn": "别怕。系统有点问题，我马上转接工作人员。请不要挂机。如果可以，请马上打120。",
        "yue": "唔使惊。系统有啲问题，我即刻转接职员。请唔好收线。如果可以，请即刻打120。",
    },
    "health_consult": {
        "cmn": "健康的问题我不能给建议。如果胸口痛、说话不清，马上打120。",
        "yue": "健康嘅问题我唔可以畀意见。如果心口痛、讲嘢唔清楚，即刻打120。",
    },
    "nurse_booked": {
        "cmn": "我已经帮您约了护士回电话，请保持电话畅通。",
        "yue": "我已经帮你约咗护士覆电话，请留意电话。",
    },
    "nurse_failed": {
        "cmn": "对不起，现在约不到护士。我帮您转接工作人员。",
        "yue": "唔好意思，而家约唔到护士。我帮你转接职员。",
    },
    "checkin_well": {
        "cmn": "好的，知道您一切都好，我们就放心了。祝您身体健康。",
        "yue": "好，知道你一切都好，我哋就放心喇。祝你身体健康。",
    },
    "checkin_unwell": {
        "cmn": "明白，我会请工作人员尽快联系您。如果胸口痛、说话不清，马上打120。",
        "yue": "明白，我会叫职员尽快联络你。如果心口痛、讲嘢唔清楚，即刻打120。",
    },
    # -- ordering --------------------------------------------------------------------------------------------
    "ask_gas_size": {
        "cmn": "好的，帮您订煤气。要十五公斤的大罐，还是五公斤的小罐？",
        "yue": "好，帮你叫石油气。要十五公斤嘅大樽，定系五公斤嘅细樽？",
    },
    "ask_gas_quantity": {"cmn": "要几罐？", "yue": "要几多樽？"},
    "ask_gas_address": {"cmn": "请说一下送气的地址。", "yue": "请讲一下送气嘅地址。"},
    "ask_gas_time": {
        "cmn": "什么时候送来？比如今天下午，或者越快越好。",
        "yue": "几时送嚟？例如今日下昼，或者越快越好。",
    },
    "ask_meal_meals": {
        "cmn": "好的，帮您订餐。要早餐、午餐，还是晚餐？",
        "yue": "好，帮你订餐。要早餐、午餐，定系晚餐？",
    },
    "ask_meal_days": {"cmn": "要送哪几天？比如明天，或者每天。", "yue": "要送边几日？例如听日，或者日日。"},
    "ask_meal_diet": {
        "cmn": "饭菜有什么要注意的吗？比如要软一点、少盐，或者糖尿病餐。没有就说没有。",
        "yue": "饭餸有冇咩要注意？例如要软啲、少盐，或者糖尿病餐。冇就讲冇。",
    },
    "ask_repair_item": {"cmn": "好的，帮您报修。请问什么东西坏了？", "yue": "好，帮你报修。请问咩嘢坏咗？"},
    "ask_repair_urgency": {"cmn": "急不急？今天就要修吗？", "yue": "急唔急？今日就要整呀？"},
    "ask_appt_hospital": {"cmn": "好的，帮您预约看病。去哪家医院？", "yue": "好，帮你预约睇医生。去边间医院？"},
    "ask_appt_department": {"cmn": "看哪个科？比如内科、骨科、眼科。", "yue": "睇边个科？例如内科、骨科、眼科。"},
    "ask_appt_time": {"cmn": "想约哪一天？上午还是下午？", "yue": "想约边日？上昼定下昼？"},
    "ask_appt_escort": {"cmn": "需要工作人员陪您去吗？", "yue": "使唔使职员陪你去？"},
    "ask_order_fix": {
        "cmn": "好的，请问哪里要改？您也可以说取消。",
        "yue": "好，请问边度要改？你都可以讲取消。",
    },
    "retry_gas_size": {"cmn": "我没听清。要大罐十五公斤，还是小罐五公斤？", "yue": "我听唔清。要大樽十五公斤，定细樽五公斤？"},
    "retry_gas_quantity": {"cmn": "我没听清。要几罐？比如一罐。", "yue": "我听唔清。要几多樽？例如一樽。"},
    "retry_gas_address": {"cmn": "我没听清地址，请再说一遍。", "yue": "我听唔清地址，请再讲一次。"},
    "retry_gas_time": {"cmn": "我没听清。今天送，还是明天送？", "yue": "我听唔清。今日送，定听日送？"},
    "retry_meal_meals": {"cmn": "我没听清。早餐、午餐，还是晚餐？", "yue": "我听唔清。早餐、午餐，定晚餐？"},
    "retry_meal_days": {"cmn": "我没听清。明天送，还是每天送？", "yue": "我听唔清。听日送，定日日送？"},
    "retry_meal_diet": {"cmn": "我没听清。要软一点、少盐，还是没有要求？", "yue": "我听唔清。要软啲、少盐，定系冇要求？"},
    "retry_repair_item": {"cmn": "我没听清。是水管、电灯、门锁，还是别的东西坏了？", "yue": "我听唔清。系水喉、电灯、门锁，定系其他嘢坏咗？"},
    "retry_repair_urgency": {"cmn": "我没听清。急，还是不急？", "yue": "我听唔清。急，定唔急？"},
    "retry_appt_hospital": {"cmn": "我没听清。是中心医院、人民医院，还是中医院？", "yue": "我听唔清。系中心医院、人民医院，定中医院？"},
    "retry_appt_department": {"cmn": "我没听清。看哪个科？", "yue": "我听唔清。睇边个科？"},
    "retry_appt_time": {"cmn": "我没听清。哪一天？比如明天上午。", "yue": "我听唔清。边一日？例如听日上昼。"},
    "retry_appt_escort": {"cmn": "要人陪，还是不用？", "yue": "要人陪，定唔使？"},
    "retry_confirm": {"cmn": "请说对，或者不对。", "yue": "请讲啱，或者唔啱。"},
    "confirm_intro": {"cmn": "我跟您核对一下。", "yue": "我同你核对一下。"},
    "confirm_question": {"cmn": "对吗？", "yue": "啱唔啱？"},
    "order_placed": {
        "cmn": "好的，已经帮您下单了。单号是{order_id}。",
        "yue": "好，已经帮你落咗单。单号系{order_id}。",
    },
    "appointment_placed": {
        "cmn": "好的，已经帮您登记预约了。工作人员会打电话确认时间。",
        "yue": "好，已经帮你登记预约。职员会打电话同你确认时间。",
    },
    "order_failed": {
        "cmn": "对不起，系统出了问题，订单没有下成功。我帮您转接工作人员，请不要挂机。",
        "yue": "唔好意思，系统有问题，张单冇落到。我帮你转接职员，请唔好收线。",
    },
    "order_cancelled": {"cmn": "好的，已经取消，没有下单。", "yue": "好，已经取消，冇落单。"},
}


def say(key: str, dialect: str | None, **fields: object) -> str:
    texts = PHRASES[key]
    text = texts.get(dialect or "cmn") or texts["cmn"]
    return text.format(**fields) if fields else text
