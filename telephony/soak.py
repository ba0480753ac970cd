"""``assistant bench soak --calls N --minutes M --json``: N calls kept up for M minutes through the real
pipeline, watching the gateway process for growth.

The machinery of ``assistant bench calls --pipeline real --speech mandarin`` (``telephony.bench``): one
sipp process calls the in-process gateway on loopback, each caller speaks short Mandarin requests (our
TTS through the 8 kHz phone path) with pauses for the bot's replies; every call lasts ``--call-seconds``
and sipp places a new one as soon as one ends (``-l N``), spread over one conversation cycle, so N calls
stay up until M minutes of calls have been placed.

Every ``--sample-s`` the gateway process's RSS (``/proc/self/status`` VmRSS, not the peak), open file
descriptors (``/proc/self/fd``) and asyncio tasks are sampled. ``growth_mb_per_call_minute`` is the
least-squares slope of RSS after ``--warmup-minutes`` (default 2) divided by the mean number of calls up
then; ``growth_idle_mb_per_call_minute`` compares the idle RSS before the first soak call and after the
last (each call's end returns freed native memory, ``assistant.native_heap``), per call-minute.
``fds_start``/``tasks_start`` are taken on the idle gateway after ``--calls`` concurrent ``--warmup-call-s``
calls (what the first concurrent calls open once for the process — the store's pooled connection, onnxruntime's cache database,
lazily imported modules — is not a leak of the soak's calls); ``fds_end``/``tasks_end`` once every call has ended (after up to 30 s for keep-alive
connections to close, a GC). A PNG of RSS and calls over time goes to ``reports/``.

``--tracemalloc``: the Python heap is traced (slow: use 1–2 calls) and the growth between the end of the
warm-up and the last sample with calls up is written to ``reports/soak-tracemalloc.txt`` (top allocation
sites by size difference, with tracebacks).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import math
import os
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

from assistant.bench.proc_memory import rss_mb
from assistant.bench.scratch import scratch_store
from assistant.runtime import running, with_free_ports
from assistant.settings import load_settings
from telephony.bench import REPLY_PAUSE_S, check_tools, mandarin_speech, scenario_text
from telephony.gateway import Gateway, default_pipeline_factory
from telephony.peers import SippRun


@dataclass
class Sample:
    t_s: float
    rss_mb: float
    fds: int
    tasks: int
    calls_up: int


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def fd_targets() -> dict[str, str]:
    out = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            out[fd] = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            pass
    return out


def growth_per_call_minute(samples: list[Sample], *, after_s: float) -> float | None:
    """Least-squares slope of RSS (MB/min) over the samples after ``after_s`` with calls up, per call up."""
    pts = [s for s in samples if s.t_s >= after_s and s.calls_up > 0]
    if len(pts) < 3:
        return None
    n = len(pts)
    mt = sum(s.t_s for s in pts) / n
    mr = sum(s.rss_mb for s in pts) / n
    var = sum((s.t_s - mt) ** 2 for s in pts)
    if var == 0:
        return None
    slope_mb_per_s = sum((s.t_s - mt) * (s.rss_mb - mr) for s in pts) / var
    calls = sum(s.calls_up for s in pts) / n
    return round(slope_mb_per_s * 60 / calls, 3)


def low_envelope(samples: list[Sample], *, after_s: float, window_s: float = 60.0) -> list[Sample]:
    """The lowest-RSS sample of each ``window_s`` after ``after_s`` with calls up: what stays resident
    between the ASR's transient decode buffers (tens of MB that come and go with each utterance)."""
    windows: dict[int, list[Sample]] = {}
    for s in samples:
        if s.t_s >= after_s and s.calls_up:
            windows.setdefault(int((s.t_s - after_s) // window_s), []).append(s)
    # a window needs samples over half its length (the last one may hold a single sample: a peak)
    return [min(w, key=lambda s: s.rss_mb) for _k, w in sorted(windows.items()) if w[-1].t_s - w[0].t_s >= window_s / 2]


def plot(samples: list[Sample], path: Path, *, title: str, warmup_s: float) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(8, 4), dpi=110)
    t = [s.t_s / 60 for s in samples]
    ax.plot(t, [s.rss_mb for s in samples], color="tab:blue", label="gateway RSS (MB)")
    ax.axvline(warmup_s / 60, color="grey", linestyle=":", label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MB)")
    ax2 = ax.twinx()
    ax2.step(t, [s.calls_up for s in samples], where="post", color="tab:orange", alpha=0.6, label="calls up")
    ax2.set_ylabel("calls up")
    ax2.set_ylim(0, max([s.calls_up for s in samples] + [1]) * 2)
    lines = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(lines, [h.get_label() for h in lines], loc="lower right", fontsize=8)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def tracemalloc_report(first, last, *, top: int = 25) -> str:
    out = ["# tracemalloc: growth between the end of the warm-up and the last sample with calls up", ""]
    for kind in ("lineno", "traceback"):
        stats = last.compare_to(first, kind)
        out.append(f"## top {top} by {kind}")
        for stat in stats[:top]:
            out.append(f"{stat.size_diff / 1024:+10.1f} KiB  {stat.count_diff:+7d} blocks  {stat.traceback[0]}")
            if kind == "traceback":
                out.extend(f"        {line}" for line in stat.traceback.format()[-12:])
        out.append("")
    return "\n".join(out)


async def soak(
    *, calls: int, minutes: float, call_s: float = 120.0, warmup_minutes: float = 2.0, sample_s: float = 5.0,
    reply_pause_s: float = REPLY_PAUSE_S, trace: bool = False, reports_dir: Path | None = None,
    warmup_call_s: float = 20.0,
) -> dict:

    settings = load_settings()
    tel = settings.telephony
    limit_field = "max_concurrent_calls" if hasattr(tel, "max_concurrent_calls") else "max_calls"
    settings = replace(settings, telephony=replace(tel, sip_port=0, **{limit_field: max(calls * 2, 8)}))
    reports_dir = reports_dir or settings.paths.reports_dir
    call_s = min(call_s, minutes * 60)
    total = calls * max(1, math.ceil(minutes * 60 / call_s))
    warmup_s = warmup_minutes * 60
    load_start = os.getloadavg()[0]
    samples: list[Sample] = []
    snapshots: list = []  # [end of warm-up, latest] tracemalloc snapshots
    last_snap = [0.0]
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        settings = with_free_ports(scratch_store(settings, Path(tmp)))
        caller = await mandarin_speech(call_s, settings=settings, workdir=Path(tmp), reply_pause_s=reply_pause_s)
        scenario = Path(tmp) / "soak.xml"
        scenario.write_text(scenario_text(call_s, caller))
        async with running(settings) as runtime:
            gateway = Gateway(settings=settings, pipeline_factory=default_pipeline_factory(runtime.services))
            async with gateway:
                if warmup_call_s > 0:  # what the first calls open once for the process (pool connections, model caches)
                    idle_tasks = len(asyncio.all_tasks())
                    warm = Path(tmp) / "warm.xml"
                    warm.write_text(scenario_text(warmup_call_s, replace(caller, plays=[(caller.plays[0][0], int(warmup_call_s * 1000))])))
                    async with SippRun(scenario=warm, target=f"127.0.0.1:{gateway.endpoint.port}", workdir=Path(tmp) / "sipp-warm",
                                       calls=calls, rate=float(calls), timeout_s=warmup_call_s + 90) as sipp:
                        await sipp.wait()
                    for _ in range(120):  # its pipeline ends (slowly on a loaded machine)
                        if all(r.end_reason for r in gateway.reports) and len(asyncio.all_tasks()) <= idle_tasks:
                            break
                        await asyncio.sleep(0.5)
                    await asyncio.sleep(20.0)  # keep-alive connections of the warm-up call time out
                    gateway.reports.clear()
                if trace:
                    import tracemalloc

                    tracemalloc.start(6)
                gc.collect()
                await asyncio.sleep(1.0)
                fds_start, tasks_start = open_fds(), len(asyncio.all_tasks())
                fds_at_start = fd_targets()
                t0 = time.monotonic()

                def up() -> int:
                    return sum(1 for r in gateway.reports if r.end_reason is None)

                def sample() -> Sample:
                    s = Sample(t_s=round(time.monotonic() - t0, 1), rss_mb=rss_mb() or 0.0, fds=open_fds(),
                               tasks=len(asyncio.all_tasks()), calls_up=up())
                    samples.append(s)
                    return s

                async def sampler() -> None:
                    sample()
                    while True:
                        await asyncio.sleep(sample_s)
                        s = sample()
                        due = not snapshots or s.t_s - last_snap[0] >= 30
                        started = next((x.t_s for x in samples if x.calls_up), None)
                        if trace and s.calls_up and started is not None and s.t_s >= started + warmup_s and due:
                            import tracemalloc

                            snap = await asyncio.to_thread(tracemalloc.take_snapshot)
                            snapshots[1 if snapshots else 0 :] = [snap]
                            last_snap[0] = s.t_s

                sampling = asyncio.create_task(sampler(), name="soak-sampler")
                try:
                    async with SippRun(
                        scenario=scenario, target=f"127.0.0.1:{gateway.endpoint.port}", workdir=Path(tmp) / "sipp",
                        calls=total, rate=1, concurrent=calls, timeout_s=minutes * 60 + call_s + 120,
                        extra=("-rp", str(int(caller.cycle_s / calls * 1000))),  # spread over one conversation
                    ) as sipp:
                        rc = await sipp.wait()
                        sipp_tail = (Path(tmp) / "sipp" / "sipp.out").read_text(errors="replace")[-600:]
                    for _ in range(120):  # the gateway finishes its pipelines
                        if all(r.end_reason for r in gateway.reports):
                            break
                        await asyncio.sleep(0.5)
                finally:
                    sampling.cancel()
                    try:
                        await sampling
                    except asyncio.CancelledError:
                        pass
                calls_s = time.monotonic() - t0
                # what is left once every call has ended: keep-alive sockets get 30 s to close
                for _ in range(30):
                    gc.collect()
                    fds_end, tasks_end = open_fds(), len(asyncio.all_tasks())
                    if fds_end <= fds_start and tasks_end <= tasks_start:
                        break
                    await asyncio.sleep(1.0)
                sample()
                fds_left = sorted(v for k, v in fd_targets().items() if fds_at_start.get(k) != v)
                tasks_left = sorted(t.get_name() for t in asyncio.all_tasks())
                if trace and len(snapshots) == 2:
                    import tracemalloc

                    report = tracemalloc_report(snapshots[0], snapshots[1])
                    tracemalloc.stop()
                    (reports_dir / "soak-tracemalloc.txt").write_text(report)
    first_call_s = next((s.t_s for s in samples if s.calls_up), 0.0)
    warmup_s += first_call_s  # sipp places the first call one rate period after it starts
    ok = [r for r in gateway.reports if r.end_reason == "remote_hangup"]
    answered = sum(len(r.turn_latencies_ms) for r in ok)
    after = [s for s in samples if s.t_s >= warmup_s]
    png = plot(samples, reports_dir / f"soak-{calls}x{minutes:g}min.png", warmup_s=warmup_s,
               title=f"assistant bench soak --calls {calls} --minutes {minutes:g} (real pipeline, Mandarin callers, "
                     f"{call_s:g} s calls)")
    return {
        "calls_completed": len(ok),
        "dropped": len(gateway.reports) - len(ok) + max(0, total - len(gateway.reports)),
        "turns_spoken": len(ok) * len(caller.speech_ends_s),
        "turns_answered": answered,
        "rss_mb_after_warmup": after[0].rss_mb if after else None,
        "rss_mb_end": samples[-1].rss_mb,
        "rss_mb_peak": max(s.rss_mb for s in samples),
        "growth_mb_per_call_minute": growth_per_call_minute(samples, after_s=warmup_s),
        # retained growth: idle RSS once every call has ended (each call end trims the heap) against idle RSS
        # before the first soak call, per call-minute; the slopes above also see transient decode buffers
        "growth_idle_mb_per_call_minute": round((samples[-1].rss_mb - samples[0].rss_mb)
                                                / max(len(gateway.reports) * call_s / 60.0, 1e-9), 3),
        "growth_low_envelope_mb_per_call_minute": growth_per_call_minute(low_envelope(samples, after_s=warmup_s),
                                                                         after_s=warmup_s),
        "fds_start": fds_start,
        "fds_end": fds_end,
        "fds_new_at_end": fds_left,
        "tasks_start": tasks_start,
        "tasks_end": tasks_end,
        "tasks_at_end": tasks_left,
        "calls": calls,
        "minutes": minutes,
        "call_seconds": call_s,
        "calls_placed": len(gateway.reports),
        "seconds_with_calls": round(calls_s, 1),
        "warmup_minutes": warmup_minutes,
        "load_1m": [round(load_start, 2), round(os.getloadavg()[0], 2)],
        "cores": os.cpu_count(),
        "plot": str(png) if png else None,
        "sipp_exit": rc,
        **({"sipp_tail": sipp_tail} if rc != 0 else {}),
        **({"tracemalloc": str(reports_dir / "soak-tracemalloc.txt")} if trace else {}),
        "samples": [[s.t_s, s.rss_mb, s.fds, s.tasks, s.calls_up] for s in samples],
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=4, help="calls kept up at once (default 4)")
    parser.add_argument("--minutes", type=float, default=10.0, help="how long calls are placed (default 10)")
    parser.add_argument("--call-seconds", type=float, default=120.0, help="length of each call (default 120)")
    parser.add_argument("--warmup-minutes", type=float, default=2.0,
                        help="growth is measured after this (default 2: models, caches and pools warm up)")
    parser.add_argument("--warmup-call-s", type=float, default=20.0,
                        help="one call this long before the start values are taken (0: none): what a gateway opens "
                             "once, on its first call, is not counted as left over by the soak's calls (default 20)")
    parser.add_argument("--sample-s", type=float, default=5.0, help="sampling period (default 5 s)")
    parser.add_argument("--reply-pause", type=float, default=REPLY_PAUSE_S, help="silence after each utterance")
    parser.add_argument("--tracemalloc", action="store_true",
                        help="trace the Python heap and write the growth's top sites to reports/soak-tracemalloc.txt")
    parser.add_argument("--json", action="store_true", help="print one JSON object (default: readable)")


def run(args: argparse.Namespace) -> int:
    check_tools()
    result = asyncio.run(
        soak(calls=args.calls, minutes=args.minutes, call_s=args.call_seconds, warmup_minutes=args.warmup_minutes,
             sample_s=args.sample_s, reply_pause_s=args.reply_pause, trace=args.tracemalloc,
             warmup_call_s=args.warmup_call_s)
    )
    if args.json:
        print(json.dumps(result), flush=True)
    else:
        for k, v in result.items():
            if k != "samples":
                print(f"{k:>26}: {v}")
    return 0 if result["dropped"] == 0 else 1


if __name__ == "__main__":
    sys.exit(run(argparse.Namespace(calls=1, minutes=1.0, call_seconds=60.0, warmup_minutes=0.5, sample_s=5.0,
                                    reply_pause=REPLY_PAUSE_S, tracemalloc=False, warmup_call_s=20.0, json=True)))
