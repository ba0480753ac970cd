"""``GET /metrics``: the call engine in Prometheus' text format (issue #17), read from ``call_jobs``.

Same bearer token as the platform API (``Authorization: Bearer <service token>``). Every node answers
the same numbers (they come from the shared table):

- ``assistant_call_jobs{state}``: rows per state (``planned`` is the queue; held states are calls in work);
- ``assistant_call_jobs_due``: planned rows whose time has come; ``assistant_call_engine_lag_seconds``: how
  long the oldest of them has waited;
- ``assistant_call_steps_24h{district,kind,state}``: the steps that ended in the last 24 hours per district
  (care calls answered / no answer / busy / failed / missed, family escalations, operator alerts), from
  which a dashboard computes answer rates;
- ``assistant_call_engine_nodes``, ``assistant_call_engine_lines``, ``assistant_call_engine_hold_seconds``,
  ``assistant_call_engine_capacity_calls_per_hour``: the live engine nodes, their outbound lines together,
  the measured line holding time per call and the calls per hour they can place now (``telephony.capacity``);
- ``assistant_warning_calls{broadcast,district,result}``: warning broadcasts of the last 48 hours, elders per
  result (planned / heard / need_help / answered / no_answer / failed / pending; ``telephony.broadcasts``).

When the phone gateway runs in this process, also its own lines (``telephony.lines``; per node, not shared):
``assistant_gateway_lines`` (``MAX_CONCURRENT_CALLS``), ``assistant_gateway_lines_reserved`` (kept for
inbound calls), ``assistant_gateway_lines_busy`` (calls and promised lines), ``assistant_gateway_lines_waiting``
(outbound calls waiting for a line: console call-backs, hand-over legs) and
``assistant_gateway_refused_busy_total`` (inbound calls refused with 503 since the start).
"""

from __future__ import annotations

import datetime as dt

from aiohttp import web
from sqlalchemy import Select, func, select

from assistant.platform.api import _api
from assistant.platform.models import Elder
from assistant.services import SERVICES_KEY
from telephony.broadcasts import warning_report
from telephony.call_jobs import CallJobStore
from telephony.capacity import measure
from telephony.lines import LineGate
from telephony.models import CallJob

CONTENT_TYPE = "text/plain"  # Prometheus text exposition format 0.0.4


def _line(name: str, value: float, **labels: str) -> str:
    if labels:
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        return f"{name}{{{inner}}} {value:g}"
    return f"{name} {value:g}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def steps_query(since: dt.datetime) -> Select:
    """The steps that ended since ``since`` per district, kind and state. ``finished_at`` is written only with an
    end state (``CallJobStore.finish``, a medication plan stopped), so the window alone picks the ended steps and
    is read through ``ix_call_jobs_finished_at`` (core_0011): a ``state IN (…)`` filter made SQLite, which has no
    statistics, read every row through the state index instead."""
    return (select(Elder.district, CallJob.kind, CallJob.state, func.count())
            .join(Elder, Elder.id == CallJob.elder_id, isouter=True)
            .where(CallJob.finished_at >= since)
            .group_by(Elder.district, CallJob.kind, CallJob.state))


def lines_text(lines: LineGate, *, refused_busy: int) -> list[str]:
    """The phone gateway's lines (``telephony.lines``) as exposition lines."""
    out = []
    for name, value, kind, what in (
            ("lines", lines.lines, "gauge", "The phone gateway's lines (MAX_CONCURRENT_CALLS)."),
            ("lines_reserved", lines.inbound_reserve, "gauge", "Lines no routine outbound call takes (kept for inbound calls)."),
            ("lines_busy", lines.busy, "gauge", "Lines taken now: calls in progress and lines promised to outbound calls."),
            ("lines_waiting", lines.waiting, "gauge", "Outbound calls waiting for a line (call-backs, hand-over legs)."),
            ("refused_busy_total", refused_busy, "counter", "Inbound calls refused with 503 because every line was busy.")):
        out += [f"# HELP assistant_gateway_{name} {what}", f"# TYPE assistant_gateway_{name} {kind}",
                _line(f"assistant_gateway_{name}", value)]
    return out


