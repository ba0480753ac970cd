"""Supervised child processes (the Rasa server and the action server) with health checks and restart.

Rasa runs in its own environment (its pins clash with pipecat), so it is a child process we talk to over
HTTP. The supervisor starts each child, waits until its health URL answers, restarts it with back-off when
it dies or stops answering, and stops everything (SIGTERM, then SIGKILL) on exit. Logs go to ``var/logs``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from loguru import logger

from assistant.errors import SetupError
from assistant.private_files import FILE_MODE, private_dir


@dataclass(frozen=True, kw_only=True)
class ChildSpec:
    name: str
    argv: tuple[str, ...]
    health_url: str
    log_path: Path
    # query parameters of the health check (a token); kept out of the URL so that logs never show them
    health_params: dict[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    start_timeout_s: float = 180.0


@dataclass(kw_only=True)
class _Child:
    spec: ChildSpec
    process: asyncio.subprocess.Process | None = None
    restarts: int = 0
    failures: int = 0


class Supervisor:
    def __init__(self, *, specs: list[ChildSpec], health_interval_s: float = 5.0, max_failed_checks: int = 3):
        self._children = [_Child(spec=s) for s in specs]
        self._health_interval_s = health_interval_s
        self._max_failed_checks = max_failed_checks
        self._watch_task: asyncio.Task | None = None
        self._http: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> Supervisor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def status(self) -> dict[str, dict]:
        return {
            c.spec.name: {
                "pid": c.process.pid if c.process else None,
                "running": c.process is not None and c.process.returncode is None,
                "restarts": c.restarts,
            }
            for c in self._children
        }

    async def start(self) -> None:
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=3))
        try:
            await asyncio.gather(*(self._spawn_and_wait(c) for c in self._children))
        except BaseException:
            await self.stop()
            raise
        self._watch_task = asyncio.create_task(self._watch(), name="supervisor-watch")

    async def stop(self) -> None:
        if self._watch_task is not None:
            self._watch_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch_task
            self._watch_task = None
        await asyncio.gather(*(self._terminate(c) for c in self._children))
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def _spawn(self, child: _Child) -> None:
        spec = child.spec
        private_dir(spec.log_path.parent)
        fd = os.open(spec.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, FILE_MODE)
        log = os.fdopen(fd, "ab")  # a local append-open, handed to the child
        try:
            child.process = await asyncio.create_subprocess_exec(
                *spec.argv,
                cwd=str(spec.cwd) if spec.cwd else None,
                env={**os.environ, **spec.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
        except OSError as exc:
            raise SetupError(f"cannot start {spec.name}: {exc} (run `make run` to set up)") from exc
        finally:
            log.close()
        logger.info(f"started {spec.name} (pid {child.process.pid}), log: {spec.log_path}")

    async def _healthy(self, child: _Child) -> bool:
        assert self._http is not None
        try:
            async with self._http.get(child.spec.health_url, params=child.spec.health_params) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def _spawn_and_wait(self, child: _Child) -> None:
        await self._spawn(child)
        deadline = time.monotonic() + child.spec.start_timeout_s
        while time.monotonic() < deadline:
            if child.process is not None and child.process.returncode is not None:
                raise SetupError(
                    f"{child.spec.name} exited with status {child.process.returncode} while starting; see {child.spec.log_path}"
                )
            if await self._healthy(child):
                logger.info(f"{child.spec.name} is ready at {child.spec.health_url}")
                child.failures = 0
                return
            await asyncio.sleep(0.5)
        raise SetupError(f"{child.spec.name} did not become healthy within {child.spec.start_timeout_s:.0f} s; see {child.spec.log_path}")

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self._health_interval_s)
            for child in self._children:
                dead = child.process is None or child.process.returncode is not None
                if not dead and await self._healthy(child):
                    child.failures = 0
                    continue
                child.failures += 1
                if dead or child.failures >= self._max_failed_checks:
                    child.restarts += 1
                    logger.warning(f"{child.spec.name} {'died' if dead else 'stopped answering'}; restart #{child.restarts}")
                    await self._terminate(child)
                    await asyncio.sleep(min(30.0, 2.0 ** min(child.restarts, 5)))
                    try:
                        await self._spawn_and_wait(child)
                    except SetupError as exc:
                        logger.error(str(exc))

    async def _terminate(self, child: _Child) -> None:
        proc = child.process
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=10)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
