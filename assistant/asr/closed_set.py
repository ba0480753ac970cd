"""Make a small in-domain closed-prompt test set by speaking typical answers with the project's own TTS.

``python -m assistant.asr.closed_set --out var/eval/closed_cmn --dialect cmn`` writes ``wav/*.wav`` and a
``transcripts.tsv`` whose third column names the vocabulary section the prompt would use as its grammar;
``assistant eval asr --data var/eval/closed_cmn --grammar`` then scores open CER and closed accuracy.
Synthetic speech is cleaner than an elder on a phone line: use it to compare methods, not as a promise.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from assistant.audio.convert import PcmAudio, resample_pcm16, write_wav
from assistant.settings import load_settings
from assistant.tts.registry import simulated_caller_voice, synthesize

# (section, answer) pairs: what callers typically say at each closed prompt
ANSWERS: dict[str, tuple[tuple[str, str], ...]] = {
    "cmn": (
        ("service", "我要订煤气"), ("service", "帮我叫一瓶煤气"), ("service", "我想叫石油气"),
        ("service", "石油气用完了"), ("service", "我要订餐"), ("service", "帮我送餐"),
        ("service", "我家水管坏了要维修"), ("service", "电视坏了请派人来修理"), ("service", "我想预约医生"),
        ("service", "帮我挂个号"),
        ("yes_no", "是的"), ("yes_no", "对"), ("yes_no", "好的"), ("yes_no", "可以"), ("yes_no", "不是"),
        ("yes_no", "不要"), ("yes_no", "不用了"), ("yes_no", "没有"), ("yes_no", "不对"), ("yes_no", "行"),
        ("districts", "我住在蓬江区"), ("districts", "江海区"), ("districts", "新会"), ("districts", "台山"),
        ("districts", "开平"), ("districts", "鹤山"), ("districts", "恩平"),
        ("menu", "一"), ("menu", "二"), ("menu", "转人工"),
    ),
    "yue": (
        ("service", "我要叫煤气"), ("service", "我想叫石油气"), ("service", "帮我送餐"), ("service", "我想叫饭"),
        ("service", "我屋企水喉坏咗要整"), ("service", "我想约医生"),
        ("yes_no", "系呀"), ("yes_no", "啱"), ("yes_no", "好呀"), ("yes_no", "得"), ("yes_no", "唔系"),
        ("yes_no", "唔要"), ("yes_no", "唔使"), ("yes_no", "冇"),
        ("districts", "我住喺蓬江"), ("districts", "江海"), ("districts", "新会"), ("districts", "台山"),
        ("districts", "开平"), ("districts", "鹤山"), ("districts", "恩平"),
        ("menu", "一"), ("menu", "二"), ("menu", "转人工"),
    ),
}


async def make_set(out: Path, dialect: str) -> int:

    settings = load_settings()
    lines = []
    for i, (section, text) in enumerate(ANSWERS[dialect]):
        speech = await synthesize(text, dialect=dialect, rate_wpm=settings.tts.rate_wpm, volume=1.0, settings=settings,
                                  voice=simulated_caller_voice(dialect))
        pcm = resample_pcm16(speech.pcm, from_hz=speech.sample_rate_hz, to_hz=16000)
        name = f"wav/{dialect}_{i:02d}_{section}.wav"
        write_wav(out / name, PcmAudio(pcm=pcm, sample_rate_hz=16000))
        lines.append(f"{name}\t{text}\t{section}\t{speech.voice}")
    (out / "transcripts.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--dialect", choices=sorted(ANSWERS), default="cmn")
    args = p.parse_args()
    n = asyncio.run(make_set(args.out, args.dialect))
    print(f"{n} clips in {args.out}")


if __name__ == "__main__":
    main()
