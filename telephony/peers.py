"""Real SIP peers on loopback for tests and the call benchmark: headless baresip and sipp (Debian packages).

Every peer is an ``async with`` context: the process is started on free 127.0.0.1 ports and always
terminated (then killed) on exit, so no test leaves a process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import wave
from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import SetupError

SIPP_PCAP_DIR = Path("/usr/share/sip-tester")


def free_udp_port(*, even: bool = False) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not even or port % 2 == 0:
            return port
    raise SetupError("no free UDP port on 127.0.0.1")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise SetupError(f"{name} is not installed (Debian package: {'sip-tester' if name == 'sipp' else name})")
    return path


async def _stop_process(proc: asyncio.subprocess.Process, *, grace_s: float = 2.0) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    try:
        async with asyncio.timeout(grace_s):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def _log_fd(path: Path) -> int:
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)


def write_wav8k(path: Path, pcm16: bytes) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(pcm16)
    return path


@dataclass(kw_only=True)
class BaresipPeer:
    """baresip with aufile source (plays ``wav`` then silence), sndfile recorder and ctrl_tcp control."""

    workdir: Path
    wav: Path | None = None
    auto_answer: bool = True
    user: str = "elder"
    sip_port: int = 0
    ctrl_port: int = 0
    proc: asyncio.subprocess.Process | None = field(default=None, init=False)

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "rec").mkdir(exist_ok=True)
        wav = self.wav or write_wav8k(self.workdir / "silence.wav", bytes(8000 * 2 * 60))
        source = f"aufile,{wav}"
        modules = ["g711", "aufile", "sndfile"]
        # sndfile records every stream; aufile needs a WAV, so the player is a null-ish aufile sink
        config = "\n".join(
            [
                f"sip_listen\t\t127.0.0.1:{self.sip_port}",
                "net_interface\t\t127.0.0.1",
                "sip_trans_def\t\tudp",
                f"audio_source\t\t{source}",
                f"audio_player\t\taufile,{self.workdir / 'player.wav'}",
                "audio_srate\t\t8000",
                "audio_channels\t\t1",
                "ausrc_srate\t\t8000",
                "auplay_srate\t\t8000",
                "rtp_ports\t\t30000-39999",
                "jitter_buffer_delay\t1-5",
                f"snd_path\t\t{self.workdir / 'rec'}",
                f"ctrl_tcp_listen\t\t127.0.0.1:{self.ctrl_port}",
                "module_path\t\t/usr/lib/baresip/modules",
                *[f"module\t\t\t{m}.so" for m in modules],
                "module_app\t\taccount.so",
                "module_app\t\tmenu.so",
                "module_app\t\tctrl_tcp.so",
                "",
            ]
        )
        (self.workdir / "config").write_text(config)
        answer = "auto" if self.auto_answer else "manual"
        (self.workdir / "accounts").write_text(
            f"<sip:{self.user}@127.0.0.1>;regint=0;answermode={answer};audio_codecs=PCMU,PCMA\n"
        )
        (self.workdir / "contacts").write_text("")

    async def __aenter__(self) -> BaresipPeer:
        exe = program("baresip")
        self.sip_port = self.sip_port or free_udp_port()
        self.ctrl_port = self.ctrl_port or free_tcp_port()
        self._write_config()
        log = _log_fd(self.workdir / "baresip.log")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                exe, "-f", str(self.workdir), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        finally:
            os.close(log)
        await self._wait_ctrl()
        return self

    async def __aexit__(self, *exc) -> None:
        if self.proc is not None:
            with contextlib.suppress(Exception):
                await self.command("quit", timeout_s=1.0)
            await _stop_process(self.proc)

    async def _wait_ctrl(self, timeout_s: float = 5.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while True:
            try:
                _r, w = await asyncio.open_connection("127.0.0.1", self.ctrl_port)
                w.close()
                await w.wait_closed()
                return
            except OSError:
                if self.proc is not None and self.proc.returncode is not None:
                    raise SetupError(f"baresip exited: {(self.workdir / 'baresip.log').read_text()[-500:]}") from None
                if loop.time() > deadline:
                    raise SetupError("baresip's ctrl_tcp did not open") from None
                await asyncio.sleep(0.05)

    async def command(self, command: str, params: str = "", *, timeout_s: float = 3.0) -> dict:
        """One ctrl_tcp command (netstring JSON); returns baresip's response object."""
        body = json.dumps({"command": command, "params": params, "token": "t"}).encode()
        async with asyncio.timeout(timeout_s):
            r, w = await asyncio.open_connection("127.0.0.1", self.ctrl_port)
            try:
                w.write(str(len(body)).encode() + b":" + body + b",")
                await w.drain()
                while True:
                    msg = await _read_netstring(r)
                    if msg.get("response"):
                        return msg
            finally:
                w.close()
                with contextlib.suppress(Exception):
                    await w.wait_closed()

    def recordings(self) -> list[Path]:
        """WAV files sndfile wrote of what baresip heard (decoded stream)."""
        return sorted(p for p in (self.workdir / "rec").glob("*.wav") if "dec" in p.name)

    def log(self) -> str:
        p = self.workdir / "baresip.log"
        return p.read_text(errors="replace") if p.exists() else ""


async def _read_netstring(r: asyncio.StreamReader) -> dict:
    length = int((await r.readuntil(b":"))[:-1])
    data = await r.readexactly(length + 1)
    return json.loads(data[:-1])


@dataclass(kw_only=True)
class SippRun:
    """One sipp process running a scenario file against ``target`` (host:port)."""

    scenario: Path
    target: str
    workdir: Path
    calls: int = 1
    rate: float = 1.0
    concurrent: int | None = None
    extra: tuple[str, ...] = ()
    timeout_s: float = 60.0
    port: int = 0
    proc: asyncio.subprocess.Process | None = field(default=None, init=False)

    async def __aenter__(self) -> SippRun:
        exe = program("sipp")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_udp_port()
        media = free_udp_port(even=True)
        argv = [
            exe, self.target, "-sf", str(self.scenario), "-i", "127.0.0.1", "-p", str(self.port),
            "-mi", "127.0.0.1", "-mp", str(media), "-m", str(self.calls), "-r", str(self.rate),
            "-timeout", f"{int(self.timeout_s)}s", "-timeout_error", "-nostdin", "-bg" if False else "-trace_err",
            "-error_file", str(self.workdir / "sipp_errors.log"), *self.extra,
        ]
        if self.concurrent:
            argv += ["-l", str(self.concurrent)]
        log = _log_fd(self.workdir / "sipp.out")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *argv, cwd=str(self.workdir), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        finally:
            os.close(log)
        return self

    async def wait(self) -> int:
        assert self.proc is not None
        async with asyncio.timeout(self.timeout_s + 10):
            return await self.proc.wait()

    async def __aexit__(self, *exc) -> None:
        if self.proc is not None:
            await _stop_process(self.proc)

    def errors(self) -> str:
        p = self.workdir / "sipp_errors.log"
        return p.read_text(errors="replace") if p.exists() else ""
