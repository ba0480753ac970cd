"""Scam detector: own hard cases (no ../shared needed), negation, scripts, speed, held-out split."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from assistant.fraud_guard import cues as C
from assistant.fraud_guard.dataset import is_heldout, load_dialogues, split
from assistant.fraud_guard.detector import ScamDetector, score_dialogue
from assistant.fraud_guard.eval_cmd import evaluate
from tests.conftest import shared_path

OWN = Path(__file__).resolve().parents[1] / "data" / "fraud_hardcases_own.jsonl"
# written after the cue table was frozen and never tuned on: an honest check of generalisation
BLIND = Path(__file__).resolve().parents[1] / "data" / "fraud_hardcases_blind.jsonl"


@pytest.fixture(scope="module")
def detector() -> ScamDetector:
    return ScamDetector.default()


def _risk(detector: ScamDetector, *caller_turns: str) -> float:
    watch = detector.watch()
    for t in caller_turns:
        watch.add_turn("caller", t)
    return watch.max_risk


def test_own_hardcases_file_is_big_enough_and_balanced():
    ds = load_dialogues(OWN)
    assert len(ds) >= 40
    langs = {d["lang"] for d in ds}
    assert langs == {"cmn", "yue"}
    assert 0.35 < sum(d["label"] == "fraud" for d in ds) / len(ds) < 0.65
    assert all(d["note"] and d["turns"][0]["speaker"] == "caller" for d in ds)


def test_own_hardcases_meet_the_bar(detector):
    r = evaluate(load_dialogues(OWN), detector=detector)
    assert r["recall"] >= 0.90, r["_errors"]
    assert r["false_positive_rate"] <= 0.10, r["_errors"]


def test_blind_hardcases(detector):
    r = evaluate(load_dialogues(BLIND), detector=detector)
    assert r["n"] >= 14
    assert r["recall"] >= 0.85 and r["false_positive_rate"] <= 0.15, r["_errors"]


def test_own_hardcases_cue_layer_alone_is_close(detector):
    r = evaluate(load_dialogues(OWN), detector=ScamDetector.default(use_ngram=False))
    assert r["recall"] >= 0.85 and r["false_positive_rate"] <= 0.10


@pytest.mark.parametrize("text", [
    "请您不要转账给任何人。",
    "我们银行从来不会问您验证码和密码。",
    "如果有人叫您把钱转到安全账户，那就是骗子。",
    "有人打电话话你个户口涉嫌洗黑钱，叫你将啲钱转去安全账户，千祈唔好做。",
    "唔好将验证码话俾任何人知。",
])
def test_warnings_are_not_requests(detector, text):
    assert _risk(detector, text) < 0.5


@pytest.mark.parametrize("turns", [
    ("我是公安局的，您涉嫌洗钱，请您把钱转到安全账户，不要告诉家人。",),
    ("你將啲錢轉去國家資金監管戶口，唔好話俾仔女知。",),  # traditional script, Cantonese
    ("您的包裹丢了，我们双倍赔偿。", "您手机收到的验证码念给我，我帮您退款。"),
    ("奶奶，猜猜我是谁？", "我打架被抓了，要交保释金，你先转两万给我朋友，别告诉我爸妈。"),
    ("为了防止骗子盗刷，请您把钱转到我们的保护账户。",),  # warning frame + direct ask = request
])
def test_scams_are_flagged(detector, turns):
    assert _risk(detector, *turns) >= 0.5


def test_evidence_and_type_are_reported(detector):
    _, at, watch = score_dialogue(detector, [
        {"speaker": "caller", "text": "我是平安通的，智能屏要升级。"},
        {"speaker": "callee", "text": "哦。"},
        {"speaker": "caller", "text": "您把手机收到的验证码念给我，快一点。"},
    ])
    assert at == 3
    assert watch.scam_type() == C.PLATFORM
    assert any("验证码" in p for p in watch.evidence_phrases())


def test_per_turn_time_under_20ms(detector):
    ds = load_dialogues(OWN)
    n = 0
    t0 = time.perf_counter()
    for d in ds:
        w = detector.watch()
        for t in d["turns"]:
            w.add_turn(t["speaker"], t["text"])
            n += 1
    per_turn_ms = (time.perf_counter() - t0) * 1000 / n
    assert per_turn_ms < 20


def test_split_is_deterministic():
    assert is_heldout("abc") == is_heldout("abc")
    ids = [f"x{i}" for i in range(1000)]
    share = sum(map(is_heldout, ids)) / len(ids)
    assert 0.15 < share < 0.25


def test_heldout_split_of_shared_corpus(detector):
    data = shared_path("data", "fraud_dialogues", "dev.jsonl")
    r = evaluate(split(load_dialogues(data), "heldout"), detector=detector)
    assert r["recall"] >= 0.98 and r["false_positive_rate"] <= 0.01


def test_shared_hardcases_dev(detector):
    data = shared_path("data", "fraud_dialogues", "hardcases-dev.jsonl")
    r = evaluate(load_dialogues(data), detector=detector)
    assert r["recall"] >= 0.95 and r["false_positive_rate"] <= 0.05, r["_errors"]


@pytest.mark.parametrize("name", ["hardcases-dev.jsonl", "dev.jsonl"])
def test_without_punctuation_loses_at_most_002_recall(detector, name):
    from assistant.fraud_guard.eval_cmd import no_punct

    ds = load_dialogues(shared_path("data", "fraud_dialogues", name))
    if name == "dev.jsonl":
        ds = split(ds, "heldout")
    with_p, without_p = evaluate(ds, detector=detector), evaluate(no_punct(ds), detector=detector)
    assert without_p["recall"] >= with_p["recall"] - 0.02, without_p["_errors"]
    assert without_p["false_positive_rate"] <= max(0.05, with_p["false_positive_rate"]), without_p["_errors"]


# -- #20: who asks whom for what, learned layer ---------------------------------------------------------

def test_the_learned_layer_is_loaded_and_explains_itself(detector):
    assert detector.combiner is not None
    watch = detector.watch()
    watch.add_turn("caller", "我是平安通的，智能屏要升级。")
    u = watch.add_turn("caller", "您把手机收到的验证码念给我，快一点，不用问您儿子。")
    assert u.flagged and u.reasons
    assert any("催促" in r or "验证码" in r or "核实" in r or "线索表" in r for r in u.reasons), u.reasons


def test_shipped_weights_respect_the_sign_constraints():
    from assistant.fraud_guard.detector import COMBINER_NO_NGRAM_PATH, COMBINER_PATH, Combiner

    for path in (COMBINER_PATH, COMBINER_NO_NGRAM_PATH):
        w = Combiner.load(path).weights
        assert all(v <= 0 for k, v in w.items() if k.startswith("gen:") or k == "warned"), path
        assert all(v >= 0 for k, v in w.items() if k.startswith(("ask:", "combo:"))), path


def test_platform_shows_the_code_scammer_asks_for_it(detector):
    genuine = _risk(
        detector,
        "王叔叔您好，我是平安通的小李，跟您确认明天送米。",
        "您看一下智能屏，上面显示一个确认码，我念给您：七三五九，您对一下。",
        "我们绝对不会让您把手机上收到的任何验证码念给我们，谁要您念码您就挂掉。",
    )
    scam = _risk(
        detector,
        "王叔叔您好，我是平安通的小李，跟您确认明天送米。",
        "系统给您手机发了一条短信，里面有六位数字，您念给我听一下，快一点，五分钟就失效了。",
    )
    assert genuine < 0.5 <= scam


def test_unpunctuated_turn_finds_the_request_after_a_warning():
    d = ScamDetector.default()
    ev = d.match_turn("不用转账也不用先给钱我们货到付款名额只剩三个了", speaker="caller", turn=1)
    pay = [e for e in ev if e.category == "pay"]
    assert pay and not pay[0].warning and pay[0].phrase == "付款"


def test_blocking_verification_is_pressure(detector):
    ev = detector.match_turn("唔好打110，佢哋要排队，会打断我哋嘅保护程序", speaker="caller", turn=1)
    assert any(e.category == "block_verify" for e in ev)


def test_sign_constrained_fit_keeps_signs():
    from assistant.fraud_guard.train import _fit

    # a genuine-call feature that co-occurs with scams in this toy data must still not become positive
    rows = [({"ask:code": 1.0, "gen:genuine_free": 1.0}, 1, 1.0)] * 5 + [({"gen:genuine_free": 1.0}, 0, 1.0)] * 5
    rows += [({"ask:code": 1.0}, 1, 1.0)] * 5 + [({}, 0, 1.0)] * 5
    weights, _ = _fit(rows)
    assert weights.get("gen:genuine_free", 0.0) <= 0.0 < weights["ask:code"]


def test_asr_noise_is_deterministic_and_keeps_length():
    from assistant.fraud_guard.dataset import asr_noise

    ds = load_dialogues(OWN)[:4]
    a, b = asr_noise(ds, 0.3), asr_noise(ds, 0.3)
    assert a == b
    from assistant.fraud_guard.text import strip_punct

    changed = sum(x["text"] != strip_punct(y["text"]) for d0, d1 in zip(a, ds, strict=True) for x, y in zip(d0["turns"], d1["turns"], strict=True))
    assert changed > 0


def test_eval_command_prints_the_contract_keys(capsys, tmp_path, monkeypatch):
    import argparse
    import json

    from assistant.fraud_guard import eval_cmd

    p = argparse.ArgumentParser()
    eval_cmd.add_arguments(p)
    args = p.parse_args(["--data", str(BLIND), "--json", "--no-plot"])
    assert eval_cmd.run(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert {"n", "precision", "recall", "f1", "false_positive_rate", "median_turns_to_flag"} <= set(out)
    assert out["n"] == len(load_dialogues(BLIND))
    assert out["learned"] is True and {"recall", "false_positive_rate"} <= set(out["no_punct"])


def test_eval_command_missing_file_is_a_coded_error(tmp_path):
    from assistant.cli import main

    assert main(["eval", "fraud", "--data", str(tmp_path / "nope.jsonl"), "--json"]) == 2


KBLIND = Path(__file__).resolve().parents[1] / "data" / "fraud_blind_k.jsonl"


def test_kblind_set_meets_the_issue_bar(detector):
    """#20's blind set (written and committed before the learned layer; scored once at the end, then frozen
    here as a regression guard): recall ≥ 0.95 at FPR ≤ 0.05, also without punctuation."""
    from assistant.fraud_guard.eval_cmd import no_punct

    ds = load_dialogues(KBLIND)
    assert len(ds) >= 40 and {d["lang"] for d in ds} == {"cmn", "yue"}
    assert not {d["id"] for d in ds} & {d["id"] for d in _training_dialogues()}
    for variant in (ds, no_punct(ds)):
        r = evaluate(variant, detector=detector)
        assert r["recall"] >= 0.95 and r["false_positive_rate"] <= 0.05, r["_errors"]


def _training_dialogues():
    from assistant.fraud_guard.train import load_own

    return load_own()


def test_cross_validation_retrains_per_fold():
    from assistant.fraud_guard.eval_cmd import cross_validate

    out = cross_validate(load_dialogues(BLIND), k=2, threshold=0.5)
    assert out["main"]["n"] == len(load_dialogues(BLIND)) == out["no_punct"]["n"]
    assert 0.0 <= out["main"]["recall"] <= 1.0
