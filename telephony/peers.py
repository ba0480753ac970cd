"""Real SIP peers on loopback for tests and the call benchmark: headless baresip and sipp (Debian packages).

Every peer is an ``async with`` context: the process is started on free 127.0.0.1 ports and always
terminated (then killed) on exit, so no test leaves a process behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import socket
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from assistant.errors import SetupError
from telephony.edge import EdgeTrunk, TlsFiles, kamailio_config, rtpengine_argv, tls_domains_config

SIPP_PCAP_DIR = Path("/usr/share/sip-tester")


def free_udp_port(*, even: bool = False) -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if not even or port % 2 == 0:
            return port
    raise SetupError("no free UDP port on 127.0.0.1")


def free_sip_port() -> int:
    """A port ``p`` with UDP ``p``, TCP ``p`` and TCP ``p+1`` free: baresip listens on all three (SIP over
    UDP and TCP on ``sip_listen``'s port, SIP/TLS on the next one) and exits if any is taken."""
    for _ in range(50):
        port = free_udp_port()
        socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(), socket.socket()]
        try:
            for sock, p in zip(socks, (port, port, port + 1), strict=True):
                sock.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise SetupError("no free SIP port (UDP+TCP, TLS next to it) on 127.0.0.1")


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def program(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        package = {"sipp": "sip-tester", "rtpengine": "rtpengine-daemon"}.get(name, name)
        raise SetupError(f"{name} is not installed (Debian package: {package})")
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


def _log_text(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


@dataclass(kw_only=True)
class _Daemon:
    """A server program on 127.0.0.1 (kamailio, rtpengine) that a subclass's ``__aenter__`` starts with its
    output in ``workdir/<log_name>``; stopped on exit."""

    log_name: ClassVar[str]
    workdir: Path
    proc: asyncio.subprocess.Process | None = field(default=None, init=False)

    async def __aexit__(self, *exc) -> None:
        if self.proc is not None:
            await _stop_process(self.proc, grace_s=3.0)

    def log(self) -> str:
        return _log_text(self.workdir / self.log_name)


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
    # register user@registrar (host:port, e.g. kamailio) with digest ``password`` (an operator's phone)
    registrar: str | None = None
    password: str = ""
    sip_port: int = 0
    ctrl_port: int = 0
    # media encryption baresip offers (its ``srtp`` module): "" (plain RTP), "srtp" (RTP/AVP + a=crypto, RFC 8643
    # OSRTP: SRTP when the answer takes it), "srtp-mand" (RTP/SAVP, SDES, RFC 4568) or "srtp-mandf" (RTP/SAVPF)
    mediaenc: str = ""
    # CA certificate (PEM) for SIP over TLS (``sip:…;transport=tls``): the server it calls must present a
    # certificate it signs
    cafile: Path | None = None
    sip_trace: bool = False  # every SIP message (with its SDP) in baresip's log
    # offer video too (m=audio + m=video, as softphones do by default): VP8 from baresip's fakevideo source,
    # decoded frames go to fakevideo's null display
    video: bool = False
    proc: asyncio.subprocess.Process | None = field(default=None, init=False)

    @property
    def uri(self) -> str:
        return f"sip:{self.user}@127.0.0.1:{self.sip_port}"

    def _write_config(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "rec").mkdir(exist_ok=True)
        wav = self.wav or write_wav8k(self.workdir / "silence.wav", bytes(8000 * 2 * 60))
        source = f"aufile,{wav}"
        modules = ["g711", "aufile", "sndfile", *(["srtp"] if self.mediaenc else []), *(["vp8", "fakevideo"] if self.video else [])]
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
                *(["video_source\t\tfakevideo,nil", "video_display\t\tfakevideo,nil", "video_size\t\t176x144", "video_fps\t\t5",
                   "video_bitrate\t\t64000"] if self.video else []),
                *([f"sip_cafile\t\t{self.cafile}"] if self.cafile else []),
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
        if self.registrar:
            account = f"<sip:{self.user}@{self.registrar}>;auth_pass={self.password};regint=60"
        else:
            account = f"<sip:{self.user}@127.0.0.1>;regint=0"
        mediaenc = f";mediaenc={self.mediaenc}" if self.mediaenc else ""
        (self.workdir / "accounts").write_text(f"{account};answermode={answer};audio_codecs=PCMU,PCMA{mediaenc}\n")
        (self.workdir / "contacts").write_text("")

    async def __aenter__(self) -> BaresipPeer:
        chosen = bool(self.sip_port), bool(self.ctrl_port)
        for attempt in range(3):
            self.sip_port = self.sip_port if chosen[0] else free_sip_port()
            self.ctrl_port = self.ctrl_port if chosen[1] else free_tcp_port()
            try:
                await self._start()
                return self
            except SetupError:
                # another process took a port between our probe and baresip's bind: pick new ones
                if attempt == 2 or all(chosen) or "Address already in use" not in self.log():
                    raise
        raise AssertionError("unreachable")

    async def _start(self) -> None:
        exe = program("baresip")
        self._write_config()
        log = _log_fd(self.workdir / "baresip.log")
        try:
            self.proc = await asyncio.create_subprocess_exec(
                exe, "-f", str(self.workdir), *(["-s"] if self.sip_trace else []), stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT
            )
        finally:
            os.close(log)
        await self._wait_ctrl()

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

    async def wait_registered(self, *, timeout_s: float = 5.0) -> None:
        """Until the registrar accepted our REGISTER (baresip's log says so)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        while not re.search(r"200 OK .*\[\d+ binding", self.log()):
            if loop.time() > deadline:
                raise SetupError(f"baresip {self.user} did not register: {self.log()[-600:]}")
            await asyncio.sleep(0.05)

    def recordings(self) -> list[Path]:
        """WAV files sndfile wrote of what baresip heard (decoded stream)."""
        return sorted(p for p in (self.workdir / "rec").glob("*.wav") if "dec" in p.name)

    def log(self) -> str:
        return _log_text(self.workdir / "baresip.log")


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


# kamailio configurations: str.format templates ({port}, ...; literal braces doubled), built from shared parts
_KAMAILIO_GLOBALS = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
"""
_KAMAILIO_MODULES = """mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
"""
# the start of every request_route: hop limit, in-dialog requests by their Route (loose routing), CANCEL
_KAMAILIO_IN_DIALOG = """    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{ t_relay(); exit; }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
"""

KAMAILIO_REGISTRAR_CFG = _KAMAILIO_GLOBALS + """alias="127.0.0.1:{port}"
""" + _KAMAILIO_MODULES + """loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"

request_route {{
""" + _KAMAILIO_IN_DIALOG + """    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "{password}", "0")) {{ www_challenge("$td", "0"); exit; }}
        if ($au != "{user}") {{ sl_send_reply("403", "Forbidden"); exit; }}
        save("location");
        exit;
    }}
    if (is_method("INVITE")) {{ record_route(); }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"""


# a registrar for several users (operators' and family phones) sharing one password, proxying INVITEs from
# anyone (the gateway) to the registered contacts; production uses auth_db / a real PBX (README)
KAMAILIO_PBX_CFG = _KAMAILIO_GLOBALS + """alias="127.0.0.1:{port}"
""" + _KAMAILIO_MODULES + """loadmodule "usrloc.so"
loadmodule "registrar.so"
loadmodule "auth.so"
modparam("tm", "fr_inv_timer", 120000)

request_route {{
""" + _KAMAILIO_IN_DIALOG + """    if (is_method("REGISTER")) {{
        if (!pv_www_authenticate("$td", "{password}", "0")) {{ www_challenge("$td", "0"); exit; }}
        if (!($au =~ "^({users})$")) {{ sl_send_reply("403", "Forbidden"); exit; }}
        save("location");
        exit;
    }}
    if (is_method("INVITE")) {{ record_route(); }}
    if (!lookup("location")) {{ sl_send_reply("404", "Not Found"); exit; }}
    t_relay();
}}
"""


@dataclass(kw_only=True)
class _Kamailio(_Daemon):
    """One kamailio process on 127.0.0.1 running ``config()`` (written to ``workdir``), logging to
    ``workdir/kamailio.log``."""

    log_name: ClassVar[str] = "kamailio.log"
    port: int = 0

    def config(self) -> str:
        raise NotImplementedError

    async def __aenter__(self):
        exe = program("kamailio")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_udp_port()
        cfg = self.workdir / "kamailio.cfg"
        cfg.write_text(self.config())
        log = _log_fd(self.workdir / self.log_name)
        try:
            self.proc = await asyncio.create_subprocess_exec(
                exe, "-f", str(cfg), "-DD", "-E", "-m", "32", "-M", "4", "-Y", str(self.workdir), "-w", str(self.workdir),
                stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
            )
        finally:
            os.close(log)
        await asyncio.sleep(0.8)
        if self.proc.returncode is not None:
            raise SetupError(f"kamailio exited: {self.log()[-800:]}")
        return self


@dataclass(kw_only=True)
class KamailioDispatcher(_Kamailio):
    """kamailio as the platform's SIP edge (``telephony.edge``): a dispatcher (round robin + OPTIONS probing +
    failover) in front of gateway workers ``gateways`` (host:port each) on ``port``, and per ``trunks`` entry a
    UDP or TLS socket whose calls' media rtpengine (``rtpengine_ng_port``) anchors, with the trunk's SRTP policy."""

    gateways: list[str]
    fr_timer_ms: int = 1500
    trunks: tuple[EdgeTrunk, ...] = ()
    tls: TlsFiles | None = None
    rtpengine_ng_port: int = 0
    strict_media_source: bool = True
    public_host: str = "127.0.0.1"  # the trunks' sockets (edge.public_host)
    public_media_ip: str = ""  # rtpengine's public interface ("" = public_host): offers then name directions

    def config(self) -> str:
        ds = self.workdir / "dispatcher.list"
        ds.write_text("".join(f"1 sip:{g}\n" for g in self.gateways))
        domains = None
        if self.tls is not None:
            self.tls.check()
            if any(t.client_cert for t in self.trunks):
                domains = self.workdir / "tls.cfg"
                domains.write_text(tls_domains_config(trunks=self.trunks, tls=self.tls, public_host=self.public_host))
        return kamailio_config(port=self.port, list_file=ds, fr_timer_ms=self.fr_timer_ms, trunks=self.trunks, tls=self.tls,
                               rtpengine_ng_port=self.rtpengine_ng_port, strict_media_source=self.strict_media_source,
                               tls_domains_file=domains, public_host=self.public_host, public_media_ip=self.public_media_ip)


# a carrier's session border controller, for the bench's encrypted path: plain SIP/RTP from the caller (sipp) in,
# SIP over TLS with SDES-SRTP out to the edge's trunk (its own rtpengine does RTP ↔ SRTP); in-dialog requests
# follow the Record-Route set (the caller sends Route headers)
KAMAILIO_CARRIER_CFG = """#!KAMAILIO
debug=2
log_stderror=yes
children=2
tcp_children=2
auto_aliases=no
listen=udp:127.0.0.1:{port}
listen=tls:127.0.0.1:{tls_port}
enable_tls=yes
mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "rr.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "textops.so"
loadmodule "siputils.so"
loadmodule "xlog.so"
loadmodule "tls.so"
modparam("tls", "certificate", "{cert}")
modparam("tls", "private_key", "{key}")
modparam("tls", "tls_method", "TLSv1.2+")
modparam("tls", "verify_certificate", 0)
loadmodule "rtpengine.so"
modparam("rtpengine", "rtpengine_sock", "udp:127.0.0.1:{ng_port}")
modparam("rr", "append_fromtag", 1)

request_route {{
    if (!mf_process_maxfwd_header("10")) {{ sl_send_reply("483", "Too Many Hops"); exit; }}
    if (has_totag()) {{
        if (loose_route()) {{
            if (is_method("BYE")) {{ rtpengine_delete(); }}
            t_relay();
            exit;
        }}
        if (is_method("ACK")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
        sl_send_reply("404", "Not here");
        exit;
    }}
    if (is_method("CANCEL")) {{ if (t_check_trans()) {{ t_relay(); }} exit; }}
    if (is_method("INVITE")) {{
        record_route();
        rtpengine_offer("trust-address replace-origin replace-session-connection ICE=remove transport-protocol=RTP/SAVP");
        t_on_reply("MEDIA");
    }}
    $du = "sip:127.0.0.1:{edge_port};transport=tls";
    t_relay();
}}

onreply_route[MEDIA] {{
    if (status =~ "(18[03])|(2[0-9][0-9])" && has_body("application/sdp")) {{
        rtpengine_answer("trust-address replace-origin replace-session-connection ICE=remove");
    }}
}}
"""


@dataclass(kw_only=True)
class KamailioCarrier(_Kamailio):
    """A carrier's SBC in front of the edge (bench): plain SIP/RTP in on ``port``, TLS + SDES-SRTP out to the
    edge's TLS trunk on ``edge_port``, media through rtpengine ``rtpengine_ng_port``."""

    edge_port: int
    tls: TlsFiles
    rtpengine_ng_port: int
    tls_port: int = 0

    def config(self) -> str:
        self.tls_port = self.tls_port or free_tcp_port()
        return KAMAILIO_CARRIER_CFG.format(port=self.port, tls_port=self.tls_port, cert=self.tls.cert_file, key=self.tls.key_file,
                                           ng_port=self.rtpengine_ng_port, edge_port=self.edge_port)


@dataclass(kw_only=True)
class Rtpengine(_Daemon):
    """rtpengine (Debian ``rtpengine-daemon``) in userspace on 127.0.0.1: the edge's media anchor and SRTP end.
    ``ng_port``: its control socket (kamailio's rtpengine module); media ports from ``port_min``..``port_max``."""

    log_name: ClassVar[str] = "rtpengine.log"
    ng_port: int = 0
    port_min: int = 0
    port_max: int = 0
    public_media_ip: str = "127.0.0.1"  # another IP: a ``public`` interface there, ``internal`` on 127.0.0.1

    async def __aenter__(self) -> Rtpengine:
        exe = program("rtpengine")
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ng_port = self.ng_port or free_udp_port()
        if not self.port_min:
            self.port_min = free_udp_port(even=True)
            self.port_max = min(self.port_min + 400, 65534)
        argv = rtpengine_argv(exe=exe, ng_port=self.ng_port, port_min=self.port_min, port_max=self.port_max,
                              pidfile=self.workdir / "rtpengine.pid", public_media_ip=self.public_media_ip)
        log = _log_fd(self.workdir / self.log_name)
        try:
            self.proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT)
        finally:
            os.close(log)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5.0
        while "Startup complete" not in self.log():
            if self.proc.returncode is not None or loop.time() > deadline:
                await _stop_process(self.proc)
                raise SetupError(f"rtpengine did not start: {self.log()[-800:]}")
            await asyncio.sleep(0.05)
        return self


@dataclass(kw_only=True)
class KamailioRegistrar(_Kamailio):
    """kamailio as registrar (digest auth, one user) and proxy to registered contacts."""

    user: str
    password: str

    def config(self) -> str:
        return KAMAILIO_REGISTRAR_CFG.format(port=self.port, user=self.user, password=self.password)


@dataclass(kw_only=True)
class KamailioPbx(_Kamailio):
    """kamailio as the platform's SIP front for phones: ``users`` register (digest, one shared ``password``),
    INVITEs to ``sip:<user>@127.0.0.1:<port>`` reach the registered phone (operators, family phones)."""

    users: tuple[str, ...]
    password: str

    def aor(self, user: str) -> str:
        return f"sip:{user}@127.0.0.1:{self.port}"

    def config(self) -> str:
        import re

        return KAMAILIO_PBX_CFG.format(port=self.port, password=self.password, users="|".join(re.escape(u) for u in self.users))
