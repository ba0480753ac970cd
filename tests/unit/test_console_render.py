"""Pure pieces of the console: redaction display, evidence highlighting, fraud detail parsing, bars."""

from __future__ import annotations

from assistant.console.queries import fraud_info, order_deadlines
from assistant.console.redaction import display_text, fallback_redact, redacted_text
from assistant.console.render import bars_svg, highlight


def test_fallback_redact_masks_numbers_in_any_script():
    for raw in ("卡号6222 0212 3456 7890", "电话一三八零零一三八零零零", "验证码：５８２９", "身份证44070119450101123X"):
        out = fallback_redact(raw)
        assert not any(ch.isdigit() for ch in out.replace("＊", "")), out
        assert "＊＊＊" in out
    assert fallback_redact("我今年八十岁") == "我今年八十岁"  # short numbers stay


def test_display_prefers_stored_redaction_and_reveals_only_on_request():
    assert display_text(text="卡号 62220212345678", text_redacted="卡号 [卡号]", reveal=False) == "卡号 [卡号]"
    assert display_text(text="卡号 62220212345678", text_redacted="卡号 [卡号]", reveal=True) == "卡号 62220212345678"
    computed = redacted_text(text="我的电话是13800138000", text_redacted=None)
    assert "13800138000" not in computed


def test_highlight_escapes_and_marks_longest_first():
    html = highlight("<b>把钱转到安全账户</b>", ["安全", "安全账户", ""])
    assert html.startswith("&lt;b&gt;") and '<mark class="evidence">安全账户</mark>' in html
    assert html.count("<mark") == 1
    assert highlight("a<script>", []) == "a&lt;script&gt;"


def test_fraud_info_accepts_the_detectors_shapes():
    assert fraud_info({"scam_type": "冒充客服", "risk": 0.8, "evidence": [{"phrase": "退款"}, "验证码"]}) == (
        "冒充客服", 0.8, ["退款", "验证码"])
    assert fraud_info({}) == ("", None, [])
    assert fraud_info({"score": "x"})[1] is None


def test_deadlines_follow_status():
    import datetime as dt
    from types import SimpleNamespace

    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    placed = SimpleNamespace(status="placed", created_at=t0)
    assert order_deadlines(placed, dispatch_sla_s=180, answer_sla_s=1800) == (
        t0 + dt.timedelta(minutes=3), t0 + dt.timedelta(minutes=30))
    done = SimpleNamespace(status="done", created_at=t0)
    assert order_deadlines(done, dispatch_sla_s=180, answer_sla_s=1800) == (None, None)


def test_bars_svg_scales_and_titles():
    svg = bars_svg([("蓬江", [("c-answered", 3), ("c-pending", 1)]), ("江海", [("c-answered", 0)])],
                   legend=[("c-answered", "已接听"), ("c-pending", "待拨打")])
    assert svg.count("<rect") == 2 + 2  # two bars + two legend keys
    assert "蓬江 已接听: 3" in svg and "style=" not in svg
