"""Every fixed prompt exists in Mandarin and Cantonese, and the evaluation sets are big enough."""

from assistant.tts.prompts import EVAL_SENTENCES_CMN, EVAL_SENTENCES_YUE, PROMPTS, all_prompts, prompt


def test_every_prompt_has_both_dialects_with_the_same_slots():
    import string

    for name, variants in PROMPTS.items():
        assert set(variants) == {"cmn", "yue"}, name
        slots = [{f for _, f, _, _ in string.Formatter().parse(v) if f} for v in variants.values()]
        assert slots[0] == slots[1], name


def test_cantonese_prompts_are_written_in_cantonese():
    yue = "".join(v["yue"] for v in PROMPTS.values())
    assert sum(yue.count(w) for w in ("嘅", "唔", "系", "咗", "啲", "揾", "咩")) >= 10


def test_prompt_fills_slots_and_falls_back_to_mandarin():
    assert prompt("confirm_gas", "cmn", count=2) == "好的，给您订2罐煤气，对吗？"
    assert prompt("greeting", "xx") == PROMPTS["greeting"]["cmn"]
    items = all_prompts()
    assert ("yue", prompt("confirm_gas", "yue", count=3)) in items
    assert not any("{" in text for _, text in items)


def test_eval_sets():
    assert len(EVAL_SENTENCES_CMN) >= 10 and len(EVAL_SENTENCES_YUE) >= 10
