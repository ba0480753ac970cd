"""A real Kannel (bearerbox + smsbox) against its fake SMSC, on free loopback ports — for tests and benches.

``async with FakeKannel(workdir=...) as kannel:`` writes a kannel.conf (fake SMSC instead of the carrier's
SMPP link, internal DLR storage, one sendsms user), starts bearerbox, Kannel's ``fakesmsc`` (the "carrier":
it prints every message it receives and acknowledges it, so Kannel sends delivery reports 8 then 1) and
smsbox, and waits until sendsms answers. ``kannel.messages()`` parses what reached the fake SMSC.
Needs Debian's ``kannel`` and ``kannel-extras``; ``missing()`` says what is absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import unquote_to_bytes

BEARERBOX = "/usr/sbin/bearerbox"
SMSBOX = "/usr/sbin/smsbox"
FAKESMSC_PATHS = ("/usr/lib/kannel/test/fakesmsc", "/usr/libexec/kannel/test/fakesmsc")
USERNAME = "platform"
PASSWORD = "test-sendsms-pw"  # loopback-only test instance

_GOT = re.compile(r"Got message \d+: <(\S+) (\S+) (\S+) (.*)>\s*$")


@dataclass(frozen=True, kw_only=True)
class SmscMessage:
    sender: str
    receiver: str
    text: str


def fakesmsc_path() -> str | None:
    for p in FAKESMSC_PATHS:
        if Path(p).exists():
            return p
    return shutil.which("fakesmsc")


def missing() -> str | None:
    """Why Kannel cannot run here (None when it can)."""
    absent = [p for p in (BEARERBOX, SMSBOX) if not Path(p).exists()]
    if absent:
        return f"kannel is not installed ({', '.join(absent)} missing: apt-get install kannel kannel-extras)"
    if fakesmsc_path() is None:
        return "Kannel's fake SMSC is not installed (apt-get install kannel-extras)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _decode(kind: str, data: str) -> str:
    raw = unquote_to_bytes(data)
    if kind == "ucs-2":
        return raw.decode("utf-16-be", errors="replace")
    return raw.decode("utf-8", errors="replace")


class FakeKannel:
    def __init__(self, *, workdir: Path, start_timeout_s: float = 20.0) -> None:
        self.workdir = Path(workdir)
        self.start_timeout_s = start_timeout_s
        self.admin_port = _free_port()
        self.smsbox_port = _free_port()
        self.smsc_port = _free_port()
        self.sendsms_port = _free_port()
        self.username = USERNAME
        self.password = PASSWORD
        self._procs: list[subprocess.Popen] = []
        self._fakesmsc_log = self.workdir / "fakesmsc.log"

    @property
    def sendsms_url(self) -> str:
        return f"http://127.0.0.1:{self.sendsms_port}/cgi-bin/sendsms"

    def config(self) -> str:
        w = self.workdir
        return f"""group = core
admin-port = {self.admin_port}
admin-password = {PASSWORD}
admin-interface = 127.0.0.1
admin-allow-ip = 127.0.0.1
smsbox-port = {self.smsbox_port}
box-allow-ip = 127.0.0.1
dlr-storage = internal
log-level = 1
log-file = "{w / 'bearerbox.log'}"
access-log = "{w / 'access.log'}"

group = smsc
smsc = fake
smsc-id = fake
port = {self.smsc_port}
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = {self.smsbox_port}
sendsms-port = {self.sendsms_port}
sendsms-interface = 127.0.0.1
log-level = 1
log-file = "{w / 'smsbox.log'}"

group = sendsms-user
username = {USERNAME}
password = {PASSWORD}
user-allow-ip = 127.0.0.1
concatenation = true
max-messages = 5

group = sms-service
keyword = default
text = "平安通不处理短信回复"
"""

    async def __aenter__(self) -> FakeKannel:
        why = missing()
        if why:
            raise RuntimeError(why)
        self.workdir.mkdir(parents=True, exist_ok=True)
        conf = self.workdir / "kannel.conf"
        conf.write_text(self.config(), encoding="utf-8")
        try:
            self._spawn([BEARERBOX, str(conf)], "bearerbox.out")
            await self._wait_port(self.smsc_port, "bearerbox (fake SMSC port)")
            # interactive mode keeps fakesmsc running while its stdin is open; it logs what it receives
            self._spawn([fakesmsc_path() or "fakesmsc", "-H", "127.0.0.1", "-r", str(self.smsc_port)], "fakesmsc.log", stdin=True)
            self._spawn([SMSBOX, str(conf)], "smsbox.out")
            await self._wait_port(self.sendsms_port, "smsbox (sendsms port)")
        except BaseException:
            await self.stop()
            raise
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    def _spawn(self, argv: list[str], log_name: str, *, stdin: bool = False) -> None:
        log = open(self.workdir / log_name, "wb")  # noqa: SIM115 (closed with the process in stop())
        proc = subprocess.Popen(
            argv, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        )
        proc._log = log  # type: ignore[attr-defined]
        self._procs.append(proc)

    async def _wait_port(self, port: int, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while True:
            for p in self._procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{Path(str(p.args[0])).name} exited with {p.returncode} (logs in {self.workdir})")
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                with contextlib.suppress(OSError):
                    await w.wait_closed()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} (logs in {self.workdir})") from None
                await asyncio.sleep(0.1)

    def messages(self) -> list[SmscMessage]:
        """What reached the fake SMSC so far."""
        try:
            lines = self._fakesmsc_log.read_text(encoding="utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            m = _GOT.search(line)
            if m:
                out.append(SmscMessage(sender=m[1], receiver=m[2], text=_decode(m[3], m[4])))
        return out

    async def stop(self) -> None:
        """smsbox first, then the fake SMSC, then bearerbox (SIGTERM, then SIGKILL after 5 s)."""
        for p in reversed(self._procs):
            if p.poll() is None:
                if p.stdin is not None:
                    with contextlib.suppress(OSError):
                        p.stdin.close()
                p.terminate()
                try:
                    await asyncio.to_thread(p.wait, 5.0)
                except subprocess.TimeoutExpired:
                    p.kill()
                    await asyncio.to_thread(p.wait)
            p._log.close()  # type: ignore[attr-defined]
        self._procs.clear()
