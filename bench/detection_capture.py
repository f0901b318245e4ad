"""The detection benchmark's packet capture: ``tcpdump`` of every packet to and from the
peers' port 15300, read back as each side's pings and the peers' replies."""

from __future__ import annotations

import socket
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.procs import track


def start_capture(path: Path) -> subprocess.Popen[str]:
    proc = track(
        subprocess.Popen(
            [
                "tcpdump",
                "-i",
                "any",
                "-n",
                "-U",
                "--immediate-mode",
                "-B",
                "16384",
                "-s",
                "600",
                "--time-stamp-precision=nano",
                "-w",
                str(path),
                "udp port 15300",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
    )
    lines = []
    for _ in range(5):
        lines.append(proc.stderr.readline() if proc.stderr else "")
        if "listening" in lines[-1]:
            return proc
    raise RuntimeError(f"tcpdump did not start: {''.join(lines)}")


@dataclass
class Packet:
    ts: float
    src: str
    dst: str
    first_line: str
    call_id: str


def read_pcap(path: Path) -> list[Packet]:
    data = path.read_bytes()
    if len(data) < 24:
        return []
    magic = struct.unpack_from("<I", data, 0)[0]
    if magic == 0xA1B23C4D:
        endian, scale = "<", 1e-9
    elif magic == 0xA1B2C3D4:
        endian, scale = "<", 1e-6
    else:
        raise ValueError(f"unknown pcap magic {magic:#x}")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    l2 = {113: 16, 276: 20, 1: 14, 0: 4, 12: 0, 101: 0}.get(linktype)
    if l2 is None:
        raise ValueError(f"unsupported link type {linktype}")
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from(endian + "IIII", data, off)
        pkt = data[off + 16 : off + 16 + incl]
        off += 16 + incl
        ip = pkt[l2:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        ihl = (ip[0] & 15) * 4
        payload = ip[ihl + 8 :]
        text = payload[:600].decode("latin-1")
        first = text.split("\r\n", 1)[0]
        cid = ""
        for line in text.split("\r\n"):
            low = line[:8].lower()
            if low.startswith("call-id:") or low.startswith("i:"):
                cid = line.split(":", 1)[1].strip()
                break
        out.append(
            Packet(
                sec + frac * scale,
                socket.inet_ntoa(ip[12:16]),
                socket.inet_ntoa(ip[16:20]),
                first,
                cid,
            )
        )
    return out
