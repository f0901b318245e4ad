"""Containerised pass/fail check for the compose stack (the `test` profile's `check` service).

Run in its own container on the stack's network.  It proves, from outside the Kamailio
container:
1. Kamailio answers a SIP OPTIONS sent over UDP to its container address;
2. ``keepalive.list`` over JSON-RPC (HTTP on Kamailio's SIP TCP port) shows every --up
   destination with state 1 (UP) and every --down destination with state 2 (DOWN);
3. the same through ``kamcmd keepalive.list`` when Kamailio's /run/kamailio is shared with
   this container (the compose file does that with a volume; then kamcmd is required).
It retries until --timeout seconds have passed.  Exit code 0 = pass, 1 = fail.

    python3 check.py --kamailio 10.89.31.10 --up sip:10.89.31.20:5060 --down sip:10.89.31.21:5060
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable

KAMCMD_SOCKET = "/run/kamailio/kamailio_ctl"
STEP_S = 0.5


def options(host: str, port: int, timeout_s: float = 1.0) -> int | None:
    """Send one OPTIONS over UDP; the reply's status code, or None on timeout."""
    tag = f"{random.getrandbits(48):x}"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect((host, port))
        me, my_port = sock.getsockname()[:2]
        msg = (
            f"OPTIONS sip:{host}:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {me}:{my_port};branch=z9hG4bK{tag};rport\r\n"
            f"From: <sip:check@{me}>;tag={tag}\r\nTo: <sip:{host}:{port}>\r\n"
            f"Call-ID: check-{tag}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        )
        sock.send(msg.encode())
        try:
            data = sock.recv(65535)
        except OSError:
            return None
    m = re.match(rb"SIP/2\.0 (\d{3})", data)
    return int(m.group(1)) if m else None


def states_jsonrpc(host: str, port: int) -> dict[str, int]:
    body = json.dumps({"jsonrpc": "2.0", "method": "keepalive.list", "id": 1}).encode()
    req = urllib.request.Request(
        f"http://{host}:{port}/RPC", data=body, headers={"Content-Type": "application/json"}
    )
    # The stack's network is internal: never let a proxy variable send this elsewhere.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(req, timeout=2) as resp:
        reply = json.loads(resp.read())
    return {d["uri"]: int(d["state"]) for d in reply["result"]}


def states_kamcmd() -> dict[str, int]:
    out = subprocess.run(
        ["kamcmd", "-s", f"unix:{KAMCMD_SOCKET}", "keepalive.list"],
        capture_output=True, text=True, timeout=5, check=True,
    ).stdout  # fmt: skip
    return parse_kamcmd(out)


def parse_kamcmd(text: str) -> dict[str, int]:
    states = {}
    for block in text.split("}"):
        uri = re.search(r"^\s*uri: (\S+)", block, re.M)
        state = re.search(r"^\s*state: (\d+)", block, re.M)
        if uri and state:
            states[uri.group(1)] = int(state.group(1))
    return states


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kamailio", default=os.environ.get("KAMAILIO_IP", "10.89.31.10"))
    parser.add_argument("--port", type=int, default=5060)
    parser.add_argument("--up", action="append", default=[], help="destination expected UP")
    parser.add_argument("--down", action="append", default=[], help="destination expected DOWN")
    parser.add_argument("--timeout", type=float, default=float(os.environ.get("CHECK_TIMEOUT", 60)))
    args = parser.parse_args()
    want = {uri: 1 for uri in args.up} | {uri: 2 for uri in args.down}
    deadline = time.monotonic() + args.timeout
    # The compose file mounts Kamailio's /run/kamailio here: then kamcmd must agree as well.
    use_kamcmd = os.path.ismount(os.path.dirname(KAMCMD_SOCKET)) or os.path.exists(KAMCMD_SOCKET)

    code = None
    while time.monotonic() < deadline and code != 200:
        code = options(args.kamailio, args.port)
    print(f"OPTIONS sip:{args.kamailio}:{args.port} -> {code}", flush=True)
    if code != 200:
        print("FAIL: Kamailio does not answer OPTIONS")
        return 1

    def jsonrpc() -> dict[str, int]:
        return states_jsonrpc(args.kamailio, args.port)

    sources: list[tuple[str, Callable[[], dict[str, int]]]] = [("jsonrpc", jsonrpc)]
    if use_kamcmd:
        sources.append(("kamcmd", states_kamcmd))
    seen: dict[str, dict[str, int]] = {}
    errors: dict[str, str] = {}
    while True:
        for name, fetch in sources:
            try:
                seen[name] = fetch()
                errors.pop(name, None)
            except (OSError, ValueError, KeyError, subprocess.SubprocessError) as exc:
                seen[name] = {}  # Kamailio still starting, most likely
                errors[name] = str(exc)
        if all({u: s.get(u) for u in want} == want for s in seen.values()):
            for name, states in seen.items():
                print(f"PASS {name}: {states}")
            return 0
        if time.monotonic() >= deadline:
            print(f"FAIL after {args.timeout} s: wanted {want}, saw {seen}, errors {errors}")
            return 1
        time.sleep(STEP_S)


if __name__ == "__main__":
    sys.exit(main())
