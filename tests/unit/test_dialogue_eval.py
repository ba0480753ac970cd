"""``assistant eval nlu``: TSV reading, scoring, language guess, confusion matrix, /model/parse client."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aiohttp import web

from assistant.dialogue import eval_cmd
from assistant.errors import AssistantError

ROOT = Path(__file__).resolve().parents[2]


def test_read_tsv_header_lang_guess_and_out_of_scope(tmp_path: Path):
    path = tmp_path / "set.tsv"
    path.write_text("text\tintent\tlang\n我要订煤气\torder_gas\tcmn\n我想叫石油氣\torder_gas\n今天天气怎么样\tout_of_scope\tcmn\n\n", encoding="utf-8")
    rows = eval_cmd.read_tsv(path)
    assert [(r.intent, r.lang) for r in rows] == [("order_gas", "cmn"), ("order_gas", "cmn"), ("nlu_fallback", "cmn")]
    assert eval_cmd.guess_lang("我唔係幾舒服") == "yue" and eval_cmd.guess_lang("我不太舒服") == "cmn"


@pytest.mark.parametrize("content", ["", "utterance\tlabel\nx\ty\n", "text\tintent\nonly-text\n"])
def test_read_tsv_rejects_bad_files(tmp_path: Path, content: str):
    path = tmp_path / "bad.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AssistantError) as err:
        eval_cmd.read_tsv(path)
    assert err.value.code == "eval_data"


def test_heldout_sets_are_well_formed_and_balanced():
    for name in ("nlu_heldout.tsv", "nlu_heldout_b.tsv", "nlu_heldout_c.tsv"):
        rows = eval_cmd.read_tsv(ROOT / "tests" / "data" / name)
        langs = {r.lang for r in rows}
        assert langs == {"cmn", "yue"}, name
        assert len({r.intent for r in rows}) == 18, name  # 17 intents + not understood


def test_score_accuracy_macro_f1_per_lang():
    gold = ["a", "a", "b", "b"]
    pred = ["a", "b", "b", "b"]
    result = eval_cmd.score(gold, pred, ["cmn", "yue", "cmn", "yue"])
    assert result["n"] == 4 and result["accuracy"] == 0.75
    assert result["per_intent"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": 0.6667, "support": 2}
    assert result["per_intent"]["b"]["precision"] == pytest.approx(2 / 3, abs=1e-4)
    assert result["macro_f1"] == pytest.approx((0.6667 + 0.8) / 2, abs=1e-3)
    assert result["per_lang"] == {"cmn": {"n": 2, "accuracy": 1.0}, "yue": {"n": 2, "accuracy": 0.5}}


def test_confusion_png(tmp_path: Path):
    png = eval_cmd.plot_confusion(["a", "b", "b"], ["a", "a", "b"], tmp_path / "c.png")
    assert png is not None and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


async def test_parse_all_against_a_stub_model_parse(aiohttp_server):
    """STUB of Rasa's /model/parse: ``order_gas`` for anything with 气, ``out_of_scope`` otherwise."""
    seen: list[str] = []

    async def parse(request: web.Request) -> web.Response:
        text = (await request.json())["text"]
        seen.append(text)
        name = "order_gas" if "气" in text else "out_of_scope"
        return web.json_response({"text": text, "intent": {"name": name, "confidence": 0.9}})

    app = web.Application()
    app.router.add_post("/model/parse", parse)
    server = await aiohttp_server(app)
    out = await eval_cmd.parse_all(str(server.make_url("/")), ["我要煤气", "天气", "讲笑话"])
    assert out == [("order_gas", 0.9), ("order_gas", 0.9), ("nlu_fallback", 0.9)]
    assert sorted(seen) == sorted(["我要煤气", "天气", "讲笑话"])


async def test_parse_all_unreachable_is_rasa_down():
    with pytest.raises(AssistantError) as err:
        await eval_cmd.parse_all("http://127.0.0.1:9", ["x"], timeout_s=2)
    assert err.value.code == "rasa_down"


def test_cli_prints_json(tmp_path: Path, monkeypatch, capsys):
    data = tmp_path / "d.tsv"
    data.write_text("text\tintent\n我要煤气\torder_gas\n天气\tout_of_scope\n", encoding="utf-8")

    async def fake_parse_all(url, texts, **_):
        return [("order_gas", 0.9), ("order_gas", 0.8)]

    monkeypatch.setattr(eval_cmd, "parse_all", fake_parse_all)
    from assistant.cli import main

    rc = main(["eval", "nlu", "--data", str(data), "--url", "http://stub", "--json", "--png", str(tmp_path / "m.png")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 2 and result["accuracy"] == 0.5
    assert result["errors"] == [{"text": "天气", "gold": "nlu_fallback", "predicted": "order_gas", "confidence": 0.8, "lang": "cmn"}]
    assert (tmp_path / "m.png").exists()
