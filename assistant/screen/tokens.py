"""Per-device tokens for the kiosk page: ``/screen/{elder_id}?token=...``, revocable one device at a time.

Tokens are HMACs under a secret kept in ``var/screen_secret`` (0600, created at first use); rotating the secret
revokes every screen at once. Two kinds:

- **device tokens** ``<device_id>.<mac>``: ``enrol_device`` gives each screen its own id (listed in
  ``var/screen_devices.json``, 0600, with the elder, a name and when it was enrolled); ``revoke_device`` marks
  one revoked. A device token is accepted only while its device is enrolled for that elder and not revoked.
- the elder's **shared token** (the HMAC of the elder id, what screens enrolled before per-device tokens
  use): accepted unless ``elder-<id>`` is revoked (``revoke_device(settings, "elder-<id>")``).

The server re-reads the registry on every request and every panel refresh, so a revoked screen is refused on
its next connect and its open page is closed within ``STATUS_REFRESH_S`` (``assistant/screen/app.py``).
Administration: ``assistant screen --url ELDER_ID [--name N]`` (enrol, print the URL), ``--devices``,
``--revoke DEVICE_ID``.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import hashlib
import hmac
import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from assistant.private_files import FILE_MODE, private_dir
from assistant.settings import Settings

TOKEN_CHARS = 32
REGISTRY_NAME = "screen_devices.json"


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


def _mac(secret: bytes, message: str) -> str:
    mac = hmac.new(secret, message.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")[:TOKEN_CHARS]


def shared_device_id(elder_id: int) -> str:
    """The registry id of the elder's shared (pre-device) token."""
    return f"elder-{int(elder_id)}"


def device_token(elder_id: int, *, secret: bytes, device_id: str | None = None) -> str:
    """The token of one enrolled device, or (no ``device_id``) the elder's shared token."""
    if device_id is None:
        return _mac(secret, f"screen:{int(elder_id)}")
    return f"{device_id}.{_mac(secret, f'screen:{int(elder_id)}:{device_id}')}"


def token_device(elder_id: int, token: str | None, *, secret: bytes) -> str | None:
    """The device a genuine token for this elder belongs to (``elder-<id>`` for the shared token), else None."""
    if not token:
        return None
    device_id, dot, _ = token.partition(".")
    if dot:
        if not device_id or not hmac.compare_digest(device_token(elder_id, secret=secret, device_id=device_id), token):
            return None
        return device_id
    if hmac.compare_digest(device_token(elder_id, secret=secret), token):
        return shared_device_id(elder_id)
    return None


@dataclass(frozen=True, kw_only=True)
class ScreenDevice:
    device_id: str
    elder_id: int
    name: str
    enrolled_at: str
    revoked_at: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


@dataclass(frozen=True, kw_only=True)
class DeviceRegistry:
    """What ``var/screen_devices.json`` says (a snapshot)."""

    devices: tuple[ScreenDevice, ...] = ()

    def get(self, device_id: str) -> ScreenDevice | None:
        return next((d for d in self.devices if d.device_id == device_id), None)

    def allows(self, elder_id: int, device_id: str | None) -> bool:
        """A device token must belong to an enrolled, unrevoked device of this elder; the shared token is
        allowed unless revoked."""
        if device_id is None:
            return False
        device = self.get(device_id)
        if device_id == shared_device_id(elder_id):
            return device is None or not device.revoked
        return device is not None and device.elder_id == int(elder_id) and not device.revoked


def check_token(elder_id: int, token: str | None, *, secret: bytes, registry: DeviceRegistry | None = None) -> bool:
    return (registry or DeviceRegistry()).allows(elder_id, token_device(elder_id, token, secret=secret))


def registry_path(settings: Settings) -> Path:
    return settings.paths.var_dir / REGISTRY_NAME


def load_registry(path: Path) -> DeviceRegistry:
    """The registry at ``path`` (empty when missing). Blocking file I/O: from async code, use a thread."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return DeviceRegistry()
    return DeviceRegistry(devices=tuple(ScreenDevice(**d) for d in data.get("devices", ())))


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    private_dir(path.parent, narrow=False)
    fd = os.open(path.with_name(path.name + ".lock"), os.O_WRONLY | os.O_CREAT, FILE_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _save(path: Path, registry: DeviceRegistry) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, FILE_MODE)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump({"devices": [asdict(d) for d in registry.devices]}, f, ensure_ascii=False, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def enrol_device(settings: Settings, elder_id: int, *, name: str = "") -> tuple[ScreenDevice, str]:
    """Enrol a new screen for an elder; returns the device and its page path (with the token)."""
    path = registry_path(settings)
    with _locked(path):
        registry = load_registry(path)
        device = ScreenDevice(device_id=secrets.token_hex(4), elder_id=int(elder_id), name=name or "screen",
                              enrolled_at=_now())  # fmt: skip
        _save(path, replace(registry, devices=(*registry.devices, device)))
    token = device_token(elder_id, secret=screen_secret(settings), device_id=device.device_id)
    return device, f"/screen/{int(elder_id)}?token={token}"


def revoke_device(settings: Settings, device_id: str) -> ScreenDevice | None:
    """Revoke one device (or ``elder-<id>``, the elder's shared token); None when no such device."""
    path = registry_path(settings)
    with _locked(path):
        registry = load_registry(path)
        device = registry.get(device_id)
        if device is None:
            if not device_id.startswith("elder-") or not device_id[len("elder-") :].isdigit():
                return None
            device = ScreenDevice(device_id=device_id, elder_id=int(device_id[len("elder-") :]),
                                  name="shared token", enrolled_at="")  # fmt: skip
            devices = (*registry.devices, device)
        else:
            devices = registry.devices
        if not device.revoked:
            revoked = replace(device, revoked_at=_now())
            devices = tuple(revoked if d.device_id == device_id else d for d in devices)
            device = revoked
        _save(path, DeviceRegistry(devices=devices))
    return device


def list_devices(settings: Settings, *, elder_id: int | None = None) -> list[ScreenDevice]:
    devices = load_registry(registry_path(settings)).devices
    return [d for d in devices if elder_id is None or d.elder_id == int(elder_id)]


def screen_path(elder_id: int, *, settings: Settings) -> str:
    """The kiosk page's path with the elder's shared token (prefix the server's base URL). New screens get
    their own revocable token from ``enrol_device``."""
    return f"/screen/{int(elder_id)}?token={device_token(elder_id, secret=screen_secret(settings))}"
