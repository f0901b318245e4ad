"""tcp_keepalive_enable / tcp_keepalive_disable / tcp_keepalive_enable_uri against a real
Kamailio.

Everything is checked from outside Kamailio: the kernel's keepalive timer via sock_diag
(pyroute2 ``DiagSocket``), and the exact SO_KEEPALIVE/TCP_KEEPIDLE/TCP_KEEPCNT/TCP_KEEPINTVL
values by taking a duplicate of Kamailio's socket with ``pidfd_getfd`` (the test runs as root)
and reading them back with ``getsockopt``.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pyroute2 import DiagSocket
from pyroute2 import netns as pyroute2_netns

from tests.conftest import KamailioFactory, call_fn
from tests.harness.kamailio import Kamailio, free_port
from tests.harness.netns import Host
from tests.harness.sipclient import Reply, build_request, parse_reply

pytestmark = pytest.mark.integration

Address = tuple[str, int]
TCP_ESTABLISHED = 1
TIMER_KEEPALIVE = 2  # inet_diag idiag_timer: 1 retransmit, 2 keepalive, 3 TIME_WAIT, 4 probe
DEFAULT_IDLE = 7200  # Kamailio sets SO_KEEPALIVE on accepted sockets, system idle time


# ---- observing Kamailio's sockets from outside ---------------------------------------------


def diag(local: Address, remote: Address) -> dict[str, int] | None:
    """sock_diag row of the established socket ``local`` <-> ``remote`` (None if gone)."""
    family = socket.AF_INET6 if ":" in local[0] else socket.AF_INET
    with DiagSocket() as ds:
        ds.bind()
        for msg in ds.get_sock_stats(family=family, states=1 << TCP_ESTABLISHED):
            if (msg["idiag_src"], msg["idiag_sport"]) == local and (
                msg["idiag_dst"],
                msg["idiag_dport"],
            ) == remote:
                return {k: int(msg[k]) for k in ("idiag_timer", "idiag_expires", "idiag_inode")}
    return None


def process_tree(root: int) -> list[int]:
    pids = [root]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == root:
                    pids.append(int(entry))
    return pids


def _pidfd_getfd(pid: int, fd: int) -> int:
    pidfd = os.pidfd_open(pid)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        dup = int(libc.syscall(438, pidfd, fd, 0))
        if dup < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
        return dup
    finally:
        os.close(pidfd)


def _holder(kam: Kamailio, link: str) -> tuple[int, int] | None:
    """(pid, fd) of a Kamailio process holding ``link``."""
    assert kam.proc is not None
    for pid in process_tree(kam.proc.pid):
        with contextlib.suppress(OSError):
            for name in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{name}") == link:
                        return pid, int(name)
    return None


def readback(kam: Kamailio, local: Address, remote: Address) -> tuple[int, int, int, int]:
    """(SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPCNT, TCP_KEEPINTVL) of Kamailio's socket.

    Right after ``connect()`` the socket may still sit in the listen backlog (inode 0) or be
    in flight from tcp main to a worker (no process holds it): wait for it, bounded.
    """
    deadline = time.monotonic() + 5
    while True:
        row = diag(local, remote)
        assert row is not None, f"no established socket {local} <-> {remote}"
        link = f"socket:[{row['idiag_inode']}]"
        holder = _holder(kam, link) if row["idiag_inode"] else None
        if holder is not None:
            break
        if time.monotonic() > deadline:
            raise AssertionError(f"no Kamailio process holds {link}")
        time.sleep(0.05)
    pid, fd = holder
    with socket.socket(fileno=_pidfd_getfd(pid, fd)) as s:
        return (
            s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
            s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        )


def tcp_list(kam: Kamailio) -> dict[int, tuple[Address, Address]]:
    """conid -> (peer, Kamailio's address), from kamcmd core.tcp_list."""
    text = kam.ctl("core.tcp_list")
    rows = re.findall(
        r"id: (\d+).*?src_ip: (\S+)\s+src_port: (\d+)\s+dst_ip: (\S+)\s+dst_port: (\d+)",
        text,
        re.S,
    )
    return {int(i): ((si, int(sp)), (di, int(dp))) for i, si, sp, di, dp in rows}


def wait_until(predicate, timeout: float, step: float = 0.05) -> float:  # type: ignore[no-untyped-def]
    """Seconds until ``predicate()`` was true; TimeoutError after ``timeout``."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError(f"condition not met in {timeout} s")
        time.sleep(step)
    return time.monotonic() - start


def log_count(kam: Kamailio, text: str) -> int:
    return sum(text in line for line in kam.log().splitlines())


# ---- a SIP client that keeps its TCP connection ---------------------------------------------


class Client:
    """A TCP connection to Kamailio that sends MESSAGEs to ``sip:call@`` (or ``relay@``)."""

    def __init__(self, kam: Kamailio, sock: socket.socket | None = None) -> None:
        self.kam = kam
        self.sock = sock or socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(5)
        if sock is None:
            self.sock.bind(("127.0.0.1", 0))
        self.sock.connect((kam.ip, kam.port))
        self.buf = b""

    @property
    def addr(self) -> Address:
        host, port = self.sock.getsockname()[:2]
        return host, port

    @property
    def kam_side(self) -> tuple[Address, Address]:
        """(local, remote) of Kamailio's socket for this connection."""
        return (self.kam.ip, self.kam.port), self.addr

    def conid(self) -> int:
        for conid, (peer, _) in tcp_list(self.kam).items():
            if peer == self.addr:
                return conid
        raise AssertionError(f"{self.addr} not in core.tcp_list")

    def send(self, user: str, headers: dict[str, str]) -> Reply:
        ruri = f"sip:{user}@{self.kam.ip}:{self.kam.port}"
        self.sock.sendall(build_request("MESSAGE", ruri, self.addr, "tcp", headers))
        while True:
            while b"\r\n\r\n" not in self.buf:
                chunk = self.sock.recv(65535)
                if not chunk:
                    raise ConnectionError("Kamailio closed the connection")
                self.buf += chunk
            head, _, self.buf = self.buf.partition(b"\r\n\r\n")
            reply = parse_reply(head + b"\r\n\r\n")
            if reply.code >= 200:
                return reply

    def call(self, fn: str, *args: object, ints: bool = False) -> Reply:
        headers = {"X-Fn": fn}
        for i, arg in enumerate(args, 1):
            headers[f"X-Arg{i}"] = "<none>" if arg is None else str(arg)
        if ints:
            headers["X-Int"] = "1"
        reply = self.send("call", headers)
        assert reply.code == 200, reply.raw
        return reply

    def result(self, fn: str, *args: object, ints: bool = False) -> str:
        return self.call(fn, *args, ints=ints).header("x-result") or ""

    def pid(self) -> int:
        return int(self.call("ka_is_alive", "sip:127.0.0.1:9").header("x-pid") or 0)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def kam(kamailio_factory: KamailioFactory) -> Kamailio:
    return kamailio_factory()


@pytest.fixture
def clients(kam: Kamailio) -> Iterator[list[Client]]:
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


def other_worker_client(kam: Kamailio, first: Client, made: list[Client]) -> Client:
    """A new connection read by another TCP worker than ``first``'s (bounded retries)."""
    pid = first.pid()
    for _ in range(10):
        client = Client(kam)
        made.append(client)
        if client.pid() != pid:
            return client
    raise AssertionError("Kamailio gave every new connection to the same worker")


# ---- tests ---------------------------------------------------------------------------------


def test_enable_on_current_connection_sets_exact_values(kam: Kamailio, clients) -> None:
    c = Client(kam)
    clients.append(c)
    local, remote = c.kam_side
    before = readback(kam, local, remote)
    assert before[:2] == (1, DEFAULT_IDLE), "Kamailio's default: SO_KEEPALIVE with system idle"

    assert c.result("tcp_keepalive_enable", "11", "3", "7") == "1"
    answered = time.monotonic()  # the connection's last packet: the idle timer starts there
    row = diag(local, remote)
    since = time.monotonic() - answered
    assert row is not None and row["idiag_timer"] == TIMER_KEEPALIVE
    assert 11000 - since * 1000 - 20 <= row["idiag_expires"] <= 11000
    assert readback(kam, local, remote) == (1, 11, 3, 7)

    assert c.result("tcp_keepalive_enable", 5, 2, 3, ints=True) == "1"
    assert readback(kam, local, remote) == (1, 5, 2, 3)

    assert c.result("tcp_keepalive_disable") == "1"
    assert readback(kam, local, remote)[0] == 0
    row = diag(local, remote)
    assert row is not None and row["idiag_timer"] != TIMER_KEEPALIVE

    # conid == the current message's $conid: the same own-fd path
    assert c.result("tcp_keepalive_enable", "<conid>", 60, 5, 2) == "1"
    assert readback(kam, local, remote) == (1, 60, 5, 2)
    assert c.result("tcp_keepalive_disable", "<conid>") == "1"
    assert readback(kam, local, remote)[0] == 0
    assert log_count(kam, "uses current connections: own file descriptor") >= 1


def test_conid_of_a_connection_held_by_another_worker(kam: Kamailio, clients) -> None:
    first = Client(kam)
    clients.append(first)
    second = other_worker_client(kam, first, clients)
    conid = first.conid()

    started = time.monotonic()
    reply = second.call("tcp_keepalive_enable", conid, 13, 5, 9)
    elapsed = time.monotonic() - started
    assert reply.header("x-result") == "1"
    assert readback(kam, *first.kam_side) == (1, 13, 5, 9)
    assert readback(kam, *second.kam_side)[1] == DEFAULT_IDLE, "the caller's own is untouched"
    worker = reply.header("x-pid")
    assert log_count(kam, f"process {worker} uses other connections: pidfd_getfd") == 1
    print(f"enable by conid from another worker: {elapsed * 1000:.1f} ms round trip")

    assert second.result("tcp_keepalive_disable", str(conid)) == "1"
    assert readback(kam, *first.kam_side)[0] == 0

    # from a process with no TCP connection at all (a UDP worker)
    assert call_fn(kam, "tcp_keepalive_enable", conid, 21, 4, 6).header("x-result") == "1"
    assert readback(kam, *first.kam_side) == (1, 21, 4, 6)
    assert call_fn(kam, "tcp_keepalive_disable", conid).header("x-result") == "1"
    assert readback(kam, *first.kam_side)[0] == 0


def test_from_onreply_route_like_the_seed_example(kam: Kamailio, clients, uas_factory) -> None:
    """INVITE-like relay: in the reply route, enable on the callee's connection (current
    message) and on the caller's connection (its conid, kept from the request route), with
    the reply read by another worker than the one holding the caller's connection."""
    caller = Client(kam)
    clients.append(caller)
    caller_pid = caller.pid()
    for _ in range(6):  # each new callee connection may go to another TCP worker
        uas = uas_factory(udp=False)
        relay = {"X-Dst": f"sip:{uas.host}:{uas.port};transport=tcp"}
        reply = caller.send("relay", {**relay,
            "X-Fn": "tcp_keepalive_enable", "X-Arg1": "60", "X-Arg2": "5", "X-Arg3": "5",
            "X-Fn2": "tcp_keepalive_enable", "X-Fn2-Arg1": "<conid>",
            "X-Fn2-Arg2": "60", "X-Fn2-Arg3": "5", "X-Fn2-Arg4": "2"})  # fmt: skip
        assert reply.code == 200, reply.raw
        assert (reply.header("x-result"), reply.header("x-result2")) == ("1", "1"), reply.raw
        if int(reply.header("x-reply-pid") or 0) != caller_pid:
            break
    else:
        raise AssertionError("every reply was read by the caller's worker")
    reply_pid = reply.header("x-reply-pid")
    assert log_count(kam, f"process {reply_pid} uses other connections: pidfd_getfd") == 1
    callee = [c for c in tcp_list(kam).values() if c[0] == (uas.host, uas.port)]
    assert len(callee) == 1, tcp_list(kam)
    callee_peer, callee_local = callee[0]
    assert readback(kam, callee_local, callee_peer) == (1, 60, 5, 5)
    assert readback(kam, *caller.kam_side) == (1, 60, 5, 2)

    reply = caller.send("relay", {**relay, "X-Fn": "tcp_keepalive_disable",
        "X-Fn2": "tcp_keepalive_disable", "X-Fn2-Arg1": "<conid>"})  # fmt: skip
    assert (reply.header("x-result"), reply.header("x-result2")) == ("1", "1"), reply.raw
    assert readback(kam, callee_local, callee_peer)[0] == 0
    assert readback(kam, *caller.kam_side)[0] == 0


def test_enable_uri_on_the_connection_to_a_tcp_destination(kam: Kamailio, uas_factory) -> None:
    uas = uas_factory(udp=False)
    uri = f"sip:{uas.host}:{uas.port};transport=tcp"
    assert call_fn(kam, "ka_add_destination", uri, "tcpka").header("x-result") == "1"
    uas.wait_for(lambda reqs: any(r.method == "OPTIONS" for r in reqs), timeout=5)
    conns = [c for c in tcp_list(kam).values() if c[0] == (uas.host, uas.port)]
    assert len(conns) == 1
    peer, local = conns[0]

    assert call_fn(kam, "tcp_keepalive_enable_uri", uri, 20, 3, 4).header("x-result") == "1"
    assert readback(kam, local, peer) == (1, 20, 3, 4)
    no_transport = f"sip:{uas.host}:{uas.port}"
    assert (
        call_fn(kam, "tcp_keepalive_enable_uri", no_transport, 30, 2, 2).header("x-result") == "1"
    )
    assert readback(kam, local, peer) == (1, 30, 2, 2)
    assert call_fn(kam, "ka_del_destination", uri, "tcpka").header("x-result") == "1"


def _held_connection(
    kam: Kamailio, source: Address, target: Address, tls: bool = False
) -> socket.socket:
    """A connection from ``source`` that Kamailio has read a request on (so it holds it)."""
    family = socket.AF_INET6 if ":" in source[0] else socket.AF_INET
    raw = socket.socket(family, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    raw.bind(source)
    raw.settimeout(5)
    raw.connect(target)
    sock: socket.socket = raw
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        sock = ctx.wrap_socket(raw)
    host = f"[{target[0]}]" if family == socket.AF_INET6 else target[0]
    headers = {"X-Fn": "ka_is_alive", "X-Arg1": "sip:127.0.0.1:9"}
    sock.sendall(build_request("MESSAGE", f"sip:call@{host}:{target[1]}", sock.getsockname()[:2],
                               "tls" if tls else "tcp", headers))  # fmt: skip
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += sock.recv(65535)
    assert parse_reply(buf).code == 200
    return sock


def test_enable_uri_sets_every_connection_to_the_peer(kamailio_factory: KamailioFactory) -> None:
    """Several connections from one peer address (one TCP, one TLS), an IPv6 peer, and a peer
    given by host name: each connection whose peer matches gets the values, no other."""
    v6_port = free_port("::1")
    kam = kamailio_factory(tls=True, defines={"LISTEN_EXTRA": f"tcp:[::1]:{v6_port}"})
    peer_port = free_port("127.0.0.1")
    made = [
        _held_connection(kam, ("127.0.0.1", peer_port), (kam.ip, kam.port)),
        _held_connection(kam, ("127.0.0.1", peer_port), (kam.ip, kam.tls_port), tls=True),
        _held_connection(kam, ("::1", 0), ("::1", v6_port)),
        _held_connection(kam, ("127.0.0.1", 0), (kam.ip, kam.port)),
    ]
    try:
        tcp_side = ((kam.ip, kam.port), ("127.0.0.1", peer_port))
        tls_side = ((kam.ip, kam.tls_port), ("127.0.0.1", peer_port))
        v6_peer = made[2].getsockname()[:2]
        v6_side = (("::1", v6_port), (v6_peer[0], v6_peer[1]))
        other_side = ((kam.ip, kam.port), made[3].getsockname()[:2])
        both = f"sip:127.0.0.1:{peer_port}"
        assert call_fn(kam, "tcp_keepalive_enable_uri", both, 20, 3, 4).header("x-result") == "1"
        assert readback(kam, *tcp_side) == (1, 20, 3, 4)
        assert readback(kam, *tls_side) == (1, 20, 3, 4)
        assert readback(kam, *other_side)[1] == DEFAULT_IDLE, "another peer port: untouched"
        v6 = f"sip:[{v6_peer[0]}]:{v6_peer[1]};transport=tcp"
        assert call_fn(kam, "tcp_keepalive_enable_uri", v6, 21, 4, 5).header("x-result") == "1"
        assert readback(kam, *v6_side) == (1, 21, 4, 5)
        named = f"sip:localhost:{peer_port}"
        assert call_fn(kam, "tcp_keepalive_enable_uri", named, 22, 5, 6).header("x-result") == "1"
        assert readback(kam, *tcp_side) == (1, 22, 5, 6)
        assert readback(kam, *tls_side) == (1, 22, 5, 6)
        assert readback(kam, *v6_side) == (1, 21, 4, 5), "localhost's ::1 has no such port"
    finally:
        for sock in made:
            sock.close()


def test_tls_connection(kamailio_factory: KamailioFactory) -> None:
    """TLS runs over a TCP socket: the same functions work on it (current and by conid)."""
    kam = kamailio_factory(tls=True)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with ctx.wrap_socket(socket.create_connection((kam.ip, kam.tls_port), timeout=5)) as tls:
        ruri = f"sip:call@{kam.ip}:{kam.tls_port}"
        side = ((kam.ip, kam.tls_port), tls.getsockname())

        def result(*args: object) -> str | None:
            headers = {"X-Fn": str(args[0])}
            headers.update({f"X-Arg{i}": str(a) for i, a in enumerate(args[1:], 1)})
            tls.sendall(build_request("MESSAGE", ruri, tls.getsockname(), "tls", headers))
            buf = b""
            while b"\r\n\r\n" not in buf:
                buf += tls.recv(65535)
            return parse_reply(buf).header("x-result")

        assert result("tcp_keepalive_enable", 17, 2, 3) == "1"
        assert readback(kam, *side) == (1, 17, 2, 3)
        assert result("tcp_keepalive_disable") == "1"
        assert readback(kam, *side)[0] == 0
        (conid,) = [i for i, (peer, _) in tcp_list(kam).items() if peer == tls.getsockname()]
        assert call_fn(kam, "tcp_keepalive_enable", conid, 18, 2, 3).header("x-result") == "1"
        assert readback(kam, *side) == (1, 18, 2, 3)


BAD_ON_TCP: list[tuple[str, tuple[object, ...], bool, str]] = [
    ("tcp_keepalive_enable", (), False, "got 0 argument(s)"),
    ("tcp_keepalive_enable", ("60",), False, "got 1 argument(s)"),
    ("tcp_keepalive_enable", ("60", "5"), False, "got 2 argument(s)"),
    ("tcp_keepalive_enable", ("abc", "5", "5"), False, "idle must be a decimal integer"),
    ("tcp_keepalive_enable", ("-5", "5", "5"), False, "idle must be a decimal integer"),
    ("tcp_keepalive_enable", (-5, 5, 5), True, "idle must be in 1..32767, not -5"),
    ("tcp_keepalive_enable", (0, 5, 5), True, "idle must be in 1..32767, not 0"),
    ("tcp_keepalive_enable", ("60", "0", "5"), False, "count must be in 1..127, not 0"),
    ("tcp_keepalive_enable", ("60", "128", "5"), False, "count must be in 1..127, not 128"),
    ("tcp_keepalive_enable", ("60", "5", "99999999999999999999"), False, "interval must be"),
    ("tcp_keepalive_enable", ("60", "5", "1.5"), False, "interval must be a decimal integer"),
    ("tcp_keepalive_enable", (None, "5", "5"), False, "idle is missing"),
    ("tcp_keepalive_enable", ("99999", "60", "5", "5"), False, "unknown conid 99999"),
    ("tcp_keepalive_enable", ("0", "60", "5", "5"), False, "conid must be in 1..2147483647"),
    ("tcp_keepalive_enable", ("x", "60", "5", "5"), False, "conid must be a decimal integer"),
    ("tcp_keepalive_enable", ("1", "60", "5", "0"), False, "interval must be in"),
    ("tcp_keepalive_disable", ("abc",), False, "conid must be a decimal integer"),
    ("tcp_keepalive_disable", ("99999",), False, "unknown conid 99999"),
    ("tcp_keepalive_disable", ("-1",), False, "conid must be a decimal integer"),
    ("tcp_keepalive_disable", ("1", "2"), False, "wrong arguments"),
    ("tcp_keepalive_enable_uri", ("not a uri", 60, 5, 5), False, "tcp_keepalive_enable_uri: "),
    ("tcp_keepalive_enable_uri", ("sip:127.0.88.1:9;transport=udp", 60, 5, 5), False,
     "transport=udp has no TCP connection"),
    ("tcp_keepalive_enable_uri", ("sip:127.0.88.1:9", 60, 5, 5), False,
     "no TCP connection to 127.0.88.1:9"),
    ("tcp_keepalive_enable_uri", ("sip:127.0.88.1:9", 60, "x", 5), False, "count must be"),
    ("tcp_keepalive_enable_uri", ("sip:127.0.88.1:9",), False, "wrong arguments"),
]  # fmt: skip


def test_bad_inputs_return_minus_one_and_log(kam: Kamailio, clients) -> None:
    c = Client(kam)
    clients.append(c)
    local, remote = c.kam_side
    for fn, args, ints, message in BAD_ON_TCP:
        before = log_count(kam, message)
        assert c.result(fn, *args, ints=ints) == "-1", (fn, args)
        wait_until(lambda m=message, b=before: log_count(kam, m) > b, timeout=2)
    assert readback(kam, local, remote)[:2] == (1, DEFAULT_IDLE), "nothing was changed"

    # a closed connection's conid
    gone = Client(kam)
    assert gone.result("tcp_keepalive_enable", 30, 2, 2, ints=True) == "1"
    conid = gone.conid()
    gone.close()
    wait_until(lambda: conid not in tcp_list(kam), timeout=5)
    assert c.result("tcp_keepalive_enable", conid, 60, 5, 5) == "-1"
    assert c.result("tcp_keepalive_disable", conid) == "-1"
    assert log_count(kam, f"unknown conid {conid}") >= 2

    # a UDP message has no connection: without conid, and "$conid" of a UDP message
    for args in [(60, 5, 5), ("<conid>", 60, 5, 5)]:
        assert call_fn(kam, "tcp_keepalive_enable", *args).header("x-result") == "-1"
    assert call_fn(kam, "tcp_keepalive_disable").header("x-result") == "-1"
    assert log_count(kam, "not a TCP connection (message proto udp)") == 2
    assert log_count(kam, "conid is missing") == 1
    assert c.result("tcp_keepalive_enable", 60, 5, 5) == "1", "still serving"


# ---- permissions: pidfd_getfd refused -> tcpops ---------------------------------------------


class HardenedKamailio(Kamailio):
    """Kamailio as user ``kamailio`` with ``disable_core_dump=yes``: not dumpable, so another
    process of the same user may not take its file descriptors (EPERM/EACCES)."""

    def cfg_text(self) -> str:
        return super().cfg_text().replace("#!KAMAILIO\n", "#!KAMAILIO\ndisable_core_dump=yes\n", 1)


@pytest.fixture
def hardened_factory() -> Iterator[KamailioFactory]:
    if os.geteuid() != 0:
        pytest.skip("needs root to start Kamailio as another user")
    try:
        import pwd

        pwd.getpwnam("kamailio")
    except KeyError:
        pytest.skip("no 'kamailio' user (Debian package)")
    started: list[tuple[Kamailio, str]] = []

    def make(defines: dict[str, str | int] | None = None) -> Kamailio:
        workdir = tempfile.mkdtemp(prefix="ka-tcpka-")
        os.chmod(workdir, 0o777)
        kam = HardenedKamailio(Path(workdir), dict(defines or {}),
                               extra_args=["-u", "kamailio", "-g", "kamailio"])  # fmt: skip
        started.append((kam, workdir))
        return kam.start()

    yield make
    problems = []
    for kam, workdir in started:
        kam.stop()
        problems += kam.crash_lines()
        if problems:
            print(kam.log()[-20000:])
        shutil.rmtree(workdir, ignore_errors=True)
    assert not problems


def test_tcpops_fallback_when_pidfd_getfd_is_refused(hardened_factory, clients) -> None:
    kam = hardened_factory()
    first = Client(kam)
    clients.append(first)
    second = other_worker_client(kam, first, clients)
    reply = second.call("tcp_keepalive_enable", first.conid(), 14, 6, 10)
    assert reply.header("x-result") == "1"
    assert readback(kam, *first.kam_side) == (1, 14, 6, 10)
    worker = reply.header("x-pid")
    line = kam.wait_log(f"process {worker} uses other connections: tcpops fallback", timeout=2)
    assert "Permission denied" in line or "Operation not permitted" in line
    assert second.result("tcp_keepalive_disable", first.conid()) == "1"
    assert readback(kam, *first.kam_side)[0] == 0
    assert second.result("tcp_keepalive_enable", first.conid(), 15, 6, 10) == "1"
    assert log_count(kam, "uses other connections") == 1, "logged once per process"
    # the current connection needs no privilege
    assert first.result("tcp_keepalive_enable", 16, 3, 3) == "1"
    assert readback(kam, *first.kam_side) == (1, 16, 3, 3)


def test_pidfd_only_method_fails_cleanly_when_refused(hardened_factory, clients) -> None:
    kam = hardened_factory({"KA_TCP_KEEPALIVE_METHOD": '"pidfd"'})
    first = Client(kam)
    clients.append(first)
    second = other_worker_client(kam, first, clients)
    assert second.result("tcp_keepalive_enable", first.conid(), 14, 6, 10) == "-1"
    kam.wait_log(r"tcp_keepalive_enable: conid \d+: .*KA_TCP_KEEPALIVE_METHOD=pidfd", timeout=2)
    assert readback(kam, *first.kam_side)[1] == DEFAULT_IDLE


# ---- a peer whose link is cut is reset after idle + count * interval -------------------------


@pytest.mark.netns
def test_cut_link_resets_the_connection_after_the_probes(kamailio_factory, netns_host_factory):
    host: Host = netns_host_factory()
    port = free_port(host.gateway)
    gw = host.gateway
    kam = kamailio_factory(
        defines={"LISTEN_UDP": f"udp:{gw}:{port}", "LISTEN_TCP": f"tcp:{gw}:{port}"},
        ip=gw, port=port,
    )  # fmt: skip
    made = []
    try:
        for _ in range(2):
            sock = pyroute2_netns.create_socket(host.name, socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host.address, 0))
            made.append(Client(kam, sock))
        probed, control = made
        assert control.result("ka_is_alive", "sip:127.0.0.1:9") == "-1"  # just some traffic
        idle, count, interval = 1, 2, 1
        assert probed.result("tcp_keepalive_enable", idle, count, interval) == "1"
        conid = probed.conid()
        assert readback(kam, *probed.kam_side) == (1, idle, count, interval)
        host.link_down()
        row = diag(*probed.kam_side)
        assert row is not None and row["idiag_timer"] == TIMER_KEEPALIVE
        # the kernel's own timer: first probe when it expires, then ``count`` probes
        # ``interval`` apart, then the reset
        expected_at = time.monotonic() + row["idiag_expires"] / 1000 + count * interval

        wait_until(lambda: diag(*probed.kam_side) is None, timeout=10)
        late = time.monotonic() - expected_at
        print(f"kernel dropped the connection {late:+.2f} s from its timer's schedule "
              f"(idle {idle} + count {count} x interval {interval} s)")  # fmt: skip
        assert -0.25 <= late <= 0.8
        wait_until(lambda: conid not in tcp_list(kam), timeout=5)
        row = diag(*control.kam_side)
        assert row is not None and row["idiag_timer"] == TIMER_KEEPALIVE, "control untouched"
        assert row["idiag_expires"] > (DEFAULT_IDLE - 60) * 1000
    finally:
        for client in made:
            client.close()
