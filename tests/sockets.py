"""Which sockets a process tree listens on, from ``/proc`` (Linux): TCP in LISTEN, UDP bound and unconnected.

Used by the listener attack tests: after ``assistant serve`` starts, nothing may listen beyond loopback.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import struct
from dataclasses import dataclass
from pathlib import Path

TCP_LISTEN = "0A"


@dataclass(frozen=True)
class Listener:
    proto: str  # tcp, tcp6, udp, udp6
    address: str
    port: int
    pid: int

    @property
    def loopback(self) -> bool:
        addr = ipaddress.ip_address(self.address)
        if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
            addr = addr.ipv4_mapped
        return addr.is_loopback


def _decode(hex_addr: str) -> tuple[str, int]:
    host, port = hex_addr.split(":")
    raw = bytes.fromhex(host)
    if len(raw) == 4:
        address = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:  # four little-endian 32-bit words
        words = struct.unpack("<4I", raw)
        address = socket.inet_ntop(socket.AF_INET6, struct.pack(">4I", *words))
    return address, int(port, 16)


def descendants(pids: list[int]) -> set[int]:
    """``pids`` and every process below them."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent_of[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = set(pids)
    changed = True
    while changed:
        changed = False
        for pid, ppid in parent_of.items():
            if ppid in found and pid not in found:
                found.add(pid)
                changed = True
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    return inodes


def listening_sockets(pids: list[int]) -> list[Listener]:
    """Listening sockets of ``pids`` and their children."""
    owner: dict[str, int] = {}
    for pid in descendants(pids):
        for inode in _socket_inodes(pid):
            owner[inode] = pid
    found = []
    for proto in ("tcp", "tcp6", "udp", "udp6"):
        path = Path("/proc/net") / proto
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            cols = line.split()
            local, remote, state, inode = cols[1], cols[2], cols[3], cols[9]
            if inode not in owner:
                continue
            if proto.startswith("tcp") and state != TCP_LISTEN:
                continue
            if proto.startswith("udp") and _decode(remote)[1] != 0:  # connected: a client socket
                continue
            address, port = _decode(local)
            found.append(Listener(proto=proto, address=address, port=port, pid=owner[inode]))
    return found
