"""Pure logic around whisper's encoder: trimming the 30 s window's zero padding, reusing the last output."""

import numpy as np

from assistant.asr.whisper_engine import _wrap_encoder, set_encoder_margin, trimmed_features


def _features(content_frames: int, total: int = 3000) -> np.ndarray:
    x = np.zeros((80, total), dtype=np.float32)
    x[:, :content_frames] = np.random.default_rng(0).normal(size=(80, content_frames))
    return x


def test_trimmed_features_keeps_content_plus_margin_even_length():
    assert trimmed_features(_features(301), margin_frames=50).shape == (80, 352)
    assert trimmed_features(_features(300), margin_frames=50).shape == (80, 350)


def test_trimmed_features_never_grows_and_none_keeps_the_window():
    assert trimmed_features(_features(2990), margin_frames=3000).shape == (80, 3000)
    assert trimmed_features(_features(301), margin_frames=None).shape == (80, 3000)
    assert trimmed_features(np.zeros((80, 3000), dtype=np.float32), margin_frames=0).shape == (80, 2)


class _CountingModel:
    def __init__(self):
        self.calls = []

    def encode(self, features):
        self.calls.append(features.shape)
        return f"encoded{len(self.calls)}"


def test_encoder_output_is_reused_for_the_same_features_only():
    model = _CountingModel()
    _wrap_encoder(model)
    a, b = _features(300), _features(500)
    assert model.encode(a) == model.encode(a.copy()) == "encoded1"  # second dialect view: no second encode
    assert model.encode(b) == "encoded2"
    set_encoder_margin(100)
    try:
        assert model.encode(b) == "encoded3"  # a different trim is a different input
    finally:
        set_encoder_margin(None)
    assert model.calls[-1] == (80, 600)


def test_views_decoding_side_by_side_share_one_encode_and_recent_outputs_are_kept():
    import threading
    import time

    class _SlowEncoder:
        def __init__(self):
            self.calls = 0

        def encode(self, features):
            self.calls += 1
            time.sleep(0.05)  # long enough for the second view to arrive while the first encodes
            return f"encoded{self.calls}"

    model, encoder = _CountingModel(), _SlowEncoder()
    _wrap_encoder(model, encoder.encode)
    a = _features(300)
    out: list[str] = []
    views = [threading.Thread(target=lambda: out.append(model.encode(a.copy()))) for _ in range(2)]
    for t in views:
        t.start()
    for t in views:
        t.join()
    assert out == ["encoded1", "encoded1"] and encoder.calls == 1 and model.calls == []
    others = [_features(n) for n in (310, 320, 330)]
    for f in others:
        model.encode(f)
    assert model.encode(a) == "encoded1" and encoder.calls == 4  # four kept: the first is still there
    model.encode(_features(340))  # the least recently used (310) makes room
    model.encode(others[1])
    assert encoder.calls == 5
    model.encode(others[0])
    assert encoder.calls == 6


def test_a_words_check_encodes_beside_the_shared_encoder_without_waiting_for_it():
    import threading
    import time

    release = threading.Event()

    class _BusyEncoder:
        def encode(self, features):
            release.wait(2.0)  # another utterance's whole window, still encoding
            return "window"

    model = _CountingModel()
    _wrap_encoder(model, _BusyEncoder().encode)
    busy = threading.Thread(target=lambda: model.encode(_features(3000)))
    busy.start()
    time.sleep(0.05)
    set_encoder_margin(500, beside=True)
    try:
        t0 = time.perf_counter()
        assert model.encode(_features(300)) == "encoded1"  # the model's own encode, at once
        assert time.perf_counter() - t0 < 0.5
    finally:
        set_encoder_margin(None)
        release.set()
        busy.join()
    assert model.calls == [(80, 800)]
