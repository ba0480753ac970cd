"""The scam detector's cue table is data (assistant/fraud_guard/cues.toml): it loads whole and checked."""

from __future__ import annotations

import pytest

from assistant.fraud_guard import cues as C


def test_the_table_loads_with_unique_names_and_known_categories():
    names = [c.name for c in C.CUES]
    assert len(names) == len(set(names)) == 40
    categories = {c.category for c in C.CUES}
    for group in (C.REQUEST_CATEGORIES, C.MONEY_CATEGORIES, C.CREDENTIAL_CATEGORIES, C.PRESSURE_CATEGORIES):
        assert group <= categories, group - categories
    assert {c.scam_type for c in C.CUES} - {None} <= set(C.SCAM_TYPES.values())
    transfer = next(c for c in C.CUES if c.name == "transfer")
    assert transfer.category == "transfer" and transfer.weight == 1.8 and transfer.negatable
    assert transfer.pattern.search("麻烦您转到这个账户") and transfer.scam_type == C.SAFE_ACCOUNT
    callee = next(c for c in C.CUES if c.name == "callee_complied")
    assert callee.speaker == "callee" and not callee.negatable


def test_a_misspelt_field_is_an_error_not_a_silent_default(tmp_path):
    table = tmp_path / "cues.toml"
    table.write_text('[[cue]]\nname = "x"\nweight = 1.0\npattern = "x"\nnegateable = false\n', encoding="utf-8")
    with pytest.raises(ValueError, match="negateable"):
        C.load_cues(table)
