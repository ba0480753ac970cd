"""Everything the bot says, in Mandarin (``cmn``) and Cantonese (``yue``): one table for the whole product.

Read by the pipeline (gateway greetings, keypad and PIN prompts, the dialogue's own fallbacks, the fraud
guard, the hand-over) and by the Rasa actions (``intents/actions``, which run in the Rasa environment and
import this module by path: it must stay pure data plus ``str.format``, importing nothing but the standard
library). Start-up and the set-up's pre-render warm exactly the clauses of these utterances that hold no
field (``assistant.tts.registry.fixed_clauses``).

- ``PHRASES``: whole utterances. ``PIECES``: words and clauses that code composes into an utterance (the
  order read-backs, the identity proof, the family alert); never spoken alone, so never warmed.
- ``{platform}`` is the platform's name, a deployment fact (``settings.platform.name``, default 平安通);
  the assistant calls itself ``{platform}语音助手`` everywhere. Other ``{fields}`` are filled by the caller.
- Elder UX: short sentences, one question at a time, read-backs before anything is booked, and the
  keypad offered whenever speech fails. Cantonese is written in Cantonese (嘅、唔、系、咗), in simplified
  characters (the voices read both scripts alike).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DIALECTS = ("cmn", "yue")
DEFAULT_DIALECT = "cmn"
DEFAULT_PLATFORM_NAME = "平安通"

PHRASES: dict[str, dict[str, str]] = {
    # -- the start and end of a call (telephony/gateway.py) -------------------------------------------------
    # caller ID can be spoofed: no name or other personal data before the fraud guard verifies the caller
    "greeting": {
        "cmn": "您好，我是{platform}语音助手。请问有什么可以帮您？",
        "yue": "你好，我系{platform}语音助手。请问有咩可以帮到你？",
    },
    "greeting_known": {
        "cmn": "您好，我是{platform}语音助手。今天身体怎么样？需要帮忙可以直接说，或者按1表示很好，按2表示需要帮助，按0转人工。",
        "yue": "你好，我系{platform}语音助手。今日身体点呀？需要帮手可以直接讲，或者揿1表示好好，揿2表示要帮手，揿0转人工。",
    },
    # spoken when a call reaches telephony.max_call_duration_s (the BYE follows)
    "time_limit_goodbye": {
        "cmn": "这次通话时间已经很长了，我先挂断。需要帮忙请随时再打过来，再见。",
        "yue": "今次通话已经好耐喇，我哋住收线。要帮手随时再打嚟，拜拜。",
    },
    # -- care calls (telephony/scheduler.py), after the identity proof ----------------------------------------
    "checkin_question": {
        "cmn": "您今天身体怎么样？很好请按1，需要帮助请按2，转人工请按0。",
        "yue": "你今日身体点呀？好好请揿1，要帮手请揿2，转人工请揿0。",
    },
    # the call-back an inbound caller asked for with keypad 9
    "callback_question": {
        "cmn": "这是您刚才要的回电。有什么可以帮您？",
        "yue": "呢个系你头先要嘅回电。有咩可以帮到你？",
    },
    # a family contact, when the elder did not answer the check-in (family hear Mandarin: dialect unknown)
    "family_missed_checkin": {
        "cmn": "您的家人没有接听今天的关怀电话，请您尽快联系确认。收到请按1。",
        "yue": "你屋企人冇听今日嘅关怀电话，请你尽快联络确认。收到请揿1。",
    },
    # -- always-available turns (Rasa actions) ----------------------------------------------------------------
    "goodbye": {"cmn": "好的，祝您身体健康，再见。", "yue": "好，祝你身体健康，拜拜。"},
    "anything_else": {"cmn": "好的。还有什么可以帮您？", "yue": "好。仲有咩可以帮你？"},
    "slower": {"cmn": "好的，我说慢一点。", "yue": "好，我讲慢啲。"},
    "nothing_to_repeat": {"cmn": "请问有什么可以帮您？", "yue": "请问有咩可以帮你？"},
    "handover": {"cmn": "好的，马上为您转接工作人员，请不要挂机。", "yue": "好，即刻帮你转接职员，请唔好收线。"},
    "not_understood": {
        "cmn": "对不起，我没听明白。请您再说一遍。",
        "yue": "唔好意思，我听唔明。请你再讲一次。",
    },
    # the second miss in a row (Rasa's fallback, or speech the recogniser could not hear): the keypad menu
    "keypad_menu": {
        "cmn": "对不起，我还是没听明白。您可以按键：按一，一切都好；按二，需要帮助；按零，转人工。",
        "yue": "唔好意思，我都系听唔明。你可以揿掣：揿一，一切都好；揿二，需要帮手；揿零，转人工。",
    },
    # said only by a pipeline without the fraud guard (which answers identity questions itself)
    "fraud_check": {
        "cmn": "我是{platform}语音助手。我不会问您要钱，也不会问银行密码。",
        "yue": "我系{platform}语音助手。我唔会问你攞钱，亦都唔会问银行密码。",
    },
    # -- care (Rasa actions) ------------------------------------------------------------------------------------
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
    # -- ordering (Rasa actions: one question per slot, then the read-back) ----------------------------------
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
    # the read-back before anything is booked: short sentences, numbers as words, the address only when verified
    "readback_gas": {"cmn": "煤气，{size}，{quantity}。{place}时间：{when}。", "yue": "石油气，{size}，{quantity}。{place}时间：{when}。"},
    "readback_meal": {"cmn": "送餐：{meals}。日子：{days}。要求：{diet}。", "yue": "送餐：{meals}。日子：{days}。要求：{diet}。"},
    "readback_repair": {"cmn": "报修：{item}。{urgency}。", "yue": "报修：{item}。{urgency}。"},
    "readback_appointment": {
        "cmn": "预约：{hospital}，{department}。时间：{when}。{escort}。",
        "yue": "预约：{hospital}，{department}。时间：{when}。{escort}。",
    },
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
    # -- the pipeline's own turns, when the dialogue cannot answer (assistant/dialogue/processor.py) ----------
    "not_heard": {
        "cmn": "对不起，我没听清。请您再说一遍。",
        "yue": "唔好意思，我听唔清楚。请你再讲一次。",
    },
    "dialogue_down": {
        "cmn": "对不起，系统有点忙。我帮您转接人工客服，请不要挂机。",
        "yue": "唔好意思，系统有啲忙。我帮你转接人工，请唔好收线。",
    },
    # the keypad menu without the apology, after dialogue_down
    "keypad_offer": {
        "cmn": "您可以按键：按一，一切都好；按二，需要帮助；按零，转人工。",
        "yue": "你可以揿掣：揿一，一切都好；揿二，需要帮手；揿零，转人工。",
    },
    "emergency_question": {
        "cmn": "您是需要帮助吗？说'是'或按一。",
        "yue": "你系咪要人帮手？讲'系'或者揿一。",
    },
    "emergency_person": {
        "cmn": "别怕，我马上帮您接通工作人员，请不要挂机。",
        "yue": "唔使惊，我即刻帮你接职员，请唔好收线。",
    },
    "emergency_cancelled": {
        "cmn": "好的，没事就好。您还需要什么？",
        "yue": "好，冇事就好。你仲有乜需要？",
    },
    # -- identity on a call the caller placed (assistant/fraud_guard/identity.py): nothing secret -------------
    "inbound_identity": {
        "cmn": "这是您打进来的{platform}热线。{platform}不会问您要密码或验证码，也不会要钱。",
        "yue": "呢度系你打入嚟嘅{platform}热线。{platform}唔会问你攞密码或者验证码，亦唔会问你攞钱。",
    },
    "inbound_offer": {
        "cmn": "要核对身份，请按星号键，再按您的数字口令，按井号键结束；或者按九，我们挂断后打到您登记的电话。",
        "yue": "要核对身份，请揿星号键，再揿你嘅数字口令，揿井号键结束；或者揿九，我哋收线再打去你登记嘅电话。",
    },
    "inbound_verified": {"cmn": "您的身份已经核对好了。", "yue": "你嘅身份已经核对好。"},
    "pin_enter": {"cmn": "请按您的数字口令，按井号键结束。", "yue": "请揿你嘅数字口令，揿井号键结束。"},
    "pin_ok": {"cmn": "核对好了，谢谢您。有什么可以帮您？", "yue": "核对好喇，多谢你。有咩可以帮到你？"},
    "pin_wrong": {"cmn": "口令不对，请按星号键再试一次。", "yue": "口令唔啱，请揿星号键再试一次。"},
    "pin_locked": {
        "cmn": "口令试错太多次，已经暂停使用，工作人员会跟进。您也可以按九，我们打到您登记的电话。",
        "yue": "口令试错太多次，已经暂停使用，职员会跟进。你都可以揿九，我哋打去你登记嘅电话。",
    },
    "pin_unavailable": {
        "cmn": "这个电话不能用口令核对。您可以按九，我们打到您登记的电话。",
        "yue": "呢个电话唔可以用口令核对。你可以揿九，我哋打去你登记嘅电话。",
    },
    "pin_callback": {"cmn": "好的，我们现在挂断，马上打到您登记的电话。", "yue": "好，我哋而家收线，即刻打去你登记嘅电话。"},
    "pin_callback_unavailable": {
        "cmn": "这个电话没有登记，不能回拨。请用您登记的电话打来。",
        "yue": "呢个电话冇登记，唔可以回拨。请用你登记嘅电话打嚟。",
    },
    # -- the fraud guard (assistant/fraud_guard/guard.py, pii_gate.py) ------------------------------------------
    "fraud_warning": {
        "cmn": "这个电话很可能是诈骗，请不要转账，也不要说验证码。挂断后我们帮您联系家人。",
        "yue": "呢个电话好大机会系诈骗，唔好转数，亦唔好讲验证码。收线之后我哋帮你联络屋企人。",
    },
    # ... when the phone gateway hands the flagged call to a person (issue #16): no "hang up" then
    "fraud_warning_handover": {
        "cmn": "这个电话很可能是诈骗，请不要转账，也不要说验证码。请不要挂机，我们马上为您接通值班人员。",
        "yue": "呢个电话好大机会系诈骗，唔好转数，亦唔好讲验证码。唔好收线，我哋即刻帮你接驳值班职员。",
    },
    # what the PII gate says instead of a reply that asks for credentials or money
    "safe_forbidden": {
        "cmn": "为了您的安全，{platform}不会向您要银行卡号、密码、验证码或身份证号，也不会让您转账。",
        "yue": "为咗你嘅安全，{platform}唔会问你要银行卡号、密码、验证码或者身份证号码，亦唔会叫你转数。",
    },
    # ... instead of personal data before the caller is verified
    "safe_unverified": {
        "cmn": "为了保护您的隐私，我们先核对身份，再谈这些事情。",
        "yue": "为咗保护你嘅私隐，我哋核对咗身份先再讲呢啲嘢。",
    },
    # -- a person answers (telephony/handover.py) ----------------------------------------------------------------
    "handover_hold": {"cmn": "请稍等，正在为您接通人工。", "yue": "请等等，而家帮你接驳人工服务。"},
    "handover_hold_again": {"cmn": "正在为您接通，请不要挂机。", "yue": "而家帮紧你接驳，唔好收线。"},
    # all operators are on other calls: the elder waits in the queue, told their place
    "handover_queued": {
        "cmn": "值班人员正在接听其他电话，您现在排在第{n}位，请不要挂机。",
        "yue": "值班人员而家听紧其他电话，你而家排第{n}位，唔好收线。",
    },
    "no_operator_family": {
        "cmn": "值班人员暂时没有接听，我们正在打电话给您的家人，请不要挂机。",
        "yue": "值班人员暂时未接听，我哋而家打电话畀你屋企人，唔好收线。",
    },
    "no_operator_duty": {
        "cmn": "值班人员暂时没有接听，我们正在打值班电话，请不要挂机。",
        "yue": "值班人员暂时未接听，我哋而家打值班电话，唔好收线。",
    },
    "family_connecting": {"cmn": "您的家人接听了，正在为您接通。", "yue": "你屋企人听咗电话，而家帮你接驳。"},
    "family_no_answer_duty": {
        "cmn": "家人暂时没有接听，我们正在打值班电话，请不要挂机。",
        "yue": "屋企人暂时未接听，我哋而家打值班电话，唔好收线。",
    },
    "nobody_answered": {
        "cmn": "暂时没有人接听。您的求助已经记录下来，值班人员会尽快给您回电。您也可以继续跟我说。",
        "yue": "暂时未有人接听。你嘅求助已经记低咗，值班人员会尽快覆电话畀你。你都可以继续同我讲。",
    },
    "nobody_answered_no_bot": {
        "cmn": "值班人员暂时没有接听，我们会尽快再打给您。再见。",
        "yue": "值班人员暂时未接听，我哋会尽快再打畀你。拜拜。",
    },
    "operator_callback_opening": {
        "cmn": "您好，这里是{platform}，值班人员给您回电话。本次来电确认码是{code}。请稍等，正在为您接通值班人员。",
        "yue": "你好，呢度系{platform}，值班人员覆电话畀你。今次来电确认码系{code}。请等等，而家帮你接驳值班人员。",
    },
    # {what} is one of the family_what_* pieces
    "family_alert": {
        "cmn": "您好，这里是{platform}。{name}刚才{what}。按1表示您来处理。",
        "yue": "你好，呢度系{platform}。{name}头先{what}。揿1表示你嚟处理。",
    },
    "family_ack_bridge": {
        "cmn": "谢谢，已经记录由您处理。正在为您接通老人，请稍等。",
        "yue": "多谢，已经记低由你处理。而家帮你接驳老人家，请等等。",
    },
    "family_ack_gone": {
        "cmn": "谢谢，已经记录由您处理。老人已经挂机，请尽快联系老人。",
        "yue": "多谢，已经记低由你处理。老人家已经收咗线，请尽快联络佢。",
    },
    "emergency_call_failed": {"cmn": "急救电话没有接通，请直接拨打。", "yue": "急救电话未接通，请直接打。"},
    # -- call screening (telephony/screening.py): an unknown caller on an elder's screened line -----------------
    "screen_ask": {
        "cmn": "您好，这里是{name}的电话助手，请问您是哪位，有什么事？",
        "yue": "你好，呢度系{name}嘅电话助手，请问你系边位，有咩事？",
    },
    "screen_hold": {"cmn": "好的，请稍等，我帮您转告{name}。", "yue": "好，请等等，我帮你转告{name}。"},
    "screen_unavailable": {"cmn": "{name}现在不方便接听，请稍后再打。再见。", "yue": "{name}而家唔方便听电话，请迟啲再打。拜拜。"},
    # the announcement to the elder: head, the caller's words (synthesised per call), tail
    "screen_announce_head": {"cmn": "有电话找您，对方说：", "yue": "有电话搵你，对方话："},
    "screen_announce_tail": {"cmn": "按1接通，按2挂断。", "yue": "揿1接通，揿2收线。"},
    "screen_warn_head": {"cmn": "这个电话很像诈骗。对方说：", "yue": "呢个电话好似诈骗。对方话："},
    "screen_warn_tail": {
        "cmn": "不要告诉对方验证码和银行信息。按1仍然接通，按2挂断。",
        "yue": "唔好讲验证码同银行资料畀对方听。揿1照样接通，揿2收线。",
    },
    # after the warning's tail when the elder has family on file
    "screen_warn_family": {"cmn": "按3联系家人。", "yue": "揿3联络屋企人。"},
    "screen_declined": {"cmn": "好的，已经挂断。", "yue": "好，已经收咗线。"},
    "screen_caller_gone": {"cmn": "对方已经挂断了。", "yue": "对方已经收咗线。"},
    "screen_calling_family": {
        "cmn": "好的，已经挂断这个电话，正在为您联系家人，请不要挂机。",
        "yue": "好，已经收咗呢个电话，而家帮你联络屋企人，唔好收线。",
    },
    "screen_family_intro": {
        "cmn": "您好，这里是{platform}。{elder}刚接到一个很像诈骗的电话，想跟您商量，正在为您接通，请稍等。",
        "yue": "你好，呢度系{platform}。{elder}头先收到一个好似诈骗嘅电话，想同你商量，而家帮你接驳，请等等。",
    },
    "screen_family_nobody": {
        "cmn": "家人暂时没有接听，我们已经通知值班人员。请不要给任何人转账，也不要说验证码。再见。",
        "yue": "屋企人暂时未接听，我哋已经通知咗值班人员。唔好转账畀任何人，亦都唔好讲验证码。拜拜。",
    },
}

PIECES: dict[str, dict[str, str]] = {
    # the identity proof on a call the platform placed: "平安通来电，暗语…，确认码…，不放心可挂断回拨。"
    "proof_caller": {"cmn": "{platform}来电", "yue": "{platform}打嚟"},
    "proof_safe_phrase": {"cmn": "暗语{phrase}", "yue": "暗语{phrase}"},
    "proof_code": {"cmn": "确认码{code}", "yue": "确认码{code}"},
    "proof_call_back": {"cmn": "不放心可挂断回拨", "yue": "唔放心可以收线打返嚟"},
    # the read-backs' parts
    "gas_size_15kg": {"cmn": "十五公斤", "yue": "十五公斤"},
    "gas_size_5kg": {"cmn": "五公斤", "yue": "五公斤"},
    "gas_size_50kg": {"cmn": "五十公斤", "yue": "五十公斤"},
    "gas_size_usual": {"cmn": "和平时一样", "yue": "同平时一样"},
    "gas_unit": {"cmn": "罐", "yue": "樽"},
    "gas_place_spoken": {"cmn": "送到{address}。", "yue": "送去{address}。"},
    "gas_place_profile": {"cmn": "送到您登记的地址。", "yue": "送去你登记嘅地址。"},
    "repair_urgent": {"cmn": "很急，尽快上门", "yue": "好急，尽快上门"},
    "repair_not_urgent": {"cmn": "不急", "yue": "唔急"},
    "escort_yes": {"cmn": "需要工作人员陪同", "yue": "要职员陪你去"},
    "escort_no": {"cmn": "不用人陪", "yue": "唔使人陪"},
    # family_alert's {what}, by the alert's kind, and {name} when the elder's name cannot be read
    "family_what_sos": {"cmn": "按了紧急求助", "yue": "揿咗紧急求助"},
    "family_what_unconfirmed_emergency": {"cmn": "可能遇到了紧急情况，没有回答我们", "yue": "可能有紧急情况，冇回应我哋"},
    "family_what_human": {"cmn": "要求转接人工，值班人员暂时没有接听", "yue": "要求转驳人工，值班人员暂时未接听"},
    "family_what_misunderstanding": {
        "cmn": "打来电话，我们几次没听懂需要什么，值班人员暂时没有接听",
        "yue": "打电话嚟，我哋几次都听唔明要咩，值班人员暂时未接听",
    },
    "family_what_fraud": {"cmn": "可能正在被电话诈骗，值班人员暂时没有接听", "yue": "可能俾人电话诈骗紧，值班人员暂时未接听"},
    # call screening: the caller's words when they said nothing
    "screen_said_nothing": {"cmn": "什么也没说", "yue": "乜都冇讲"},
    "family_elder_unnamed": {"cmn": "您的家人", "yue": "你屋企人"},
}

_FIELD = re.compile(r"\{(\w+)\}")


def _pick(table: dict[str, dict[str, str]], key: str, dialect: str | None) -> str:
    texts = table[key]
    return texts.get(dialect or DEFAULT_DIALECT) or texts[DEFAULT_DIALECT]


@dataclass(frozen=True, kw_only=True)
class Phrasebook:
    """The table bound to one deployment's platform name. Unknown dialects get Mandarin; a missing field
    raises ``KeyError`` (a bug, not something to speak around)."""

    platform_name: str = DEFAULT_PLATFORM_NAME

    def say(self, key: str, dialect: str | None, **fields: object) -> str:
        """The utterance ``key`` in ``dialect``, fields filled."""
        return _pick(PHRASES, key, dialect).format(platform=self.platform_name, **fields)

    def piece(self, key: str, dialect: str | None, **fields: object) -> str:
        """A word or clause that code composes into an utterance."""
        return _pick(PIECES, key, dialect).format(platform=self.platform_name, **fields)

    def utterances(self) -> list[tuple[str, str]]:
        """(dialect, text) of every utterance, the platform's name filled in and other fields left as
        ``{field}``. The prompt cache is warmed with their field-free clauses
        (``assistant.tts.registry.fixed_clauses``: at start-up and by ``python -m assistant.tts.prerender``)."""
        return [(d, texts[d].replace("{platform}", self.platform_name)) for texts in PHRASES.values() for d in DIALECTS]


def fields_of(text: str) -> set[str]:
    """The ``{fields}`` a text needs."""
    return set(_FIELD.findall(text))
