"""Detection latency: how fast a failing peer is DOWN, and a recovered one UP, on the routing
path (``is_alive`` as a SIP worker sees it), for both sides at once with the same peers.

Peers, ``GROUP`` of each failure mode (one destination = one trial, all pinged every 5 s):

  503      the peer starts answering 503                       (127.0.150.Y)
  timeout  the peer stops answering (blackhole)                (127.0.151.Y)
  closed   the peer's UDP socket is closed (ICMP port unreachable)  (127.0.152.Y)
  linkdown the peer's link goes down: it lives in a network namespace behind a veth pair
           whose namespace side is set down (the root side keeps permanent neighbour
           entries, so pings are dropped, not queued for ARP)  (10.R.S.100+, needs root)

Both Kamailio instances (``children=2``, ``-x fm``, tm ``fr_timer`` 2000) listen on the root
end of the veth (the C side on 10.R.S.1, ka-kemi on .3) so they reach loopback and namespace
peers alike.  A poller asks each instance every ``POLL_S`` for the state of every trial
destination through its request route (``X-Uris`` -> ``X-States``).  ``tcpdump`` records every
packet to and from port 15300, giving each side's pings and the peers' replies.

* DOWN latency = first poll showing DOWN - first ping sent to the peer after it started
  failing (for ``linkdown`` that ping never reaches the wire: its time is the previous ping +
  5 s).  Target: <= fr_timer + 100 ms.
* UP latency = first poll showing UP (1) - first 2xx the peer sent after it came back to a
  ping sent less than fr_timer before (after a link cut the kernel may deliver pings it held
  during the cut; their replies end no transaction on either side).  Target: <= 100 ms.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Required, TypedDict

from bench.addresses import sip_uri
from bench.cli import bench_args, header
from bench.kamailio import FR_TIMER_MS, PING_INTERVAL_S, CKeepalive, KaKemi, ka_defines
from bench.procs import stop_all, stop_proc, track, wait_until, workdir
from bench.recording import machine_facts, write_result
from bench.responder_proc import Responder
from bench.stats import fmt, md_table, median, verdict

POLL_S = 0.005
MODES = ("503", "timeout", "closed", "linkdown")
DOWN_TARGET_MS = FR_TIMER_MS + 100
UP_TARGET_MS = 100


class ModeResult(TypedDict, total=False):
    """One side's trials of one failure mode: latencies (ms) and the peers they missed."""

    down_ms: Required[list[float]]
    up_ms: Required[list[float]]
    down_from_reply_ms: Required[list[float]]
    missed_down: Required[list[str]]
    missed_up: Required[list[str]]
    predicted_ping: Required[list[str]]
    missed_up_detail: list[dict[str, object]]


class Mark(TypedDict):
    """When a cycle made each mode's peers fail and recover, and when it saw all UP."""

    fail: dict[str, float]
    rec: dict[str, float]
    done: float


# ---------------------------------------------------------------------------------------
# network namespace peer host


@dataclass
class NetnsHost:
    count: int
    name: str = field(default_factory=lambda: f"kabench{os.getpid() % 100000}")
    prefix: str = ""

    def __post_init__(self) -> None:
        tag = os.getpid() % 100000
        self.root_if, self.host_if = f"kbr{tag}", f"kbh{tag}"
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        for _ in range(100):
            cand = f"10.{random.randint(200, 254)}.{random.randint(0, 255)}"
            if f"{cand}." not in routes:
                self.prefix = cand
                break
        self.gw_c, self.gw_ka = f"{self.prefix}.1", f"{self.prefix}.3"
        self.peers = [f"{self.prefix}.{100 + i}" for i in range(self.count)]
        steps = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.root_if, "type", "veth", "peer", "name", self.host_if],
            ["ip", "link", "set", self.host_if, "netns", self.name],
            ["ip", "addr", "add", f"{self.gw_c}/24", "dev", self.root_if],
            ["ip", "addr", "add", f"{self.gw_ka}/24", "dev", self.root_if],
            ["ip", "link", "set", self.root_if, "up"],
            ["ip", "-n", self.name, "link", "set", "lo", "up"],
            *[
                ["ip", "-n", self.name, "addr", "add", f"{p}/24", "dev", self.host_if]
                for p in self.peers
            ],
            ["ip", "-n", self.name, "link", "set", self.host_if, "up"],
        ]
        try:
            for argv in steps:
                subprocess.run(argv, check=True, capture_output=True, timeout=10)
            # Permanent neighbour entries on the root side: while the link is down a ping is
            # dropped at once, as on a cut cable, instead of waiting in the ARP queue and
            # reaching the peer seconds later, after its transaction expired.
            mac = self._mac(["ip", "-n", self.name, "link", "show", self.host_if])
            batch = "".join(
                f"neigh replace {p} lladdr {mac} dev {self.root_if} nud permanent\n"
                for p in self.peers
            )
            subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True,
                           capture_output=True, timeout=10)  # fmt: skip
        except Exception:
            self.close()
            raise
        time.sleep(0.5)  # DAD / carrier

    @staticmethod
    def _mac(argv: list[str]) -> str:
        out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=10).stdout
        return out.split("link/ether", 1)[1].split()[0]

    def link(self, state: str) -> None:
        subprocess.run(
            ["ip", "-n", self.name, "link", "set", self.host_if, state],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.root_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)


