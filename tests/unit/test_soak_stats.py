"""``assistant bench soak``'s figures: growth per call-minute is the RSS slope over calls up, after warm-up."""

from telephony.soak import Sample, growth_per_call_minute, low_envelope


def samples(rss_at, *, calls: int = 2, every_s: float = 5.0, minutes: float = 6.0) -> list[Sample]:
    n = int(minutes * 60 / every_s)
    return [Sample(t_s=i * every_s, rss_mb=rss_at(i * every_s), fds=20, tasks=8, calls_up=calls) for i in range(n + 1)]


def test_flat_memory_has_no_growth():
    assert growth_per_call_minute(samples(lambda t: 800.0), after_s=120) == 0.0


def test_growth_is_per_call_minute_and_ignores_the_warm_up():
    # 100 MB during the first 2 minutes (models warming), then 4 MB/min with 2 calls up = 2 MB per call-minute
    rss = samples(lambda t: 700 + min(t, 120) / 120 * 100 + max(0.0, t - 120) / 60 * 4)
    assert abs(growth_per_call_minute(rss, after_s=120) - 2.0) < 1e-6


def test_transient_peaks_do_not_count_in_the_low_envelope():
    # every third sample a decode's 80 MB buffers, otherwise flat: the envelope sees no growth
    rss = samples(lambda t: 800.0 + (80.0 if int(t / 5) % 3 == 0 else 0.0))
    env = low_envelope(rss, after_s=120)
    assert len(env) == 4 and all(s.rss_mb == 800.0 for s in env)
    assert growth_per_call_minute(env, after_s=120) == 0.0


def test_idle_samples_are_not_call_minutes():
    rss = samples(lambda t: 800.0 + t / 60, calls=0)
    assert growth_per_call_minute(rss, after_s=0) is None
