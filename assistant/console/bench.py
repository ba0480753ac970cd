"""``assistant bench console --json``: review-queue server time with many flagged calls.

Seeds ``--count`` flagged calls (call + 4 transcript turns + alert each, over 500 elders and 30 days)
into a throwaway database, signs in as an operator and requests the queue page ``--requests`` times
(first page, a filtered page and a deep page), timing the server side of each request (handler entry
to response, measured by a middleware) and the loopback round trip.

Database: a throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl`` from ``ASSISTANT_PG_BIN``, default
``/usr/lib/postgresql/15/bin``; run as the ``postgres`` user when we are root) — or, when PostgreSQL is
not installed or ``--sqlite`` is given, a temporary SQLite file. ``--database-url`` uses an existing,
empty scratch database instead (never point it at production: rows are added). The JSON says which.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from assistant.console import users
from assistant.console.app import create_app
from assistant.console.seed import seed_flagged_calls
from assistant.platform.db import describe_url
from assistant.services import SERVICES_KEY
from assistant.settings import load_settings

TARGET_MS = 300.0
PG_BIN = Path(os.environ.get("ASSISTANT_PG_BIN", "/usr/lib/postgresql/15/bin"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON (default: also JSON)")
    parser.add_argument("--count", type=int, default=10_000, help="flagged calls to seed (default 10000)")
    parser.add_argument("--requests", type=int, default=100, help="timed requests per page kind (default 100)")
    parser.add_argument("--sqlite", action="store_true", help="use a temporary SQLite file, not PostgreSQL")
    parser.add_argument("--database-url", default="", help="an existing EMPTY scratch database to use instead")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def throwaway_postgres() -> Iterator[str | None]:
    """A PostgreSQL cluster in a temporary folder for the length of the block (None if not installed)."""
    initdb, pg_ctl = PG_BIN / "initdb", PG_BIN / "pg_ctl"
    if not (initdb.exists() and pg_ctl.exists()):
        yield None
        return
    prefix: list[str] = []
    tmp = Path(tempfile.mkdtemp(prefix="console-bench-pg-"))
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        runuser = shutil.which("runuser")
        if runuser is None:
            shutil.rmtree(tmp, ignore_errors=True)
            yield None
            return
        prefix = [runuser, "-u", "postgres", "--"]
        shutil.chown(tmp, user="postgres")
    data, port = tmp / "data", _free_port()
    started = False
    try:
        subprocess.run([*prefix, str(initdb), "-D", str(data), "-U", "bench", "--auth=trust", "-E", "UTF8",
                        "--locale=C"], check=True, capture_output=True, timeout=120)
        opts = f"-p {port} -k {tmp} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off"
        subprocess.run([*prefix, str(pg_ctl), "-D", str(data), "-o", opts, "-l", str(tmp / "log"), "-w", "start"],
                       check=True, capture_output=True, timeout=120)
        started = True
        yield f"postgresql+asyncpg://bench@127.0.0.1:{port}/postgres"
    except (subprocess.SubprocessError, OSError) as exc:
        if started:
            raise
        print(f"PostgreSQL could not start ({exc}); using SQLite", file=sys.stderr)
        yield None
    finally:
        if started:
            subprocess.run([*prefix, str(pg_ctl), "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True, timeout=60)
        shutil.rmtree(tmp, ignore_errors=True)


def _stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(round(0.95 * (len(ordered) - 1))))]
    return {"p50": round(statistics.median(ordered), 2), "p95": round(p95, 2), "max": round(ordered[-1], 2),
            "n": len(ordered)}


async def _bench(url: str, *, count: int, requests: int, var_dir: Path) -> dict[str, Any]:
    import dataclasses
    import re

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer


    settings = load_settings()
    settings = dataclasses.replace(
        settings,
        paths=dataclasses.replace(settings.paths, var_dir=var_dir),
        store=dataclasses.replace(settings.store, database_url=url),
    )
    server_ms: list[float] = []

    @web.middleware
    async def timing(request: web.Request, handler):
        t0 = time.perf_counter()
        try:
            return await handler(request)
        finally:
            if request.path == "/console/":
                server_ms.append((time.perf_counter() - t0) * 1000.0)

    app = create_app(settings)
    app.middlewares.append(timing)
    async with TestClient(TestServer(app)) as client:
        t0 = time.perf_counter()
        async with app[SERVICES_KEY].sessions() as db:
            await seed_flagged_calls(db, count=count)
            password = "bench-" + os.urandom(8).hex()
            await users.create_user(db, username="bench-operator", role="operator", password=password)
        seed_s = time.perf_counter() - t0
        page = await client.get("/console/login")
        token = re.search(r'name="_csrf" value="([^"]+)"', await page.text()).group(1)  # type: ignore[union-attr]
        resp = await client.post("/console/login", data={"_csrf": token, "username": "bench-operator",
                                                          "password": password}, allow_redirects=False)
        assert resp.status == 303, f"bench login failed ({resp.status})"
        first = await client.get("/console/")
        total = int(re.search(r"共 (\d+) 条", await first.text()).group(1))  # type: ignore[union-attr]
        deep = max(1, total // 50)
        kinds = {"first_page": "/console/", "filtered_fraud": "/console/?kind=fraud",
                 "deep_page": f"/console/?page={deep}", "live_fragment": "/console/?fragment=1"}
        results: dict[str, Any] = {}
        for name, path in kinds.items():
            server_ms.clear()
            rtt: list[float] = []
            for _ in range(requests):
                t1 = time.perf_counter()
                r = await client.get(path)
                await r.read()
                rtt.append((time.perf_counter() - t1) * 1000.0)
                assert r.status == 200, f"{path} → {r.status}"
            results[name] = {"server_ms": _stats(list(server_ms)), "round_trip_ms": _stats(rtt)}
    return {"seed_s": round(seed_s, 1), "active_alerts_listed": total, "pages": results}


def run(args: argparse.Namespace) -> int:
    import logging
    import platform


    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)

    with contextlib.ExitStack() as stack:
        var_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="console-bench-")))
        if args.database_url:
            url, backend = args.database_url, ("postgresql" if args.database_url.startswith("postgres") else "sqlite")
        else:
            url = None if args.sqlite else stack.enter_context(throwaway_postgres())
            backend = "postgresql" if url else "sqlite"
            url = url or f"sqlite+aiosqlite:///{var_dir / 'bench.db'}"
        result = asyncio.run(_bench(url, count=args.count, requests=args.requests, var_dir=var_dir))
    p95 = max(v["server_ms"]["p95"] for v in result["pages"].values())
    out = {
        "bench": "console_queue",
        "backend": backend,
        "database": describe_url(url),
        "flagged_calls": args.count,
        "requests_per_page_kind": args.requests,
        **result,
        "target_p95_ms": TARGET_MS,
        "worst_p95_server_ms": p95,
        "ok": p95 < TARGET_MS,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0 if out["ok"] else 1
