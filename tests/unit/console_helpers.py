"""Shared helpers for the console tests (not a test module)."""

from __future__ import annotations

import re
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

from aiohttp.test_utils import TestClient

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


def write_wav(path: Path, *, seconds: float = 1.0, rate: int = 16000) -> Path:
    """A real 16-bit mono WAV (a 440 Hz tone)."""
    import math

    n = int(seconds * rate)
    frames = b"".join(struct.pack("<h", int(8000 * math.sin(2 * math.pi * 440 * i / rate))) for i in range(n))
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return path


def csrf_from(html: str) -> str:
    m = _CSRF.search(html)
    assert m, "page has no CSRF field"
    return m.group(1)


@dataclass
class LoginOutcome:
    status: int
    location: str
    text: str
    set_cookie: list[str]


async def login(client: TestClient, username: str, password: str = PASSWORD, *, area: str = "console") -> LoginOutcome:
    page = await client.get(f"/{area}/login")
    token = csrf_from(await page.text())
    resp = await client.post(f"/{area}/login", data={"_csrf": token, "username": username, "password": password,
                                                      "next": f"/{area}/"}, allow_redirects=False)
    return LoginOutcome(resp.status, resp.headers.get("Location", ""), await resp.text(),
                        resp.headers.getall("Set-Cookie", []))
