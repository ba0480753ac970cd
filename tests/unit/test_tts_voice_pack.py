"""Recorded voice packs: manifest, plan (whole clause / joined pieces / fallback), the pack-<dialect> voice.

No real human recordings exist here: the "recordings" are STAND-INS spoken by the espeak-ng CLI (Cantonese
voice ``yue``) — they exercise the format, the import processing and the registry, not a voice's quality.
A recording's identity is checked by its bytes: the pack voice must hand out exactly what was stored.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from assistant.tts import registry
from assistant.tts.base import SpeechAudio, TtsEngine, VoiceRequest
from assistant.tts.espeak_cli_engine import EspeakCliEngine
from assistant.tts.voice_pack import (
    JOIN_PAUSE_MS,
    PACK_RATE_HZ,
    TRIM_MARGIN_MS,
    VoicePack,
    core,
    pack_dir,
    prepare,
    read_wav,
)

RATE_HZ = 16000


class FakeToneEngine(TtsEngine):
    """FAKE synthetic voice: a 300 Hz tone, 40 ms per character, at 22.05 kHz (another rate than the pack)."""

    def __init__(self) -> None:
        self.voice, self.dialects, self.calls = "fake-synth-yue", ("yue",), []

    def synthesize(self, request: VoiceRequest) -> SpeechAudio:
        self.calls.append(request.text)
        n = int(22050 * 0.04 * max(1, len(request.text)))
        x = (np.sin(np.arange(n) * 2 * np.pi * 300 / 22050) * 6000).astype("<i2")
        return SpeechAudio(pcm=x.tobytes(), sample_rate_hz=22050, voice=self.voice)


def espeak_yue(text: str) -> bytes:
    """A STAND-IN recording of ``text`` (espeak-ng yue), prepared as an import would."""
    audio = EspeakCliEngine(voice="espeak-cli-yue").synthesize(VoiceRequest(text=text, dialect="yue", rate_wpm=130))
    return prepare(np.frombuffer(audio.pcm, dtype="<i2"), audio.sample_rate_hz)


PASSED = {"status": "passed", "cer": 0.0, "heard": "", "threshold": 0.7}


@pytest.fixture
def synth(settings):
    engine = FakeToneEngine()
    registry.register_voice(registry.VoiceInfo(voice=engine.voice, dialect="yue", factory=lambda s: engine,
                                               licence="test fake", description="FAKE synthetic voice"))
    registry.reset()
    yield engine
    registry.reset()
    registry.VOICES.pop(engine.voice, None)


def with_pack(settings, pack="local"):
    tts = dataclasses.replace(settings.tts, voice_pack=pack, default_voice_yue="fake-synth-yue", voices_yue=())
    return dataclasses.replace(settings, tts=tts)


def test_prepare_trims_silence_and_normalises_loudness():
    rate = 22050
    tone = np.sin(np.arange(rate) * 2 * np.pi * 200 / rate) * 0.05  # quiet: −29 dBFS RMS
    x = np.concatenate([np.zeros(rate), tone, np.zeros(rate)])  # 1 s of silence either side
    pcm = prepare(x, rate)
    y = np.frombuffer(pcm, dtype="<i2").astype(np.float64) / 32768
    assert abs(len(y) / PACK_RATE_HZ - 1.0) < 0.1  # the silences are gone (30 ms margins kept)
    rms_db = 20 * np.log10(np.sqrt(np.mean(y**2)))
    assert -21.5 < rms_db < -18.5
    with pytest.raises(ValueError):
        prepare(np.zeros(1000), rate)


def test_manifest_round_trip_and_only_passed_recordings_play(tmp_path):
    pack = VoicePack(directory=tmp_path / "yue", dialect="yue", entries={})
    good = pack.add("好，我讲慢啲。", b"\x01\x00" * 800, check=PASSED)
    pack.add("拜拜", b"\x02\x00" * 800, check={"status": "failed", "cer": 1.0, "heard": "", "threshold": 0.7})
    pack.save()
    again = VoicePack.load(tmp_path / "yue", "yue")
    entry = again.entries[core("好，我讲慢啲。")]
    assert entry["text"] == "好，我讲慢啲。" and len(entry["sha256"]) == 64
    assert json.loads((tmp_path / "yue" / "manifest.json").read_text())["sample_rate_hz"] == PACK_RATE_HZ
    assert again.playable() == {"好我讲慢啲": good}  # the failed check does not play
    assert read_wav(good) == (b"\x01\x00" * 800, PACK_RATE_HZ)


def test_plan_whole_clause_pieces_and_too_little_coverage(tmp_path):
    files = {k: tmp_path / f"{k}.wav" for k in ("订单号系", "四", "五", "一", "二", "请唔好收线")}
    pack = VoicePack(directory=tmp_path, dialect="yue", entries={})
    whole = pack_plan(files, "请唔好收线。")
    assert [(p.text, p.file is not None) for p in whole] == [("请唔好收线", True)]
    joined = pack_plan(files, "订单号系四五一二。")
    assert [p.text for p in joined] == ["订单号系", "四", "五", "一", "二"] and all(p.file for p in joined)
    mixed = pack_plan(files, "订单号系四五六。")  # 六 not recorded: the synthetic voice says that piece
    assert [(p.text, p.file is None) for p in mixed][-1] == ("六", True)
    assert pack_plan(files, "你屋企人冇听电话，四。") is None  # mostly unrecorded: all synthetic
    assert pack.plan("请唔好收线") is None  # an empty pack covers nothing


def pack_plan(files, text):
    from assistant.tts.voice_pack import plan

    return plan(core(text), files)


async def test_pack_voice_plays_the_recording_joins_pieces_and_falls_back(settings, synth):
    s = with_pack(settings)
    pack = VoicePack(directory=pack_dir(s.paths.var_dir, "local", "yue"), dialect="yue", entries={})
    recorded = {text: espeak_yue(text) for text in ("请唔好收线", "订单号系", "四", "五")}
    for text, pcm in recorded.items():
        pack.add(text, pcm, check=PASSED)
    pack.save()
    pause = b"\x00\x00" * (PACK_RATE_HZ * s.tts.clause_pause_ms // 1000)
    gap = b"\x00\x00" * (PACK_RATE_HZ * JOIN_PAUSE_MS // 1000)

    whole = await registry.synthesize("请唔好收线。", dialect="yue", rate_wpm=130, volume=1.0, settings=s)
    assert whole.voice == "pack-yue" and whole.pcm == recorded["请唔好收线"] + pause
    # "54" is read 五十四 (speakable): 十 is not recorded, so the synthetic voice says that piece only
    joined = await registry.synthesize("订单号系54。", dialect="yue", rate_wpm=130, volume=1.0, settings=s)
    assert joined.voice == "pack-yue"
    assert joined.pcm.startswith(recorded["订单号系"] + gap + recorded["五"] + gap)
    assert joined.pcm.endswith(gap + recorded["四"] + pause)
    assert synth.calls == ["十"]
    # a clause the pack does not cover: the synthetic voice, and the pack voice is not marked broken
    for _ in range(4):
        other = await registry.synthesize("你屋企人冇听电话。", dialect="yue", rate_wpm=130, volume=1.0, settings=s)
        assert other.voice == "fake-synth-yue"
    assert "pack-yue" not in registry.broken_voices()
    # a re-recording is heard at once (not served from the prompt cache)
    pack.add("请唔好收线", recorded["四"], check=PASSED)
    pack.save()
    again = await registry.synthesize("请唔好收线。", dialect="yue", rate_wpm=130, volume=1.0, settings=s)
    assert again.pcm == recorded["四"] + pause


async def test_no_pack_named_keeps_the_chain_but_an_elder_can_choose_the_pack(settings, synth):
    s = with_pack(settings, pack="")
    assert "pack-yue" not in registry.voice_chain("yue", s)
    assert registry.voice_chain("yue", with_pack(settings))[0] == "pack-yue"
    out = await registry.synthesize("请唔好收线。", dialect="yue", rate_wpm=130, volume=1.0, settings=s,
                                    voice="pack-yue")
    assert out.voice == "fake-synth-yue"  # no pack configured: the chosen pack voice falls through


async def test_call_tts_service_speaks_the_recording_and_falls_back(settings, synth):
    """The pipeline's TTS service (what a call hears) with the elder's voice set to the pack."""
    from pipecat.frames.frames import TTSAudioRawFrame

    from assistant.session import CallSession
    from assistant.tts.service import AssistantTTSService
    from assistant.turns import TurnTracker

    s = with_pack(settings)
    pack = VoicePack(directory=pack_dir(s.paths.var_dir, "local", "yue"), dialect="yue", entries={})
    recording = espeak_yue("请唔好收线")
    pack.add("请唔好收线", recording, check=PASSED)
    pack.save()
    session = CallSession(channel="simulate", dialect="yue", tts_voice="pack-yue")
    service = AssistantTTSService(session=session, settings=s, tracker=TurnTracker(), sample_rate=RATE_HZ)
    service._sample_rate = RATE_HZ  # set by the pipeline's StartFrame in a call

    async def heard(text: str) -> bytes:
        frames = [f async for f in service.run_tts(text, "ctx")]
        return b"".join(f.audio for f in frames if isinstance(f, TTSAudioRawFrame))

    assert (await heard("请唔好收线。")).startswith(recording)  # the recorded WAV's samples, untouched
    assert synth.calls == []
    fallback = await heard("你屋企人冇听电话。")
    assert fallback and recording not in fallback and synth.calls == ["你屋企人冇听电话。"]


def test_coverage_counts_the_table_fragments_and_pieces(settings):
    from assistant.tts import voice_cmd

    wanted = voice_cmd.sentences("yue", settings=settings)
    assert "请唔好收线" in wanted and "点" not in wanted and "點" in wanted and "蓬江区" in wanted
    assert all("{" not in text for text in wanted.values())
    assert "我系平安通语音助手" in wanted  # {platform} filled
    pack = VoicePack(directory=tmp_dir(settings), dialect="yue", entries={})
    pack.add("请唔好收线。", b"\x01\x00" * 800, check=PASSED)
    pack.add("蓬江区", b"\x01\x00" * 800, check={**PASSED, "status": "failed"})
    report = voice_cmd.coverage(pack, settings=settings)
    assert report["sentences"] == len(wanted) and report["recorded"] == 1 and report["failed_checks"] == 1
    assert report["coverage"] == round(1 / len(wanted), 3) and "请唔好收线。" not in report["missing"]


def tmp_dir(settings):
    return pack_dir(settings.paths.var_dir, "local", "yue")


async def test_import_prepares_reads_back_and_flags(settings, tmp_path, monkeypatch):
    """Import of STAND-IN recordings (espeak-ng yue); the recogniser is a FAKE that hears the first file right
    and the second as something else, so one passes and one is flagged (the real check runs whisper-base)."""
    from assistant.asr.base import AsrResult
    from assistant.audio.convert import PcmAudio, write_wav
    from assistant.tts import voice_cmd, voice_coverage

    heard = iter(["请唔好收线", "今日天气好好"])

    async def fake_recognize(pcm, *, sample_rate_hz, dialect, options, settings):
        assert sample_rate_hz == PACK_RATE_HZ and dialect == "yue" and pcm
        text = next(heard)
        return AsrResult(text=text, raw_text=text, confidence=0.9, dialect="yue", engine="fake", model_id="fake")

    monkeypatch.setattr(voice_coverage, "recognize", fake_recognize)
    folder = tmp_path / "rec"
    folder.mkdir()
    for name, text in (("a.wav", "请唔好收线"), ("b.wav", "拜拜")):
        quiet = (np.frombuffer(espeak_yue(text), dtype="<i2") // 8).astype("<i2")  # quiet, with silence around
        pcm = b"\x00\x00" * 8000 + quiet.tobytes() + b"\x00\x00" * 8000
        write_wav(folder / name, PcmAudio(pcm=pcm, sample_rate_hz=PACK_RATE_HZ))
    (folder / "transcripts.tsv").write_text("a.wav\t请唔好收线。\nb.wav\t拜拜\n", encoding="utf-8")
    pack = VoicePack(directory=tmp_dir(settings), dialect="yue", entries={})
    report = await voice_cmd.import_folder(pack, folder, settings=settings)
    assert report["imported"] == 2 and report["passed"] == 1
    assert [f["text"] for f in report["flagged"]] == ["拜拜"]
    stored, rate = read_wav(pack.playable()["请唔好收线"])
    y = np.frombuffer(stored, dtype="<i2").astype(np.float64) / 32768
    assert rate == PACK_RATE_HZ and len(stored) < len(espeak_yue("请唔好收线")) + 3200  # silences trimmed
    assert -21.5 < 20 * np.log10(np.sqrt(np.mean(y**2))) < -18.5  # loudness normalised
    assert "拜拜" not in pack.playable() and VoicePack.load(tmp_dir(settings), "yue").entries["拜拜"]["check"]["status"] == "failed"


async def test_pack_voice_follows_the_elders_volume_and_script_lists_what_is_missing(settings, synth, tmp_path):
    from assistant.tts import voice_cmd

    s = with_pack(settings)
    pack = VoicePack(directory=tmp_dir(s), dialect="yue", entries={})
    recording = espeak_yue("请唔好收线")
    pack.add("请唔好收线", recording, check=PASSED)
    pack.save()
    half = await registry.synthesize("请唔好收线。", dialect="yue", rate_wpm=130, volume=0.5, settings=s)
    full = np.frombuffer(recording, dtype="<i2").astype(np.float64)
    got = np.frombuffer(half.pcm[: len(recording)], dtype="<i2").astype(np.float64)
    assert np.abs(got - full * 0.5).max() <= 1.0
    path = voice_cmd.write_script(voice_cmd.coverage(pack, settings=s)["missing"], tmp_path / "script")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("000.wav\t") and not any(line.endswith("\t请唔好收线") for line in lines)
    assert len(lines) == voice_cmd.coverage(pack, settings=s)["sentences"] - 1


async def test_a_synthetic_piece_is_brought_to_the_recordings_loudness(settings, synth):
    s = with_pack(settings)
    pack = VoicePack(directory=tmp_dir(s), dialect="yue", entries={})
    for text in ("订单号系", "五"):
        pack.add(text, espeak_yue(text), check=PASSED)
    pack.save()
    out = await registry.synthesize("订单号系五十。", dialect="yue", rate_wpm=130, volume=1.0, settings=s)
    assert synth.calls == ["十"]
    pause = PACK_RATE_HZ * s.tts.clause_pause_ms // 1000
    x = np.frombuffer(out.pcm, dtype="<i2").astype(np.float64)
    assert not x[-pause:].any()
    margin = PACK_RATE_HZ * TRIM_MARGIN_MS // 1000  # kept after the trimmed piece
    tone = x[-pause - margin - 400 : -pause - margin] / 32768  # the last 25 ms of the synthetic piece (a 40 ms tone)
    # −20 dBFS over the piece with its short silent margins, so a little louder within it; the voice alone
    # gives it at 0.9 of full scale (−4 dBFS RMS)
    assert -23.0 < 20 * np.log10(np.sqrt(np.mean(tone**2))) < -16.0
