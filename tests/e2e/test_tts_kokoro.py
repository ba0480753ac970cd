"""The real Kokoro voice (issue #22): a service sentence synthesized by kokoro-cmn (Kokoro-82M int8 ONNX,
misaki G2P) through the registry, then read back by whisper-base. Skips with the reason when the model or
whisper-base is not provisioned (``assistant models fetch kokoro-v1.0-int8 whisper-base``)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from assistant.tts import registry
from tests.e2e.conftest import need_whisper

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def _project_models(settings):
    from assistant.settings import load_settings

    models = load_settings().paths.models_dir  # the project's own var/models, not the test's temporary one
    paths = dataclasses.replace(settings.paths, models_dir=models)
    tts = dataclasses.replace(settings.tts, default_voice_cmn="kokoro-cmn", voices_cmn=(), cache_disk=False)
    return dataclasses.replace(settings, paths=paths, tts=tts)


async def test_kokoro_speaks_a_sentence_whisper_understands(settings):
    from assistant.tts.eval_cmd import Transcriber, cer
    from dialect_models.manifest import get_spec
    from dialect_models.provision import state

    s = _project_models(settings)
    if state(get_spec(s.tts.kokoro_model), s) != "present":
        pytest.skip(f"{s.tts.kokoro_model} not provisioned in {s.paths.models_dir} "
                    f"(assistant models fetch {s.tts.kokoro_model})")
    need_whisper()
    registry.reset()
    try:
        text = "请问您需要订煤气吗？"
        audio = await registry.synthesize(text, dialect="cmn", rate_wpm=130, volume=1.0, settings=s, use_cache=False)
        assert audio.voice == "kokoro-cmn", registry.broken_voices()
        assert audio.sample_rate_hz == 24000
        x = np.frombuffer(audio.pcm, dtype="<i2").astype(np.float64)
        assert float(np.sqrt(np.mean(x**2))) > 500 and 0.8 < x.size / 24000 < 8.0
        heard = await Transcriber(s, plain=True)(audio.pcm, sample_rate_hz=audio.sample_rate_hz, dialect="cmn")
        assert cer(text, heard) <= 0.25, heard
    finally:
        registry.reset()