# ---------------------------------------------------------------------------------------
# capture


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


# ---------------------------------------------------------------------------------------
# poller


class Poller(threading.Thread):
    """Every POLL_S, asks each side for the routing-path state of every trial URI."""

    def __init__(self, sides: dict[str, tuple[str, list[str]]]) -> None:
        super().__init__(daemon=True)
        self.sides = sides  # side -> (kamailio ip, uris as that side's is_alive wants them)
        self.socks: dict[str, socket.socket] = {}
        for side, (ip, _) in sides.items():
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((ip, 0))
            s.setblocking(False)
            self.socks[side] = s
        self.states: dict[str, list[int]] = {}
        self.history: dict[str, list[tuple[float, list[int]]]] = {s: [] for s in sides}
        self.stop_flag = False
        self.seq = 0
        self.lock = threading.Lock()

    def request(self, side: str) -> bytes:
        ip, uris = self.sides[side]
        port = self.socks[side].getsockname()[1]
        self.seq += 1
        return (
            f"OPTIONS sip:state@{ip}:5060 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {ip}:{port};branch=z9hG4bK-poll-{self.seq};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:poll@{ip}>;tag=p{self.seq}\r\nTo: <sip:state@{ip}>\r\n"
            f"Call-ID: poll-{self.seq}@{ip}\r\nCSeq: 1 OPTIONS\r\n"
            f"X-Uris: {' '.join(uris)}\r\nContent-Length: 0\r\n\r\n"
        ).encode()

    def run(self) -> None:
        nxt = time.monotonic()
        while not self.stop_flag:
            for side, sock in self.socks.items():
                with contextlib.suppress(OSError):
                    sock.sendto(self.request(side), (self.sides[side][0], 5060))
            nxt += POLL_S
            while True:
                for side, sock in self.socks.items():
                    while True:
                        try:
                            data = sock.recv(65536)
                        except BlockingIOError:
                            break
                        now = time.time()
                        for line in data.decode("latin-1").split("\r\n"):
                            if line.lower().startswith("x-states:"):
                                states = [int(x) for x in line.split(":", 1)[1].split()]
                                with self.lock:
                                    self.states[side] = states
                                    self.history[side].append((now, states))
                remaining = nxt - time.monotonic()
                if remaining <= 0:
                    break
                time.sleep(min(remaining, 0.001))
            if nxt < time.monotonic() - 1:
                nxt = time.monotonic()

    def snapshot(self, side: str) -> list[int]:
        with self.lock:
            return list(self.states.get(side, []))

    def transitions(self, side: str, index: int, t0: float, t1: float) -> list[tuple[float, int]]:
        """(time, state) each time the polled state of one URI changed in [t0, t1]."""
        out: list[tuple[float, int]] = []
        with self.lock:
            for t, states in self.history[side]:
                if not t0 <= t <= t1 or index >= len(states):
                    continue
                if not out or out[-1][1] != states[index]:
                    out.append((t, states[index]))
        return out

    def first_time(self, side: str, index: int, after: float, want: int) -> float | None:
        with self.lock:
            for t, states in self.history[side]:
                if t >= after and index < len(states) and states[index] == want:
                    return t
        return None


# ---------------------------------------------------------------------------------------


