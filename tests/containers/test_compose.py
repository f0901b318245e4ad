"""Container tier: docker-compose.yml run with podman-compose, probed and broken from outside.

Kamailio (with ka-kemi and the example config) runs in one container and probes the scripted
UAS in two others (peer-up answers 200, peer-flaky 503).  Everything is observed with
``kamcmd keepalive.list`` run inside the Kamailio container.  Bounds: a ping leaves at most one
interval after the change, its timeout is fr_timer, and the pinger ticks once a second.
"""

from __future__ import annotations

import errno
import importlib.util
import json
import re
import select
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

import pytest

from tests.containers.compose import PING_INTERVAL_S, PING_TIMEOUT_MS, REPO, Stack, podman_env

pytestmark = [pytest.mark.containers, pytest.mark.timeout(900)]

UP, DOWN = 1, 2
TICK_S = 1.0
SLACK_S = 1.5  # podman exec + kamcmd per poll, scheduling in three containers
DOWN_WITHIN_S = PING_INTERVAL_S + PING_TIMEOUT_MS / 1000 + TICK_S + SLACK_S
UP_WITHIN_S = PING_INTERVAL_S + TICK_S + SLACK_S
FIRST_STATE_WITHIN_S = 30.0


def load_check() -> ModuleType:
    """docker/check.py (the containerised check), for its OPTIONS sender."""
    spec = importlib.util.spec_from_file_location("ka_check", REPO / "docker" / "check.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def uri(stack: Stack, service: str, transport: str = "") -> str:
    return f"sip:{stack.ip(service)}:5060" + (f";transport={transport}" if transport else "")


@pytest.fixture(scope="module")
def settled(stack: Stack) -> Stack:
    """The stack once both configured destinations have their first state."""
    stack.wait_state(uri(stack, "peer-up"), UP, FIRST_STATE_WITHIN_S)
    stack.wait_state(uri(stack, "peer-flaky"), DOWN, FIRST_STATE_WITHIN_S)
    return stack


def test_destinations_on_other_containers_are_probed(settled: Stack) -> None:
    up, flaky = uri(settled, "peer-up"), uri(settled, "peer-flaky")
    listing = settled.kamcmd("keepalive.list")
    assert f"uri: {up}\n\towner: _params" in listing
    assert f"uri: {flaky}\n\towner: _params" in listing
    assert settled.states() == {up: UP, flaky: DOWN}
    info = settled.kamcmd("keepalive.info", up, "_params")
    assert "last code: 200" in info and "probing: active" in info
    assert "last code: 503" in settled.kamcmd("keepalive.info", flaky, "_params")
    log = settled.logs("kamailio")
    assert f"destination {up} owner _params: UNKNOWN -> UP" in log
    assert f"destination {flaky} owner _params: UNKNOWN -> DOWN" in log


def test_containerised_check_passes(settled: Stack) -> None:
    proc = settled.compose("--profile", "test", "run", "--rm", "check", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "OPTIONS" in proc.stdout and "-> 200" in proc.stdout
    assert "PASS jsonrpc" in proc.stdout and "PASS kamcmd" in proc.stdout


def test_containerised_check_fails_with_a_wrong_expectation(settled: Stack) -> None:
    kam, flaky = settled.ip("kamailio"), uri(settled, "peer-flaky")
    proc = settled.compose(
        "--profile", "test", "run", "--rm", "check",
        f"--kamailio={kam}", f"--up={flaky}", "--timeout=3", check=False,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "FAIL after 3.0 s" in proc.stdout


def test_stopped_peer_goes_down_and_up_again_when_started(settled: Stack) -> None:
    up, flaky = uri(settled, "peer-up"), uri(settled, "peer-flaky")
    cid = settled.container("peer-up")
    settled.podman("stop", "-t", "1", cid)
    down_s = settled.wait_state(up, DOWN, 30)
    assert down_s <= DOWN_WITHIN_S, f"DOWN after {down_s:.1f} s"
    settled.podman("start", cid)
    up_s = settled.wait_state(up, UP, 30)
    assert up_s <= UP_WITHIN_S, f"UP after {up_s:.1f} s"
    assert settled.states() == {up: UP, flaky: DOWN}
    print(f"stop: DOWN after {down_s:.2f} s; start: UP after {up_s:.2f} s")


def test_paused_peer_goes_down_and_up_again_when_unpaused(settled: Stack) -> None:
    up = uri(settled, "peer-up")
    cid = settled.container("peer-up")
    settled.podman("pause", cid)
    try:
        down_s = settled.wait_state(up, DOWN, 30)
        info = settled.kamcmd("keepalive.info", up, "_params")
    finally:
        settled.podman("unpause", cid)
    assert down_s <= DOWN_WITHIN_S, f"DOWN after {down_s:.1f} s"
    assert "last code: 408" in info  # no answer: a timeout, not an error reply
    up_s = settled.wait_state(up, UP, 30)
    assert up_s <= UP_WITHIN_S, f"UP after {up_s:.1f} s"
    print(f"pause: DOWN after {down_s:.2f} s; unpause: UP after {up_s:.2f} s")


def test_flaky_peer_follows_its_mode_file(settled: Stack) -> None:
    flaky = uri(settled, "peer-flaky")
    try:
        settled.exec("peer-flaky", "sh", "-c", "echo 200 > /run/peer-mode")
        assert settled.wait_state(flaky, UP, 30) <= UP_WITHIN_S
        settled.exec("peer-flaky", "sh", "-c", "echo blackhole > /run/peer-mode")
        assert settled.wait_state(flaky, DOWN, 30) <= DOWN_WITHIN_S
        assert "last code: 408" in settled.kamcmd("keepalive.info", flaky, "_params")
    finally:
        settled.exec("peer-flaky", "rm", "-f", "/run/peer-mode")
    assert wait_code(settled, flaky, 503)
    assert settled.states()[flaky] == DOWN


def wait_code(stack: Stack, destination: str, code: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if f"last code: {code}" in stack.kamcmd("keepalive.info", destination, "_params"):
            return True
        time.sleep(0.2)
    return False


def test_tcp_destination_added_by_rpc_probes_over_a_connection(settled: Stack) -> None:
    tcp = uri(settled, "peer-up", "tcp")
    peer_ip = settled.ip("peer-up")
    assert "Destination added" in settled.kamcmd("keepalive.add", tcp, "ci")
    try:
        settled.wait_state(tcp, UP, UP_WITHIN_S + 2)
        conns = settled.exec("kamailio", "ss", "-Htn", "state", "established").stdout
        assert f"{peer_ip}:5060" in conns, conns
    finally:
        assert "Destination removed" in settled.kamcmd("keepalive.del", tcp, "ci")
    assert tcp not in settled.states()


# ---- TCP keepalive on a REGISTER's connection (kemi/example.py) ------------------------------

KERNEL_DEFAULT_IDLE_S = 7200  # net.ipv4.tcp_keepalive_time in a fresh network namespace
DROP_SLACK_S = 3.0  # the kernel's timer, Kamailio noticing the reset, podman exec per poll
TIMED_OUT: list[tuple[str, int]] = []
"""(peer ip, port) of connections the kernel reset: Kamailio logs an ERROR for each."""

# Run in a peer container: two TCP connections to Kamailio, a REGISTER on one and an OPTIONS
# on the other; prints both local ports and reply codes, then holds both open until stdin
# closes (at most 300 s).
CLIENT = r"""
import json, random, re, signal, socket, sys

def transact(sock, method, host):
    me, port = sock.getsockname()[:2]
    tag = "%x" % random.getrandbits(48)
    aor = "sip:ci-client@" + host
    sock.sendall((
        f"{method} sip:{host} SIP/2.0\r\n"
        f"Via: SIP/2.0/TCP {me}:{port};branch=z9hG4bK{tag};rport\r\n"
        f"From: <{aor}>;tag={tag}\r\nTo: <{aor}>\r\nCall-ID: ci-{tag}\r\n"
        f"CSeq: 1 {method}\r\nContact: <sip:ci-client@{me}:{port};transport=tcp>\r\n"
        "Max-Forwards: 70\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n"
    ).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65535)
        if not chunk:
            break
        data += chunk
    m = re.match(rb"SIP/2\.0 (\d{3})", data)
    return int(m.group(1)) if m else None

signal.alarm(300)
host = sys.argv[1]
socks, out = [], {}
for method in ("REGISTER", "OPTIONS"):
    s = socket.create_connection((host, 5060), timeout=5)
    socks.append(s)
    out[method] = {"port": s.getsockname()[1], "code": transact(s, method, host)}
print(json.dumps(out), flush=True)
sys.stdin.read()
"""

# Run in the Kamailio container: SO_KEEPALIVE and the TCP_KEEP* values of Kamailio's socket to
# argv[1]:argv[2], read from a duplicate of the fd of the process that holds it (pidfd_getfd).
SOCKOPTS = r"""
import ctypes, json, os, socket, struct, sys

remote = "%08X:%04X" % (struct.unpack("<I", socket.inet_aton(sys.argv[1]))[0], int(sys.argv[2]))
with open("/proc/net/tcp") as f:
    inodes = [int(l.split()[9]) for l in f.readlines()[1:]
              if l.split()[2] == remote and l.split()[3] == "01"]
if len(inodes) != 1:
    sys.exit(f"established sockets to {remote}: {inodes}")
link = f"socket:[{inodes[0]}]"
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        fd = next(int(n) for n in os.listdir(f"/proc/{pid}/fd")
                  if os.readlink(f"/proc/{pid}/fd/{n}") == link)
    except (OSError, StopIteration):
        continue
    dup = libc.syscall(438, os.pidfd_open(int(pid)), fd, 0)  # pidfd_getfd
    if dup < 0:
        sys.exit(f"pidfd_getfd({pid}, {fd}): {os.strerror(ctypes.get_errno())}")
    with socket.socket(fileno=dup) as s:
        tcp = socket.IPPROTO_TCP
        print(json.dumps({
            "keepalive": s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            "idle": s.getsockopt(tcp, socket.TCP_KEEPIDLE),
            "count": s.getsockopt(tcp, socket.TCP_KEEPCNT),
            "interval": s.getsockopt(tcp, socket.TCP_KEEPINTVL),
        }))
    sys.exit(0)
sys.exit(f"no process holds {link}")
"""


def register_keepalive(stack: Stack) -> tuple[int, int, int]:
    """(idle, count, interval) the Kamailio container was started with (docker-compose.yml)."""
    values = tuple(
        int(stack.exec("kamailio", "printenv", f"KA_REGISTER_KEEPALIVE_{name}").stdout)
        for name in ("IDLE", "COUNT", "INTERVAL")
    )
    assert len(values) == 3
    return values  # type: ignore[return-value]


@contextmanager
def tcp_client(stack: Stack, service: str) -> Iterator[dict[str, dict[str, int]]]:
    """CLIENT running in ``service``'s container; yields its ports and codes, closes it after."""
    cmd = ["podman", "exec", "-i", stack.container(service), "python3", "-c", CLIENT,
           stack.ip("kamailio")]  # fmt: skip
    with subprocess.Popen(
        cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        env=podman_env(),
    ) as proc:  # fmt: skip
        assert proc.stdout is not None and proc.stdin is not None
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 30)
            line = proc.stdout.readline() if ready else ""
            assert line, f"client in {service} printed nothing (exit {proc.poll()})"
            yield json.loads(line)
        finally:
            proc.stdin.close()  # the client closes its connections and exits
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()


def timed_out_line(ip: str, port: int) -> re.Pattern[str]:
    """Core's read error for a connection the kernel reset; Kamailio 6 leaves the address out
    of the brackets (``([]:46358 -> []:5060)``), 5.6 prints it."""
    return re.compile(
        rf"error reading: Connection timed out \(110\) \(\[(?:{re.escape(ip)})?\]:{port} ->"
    )


def keepalive_timers(stack: Stack, peer_ip: str) -> dict[int, tuple[float, int]]:
    """``{peer port: (seconds until the keepalive timer fires, probes sent)}`` of Kamailio's
    established connections from ``peer_ip``, as ``ss -tno`` shows them inside its container."""
    out = stack.exec("kamailio", "ss", "-Htno", "state", "established", "dst", peer_ip).stdout
    timers = {}
    for m in re.finditer(rf"{re.escape(peer_ip)}:(\d+)\s+timer:\(keepalive,([^,]*),(\d+)\)", out):
        timers[int(m.group(1))] = (ss_seconds(m.group(2)), int(m.group(3)))
    return timers


def ss_seconds(text: str) -> float:
    """ss's timer text in seconds: "119min", "1min5sec", "6.512ms" (6.512 s: bookworm's
    iproute2), "6.620sec" (trixie's), "724ms", "2sec"."""
    m = re.fullmatch(r"(?:(\d+)min)?(?:(\d+)\.(\d{3})(?:ms|sec))?(?:(\d+)sec)?(?:(\d+)ms)?", text)
    assert m is not None, f"unexpected ss timer {text!r}"
    minutes, secs, frac, whole, ms = (int(g) if g else 0 for g in m.groups())
    return minutes * 60 + secs + frac / 1000 + whole + ms / 1000


def socket_options(stack: Stack, peer_ip: str, port: int) -> dict[str, int]:
    # --privileged: CAP_SYS_PTRACE for pidfd_getfd, also under Yama ptrace_scope 1
    proc = stack.podman("exec", "--privileged", stack.container("kamailio"), "python3", "-c",
                        SOCKOPTS, peer_ip, str(port))  # fmt: skip
    return json.loads(proc.stdout)


def tcp_list_ports(stack: Stack, peer_ip: str) -> set[int]:
    """Ports of the connections from ``peer_ip`` that Kamailio's ``core.tcp_list`` shows."""
    ports = set()
    for block in stack.kamcmd("core.tcp_list").split("}"):
        ip = re.search(r"^\s*src_ip: (\S+)", block, re.M)
        port = re.search(r"^\s*src_port: (\d+)", block, re.M)
        if ip and port and ip.group(1) == peer_ip:
            ports.add(int(port.group(1)))
    return ports


def test_register_over_tcp_gets_keepalive_on_its_connection(settled: Stack) -> None:
    """A REGISTER over TCP from another container: tcp_keepalive_enable() in kemi/example.py
    sets the compose file's values on that connection, and only on that one."""
    idle, count, interval = register_keepalive(settled)
    assert idle < KERNEL_DEFAULT_IDLE_S
    peer = settled.ip("peer-up")
    with tcp_client(settled, "peer-up") as client:
        reg, other = client["REGISTER"]["port"], client["OPTIONS"]["port"]
        assert client["REGISTER"]["code"] == 200 and client["OPTIONS"]["code"] == 200, client
        assert {reg, other} <= tcp_list_ports(settled, peer)
        timers = keepalive_timers(settled, peer)
        assert 0 < timers[reg][0] <= idle, timers
        assert timers[other][0] > KERNEL_DEFAULT_IDLE_S - 120, timers  # ss shows "119min"
        registered = socket_options(settled, peer, reg)
        untouched = socket_options(settled, peer, other)
    assert registered == {"keepalive": 1, "idle": idle, "count": count, "interval": interval}
    assert untouched["keepalive"] == 1 and untouched["idle"] == KERNEL_DEFAULT_IDLE_S, untouched
    log = settled.logs("kamailio")
    assert "tcp_keepalive: process" in log and "current connections: own file descriptor" in log
    assert "tcp_keepalive_enable:" not in log  # no error from the function
    print(
        f"REGISTER connection: ss timer {timers[reg][0]:.3f} s, options {registered}; "
        f"OPTIONS connection: ss timer {timers[other][0]:.0f} s, options {untouched}"
    )


def test_kernel_drops_the_register_connection_of_a_silent_client(settled: Stack) -> None:
    """The client's container stops answering TCP (an iptables DROP in its network namespace:
    a frozen container would not do, its kernel still answers the probes).  The REGISTER's
    connection is reset after idle + count x interval and leaves ``core.tcp_list``; the
    OPTIONS connection next to it (the kernel's 7200 s) stays."""
    tools = [tool for tool in ("nsenter", "iptables") if shutil.which(tool) is None]
    if tools:
        pytest.skip(f"needs {' and '.join(tools)} on the host")
    idle, count, interval = register_keepalive(settled)
    deadline_s = idle + count * interval
    peer, kam = settled.ip("peer-flaky"), settled.ip("kamailio")
    pid = settled.podman("inspect", "--format", "{{.State.Pid}}",
                         settled.container("peer-flaky")).stdout.strip()  # fmt: skip
    rule = ["-p", "tcp", "-s", kam, "--sport", "5060", "-j", "DROP"]
    nsenter = ["nsenter", "-t", pid, "-n", "iptables"]
    with tcp_client(settled, "peer-flaky") as client:
        t_reply = time.monotonic()
        reg, other = client["REGISTER"]["port"], client["OPTIONS"]["port"]
        assert client["REGISTER"]["code"] == 200, client
        subprocess.run([*nsenter, "-I", "INPUT", *rule], check=True, capture_output=True)
        try:
            probes_seen = 0
            gone_s = None
            while time.monotonic() - t_reply < deadline_s + DROP_SLACK_S + 2:
                ports = tcp_list_ports(settled, peer)
                if reg not in ports:
                    gone_s = time.monotonic() - t_reply
                    break
                probes_seen = max(probes_seen, keepalive_timers(settled, peer).get(reg, (0, 0))[1])
                time.sleep(0.2)
            assert gone_s is not None, f"still listed after {deadline_s + DROP_SLACK_S + 2} s"
            TIMED_OUT.append((peer, reg))
            assert other in ports, ports
            assert other in keepalive_timers(settled, peer)
        finally:
            subprocess.run([*nsenter, "-D", "INPUT", *rule], check=True, capture_output=True)
    assert deadline_s - 1 <= gone_s <= deadline_s + DROP_SLACK_S, f"dropped after {gone_s:.1f} s"
    assert probes_seen == count, f"ss showed up to {probes_seen} unanswered probes"
    assert timed_out_line(peer, reg).search(settled.logs("kamailio"))
    print(
        f"REGISTER connection dropped {gone_s:.2f} s after its reply "
        f"(idle {idle} + {count} x {interval} = {deadline_s} s), {probes_seen} probes seen"
    )


def test_network_is_internal(settled: Stack) -> None:
    """No route out of any container; the host reaches Kamailio only at its bridge address."""
    probe = (
        "import socket\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "try:\n    s.connect(('203.0.113.1', 5060)); print('routed')\n"
        "except OSError as e:\n    print('errno', e.errno)\n"
    )
    for service in ("kamailio", "peer-up", "peer-flaky"):
        out = settled.exec(service, "python3", "-c", probe).stdout.strip()
        assert out == f"errno {errno.ENETUNREACH}", f"{service}: {out}"
    kam = settled.ip("kamailio")
    assert load_check().options(kam, 5060, timeout_s=2.0) == 200


def test_kamailio_log_has_no_errors(settled: Stack) -> None:
    log = settled.logs("kamailio")
    assert "pinger started" in log
    bad = [
        line for line in log.splitlines()
        if "Traceback" in line or " ERROR: " in line or " CRITICAL: " in line or "BUG:" in line
    ]  # fmt: skip
    # Kamailio's core logs a read error for each connection the kernel reset on purpose.
    timed_out = [timed_out_line(ip, port) for ip, port in TIMED_OUT]
    bad = [line for line in bad if not any(rx.search(line) for rx in timed_out)]
    read_req = [line for line in bad if "error reading - c:" in line]
    assert len(read_req) <= len(TIMED_OUT), "\n".join(read_req)
    bad = [line for line in bad if line not in read_req]
    assert not bad, "\n".join(bad)
