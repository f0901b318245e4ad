"""Self-tests of the test peers and hosts (no Kamailio): the scripted UAS, sipp, netns hosts.

Addresses are random in 127.0.77.0/24 with kernel-chosen ports, so parallel runs coexist.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import netns as netns_mod
from tests.harness.kamailio import free_udp_tcp_port, make_certificate
from tests.harness.netns import Host
from tests.peers.fixtures import HostFactory, SippUASFactory, UASFactory
from tests.peers.sipp import SippUAS, sipp_options
from tests.peers.uas import Answer, Request, ScriptedUAS, split_stream

pytestmark = pytest.mark.timeout(20)
UAS_SCRIPT = Path(__file__).resolve().parents[1] / "peers" / "uas.py"
SYSTEM_PYTHON = "/usr/bin/python3"


def lo() -> str:
    return f"127.0.77.{random.randint(2, 254)}"


free_port = free_udp_tcp_port


def sip_request(
    method: str = "OPTIONS",
    user: str = "peer",
    call_id: str | None = None,
    cseq: int = 1,
    vias: int = 1,
    to_tag: str | None = None,
    body: bytes = b"",
    compact: bool = False,
) -> bytes:
    call_id = call_id or f"{random.getrandbits(64):x}@test"
    via = [f"SIP/2.0/UDP 192.0.2.{i}:5060;branch=z9hG4bK{i}x{call_id[:6]}" for i in range(vias)]
    names = (
        ("v", "f", "t", "i", "l") if compact else ("Via", "From", "To", "Call-ID", "Content-Length")
    )
    lines = [f"{method} sip:{user}@127.0.77.1 SIP/2.0"]
    lines += [f"{names[0]}: {v}" for v in via]
    lines += [
        f"{names[1]}: <sip:test@127.0.77.1>;tag=ft{call_id[:4]}",
        f"{names[2]}: <sip:{user}@127.0.77.1>" + (f";tag={to_tag}" if to_tag else ""),
        f"{names[3]}: {call_id}",
        f"CSeq: {cseq} {method}",
        "Max-Forwards: 70",
        f"{names[4]}: {len(body)}",
        "",
        "",
    ]
    return "\r\n".join(lines).encode() + body


def exchange(
    addr: tuple[str, int],
    data: bytes,
    transport: str = "udp",
    timeout: float = 1.0,
    source: str | None = None,
) -> bytes | None:
    """Send one message, return the first reply (None on timeout); socket errors propagate."""
    family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
    kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(family, kind) as sock:
        sock.settimeout(timeout)
        if source:
            sock.bind((source, 0))
        sock.connect(addr)
        sock.sendall(data)
        try:
            return read_message(sock)
        except TimeoutError:
            return None


def read_message(sock: socket.socket) -> bytes:
    buf = bytearray()
    while True:
        messages, _ = split_stream(buf)
        if messages:
            return messages[0]
        chunk = sock.recv(65535)
        if not chunk:
            raise ConnectionError("closed before a reply")
        if sock.type == socket.SOCK_DGRAM:
            return chunk
        buf += chunk


def eventually(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def status(reply: bytes | None) -> int | None:
    return None if reply is None else int(reply.split(b" ", 2)[1])


def status_or_none(
    addr: tuple[str, int], transport: str, timeout: float, source: str | None = None
) -> int | None:
    """Status of the reply to an OPTIONS; None when unanswered, refused or unreachable."""
    try:
        return status(exchange(addr, sip_request(), transport, timeout, source))
    except OSError:
        return None


def headers_of(reply: bytes) -> list[str]:
    return reply.decode().split("\r\n\r\n")[0].split("\r\n")[1:]


@pytest.fixture
def uas(uas_factory: UASFactory) -> ScriptedUAS:
    return uas_factory(host=lo())


# ---- the scripted UAS ---------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
@pytest.mark.parametrize("code", [200, 503, 404])
def test_answers_with_the_configured_code(uas: ScriptedUAS, transport: str, code: int) -> None:
    uas.answer(code)
    assert status(exchange(uas.address, sip_request(), transport)) == code
    assert [(r.method, r.transport) for r in uas.received()] == [("OPTIONS", transport)]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_reply_copies_the_transaction_headers(uas: ScriptedUAS, transport: str) -> None:
    request = sip_request(call_id="abc123@here", cseq=7, vias=3)
    reply = exchange(uas.address, request, transport)
    assert reply is not None and reply.startswith(b"SIP/2.0 200 OK\r\n")
    sent, got = headers_of(request), headers_of(reply)
    assert [h for h in got if h.startswith("Via:")] == [h for h in sent if h.startswith("Via:")]
    for name in ("From:", "Call-ID:", "CSeq:"):
        assert [h for h in got if h.startswith(name)] == [h for h in sent if h.startswith(name)]
    (to,) = [h for h in got if h.startswith("To:")]
    assert re.fullmatch(r"To: <sip:peer@127\.0\.77\.1>;tag=\w+", to)
    assert got[-1] == "Content-Length: 0" and reply.endswith(b"\r\n\r\n")
    again = exchange(uas.address, request, transport)
    assert again == reply, "a retransmission gets the same reply (same To tag)"
    tagged = exchange(uas.address, sip_request(to_tag="theirs"), transport)
    assert tagged is not None and b";tag=theirs\r\n" in tagged and tagged.count(b"tag=") == 2


def test_compact_headers_are_copied_and_looked_up(uas: ScriptedUAS) -> None:
    reply = exchange(uas.address, sip_request(call_id="compact@x", compact=True))
    assert reply is not None and b"\r\ni: compact@x\r\n" in reply and b"\r\nv: SIP/2.0" in reply
    (req,) = uas.received()
    assert req.headers["Call-ID"] == req.headers["call-id"] == req.headers["i"] == "compact@x"
    assert "CALL-ID" in req.headers and "X-Nope" not in req.headers
    assert req.headers.get("x-nope", "dflt") == "dflt" and req.call_id == "compact@x"


def test_behaviour_switches_at_any_time(uas: ScriptedUAS) -> None:
    codes: list[int | None] = []
    for code in (200, 503, 404):
        uas.answer(code)
        codes.append(status(exchange(uas.address, sip_request())))
    uas.set_behaviour(lambda req: 486 if req.uri.startswith("sip:busy@") else None)
    codes.append(status(exchange(uas.address, sip_request(user="busy"))))
    codes.append(status(exchange(uas.address, sip_request(user="other"), timeout=0.3)))
    assert codes == [200, 503, 404, 486, None]
    assert uas.count() == 5 and uas.errors == []


def test_ack_is_never_answered(uas: ScriptedUAS) -> None:
    assert exchange(uas.address, sip_request("ACK"), timeout=0.3) is None
    assert uas.count("ACK") == 1


def test_blackhole_records_but_never_answers(uas: ScriptedUAS) -> None:
    uas.blackhole()
    assert exchange(uas.address, sip_request(), "udp", timeout=0.4) is None
    assert exchange(uas.address, sip_request(), "tcp", timeout=0.4) is None
    assert [r.transport for r in uas.wait_requests(2, timeout=1)] == ["udp", "tcp"]


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_delay_answers_late_without_holding_up_others(uas: ScriptedUAS, transport: str) -> None:
    uas.delay(0.3, 486)
    start = time.monotonic()
    assert status(exchange(uas.address, sip_request(), transport)) == 486
    assert 0.28 <= time.monotonic() - start < 0.8
    uas.set_behaviour(lambda req: Answer(200, 0.5) if "slow" in req.uri else 202)
    family = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    with socket.socket(socket.AF_INET, family) as sock:
        sock.settimeout(2)
        sock.connect(uas.address)
        if transport == "udp":  # one datagram per message
            sock.send(sip_request(user="slow"))
            sock.send(sip_request(user="fast"))
        else:  # one write, two messages
            sock.sendall(sip_request(user="slow") + sip_request(user="fast"))
        first = read_message(sock)
        assert status(first) == 202, "the fast request is answered first"


def test_close_gives_icmp_and_refused_then_reopen_listens_again(uas: ScriptedUAS) -> None:
    with socket.create_connection(uas.address, timeout=2) as open_conn:
        assert eventually(lambda: uas.connections() == 1, timeout=1)
        uas.close()
        assert not uas.listening
        assert open_conn.recv(100) == b"", "existing connections are closed"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.settimeout(1)
        udp.connect(uas.address)
        udp.send(sip_request())
        with pytest.raises(ConnectionRefusedError):
            udp.recv(100)  # the port-unreachable ICMP, reported on the connected socket
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(uas.address, timeout=1).close()
    port = uas.port
    uas.reopen()
    assert uas.port == port and uas.listening
    assert status(exchange(uas.address, sip_request(), "udp")) == 200
    assert status(exchange(uas.address, sip_request(), "tcp")) == 200


def test_close_connections_keeps_listening(uas: ScriptedUAS) -> None:
    with socket.create_connection(uas.address, timeout=2) as conn:
        conn.sendall(sip_request())
        assert status(read_message(conn)) == 200
        uas.close_connections(reset=True)
        with pytest.raises(ConnectionResetError):
            conn.recv(100)
    assert uas.listening and status(exchange(uas.address, sip_request(), "tcp")) == 200


def test_alternate_answers_every_other_transaction(uas: ScriptedUAS) -> None:
    uas.alternate()
    ids = [f"alt{i}@x" for i in range(6)]
    answered = [status(exchange(uas.address, sip_request(call_id=i), timeout=0.25)) for i in ids]
    assert answered == [200, None, 200, None, 200, None]
    retrans = exchange(uas.address, sip_request(call_id=ids[1]), timeout=0.25)
    assert retrans is None, "a retransmission of an ignored request stays ignored"
    assert status(exchange(uas.address, sip_request(call_id=ids[2]))) == 200


def test_records_requests_with_times_and_sources(uas: ScriptedUAS) -> None:
    wall, mono = time.time(), time.monotonic()
    body = b"hello=1\r\n"
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.77.1", 0))
        sock.settimeout(2)
        sock.sendto(sip_request("MESSAGE", body=body), uas.address)
        sock.recv(1000)
        source = sock.getsockname()
    exchange(uas.address, sip_request("INFO"), "tcp")
    first, second = uas.wait_requests(2, timeout=2)
    assert (first.method, first.transport, first.source) == ("MESSAGE", "udp", source)
    assert first.uri == "sip:peer@127.0.77.1" and first.body == body
    assert first.raw.endswith(body) and first.headers["content-length"] == str(len(body))
    assert mono <= first.mono <= second.mono <= time.monotonic()
    assert wall - 0.01 <= first.wall <= time.time()
    assert second.method == "INFO" and second.transport == "tcp"
    assert uas.wait_requests(1, timeout=1, method="INFO") == [second]
    start = time.monotonic()
    assert not uas.wait_for(lambda reqs: len(reqs) > 2, timeout=0.2)
    with pytest.raises(TimeoutError):
        uas.wait_requests(3, timeout=0.1)
    assert time.monotonic() - start < 1
    uas.clear()
    assert uas.received() == []


def test_tcp_framing_pipelined_partial_and_crlf_pings(uas: ScriptedUAS) -> None:
    body = b"x" * 300
    stream = b"\r\n\r\n" + sip_request(call_id="p1@x")
    stream += sip_request("MESSAGE", call_id="p2@x", body=body) + sip_request(call_id="p3@x")
    with socket.create_connection(uas.address, timeout=2) as conn:
        for i in range(0, len(stream), 37):  # partial reads
            conn.sendall(stream[i : i + 37])
            time.sleep(0.002)
        received = b""
        while len(split_stream(bytearray(received))[0]) < 3:
            chunk = conn.recv(65535)
            assert chunk, "connection closed"
            received += chunk
    assert received.startswith(b"\r\nSIP/2.0 200"), "CRLFCRLF ping answered with a CRLF pong"
    reqs = uas.wait_requests(3, timeout=1)
    assert [r.call_id for r in reqs] == ["p1@x", "p2@x", "p3@x"] and reqs[1].body == body
    assert uas.crlf_pings == 1 and uas.non_requests == []


def test_stream_splitter_units() -> None:
    one = sip_request(call_id="s@x", body=b"abc")
    buf = bytearray(one[:-2])
    assert split_stream(buf) == ([], 0) and bytes(buf) == one[:-2]
    buf += one[-2:] + b"\r\n\r"
    assert split_stream(buf) == ([one], 0) and bytes(buf) == b"\r\n\r", "a ping still arriving"
    buf += b"\n\r\n" + one
    assert split_stream(buf) == ([one], 1) and not buf


def test_ipv6_udp_and_tcp(uas_factory: UASFactory) -> None:
    uas = uas_factory(host="::1")
    uas.answer(480)
    assert status(exchange(uas.address, sip_request(), "udp")) == 480
    assert status(exchange(uas.address, sip_request(), "tcp")) == 480
    assert {r.source[0] for r in uas.received()} == {"::1"}
    assert uas.uri("tcp") == f"sip:[::1]:{uas.port};transport=tcp"


def test_tls_listener(uas_factory: UASFactory, tmp_path: Path) -> None:
    cert, key = make_certificate(tmp_path)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(cert, key)
    uas = uas_factory(host=lo(), udp=False, tls_context=server)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.load_verify_locations(cert)
    client.check_hostname = False
    with client.wrap_socket(socket.create_connection(uas.address, timeout=3)) as conn:
        conn.sendall(sip_request() + sip_request())
        assert status(read_message(conn)) == 200
    assert [r.transport for r in uas.wait_requests(2, timeout=2)] == ["tls", "tls"]


def test_send_raw_from_the_udp_socket(uas_factory: UASFactory) -> None:
    sender, receiver = uas_factory(host=lo()), uas_factory(host=lo())
    stray = b"SIP/2.0 200 OK\r\nCall-ID: stray@x\r\nContent-Length: 0\r\n\r\n"
    sender.send_raw(stray, receiver.address)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.77.1", 0))
        sock.settimeout(1)
        sender.send_raw(b"ping", sock.getsockname())
        data, source = sock.recvfrom(100)
    assert (data, source) == (b"ping", sender.address)
    assert eventually(lambda: bool(receiver.non_requests), timeout=1)
    assert receiver.non_requests == [(stray, sender.address)] and receiver.requests == []


def test_stop_closes_everything_and_joins() -> None:
    host = lo()
    with ScriptedUAS(host, 0) as uas:
        assert status(exchange(uas.address, sip_request())) == 200
        thread = uas._thread
    assert thread is not None and not thread.is_alive()
    assert not uas.listening
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(uas.address, timeout=1).close()
    uas.stop()  # twice is fine


def test_behaviour_errors_are_recorded_not_fatal(uas: ScriptedUAS) -> None:
    def broken(req: Request) -> int:
        raise ValueError("boom")

    uas.set_behaviour(broken)
    assert exchange(uas.address, sip_request(), timeout=0.3) is None
    uas.answer(200)
    assert status(exchange(uas.address, sip_request())) == 200
    assert [str(e) for e in uas.errors] == ["boom"]
    uas.errors.clear()


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    mode = tmp_path / "mode"
    mode.write_text("503")
    host = lo()
    proc = subprocess.Popen(
        [SYSTEM_PYTHON, "-I", str(UAS_SCRIPT), "--udp", f"{host}:0", "--tcp", f"{host}:0",
         "--mode", "200", "--mode-file", str(mode)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        yield proc, mode
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def test_standalone_script_under_the_system_python(
    standalone: tuple[subprocess.Popen[str], Path],
) -> None:
    proc, mode = standalone
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.fullmatch(r"uas listening udp\+tcp ([\d.]+):(\d+) mode 200\n", line)
    assert m, line
    addr = (m.group(1), int(m.group(2)))
    assert status(exchange(addr, sip_request(), "udp")) == 503, "the mode file wins"
    mode.write_text("delay:0.2:404")
    assert status(exchange(addr, sip_request(), "tcp")) == 404
    mode.write_text("blackhole")
    assert exchange(addr, sip_request(), timeout=0.3) is None
    mode.write_text("close")
    with pytest.raises(ConnectionRefusedError):
        for _ in range(20):  # the mode file is polled every 0.1 s
            socket.create_connection(addr, timeout=1).close()
            time.sleep(0.05)
    mode.write_text("200")
    deadline = time.monotonic() + 3
    while (code := status_or_none(addr, "udp", 0.2)) is None:
        assert time.monotonic() < deadline, "reopened after close"
    assert code == 200
    proc.terminate()
    assert proc.wait(timeout=5) == 0, "SIGTERM is a clean exit"


# ---- sipp ---------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_sipp_uas_answers_our_options(sipp_uas_factory: SippUASFactory, transport: str) -> None:
    host = lo()
    sipp: SippUAS = sipp_uas_factory(host, free_port(host), transport)
    for call_id in ("s1@x", "s2@x"):
        reply = exchange((sipp.host, sipp.port), sip_request(call_id=call_id), transport, 2)
        assert (
            status(reply) == 200 and reply is not None and f"Call-ID: {call_id}".encode() in reply
        )
    assert sipp.wait_answered(2, timeout=2) == 2 and sipp.received() == 2
    assert sipp.stop() == 0 and sipp.proc is not None and sipp.proc.poll() is not None


def test_sipp_uac_against_scripted_uas_and_sipp(
    uas: ScriptedUAS, sipp_uas_factory: SippUASFactory, tmp_path: Path
) -> None:
    assert sipp_options(uas.host, uas.port, 3, local_ip=uas.host, rate=100, workdir=tmp_path) == 0
    assert [r.method for r in uas.wait_requests(3, timeout=1)] == ["OPTIONS"] * 3
    assert uas.received()[0].uri == f"sip:ping@{uas.host}:{uas.port}"
    uas.answer(503)
    assert sipp_options(uas.host, uas.port, 1, local_ip=uas.host) == 1
    host = lo()
    sipp = sipp_uas_factory(host, free_port(host), "tcp")
    assert sipp_options(host, sipp.port, 2, local_ip=host, transport="tcp", rate=100) == 0
    assert sipp.wait_answered(2, timeout=2) == 2


# ---- network-namespace hosts --------------------------------------------------------------


def our_namespaces() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=5)
    return [
        n for n in re.findall(r"^(\S+)", out.stdout, re.M) if n.startswith(f"kak-{os.getpid()}-")
    ]


@pytest.fixture
def no_netns_left() -> Iterator[None]:
    yield
    assert our_namespaces() == [], "every netns is deleted"


def options_from_root(host: Host, port: int, transport: str, timeout: float = 0.5) -> int | None:
    try:
        return status(
            exchange((host.address, port), sip_request(), transport, timeout, host.gateway)
        )
    except OSError:  # refused / unreachable
        return None


@pytest.mark.netns
def test_uas_in_a_netns_host_follows_its_link(
    no_netns_left: None, netns_host_factory: HostFactory
) -> None:
    host = netns_host_factory()
    assert host.exists() and re.fullmatch(r"10\.(2[0-4]\d|25[0-4])\.\d+\.\d+", host.address)
    proc = host.run(
        [SYSTEM_PYTHON, "-I", str(UAS_SCRIPT), "--host", host.address, "--port", "5060",
         "--mode", "202"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    with contextlib.closing(proc.stdout):
        assert proc.stdout.readline().startswith(f"uas listening udp+tcp {host.address}:5060")
    assert options_from_root(host, 5060, "udp") == 202
    assert options_from_root(host, 5060, "tcp") == 202
    host.link_down()
    assert options_from_root(host, 5060, "udp") is None
    assert options_from_root(host, 5060, "tcp") is None
    host.link_up()
    deadline = time.monotonic() + 3
    while options_from_root(host, 5060, "udp", 0.2) is None:
        assert time.monotonic() < deadline, "reachable again after link_up"
    assert options_from_root(host, 5060, "tcp") == 202
    host.remove_address()
    assert options_from_root(host, 5060, "udp") is None
    host.restore_address()
    assert options_from_root(host, 5060, "udp") == 202
    name = host.name
    host.close()
    assert proc.poll() is not None, "close() stops what run() started"
    assert name not in our_namespaces()


@pytest.mark.netns
def test_two_hosts_ipv6_and_sipp_inside(
    no_netns_left: None, netns_host_factory: HostFactory, sipp_uas_factory: SippUASFactory
) -> None:
    one, two = netns_host_factory(ipv6=True), netns_host_factory()
    assert one.gateway != two.gateway
    assert one.address6 is not None and one.gateway6 is not None
    addr6, gw6 = (one.address6, 5060), one.gateway6
    sipp = sipp_uas_factory(one.address6, 5060, runner=one.run)
    reply = exchange(addr6, sip_request(), "udp", 2, gw6)
    assert status(reply) == 200 and sipp.wait_answered(1, timeout=2) == 1
    sipp2 = sipp_uas_factory(two.address, 5060, runner=two.run)
    assert status(exchange((two.address, 5060), sip_request(), "udp", 2, two.gateway)) == 200
    assert sipp2.wait_answered(1, timeout=2) == 1 and sipp.answered() == 1
    one.link_down()
    assert exchange(addr6, sip_request(), "udp", 0.3, gw6) is None
    one.link_up()
    assert eventually(lambda: status_or_none(addr6, "udp", 0.2, gw6) == 200, 3)


def test_host_skips_without_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KA_REQUIRE_ALL_TIERS", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(pytest.skip.Exception, match="not root"):
        Host()
    monkeypatch.delitem(sys.modules, "pytest")
    with pytest.raises(netns_mod.NetnsUnavailable):
        Host()
