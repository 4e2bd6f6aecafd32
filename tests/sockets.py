"""What a process tree has open, from /proc (Linux): listening sockets and processes by environment."""

from __future__ import annotations

import ipaddress
import os


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants."""
    found = [pid]
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/children") as children:
                for child in children.read().split():
                    found += process_tree(int(child))
        except OSError:  # the thread or process ended meanwhile
            continue
    return found


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def _address(text: str, v6: bool) -> tuple[str, int]:
    host, port = text.split(":")
    raw = bytes.fromhex(host)
    # /proc/net shows each 32-bit word in host (little-endian) order
    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.IPv6Address(raw) if v6 else ipaddress.IPv4Address(raw)
    return str(address), int(port, 16)


def listening_sockets(pid: int) -> list[tuple[str, str, int]]:
    """(protocol, address, port) of every listening TCP socket and every unconnected UDP socket
    (one that takes packets from anyone) that the process tree of ``pid`` holds."""
    inodes = set()
    for member in process_tree(pid):
        inodes |= _socket_inodes(member)
    found = []
    for protocol in ("tcp", "tcp6", "udp", "udp6"):
        with open(f"/proc/{pid}/net/{protocol}") as table:
            for line in table.readlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                if inode not in inodes:
                    continue
                if protocol.startswith("tcp") and state != "0A":  # LISTEN
                    continue
                if protocol.startswith("udp") and not remote.endswith(":0000"):  # connected
                    continue
                found.append((protocol, *_address(local, protocol.endswith("6"))))
    return found


def processes_with_env(name: str, value: str) -> list[int]:
    """Pids of the processes whose environment has ``name=value``."""
    wanted = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/environ", "rb") as environ:
                    if wanted in environ.read().split(b"\0"):
                        found.append(int(entry))
            except OSError:
                continue
    return found


def command_line(pid: int) -> str:
    with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
        return cmdline.read().replace(b"\0", b" ").decode(errors="replace")
