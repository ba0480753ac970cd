"""A raw SIP caller for the e2e tests: one UDP socket on 127.0.0.1 sending hand-written requests (exactly the
bytes an attacker or a strict peer sends) and reading the responses. Used by test_telephony_attacks and
test_sip_conformance."""

from __future__ import annotations

import asyncio
import secrets


class Inbox(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def datagram_received(self, data: bytes, addr) -> None:
        self.queue.put_nowait(data)


def sdp_body(*, c_ip: str, media_port: int) -> str:
    return (
        f"v=0\r\no=atk 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 {c_ip}\r\nt=0 0\r\n"
        f"m=audio {media_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\na=sendrecv\r\n"
    )


class RawCaller:
    """One UDP socket on 127.0.0.1 that sends hand-written SIP requests and reads the responses."""

    def __init__(self, target_port: int) -> None:
        self.target = ("127.0.0.1", target_port)
        self.transport: asyncio.DatagramTransport | None = None
        self.inbox = Inbox()
        self.port = 0

    async def __aenter__(self) -> RawCaller:
        loop = asyncio.get_running_loop()
        self.transport, _ = await loop.create_datagram_endpoint(lambda: self.inbox, local_addr=("127.0.0.1", 0))
        self.port = self.transport.get_extra_info("sockname")[1]
        return self

    async def __aexit__(self, *exc) -> None:
        if self.transport is not None:
            self.transport.close()

    def request(self, method: str, *, call_id: str, cseq: int, body: str = "", branch: str | None = None,
                to_tag: str = "", from_tag: str = "atk", content_type: str = "application/sdp",
                headers: dict[str, str] | None = None) -> bytes:
        """``headers`` are added after the usual ones (a Contact there replaces ours)."""
        lines = [
            f"{method} sip:assistant@127.0.0.1:{self.target[1]} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch or 'z9hG4bK' + secrets.token_hex(6)};rport",
            f"From: <sip:13800009999@127.0.0.1>;tag={from_tag}",
            f"To: <sip:assistant@127.0.0.1:{self.target[1]}>{';tag=' + to_tag if to_tag else ''}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: <sip:13800009999@127.0.0.1:{self.port}>",
            "Max-Forwards: 70",
        ]
        if headers and any(k.lower() == "contact" for k in headers):
            lines = [ln for ln in lines if not ln.startswith("Contact:")]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items() if v is not None]  # None: the header left out
        if body:
            lines.append(f"Content-Type: {content_type}")
        lines.append(f"Content-Length: {len(body.encode())}")
        return ("\r\n".join(lines) + "\r\n\r\n" + body).encode()

    def send(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.sendto(data, self.target)

    async def final_response(self, *, timeout_s: float = 5.0) -> str:
        """The first final (>= 200) response, as text."""
        async with asyncio.timeout(timeout_s):
            while True:
                text = (await self.inbox.queue.get()).decode(errors="replace")
                status = text.split(" ", 2)[1] if text.startswith("SIP/2.0 ") else ""
                if status.isdigit() and int(status) >= 200:
                    return text

    async def invite(self, *, c_ip: str = "127.0.0.1", media_port: int = 40000, call_id: str | None = None) -> tuple[str, str]:
        """INVITE with an SDP offer; returns (final response, Call-ID). A non-2xx final is ACKed."""
        call_id = call_id or f"{secrets.token_hex(8)}@attacker"
        branch = "z9hG4bK" + secrets.token_hex(6)
        self.send(self.request("INVITE", call_id=call_id, cseq=1, branch=branch, body=sdp_body(c_ip=c_ip, media_port=media_port)))
        resp = await self.final_response()
        if not resp.startswith("SIP/2.0 2"):
            self.send(self.request("ACK", call_id=call_id, cseq=1, branch=branch, to_tag=to_tag(resp)))
        return resp, call_id


def to_tag(resp: str) -> str:
    for line in resp.split("\r\n"):
        if line.lower().startswith(("to:", "t:")) and ";tag=" in line:
            return line.split(";tag=", 1)[1].split(";")[0].strip()
    return ""


def header(resp: str, name: str) -> str | None:
    for line in resp.split("\r\n"):
        k, _, v = line.partition(":")
        if k.strip().lower() == name.lower():
            return v.strip()
    return None


