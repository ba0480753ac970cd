"""Per-device tokens for the kiosk page: ``/screen/{elder_id}?token=...``.

A token is an HMAC of the elder id under a secret kept in ``var/screen_secret`` (mode 0600, created at
first use), so any number of screens can be enrolled without a table, and rotating the secret revokes
them all. The console's portal shows the URL (``screen_path``) when a family sets up a screen.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from assistant.settings import Settings

TOKEN_CHARS = 32


def screen_secret(settings: Settings) -> bytes:
    path = settings.paths.var_dir / "screen_secret"
    if path.exists():
        return path.read_bytes().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32).encode()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process created it first: use theirs
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


def device_token(elder_id: int, *, secret: bytes) -> str:
    mac = hmac.new(secret, f"screen:{int(elder_id)}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")[:TOKEN_CHARS]


def check_token(elder_id: int, token: str | None, *, secret: bytes) -> bool:
    if not token:
        return False
    return hmac.compare_digest(device_token(elder_id, secret=secret), token)


def screen_path(elder_id: int, *, settings: Settings) -> str:
    """The kiosk page's path with its token (prefix the server's base URL)."""
    return f"/screen/{int(elder_id)}?token={device_token(elder_id, secret=screen_secret(settings))}"
