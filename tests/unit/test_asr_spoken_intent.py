"""``assistant eval nlu --spoken``: TTS → (phone line) → ASR → Rasa, with stub voice, recogniser and Rasa."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from assistant.asr.base import AsrResult
from assistant.dialogue import eval_cmd


def _setup(tmp_path: Path, monkeypatch) -> tuple[Path, list[dict]]:
    """STUBS: the voice speaks a tone whose length encodes the text; the recogniser 'hears' the text back
    except for 维修 (heard as 微修); Rasa calls anything with 气 order_gas, 修 request_repair."""
    from assistant.tts import registry as tts_registry
    from assistant.tts.base import SpeechAudio

    texts = {}

    async def fake_synthesize(text, *, dialect, rate_wpm, volume, settings, **_):
        n = 1600 * (len(texts) + 1)
        texts[n] = text
        pcm = (np.sin(np.arange(n) / 5) * 8000).astype("<i2").tobytes()
        return SpeechAudio(pcm=pcm, sample_rate_hz=16000, voice=f"stub-{dialect}")

    calls: list[dict] = []

    def fake_recognize_sync(pcm, *, sample_rate_hz, dialect, settings, options=None):
        n = len(pcm) // 2
        text = texts[min(texts, key=lambda k: abs(k - n))]  # the phone line resamples: nearest length
        calls.append({"dialect": dialect, "rate": sample_rate_hz})
        heard = text.replace("维修", "微修").replace("没气", "")
        return AsrResult(text=heard, raw_text=heard, confidence=0.9, dialect=dialect or "cmn", engine="stub",
                         model_id="stub")

    async def fake_parse_all(url, heard, **_):
        return [("order_gas" if "气" in t else "request_repair" if "修" in t else "nlu_fallback", 0.9) for t in heard]

    monkeypatch.setattr(tts_registry, "synthesize", fake_synthesize)
    monkeypatch.setattr("assistant.asr.registry.recognize_sync", fake_recognize_sync)
    monkeypatch.setattr(eval_cmd, "parse_all", fake_parse_all)
    data = tmp_path / "d.tsv"
    data.write_text(
        "text\tintent\tlang\n我要煤气\torder_gas\tcmn\n家里没气\torder_gas\tcmn\n水管要维修\trequest_repair\tcmn\n"
        "今天天气好\tout_of_scope\tcmn\n我要叫石油气\torder_gas\tyue\n",
        encoding="utf-8",
    )
    return data, calls


def test_spoken_phone_scores_the_transcripts_not_the_texts(tmp_path: Path, monkeypatch, capsys):
    data, calls = _setup(tmp_path, monkeypatch)
    from assistant.cli import main

    rc = main(["eval", "nlu", "--data", str(data), "--url", "http://stub", "--spoken", "--phone", "--json",
               "--png", str(tmp_path / "m.png")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    # out_of_scope is not an in-domain request: left out by default with --spoken
    assert result["n"] == 4
    # 家里没气 was heard as 家里 → nothing → not understood; 微修 still has 修
    assert result["accuracy"] == 0.75
    assert result["per_lang"] == {"cmn": {"n": 3, "accuracy": 0.6667}, "yue": {"n": 1, "accuracy": 1.0}}
    assert result["errors"] == [{"text": "家里没气", "transcript": "家里", "gold": "order_gas",
                                 "predicted": "nlu_fallback", "confidence": 0.9, "lang": "cmn"}]
    assert result["phone"] is True and result["dialect"] == "known"
    assert result["asr_cer"] > 0
    assert [c["dialect"] for c in calls] == ["cmn", "cmn", "cmn", "yue"]  # the lang column is the known dialect
    assert result["voices"] == {"cmn": ["stub-cmn"], "yue": ["stub-yue"]}


def test_spoken_auto_dialect_and_filters(tmp_path: Path, monkeypatch, capsys):
    data, calls = _setup(tmp_path, monkeypatch)
    from assistant.cli import main

    rc = main(["eval", "nlu", "--data", str(data), "--url", "http://stub", "--spoken", "--auto-dialect",
               "--lang", "cmn", "--intents", "order_gas", "--json", "--png", str(tmp_path / "m.png")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 2 and result["dialect"] == "auto" and result["phone"] is False
    assert [c["dialect"] for c in calls] == [None, None]
