"""The service sentences ``assistant eval tts`` asks each voice to say (ASR round trip).

They are evaluation material, fixed so that the CER stays comparable across sessions: not what the bot
says (that is ``assistant/phrases.py``). References are what the voice is asked to say; the CER is computed
against them after both sides are normalized.
"""

from __future__ import annotations

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