def main() -> None:
    args = bench_args(__doc__.splitlines()[0])
    quick = args.quick
    header("detection latency", quick)
    per_mode = 20
    cycles = 1 if quick else 2
    facts = machine_facts()
    wd = workdir("detect")
    t_start = time.monotonic()
    host: NetnsHost | None = None
    notes: list[str] = []
    if os.geteuid() == 0:
        try:
            host = NetnsHost(per_mode)
        except Exception as exc:  # no netns support: run the other modes
            notes.append(f"linkdown skipped: cannot create a network namespace ({exc})")
    else:
        notes.append("linkdown skipped: needs root for a network namespace")
    modes = [m for m in MODES if m != "linkdown" or host is not None]
    peers: dict[str, list[str]] = {
        m: [f"127.0.{150 + i}.{y}" for y in range(1, per_mode + 1)]
        for i, m in enumerate(("503", "timeout", "closed"))
    }
    if host is not None:
        peers["linkdown"] = host.peers
    all_peers = [p for m in modes for p in peers[m]]
    ip_c, ip_ka = (host.gw_c, host.gw_ka) if host else ("127.99.3.1", "127.99.3.2")
    capture = None
    responders: list[Responder] = []
    kams = []
    results: dict[str, dict[str, ModeResult]] = {
        side: {
            m: {
                "down_ms": [],
                "up_ms": [],
                "down_from_reply_ms": [],
                "missed_down": [],
                "missed_up": [],
                "predicted_ping": [],
            }
            for m in modes
        }
        for side in ("c", "ka")
    }
    try:
        capture = start_capture(wd / "capture.pcap")
        lo_peers = [p for m in ("503", "timeout", "closed") for p in peers[m]]
        r_lo = Responder(
            wd / "resp-lo.bin", ["--addrs", ",".join(lo_peers), "--answer", "all", "--control"]
        ).start()
        responders.append(r_lo)
        r_ns = None
        if host is not None:
            r_ns = Responder(
                wd / "resp-ns.bin",
                ["--addrs", ",".join(host.peers), "--answer", "all", "--control"],
                prefix=["ip", "netns", "exec", host.name],
            ).start()
            responders.append(r_ns)
        uris = [sip_uri(p) for p in all_peers]
        c = CKeepalive(
            workdir=wd / "c",
            ip=ip_c,
            port=5060,
            children=2,
            shm_mb=64,
            destinations=uris,
            defines={"BENCH_MODE": "state"},
        )
        k = KaKemi(
            workdir=wd / "ka",
            ip=ip_ka,
            port=5060,
            children=2,
            shm_mb=64,
            defines=ka_defines(uris, max_destinations=len(uris), BENCH_MODE="state"),
        )
        kams = [c, k]
        for kam in kams:
            kam.start()
        poller = Poller(
            {
                "c": (ip_c, [f"{p}:15300" for p in all_peers]),  # C compares without "sip:"
                "ka": (ip_ka, uris),
            }
        )
        poller.start()
        index = {p: i for i, p in enumerate(all_peers)}

        def all_state(want: int) -> bool:
            return all(
                (s := poller.snapshot(side))
                and len(s) == len(all_peers)
                and all(x == want for x in s)
                for side in ("c", "ka")
            )

        wait_until(lambda: all_state(1), PING_INTERVAL_S + 4)
        time.sleep(PING_INTERVAL_S + 1)  # every destination answered at least once on both sides
        marks: list[Mark] = []
        for cycle in range(cycles):
            time.sleep(random.uniform(0, PING_INTERVAL_S))  # random phase vs the pings
            t_fail: dict[str, float] = {}
            t_fail["503"] = time.time()
            r_lo.command(f"set 503 {','.join(peers['503'])}")
            t_fail["timeout"] = time.time()
            r_lo.command(f"set drop {','.join(peers['timeout'])}")
            t_fail["closed"] = time.time()
            r_lo.command(f"close {','.join(peers['closed'])}")
            if host is not None:
                t_fail["linkdown"] = time.time()
                host.link("down")
            ok = wait_until(lambda: all_state(2), PING_INTERVAL_S + FR_TIMER_MS / 1000 + 3)
            print(f"  cycle {cycle + 1}: all DOWN {'yes' if ok else 'NO (timeout)'}", flush=True)
            time.sleep(random.uniform(0, PING_INTERVAL_S))
            t_rec: dict[str, float] = {}
            t_rec["503"] = time.time()
            r_lo.command(f"set 200 {','.join(peers['503'])}")
            t_rec["timeout"] = time.time()
            r_lo.command(f"set 200 {','.join(peers['timeout'])}")
            t_rec["closed"] = time.time()
            r_lo.command(f"open {','.join(peers['closed'])}")
            if host is not None:
                t_rec["linkdown"] = time.time()
                host.link("up")
            ok = wait_until(lambda: all_state(1), PING_INTERVAL_S + 3)
            print(
                f"  cycle {cycle + 1}: all UP again {'yes' if ok else 'NO (timeout)'}", flush=True
            )
            marks.append({"fail": t_fail, "rec": t_rec, "done": time.time()})
        # the capture's last packets must be written before tcpdump stops: with a buffered
        # (TPACKET_V3) capture the tail of the run would be lost and look like a missed UP
        time.sleep(1.5)
        poller.stop_flag = True
        poller.join(timeout=2)
        errors = {kam.side: kam.log_errors() for kam in kams}
    finally:
        for kam in kams:
            kam.stop()
        for r in responders:
            r.stop()
        stop_proc(capture)
        if host is not None:
            host.close()
        stop_all()
    packets = read_pcap(wd / "capture.pcap")
    analyse(packets, poller, marks, peers, modes, index, {"c": ip_c, "ka": ip_ka}, results)
    tables = make_tables(results, modes, notes)
    print("\n" + tables["ratios"] + "\n\n" + tables["sides"] + "\n\n" + tables["targets"])
    for n in notes:
        print("note:", n)
    print(f"({time.monotonic() - t_start:.0f} s, {cycles} cycle(s) x {per_mode} peers per mode)")
    result = {
        "benchmark": "detection",
        "mode": "quick" if quick else "full",
        "machine": facts,
        "params": {
            "children": 2,
            "shm_mb": 64,
            "allocator": "fm",
            "fr_timer_ms": FR_TIMER_MS,
            "ping_interval_s": PING_INTERVAL_S,
            "poll_s": POLL_S,
            "cycles": cycles,
            "peers_per_mode": per_mode,
            "modes": modes,
        },
        "results": results,
        "log_errors": errors,
        "notes": notes,
        "tables": tables,
    }
    if not args.no_json:
        print("wrote", write_result("detection", result))


