"""What the benchmarks share: per-stage percentiles and shares, and their throwaway store."""

from assistant.bench.stats import share, stage_percentiles


def _nearest(values: list[float], q: float) -> float | None:
    return sorted(values)[round(q * (len(values) - 1))] if values else None


def test_stage_percentiles_skip_untimed_rows_and_use_the_given_rule():
    rows = [{"asr": 100.0, "nlu": None}, {"asr": 300.0, "nlu": None}, {"asr": 200.0, "nlu": None}]
    out = stage_percentiles(rows, ("asr", "nlu"), _nearest)
    assert out == {"asr": {"p50_ms": 200.0, "p95_ms": 300.0}, "nlu": {"p50_ms": None, "p95_ms": None}}


def test_share_of_true_rows_and_none_without_rows():
    assert share([{"early": True}, {"early": False}, {"early": True}], "early") == 0.67
    assert share([], "early") is None


def test_benchmarks_use_a_throwaway_store_in_their_own_folder(tmp_path):
    from assistant.bench.scratch import scratch_store
    from assistant.settings import load_settings

    settings = load_settings(env={})
    bench = scratch_store(settings, tmp_path)
    assert bench.store.database_url == f"sqlite+aiosqlite:///{tmp_path}/bench.db"
    assert bench.store.database_url != settings.store.database_url
    assert bench.asr == settings.asr and bench.paths == settings.paths
