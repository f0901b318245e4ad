"""kemi/tcp_keepalive.py on a FakeKsr, with real sockets of this test process: path choice
(own fd, pidfd_getfd, tcpops), the method define, and every error a script can hit."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ka_core.tcpka import TcpConn
from kemi import tcp_fds, tcp_keepalive
from tests.unit.conftest import Glue, GlueFactory
from tests.unit.fake_ksr import FakeKsr
from tests.unit.test_tcpka import PSX, TCP_LIST


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        client = socket.create_connection(server.getsockname())
        accepted, _ = server.accept()
    with client, accepted:
        yield accepted, client


def _keepalive(sock: socket.socket) -> tuple[int, int, int, int]:
    return (
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
        sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
    )


def _message_on(ksr: FakeKsr, sock: socket.socket, proto: str = "tcp") -> None:
    local, peer = sock.getsockname(), sock.getpeername()
    ksr.connection = (proto, 7, peer[0], peer[1], local[0], local[1])


def _uses(ksr: FakeKsr, what: str) -> list[str]:
    return [t for t in ksr.texts("info") if f"uses {what}" in t]


def test_current_connection_own_fd(glue: Glue, pair) -> None:  # type: ignore[no-untyped-def]
    accepted, _ = pair
    _message_on(glue.ksr, accepted)
    assert tcp_keepalive.tcp_keepalive_enable("11", 3, "7") == 1
    assert _keepalive(accepted) == (1, 11, 3, 7)
    assert tcp_keepalive.tcp_keepalive_enable(7, 12, 4, 8) == 1  # conid == $conid: same path
    assert _keepalive(accepted) == (1, 12, 4, 8)
    assert tcp_keepalive.tcp_keepalive_disable() == 1
    assert _keepalive(accepted)[0] == 0
    assert len(_uses(glue.ksr, "current connections: own file descriptor")) == 1
    assert accepted.fileno() >= 0  # only duplicates were closed
    accepted.sendall(b"still open")


def test_errors_are_minus_one_and_logged(glue: Glue, pair, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ksr = glue.ksr
    _message_on(ksr, pair[0], proto="udp")
    assert tcp_keepalive.tcp_keepalive_enable(60, 5, 5) == -1
    assert "not a TCP connection (message proto udp)" in ksr.texts("err")[-1]
    assert tcp_keepalive.tcp_keepalive_enable(60, 5) == -1
    assert "got 2 argument(s)" in ksr.texts("err")[-1]
    assert tcp_keepalive.tcp_keepalive_disable(1, 2) == -1
    assert "wrong arguments" in ksr.texts("err")[-1]
    assert tcp_keepalive.tcp_keepalive_disable(99) == -1
    assert "core.tcp_list via jsonrpcs failed: code 500" in ksr.texts("err")[-1]
    ksr.rpc["core.tcp_list"] = (200, TCP_LIST)
    assert tcp_keepalive.tcp_keepalive_disable(99) == -1
    assert "unknown conid 99" in ksr.texts("err")[-1]
    assert tcp_keepalive.tcp_keepalive_enable(1, 0, 5, 5) == -1
    monkeypatch.setattr(sys, "platform", "darwin")
    assert tcp_keepalive.tcp_keepalive_enable(60, 5, 5) == -1
    assert "need Linux (this is darwin)" in ksr.texts("err")[-1]
    assert not any("internal error" in x for x in ksr.texts())


def _refused(conn: TcpConn, pid: int, on_procnet: object) -> int:
    raise tcp_fds.Refused("/proc/31707/fd: Permission denied")


def test_other_connections_fall_back_to_tcpops_when_refused(
    glue: Glue,
    pair,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    ksr = glue.ksr
    _message_on(ksr, pair[0], proto="udp")
    ksr.rpc["core.tcp_list"] = (200, TCP_LIST)
    ksr.rpc["core.psx"] = (200, PSX)
    monkeypatch.setattr(tcp_fds, "fd_from_tcp_main", _refused)
    assert tcp_keepalive.tcp_keepalive_enable("1", 60, 5, 2) == 1
    assert tcp_keepalive.tcp_keepalive_disable(3) == 1
    assert ksr.tcpops == [("enable", 1, 60, 5, 2), ("disable", 3)]
    assert _uses(ksr, "other") == [
        f"tcp_keepalive: process {os.getpid()} uses other connections: tcpops "
        "fallback (/proc/31707/fd: Permission denied)"
    ]
    ksr.tcpops_rc = -1
    assert tcp_keepalive.tcp_keepalive_enable(1, 60, 5, 2) == -1
    assert "conid 1: tcpops failed (rc -1)" in ksr.texts("err")[-1]
    ksr.tcpops = None
    assert tcp_keepalive.tcp_keepalive_enable(1, 60, 5, 2) == -1
    assert "tcpops.so is not loaded" in ksr.texts("err")[-1]


@pytest.mark.parametrize("method", ["pidfd", "tcpops"])
def test_method_define_chooses_the_path(
    glue_factory: GlueFactory,
    pair,
    monkeypatch,
    method: str,  # type: ignore[no-untyped-def]
) -> None:
    glue = glue_factory(KA_TCP_KEEPALIVE_METHOD=f'"{method.upper()}"')
    ksr = glue.ksr
    _message_on(ksr, pair[0], proto="udp")
    ksr.rpc["core.tcp_list"] = (200, TCP_LIST)
    ksr.rpc["core.psx"] = (200, PSX)
    monkeypatch.setattr(tcp_fds, "fd_from_tcp_main", _refused)
    if method == "pidfd":
        assert tcp_keepalive.tcp_keepalive_enable(1, 60, 5, 2) == -1
        assert "Permission denied (KA_TCP_KEEPALIVE_METHOD=pidfd)" in ksr.texts("err")[-1]
        assert ksr.tcpops == []
    else:
        assert tcp_keepalive.tcp_keepalive_enable(1, 60, 5, 2) == 1
        assert ksr.tcpops == [("enable", 1, 60, 5, 2)]
        assert _uses(ksr, "other connections: tcpops (KA_TCP_KEEPALIVE_METHOD=tcpops)")


HOLDER = """
import socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
client = socket.create_connection(srv.getsockname()); held, _ = srv.accept()
print(held.getsockname()[1], held.getpeername()[1], flush=True)
sys.stdin.readline()
print(*(held.getsockopt(level, opt) for level, opt in (
    (socket.SOL_SOCKET, socket.SO_KEEPALIVE), (socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
    (socket.IPPROTO_TCP, socket.TCP_KEEPCNT), (socket.IPPROTO_TCP, socket.TCP_KEEPINTVL))),
    flush=True)
"""


def test_pidfd_path_reaches_a_socket_another_process_holds(glue: Glue) -> None:
    """A stand-in for tcp main: another process holds the connection; the glue finds it
    through core.psx/core.tcp_list, takes it with pidfd_getfd and sets keepalive on it."""
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as holder:
        _use_holder(glue, holder)


def _use_holder(glue: Glue, holder: subprocess.Popen[str]) -> None:
    try:
        assert holder.stdout is not None and holder.stdin is not None
        local_port, peer_port = map(int, holder.stdout.readline().split())
        row = {"id": 9, "type": "TCP", "state": "CONN_OK", "src_ip": "127.0.0.1",
               "src_port": peer_port, "dst_ip": "127.0.0.1", "dst_port": local_port}  # fmt: skip
        glue.ksr.rpc["core.tcp_list"] = (200, json.dumps({"jsonrpc": "2.0", "result": [row]}))
        psx = [{"IDX": 10, "PID": holder.pid, "DSC": "tcp main process"}]
        glue.ksr.rpc["core.psx"] = (200, json.dumps({"jsonrpc": "2.0", "result": psx}))
        assert tcp_keepalive.tcp_keepalive_enable(9, 31, 4, 6) == 1, glue.ksr.texts("err")
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().split() == ["1", "31", "4", "6"]
        assert _uses(glue.ksr, f"other connections: pidfd_getfd on tcp main pid {holder.pid}")
    finally:
        holder.kill()
        holder.wait()


def test_enable_uri(glue: Glue, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    ksr = glue.ksr
    ksr.rpc["core.tcp_list"] = (200, TCP_LIST)
    done: list[tuple[int, object]] = []
    monkeypatch.setattr(
        tcp_keepalive.TcpPaths, "set_conn", lambda self, conn, v: done.append((conn.conid, v))
    )
    assert (
        tcp_keepalive.tcp_keepalive_enable_uri("sip:127.0.0.1:39340;transport=tls", 20, 3, 4) == 1
    )
    assert tcp_keepalive.tcp_keepalive_enable_uri("[::1]:38238", "20", "3", "4") == 1
    assert done == [(3, (20, 3, 4)), (2, (20, 3, 4))]
    assert tcp_keepalive.tcp_keepalive_enable_uri("sip:127.0.0.1:1", 20, 3, 4) == -1
    assert "no TCP connection to 127.0.0.1:1" in ksr.texts("err")[-1]
    assert (
        tcp_keepalive.tcp_keepalive_enable_uri("sip:127.0.0.1:39340;transport=udp", 20, 3, 4) == -1
    )
    assert "transport=udp has no TCP connection" in ksr.texts("err")[-1]
    assert tcp_keepalive.tcp_keepalive_enable_uri(None, 20, 3, 4) == -1
    assert "uri must be a string" in ksr.texts("err")[-1]
    assert tcp_keepalive.tcp_keepalive_enable_uri("sip:no-such-host.invalid", 20, 3, 4) == -1
    assert "cannot resolve no-such-host.invalid" in ksr.texts("err")[-1]
    done.clear()
    assert tcp_keepalive.tcp_keepalive_enable_uri("sip:localhost:39340;transport=tcp", 1, 1, 1) == 1
    assert [c for c, _ in done] == [3], "a host name: every address it resolves to"


def test_inode_lookup_real_kernel(pair) -> None:  # type: ignore[no-untyped-def]
    for sock in pair:
        local, remote = sock.getsockname(), sock.getpeername()
        found = tcp_fds.find_inode(local, remote, lambda text: None)
        assert found == os.fstat(sock.fileno()).st_ino
        assert tcp_fds.find_inode(local, ("127.0.0.1", 1), lambda text: None) is None


def test_a_user_timeout_follows_the_keepalive_budget(pair) -> None:  # type: ignore[no-untyped-def]
    """Kamailio 6 sets TCP_USER_TIMEOUT, which makes Linux ignore the probe count: enabling
    keepalive then sets it to idle + count x interval; a socket without one keeps none."""
    with_timeout, without = pair
    with_timeout.setsockopt(socket.IPPROTO_TCP, tcp_fds.TCP_USER_TIMEOUT, 10_000)
    for sock in pair:
        tcp_fds.apply(os.dup(sock.fileno()), (7, 3, 2))
        assert _keepalive(sock) == (1, 7, 3, 2)
    assert with_timeout.getsockopt(socket.IPPROTO_TCP, tcp_fds.TCP_USER_TIMEOUT) == 13_000
    assert without.getsockopt(socket.IPPROTO_TCP, tcp_fds.TCP_USER_TIMEOUT) == 0
    tcp_fds.apply(os.dup(with_timeout.fileno()), None)
    assert _keepalive(with_timeout)[0] == 0