def analyse(
    packets: list[Packet],
    poller: Poller,
    marks: list[Mark],
    peers: dict[str, list[str]],
    modes: list[str],
    index: dict[str, int],
    side_ip: dict[str, str],
    results: dict[str, dict[str, ModeResult]],
) -> None:
    seen: set[tuple[str, str, str, str]] = set()
    reqs: dict[tuple[str, str], list[float]] = {}  # (side ip, peer) -> first-transmission times
    sent: dict[tuple[str, str, str], float] = {}  # (side ip, peer, Call-ID) -> first sent
    replies: dict[tuple[str, str], list[tuple[float, int, str]]] = {}  # -> (t, code, Call-ID)
    for p in sorted(packets, key=lambda p: p.ts):
        key = (p.src, p.dst, p.call_id, p.first_line)
        if key in seen:
            continue  # loopback packets are captured twice; retransmissions too
        seen.add(key)
        if p.first_line.startswith("OPTIONS "):
            reqs.setdefault((p.src, p.dst), []).append(p.ts)
            sent.setdefault((p.src, p.dst, p.call_id), p.ts)
        elif p.first_line.startswith("SIP/2.0 "):
            code = int(p.first_line.split()[1])
            replies.setdefault((p.dst, p.src), []).append((p.ts, code, p.call_id))
    for side, ip in side_ip.items():
        for m in modes:
            res = results[side][m]
            for mark in marks:
                t_fail, t_rec = mark["fail"][m], mark["rec"][m]
                for peer in peers[m]:
                    pings = reqs.get((ip, peer), [])
                    after = [t for t in pings if t >= t_fail]
                    before = [t for t in pings if t < t_fail]
                    t_down = poller.first_time(side, index[peer], t_fail, 2)
                    if t_down is None or t_down > t_rec:
                        res["missed_down"].append(peer)
                    else:
                        ref = after[0] if after and after[0] <= t_down else None
                        if ref is None and before:
                            ref = before[-1] + PING_INTERVAL_S  # never on the wire
                            res["predicted_ping"].append(peer)
                        if ref is not None:
                            res["down_ms"].append((t_down - ref) * 1000)
                        fails = [
                            t
                            for t, code, _ in replies.get((ip, peer), [])
                            if t >= t_fail and code >= 300
                        ]
                        if fails and fails[0] <= t_down:
                            res["down_from_reply_ms"].append((t_down - fails[0]) * 1000)
                    # the first 2xx to a ping still pending: a reply to a ping older than
                    # fr_timer (e.g. one the kernel held while the link was down) ends no
                    # transaction on either side and cannot count
                    ok2xx = [
                        t
                        for t, code, cid in replies.get((ip, peer), [])
                        if t >= t_rec
                        and 200 <= code < 300
                        and t - sent.get((ip, peer, cid), float("-inf")) <= FR_TIMER_MS / 1000
                    ]
                    t_up = poller.first_time(side, index[peer], t_rec, 1)
                    if not ok2xx or t_up is None or t_up > mark["done"]:
                        res["missed_up"].append(peer)
                        res.setdefault("missed_up_detail", []).append(
                            {
                                "peer": peer,
                                "t_rec": t_rec,
                                "done": mark["done"],
                                "t_up": t_up,
                                "replies": [
                                    (t, code, cid, sent.get((ip, peer, cid)))
                                    for t, code, cid in replies.get((ip, peer), [])
                                    if t_rec - 6 <= t <= mark["done"] + 1
                                ],
                                "pings": [
                                    t
                                    for t in reqs.get((ip, peer), [])
                                    if t_rec - 6 <= t <= mark["done"] + 1
                                ],
                                "states": poller.transitions(
                                    side, index[peer], t_rec - 6, mark["done"] + 1
                                ),
                            }
                        )
                    else:
                        res["up_ms"].append((t_up - ok2xx[0]) * 1000)