async def render(jobs: CallJobStore, *, default_hold_s: float = 90.0) -> str:
    """The exposition text for the rows ``jobs`` sees."""
    counts = await jobs.counts()
    oldest = await jobs.oldest_due()
    now = jobs.now()
    since = now - dt.timedelta(hours=24)

    async def per_district(s):
        return (await s.execute(steps_query(since))).all()

    async def due(s):
        q = select(func.count()).select_from(CallJob).where(CallJob.state == "planned", CallJob.not_before <= now)
        return (await s.execute(q)).scalar_one()

    steps = await jobs.report("metrics", per_district)
    due_n = await jobs._run("metrics", due)
    out = ["# HELP assistant_call_jobs Call-engine job rows per state.", "# TYPE assistant_call_jobs gauge"]
    for state in sorted(set(counts) | {"planned", "claimed", "dialling", "answered"}):
        out.append(_line("assistant_call_jobs", counts.get(state, 0), state=state))
    out += ["# HELP assistant_call_jobs_due Planned jobs whose time has come.", "# TYPE assistant_call_jobs_due gauge",
            _line("assistant_call_jobs_due", due_n),
            "# HELP assistant_call_engine_lag_seconds How long the oldest due job has waited.",
            "# TYPE assistant_call_engine_lag_seconds gauge",
            _line("assistant_call_engine_lag_seconds", max((now - oldest).total_seconds(), 0.0) if oldest else 0.0),
            "# HELP assistant_call_steps_24h Call-engine steps that ended in the last 24 hours.",
            "# TYPE assistant_call_steps_24h gauge"]
    for district, kind, state, n in steps:
        out.append(_line("assistant_call_steps_24h", n, district=district or "", kind=kind, state=state))
    cap = await measure(jobs, default_hold_s=default_hold_s)
    for name, value, what in (
            ("nodes", cap.nodes, "Live call-engine nodes (heartbeat within their lease)."),
            ("lines", cap.lines, "Outbound lines of the live call-engine nodes together."),
            ("hold_seconds", cap.hold_s, "Mean line holding time per call (claim to end; the default before data)."),
            ("capacity_calls_per_hour", cap.calls_per_hour, "Calls per hour the live nodes can place now.")):
        out += [f"# HELP assistant_call_engine_{name} {what}", f"# TYPE assistant_call_engine_{name} gauge",
                _line(f"assistant_call_engine_{name}", round(value, 1))]
    out += ["# HELP assistant_warning_calls Warning broadcasts of the last 48 hours: elders per district and result.",
            "# TYPE assistant_warning_calls gauge"]
    report = await warning_report(jobs, since=now - dt.timedelta(hours=48))
    for broadcast, districts in sorted(report.items()):
        for district, counts in sorted(districts.items()):
            for result, n in counts.items():
                out.append(_line("assistant_warning_calls", n, broadcast=broadcast, district=district, result=result))
    return "\n".join(out) + "\n"


async def metrics(request: web.Request) -> web.Response:
    services = request.app[SERVICES_KEY]
    jobs = CallJobStore.for_engine(services.engine, now=lambda: dt.datetime.now(dt.UTC))
    text = await render(jobs, default_hold_s=services.settings.telephony.engine_default_hold_s)
    if services.lines is not None:
        text += "\n".join(lines_text(services.lines, refused_busy=services.lines.refused_inbound)) + "\n"
    return web.Response(text=text, content_type=CONTENT_TYPE)


def setup_metrics(app: web.Application) -> None:
    """Mount ``GET /metrics`` behind the platform API's bearer-token check and coded errors."""
    app.router.add_get("/metrics", _api(metrics))
