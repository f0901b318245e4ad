"""``/proc`` probes: a Kamailio's processes, their CPU time, a UDP socket's drops."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from pathlib import Path

CLK_TCK = os.sysconf("SC_CLK_TCK")


def kamailio_pids(main_pid: int) -> list[int]:
    """The main process and every process it forked (all Kamailio processes)."""
    pids = [main_pid]
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == main_pid:
            pids.append(int(entry))
    return pids


def cpu_ns(pids: Iterable[int]) -> int:
    """CPU time (user+system, ns) of these processes, every thread included.

    ``/proc/<pid>/task/<tid>/schedstat`` (ns since the thread started) when available, else
    ``utime+stime`` from ``/proc/<pid>/stat`` (clock ticks).
    """
    total = 0
    for pid in pids:
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
            part = 0
            for tid in tasks:
                part += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
            total += part
        except (OSError, ValueError, IndexError):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) * 1_000_000_000 // CLK_TCK
            except OSError:
                pass
    return total


def udp_socket_stats(ip: str, port: int) -> dict[str, int] | None:
    """``drops`` and queued bytes of the UDP socket bound to ip:port (``/proc/net/udp``)."""
    want = f"{socket.inet_aton(ip)[::-1].hex().upper()}:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1] == want:
            return {"drops": int(f[-1]), "rx_queue": int(f[4].split(":")[1], 16)}
    return None
