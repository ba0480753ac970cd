"""Pure pieces of the console: redaction display, evidence highlighting, fraud detail parsing, bars."""

from __future__ import annotations

from assistant.console.charts import legend, stacked_bars
from assistant.console.queries import fraud_info, order_deadlines
from assistant.console.redaction import display_text, fallback_redact, redacted_text
from assistant.console.render import highlight


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


def test_highlight_matches_the_fraud_guards_normalised_evidence():
    # the detector's evidence is simplified / half-width / lower case / without spaces; the text is as heard
    assert highlight("請把錢轉到安全賬戶", ["安全账户"]) == '請把錢轉到<mark class="evidence">安全賬戶</mark>'
    assert highlight("打开ＡＰＰ 转 账", ["app", "转账"]) == (
        '打开<mark class="evidence">ＡＰＰ</mark> <mark class="evidence">转 账</mark>')
    # context evidence carries a note: the words before it are what was said
    assert highlight("我是平安通的工作人员", ["平安通(无台账记录)"]) == '我是<mark class="evidence">平安通</mark>的工作人员'
    assert highlight("(无台账记录)", ["(无台账记录)"]) == "(无台账记录)"


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


def test_stacked_bars_scale_and_say_their_numbers():
    svg = stacked_bars(chart_id="b", title="各区", summary="蓬江：已接听 3，待拨打 1；江海：已接听 0。",
                       rows=[("蓬江", [("c-answered", 3), ("c-pending", 1)]), ("江海", [("c-answered", 0)])])
    keys = legend([("c-answered", "已接听"), ("c-pending", "待拨打")])
    assert svg.count("<rect") == 2 and keys.count("<rect") == 2  # two bars (nothing drawn for 0) + two keys
    assert 'width="300.0"' in svg and 'width="100.0"' in svg  # 3 and 1 of the longest bar's 4 (400 units)
    assert 'role="img"' in svg and 'aria-labelledby="b-t b-d"' in svg and "蓬江：已接听 3，待拨打 1" in svg
    assert "style=" not in svg + keys


def test_alert_reasons_are_shown_in_chinese():
    from assistant.console.render import alert_reason_text, reason_label

    assert alert_reason_text({"reason": "requested", "transcript": "我要找人"}) == "长者要求转人工"
    assert alert_reason_text({"reason": "rasa_empty_reply"}) == "对话服务没有回应"
    assert "按错了，取消" in alert_reason_text({"source": "screen", "via": "http", "cancelled_by": "elder"})
    assert alert_reason_text({"reason": "order_failed:store_unavailable"}) == "下单失败（store_unavailable）"
    assert alert_reason_text({"reason": "empty_transcript", "failed_turns": 3}) == "没听清（没有识别出文字），连续 3 次"
    assert reason_label("something_new") == "其他原因（something_new）"  # unknown codes are kept, not lost
    assert alert_reason_text({"summary": "长者说摔倒了", "reason": "requested"}) == "长者说摔倒了"
    assert alert_reason_text({"source": "keypad", "key": "0"}) == "长者按了电话键 0"
    assert alert_reason_text({"source": "care_call", "outcome": "wants_person"}) == "关怀电话：想找工作人员"
    assert alert_reason_text({"attempts": ["no_answer", "busy", "no_answer"]}) == "关怀电话拨打 3 次未接通"
    assert alert_reason_text({}) == ""


def test_timeline_reads_in_call_order_when_simulated_times_tie_or_invert():
    """A simulated call's audio runs faster than real time: its first bot turn can be stamped at or after the
    call's end. The timeline still reads call → answered → what happened in it → verdict → end → actions."""
    import datetime as dt
    from types import SimpleNamespace

    from assistant.console.queries import AlertDetail, _timeline

    t0 = dt.datetime(2026, 1, 1, 8, 0, tzinfo=dt.UTC)
    call = SimpleNamespace(call_id="c1", started_at=t0, ended_at=t0 + dt.timedelta(seconds=2), direction="inbound",
                           verification="failed", outcome="handover")
    turns = [SimpleNamespace(speaker="elder", created_at=t0 + dt.timedelta(seconds=3)),
             SimpleNamespace(speaker="bot", created_at=t0 + dt.timedelta(seconds=3))]  # after the end
    alert = SimpleNamespace(created_at=t0 + dt.timedelta(seconds=2), kind="human", call_id="c1")
    action = SimpleNamespace(at=t0 + dt.timedelta(seconds=60), action="acknowledge", username="op")
    d = AlertDetail(alert=alert, elder=None, call=call, turns=turns, orders=[], notes=[], other_alerts=[])
    labels = [i.label for i in _timeline(d, [action])]
    assert labels == ["来电", "接通", "标记：要求人工", "身份核验失败", "通话结束（转人工）", "确认（op）"]
    # all stamped the same second (a fast simulation): still in call order
    for t in turns:
        t.created_at = t0
    call.ended_at = alert.created_at = action.at = t0
    labels = [i.label for i in _timeline(d, [action])]
    assert labels == ["来电", "接通", "标记：要求人工", "身份核验失败", "通话结束（转人工）", "确认（op）"]
    # the stored times are what is shown
    assert [i.at for i in _timeline(d, [])][-1] == t0
