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

import os
import random
import time

from bench.addresses import sip_uri
from bench.cli import bench_args, header
from bench.detection_analysis import Mark, ModeResult, analyse
from bench.detection_capture import read_pcap, start_capture
from bench.detection_netns import NetnsHost
from bench.detection_poller import POLL_S, Poller
from bench.detection_tables import make_tables
from bench.kamailio import FR_TIMER_MS, PING_INTERVAL_S, CKeepalive, KaKemi, ka_defines
from bench.procs import stop_all, stop_proc, wait_until, workdir
from bench.recording import machine_facts, write_result
from bench.responder_proc import Responder

MODES = ("503", "timeout", "closed", "linkdown")


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


if __name__ == "__main__":
    main()