def _stat(values: list[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return median(values), max(values)


def make_tables(
    results: dict[str, dict[str, ModeResult]], modes: list[str], notes: list[str]
) -> dict[str, str]:
    ratio_rows, side_rows = [], []
    for m in modes:
        kd, cd = _stat(results["ka"][m]["down_ms"]), _stat(results["c"][m]["down_ms"])
        ku, cu = _stat(results["ka"][m]["up_ms"]), _stat(results["c"][m]["up_ms"])
        ratio_rows.append(
            [
                m,
                fmt(kd[0] / cd[0]) if kd[0] and cd[0] else "–",
                fmt(ku[0] / cu[0]) if ku[0] and cu[0] else "–",
                f"{verdict(kd[1], DOWN_TARGET_MS, ' ms')} (max {fmt(kd[1])} ms)",
                f"{verdict(ku[1], UP_TARGET_MS, ' ms')} (max {fmt(ku[1])} ms)",
            ]
        )
        for side in ("ka", "c"):
            r = results[side][m]
            d, u, dr = _stat(r["down_ms"]), _stat(r["up_ms"]), _stat(r["down_from_reply_ms"])
            side_rows.append(
                [
                    m,
                    "ka-kemi" if side == "ka" else "C",
                    f"{fmt(d[0])} / {fmt(d[1])}",
                    len(r["down_ms"]),
                    f"{fmt(dr[0])} / {fmt(dr[1])}" if r["down_from_reply_ms"] else "–",
                    f"{fmt(u[0])} / {fmt(u[1])}",
                    len(r["up_ms"]),
                    len(r["missed_down"]) + len(r["missed_up"]),
                    len(r["predicted_ping"]),
                ]
            )
    ratios = md_table(
        [
            "failure",
            "DOWN p50 ka/C",
            "UP p50 ka/C",
            f"ka-kemi DOWN ≤ fr_timer+100 ms ({DOWN_TARGET_MS} ms)",
            f"ka-kemi UP ≤ {UP_TARGET_MS} ms after first 2xx",
        ],
        ratio_rows,
    )
    sides = md_table(
        [
            "failure",
            "side",
            "DOWN ms p50 / max (from 1st failing ping)",
            "trials",
            "DOWN ms p50 / max (from the failure reply)",
            "UP ms p50 / max (from 1st 2xx)",
            "trials",
            "missed",
            "ping time predicted",
        ],
        side_rows,
    )
    target_rows = []
    for m in modes:
        r = results["ka"][m]
        d, u = _stat(r["down_ms"]), _stat(r["up_ms"])
        missed_d, missed_u = len(r["missed_down"]), len(r["missed_up"])
        target_rows.append(
            [
                f"{m}: DOWN ≤ {DOWN_TARGET_MS} ms after the first failing ping (max)",
                f"{fmt(d[1])} ms" + (f", {missed_d} never DOWN" if missed_d else ""),
                "MISSED" if missed_d else verdict(d[1], DOWN_TARGET_MS, " ms"),
            ]
        )
        target_rows.append(
            [
                f"{m}: UP ≤ {UP_TARGET_MS} ms after the first 2xx (max)",
                f"{fmt(u[1])} ms" + (f", {missed_u} never UP" if missed_u else ""),
                "MISSED" if missed_u else verdict(u[1], UP_TARGET_MS, " ms"),
            ]
        )
    targets = md_table(["target (ka-kemi)", "measured", "verdict"], target_rows)
    return {"ratios": ratios, "sides": sides, "targets": targets}


if __name__ == "__main__":
    main()
