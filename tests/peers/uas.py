"""A scripted SIP UAS for tests (stdlib only; also runs standalone with the system python3).

It listens on UDP and/or TCP (or TLS), IPv4 or IPv6, records every request with its arrival
time, and answers according to a behaviour the test may change at any moment: a status code,
a delayed answer, no answer (blackhole), every other transaction only (alternate), or any
callable.  ``close()`` closes the sockets (the UDP port then answers with ICMP, TCP connects
are refused, open connections are closed) and ``reopen()`` binds the same port again.

All socket work happens in one selector thread, so a delayed answer never holds up the
requests behind it, and ``stop()`` returns at once with every socket closed.

Standalone (e.g. under ``ip netns exec`` or in a container)::

    python3 tests/peers/uas.py --udp 127.0.0.1:5070 --tcp 127.0.0.1:5070 --mode 200
    python3 tests/peers/uas.py --host 0.0.0.0 --port 5060 --mode-file /run/peer-mode

Modes: a status code, ``blackhole``, ``alternate[:CODE]``, ``delay:SECONDS[:CODE]``, ``close``.
A mode file is re-read for every request (and polled, so ``close`` takes effect by itself).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import errno
import functools
import heapq
import itertools
import re
import selectors
import signal
import socket
import ssl
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

COMPACT = {"v": "via", "f": "from", "t": "to", "i": "call-id", "l": "content-length",
           "m": "contact", "c": "content-type", "k": "supported", "s": "subject",
           "e": "content-encoding", "o": "event", "r": "refer-to", "u": "allow-events"}  # fmt: skip
COPIED = ("via", "from", "to", "call-id", "cseq")
REASONS = {100: "Trying", 180: "Ringing", 200: "OK", 202: "Accepted", 401: "Unauthorized",
           403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
           407: "Proxy Authentication Required", 408: "Request Timeout",
           480: "Temporarily Unavailable", 483: "Too Many Hops", 486: "Busy Here",
           500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
           504: "Server Time-out", 603: "Decline"}  # fmt: skip
CONTENT_LENGTH = re.compile(rb"(?im)^(?:content-length|l)[ \t]*:[ \t]*(\d+)")
MAX_HEADER = 65536
CALL_TIMEOUT_S = 5.0


def canonical(name: str) -> str:
    """Lower-case header name with compact forms expanded (``i`` -> ``call-id``)."""
    name = name.strip().lower()
    return COMPACT.get(name, name)


class Headers(dict[str, str]):
    """First value of each header, keyed by the name as sent.

    Lookups (``[]``, ``get``, ``in``) ignore case and accept compact forms, so a test can
    write ``headers["Call-ID"]`` whatever the sender used; ``get_all`` returns every value.
    """

    def __init__(self, fields: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__()
        self.fields: list[tuple[str, str]] = []
        self._keys: dict[str, str] = {}
        for name, value in fields:
            self.add(name, value)

    def add(self, name: str, value: str) -> None:
        self.fields.append((name, value))
        key = canonical(name)
        if key not in self._keys:
            self._keys[key] = name
            super().__setitem__(name, value)

    def __getitem__(self, name: str) -> str:
        try:
            return super().__getitem__(self._keys[canonical(name)])
        except KeyError:
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and canonical(name) in self._keys

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        key = self._keys.get(canonical(name))
        return default if key is None else super().__getitem__(key)

    def get_all(self, name: str) -> list[str]:
        key = canonical(name)
        return [value for n, value in self.fields if canonical(n) == key]


@dataclass
class Request:
    method: str
    uri: str
    headers: Headers
    raw: bytes
    mono: float
    """Arrival, ``time.monotonic()``."""
    wall: float
    """Arrival, ``time.time()``."""
    transport: str
    """``udp``, ``tcp`` or ``tls``."""
    source: tuple[str, int]
    body: bytes = b""

    @property
    def call_id(self) -> str | None:
        return self.headers.get("Call-ID")

    @property
    def cseq(self) -> str | None:
        return self.headers.get("CSeq")


@dataclass(frozen=True)
class Answer:
    """What a behaviour may return instead of a bare code: a delayed and/or custom reply."""

    code: int
    delay: float = 0.0
    reason: str = ""
    headers: tuple[str, ...] = ()
    """Extra header lines of the reply (``WWW-Authenticate: Digest ...``)."""


Behaviour = Callable[[Request], "int | Answer | None"]


def header_lines(head: str) -> list[str]:
    """Header lines of a message head, with folded continuation lines joined."""
    lines: list[str] = []
    for line in head.split("\r\n")[1:]:
        if line[:1] in (" ", "\t") and lines:
            lines[-1] += " " + line.strip()
        elif line:
            lines.append(line)
    return lines


def parse_request(raw: bytes, transport: str, source: tuple[str, int]) -> Request | None:
    """A Request, or None if ``raw`` is not a SIP request (a reply, a ping, garbage)."""
    mono, wall = time.monotonic(), time.time()
    head, _, body = raw.partition(b"\r\n\r\n")
    text = head.decode("utf-8", errors="replace")
    parts = text.split("\r\n", 1)[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("SIP/2.0") or not parts[0].isalpha():
        return None
    headers = Headers()
    for line in header_lines(text):
        name, sep, value = line.partition(":")
        if sep:
            headers.add(name.strip(), value.strip())
    return Request(parts[0], parts[1], headers, raw, mono, wall, transport, source, body)


def _has_tag(to_value: str) -> bool:
    outside_uri = re.sub(r"<[^>]*>", "", to_value)
    return re.search(r";\s*tag\s*=", outside_uri, re.IGNORECASE) is not None


def build_response(
    req: Request, code: int, reason: str = "", headers: tuple[str, ...] = ()
) -> bytes:
    """A reply to ``req``: all Vias, From, To (tagged), Call-ID and CSeq as received.

    The To tag is derived from Call-ID and From, so retransmissions get the same reply.
    """
    reason = reason or REASONS.get(code, "Test")
    lines = [f"SIP/2.0 {code} {reason}"]
    head = req.raw.partition(b"\r\n\r\n")[0].decode("utf-8", errors="replace")
    for line in header_lines(head):
        name, _, value = line.partition(":")
        key = canonical(name)
        if key not in COPIED:
            continue
        if key == "to" and not _has_tag(value):
            seed = f"{req.call_id}|{req.headers.get('From')}".encode()
            line += f";tag=uas{zlib.crc32(seed):08x}"
        lines.append(line)
    lines += [*headers, "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def split_stream(buf: bytearray) -> tuple[list[bytes], int]:
    """Cut complete messages off a stream buffer (framing by Content-Length).

    Returns the messages and the number of RFC 5626 CRLFCRLF keep-alive pings seen; the
    buffer keeps the incomplete rest.  Stray single CRLFs between messages are skipped.
    """
    messages: list[bytes] = []
    pings = 0
    while buf:
        if buf[:4] == b"\r\n\r\n":
            del buf[:4]
            pings += 1
            continue
        if b"\r\n\r\n".startswith(bytes(buf[:4])):
            break  # a ping still arriving
        if buf[:2] == b"\r\n":
            del buf[:2]
            continue
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            break
        head = bytes(buf[: end + 4])
        m = CONTENT_LENGTH.search(head)
        total = len(head) + (int(m.group(1)) if m else 0)
        if len(buf) < total:
            break
        messages.append(bytes(buf[:total]))
        del buf[:total]
    return messages, pings


def normalize(decision: int | Answer | None) -> Answer | None:
    if decision is None or isinstance(decision, Answer):
        return decision
    return Answer(int(decision))


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    peer: tuple[str, int]
    inbuf: bytearray = field(default_factory=bytearray)
    outbuf: bytearray = field(default_factory=bytearray)
    handshaking: bool = False
    want_write: bool = False
    closed: bool = False


@dataclass(eq=False)
class ScriptedUAS:
    """SIP UAS with a behaviour the test changes at run time; records every request.

    ``host`` may be IPv4 or IPv6; ``port`` 0 picks a port free for UDP and TCP alike (read
    ``port`` after ``start()``).  With ``tls_context`` (a server context) the stream
    listener speaks TLS instead of TCP.
    """

    host: str = "127.0.0.1"
    port: int = 0
    udp: bool = True
    tcp: bool = True
    tls_context: ssl.SSLContext | None = None
    requests: list[Request] = field(default_factory=list, repr=False)
    """Every request, in arrival order (appended by the UAS thread; see ``received()``)."""
    non_requests: list[tuple[bytes, tuple[str, int]]] = field(default_factory=list, repr=False)
    """Datagrams and stream messages that were not requests (replies to ``send_raw``...)."""
    crlf_pings: int = 0
    """CRLFCRLF keep-alive pings received on stream connections (each answered with CRLF)."""
    errors: list[BaseException] = field(default_factory=list, repr=False)
    """Exceptions raised by behaviours or handlers; the UAS keeps running."""

    def __post_init__(self) -> None:
        self._behaviour: Behaviour = lambda req: 200
        self._cond = threading.Condition()
        self._family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._thread: threading.Thread | None = None
        self._sel: selectors.BaseSelector | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._tcp: socket.socket | None = None
        self._conns: set[_Conn] = set()
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._commands: collections.deque[
            tuple[Callable[[], object], threading.Event, list[object]]
        ]
        self._commands = collections.deque()
        self._stopping = False

    # -- behaviour -----------------------------------------------------------------------

    def set_behaviour(self, behaviour: Behaviour) -> None:
        """Any callable: request -> status code, ``Answer`` or None (no reply).

        It runs on the UAS thread and must not block; return ``Answer(code, delay)`` to
        answer late instead of sleeping.
        """
        self._behaviour = behaviour

    def answer(self, code: int, reason: str = "") -> None:
        self.set_behaviour(lambda req: Answer(code, 0.0, reason))

    def delay(self, seconds: float, code: int = 200) -> None:
        """Answer ``code`` ``seconds`` after each request arrives."""
        self.set_behaviour(lambda req: Answer(code, seconds))

    def blackhole(self) -> None:
        self.set_behaviour(lambda req: None)

    def alternate(self, code: int = 200) -> None:
        """Answer the 1st, 3rd, 5th ... transaction from now on; ignore the others.

        Decided per Call-ID and CSeq, so retransmissions of an ignored ping stay ignored.
        """
        self.set_behaviour(alternating(code))

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> ScriptedUAS:
        if self._thread is not None:
            raise RuntimeError("already started")
        self._stopping = False
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, self._on_wake)
        try:
            self._open()
        except BaseException:
            self._teardown()
            raise
        self._thread = threading.Thread(
            target=self._loop, name=f"uas-{self.host}:{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def close(self, reset: bool = False) -> None:
        """Stop listening: UDP port closed, TCP refused, open connections closed (FIN, or
        RST with ``reset``); pending delayed replies are dropped."""
        self._call(lambda: self._close(reset))

    def reopen(self) -> None:
        """Listen again on the same address and port (no-op if listening)."""
        self._call(self._open)

    def close_connections(self, reset: bool = False) -> None:
        """Close the open TCP/TLS connections but keep listening."""
        self._call(lambda: self._drop_conns(reset))

    def stop(self) -> None:
        """Close everything and join the UAS thread; safe to call twice."""
        thread = self._thread
        if thread is None:
            return
        if thread is threading.current_thread():
            self._stopping = True
            return
        with contextlib.suppress(TimeoutError, RuntimeError):
            self._call(lambda: self._close(False))
        self._stopping = True
        self._wake()
        thread.join(timeout=CALL_TIMEOUT_S)
        if thread.is_alive():
            raise RuntimeError(f"UAS thread {thread.name} did not stop")
        self._thread = None

    def __enter__(self) -> ScriptedUAS:
        return self if self._thread is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observation -----------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        return self._udp is not None or self._tcp is not None

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def uri(self, transport: str = "udp", user: str = "") -> str:
        """``sip:[user@]host:port[;transport=...]`` (IPv6 in brackets; TLS as sips:)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        userpart = f"{user}@" if user else ""
        if transport == "tls":
            return f"sips:{userpart}{host}:{self.port}"
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{userpart}{host}:{self.port}{suffix}"

    def received(self, method: str | None = None) -> list[Request]:
        """A copy of the requests so far, optionally only one method."""
        with self._cond:
            return [r for r in self.requests if method is None or r.method == method]

    def count(self, method: str | None = None) -> int:
        return len(self.received(method))

    def clear(self) -> None:
        with self._cond:
            self.requests.clear()
            self.non_requests.clear()

    def connections(self) -> int:
        """Open TCP/TLS connections (accepted, not yet closed)."""
        return len(self._conns)

    def wait_for(self, predicate: Callable[[list[Request]], bool], timeout: float) -> bool:
        """Wait until ``predicate(requests)`` holds; False after ``timeout`` seconds.

        The predicate sees the live list under the lock: it must be quick and not keep it.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.requests):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
            return True

    def wait_requests(self, n: int, timeout: float, method: str | None = None) -> list[Request]:
        """The first ``n`` or more requests (of ``method``); TimeoutError if fewer came."""

        def enough(reqs: list[Request]) -> bool:
            return sum(1 for r in reqs if method is None or r.method == method) >= n

        if not self.wait_for(enough, timeout):
            raise TimeoutError(f"{self.count(method)} of {n} requests after {timeout} s")
        return self.received(method)

    def send_raw(self, data: bytes, addr: tuple[str, int]) -> None:
        """Send bytes from the UAS's UDP socket (stray or spoofed replies)."""

        def send() -> None:
            if self._udp is None:
                raise RuntimeError("the UAS has no open UDP socket")
            self._udp.sendto(data, addr)

        self._call(send)

    # -- commands into the UAS thread ------------------------------------------------------

    def _call(self, fn: Callable[[], object]) -> object:
        """Run ``fn`` on the UAS thread (it owns the sockets); re-raise what it raises."""
        if self._thread is None or self._thread is threading.current_thread():
            return fn()
        done = threading.Event()
        box: list[object] = []
        self._commands.append((fn, done, box))
        self._wake()
        if not done.wait(CALL_TIMEOUT_S):
            raise TimeoutError("the UAS thread did not answer")
        if box and isinstance(box[0], BaseException):
            raise box[0]
        return box[0] if box else None

    def _wake(self) -> None:
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")

    def _on_wake(self, sock: socket.socket, mask: int) -> None:
        with contextlib.suppress(OSError):
            sock.recv(4096)

    # -- sockets ---------------------------------------------------------------------------

    def _open(self) -> None:
        if self.listening:
            return
        if self._sel is None:
            raise RuntimeError("the UAS is not started")
        udp, tcp = self._bind()
        if udp is not None:
            self._udp = udp
            self._sel.register(udp, selectors.EVENT_READ, self._on_udp)
        if tcp is not None:
            self._tcp = tcp
            self._sel.register(tcp, selectors.EVENT_READ, self._on_accept)

    def _bind(self) -> tuple[socket.socket | None, socket.socket | None]:
        """Bind UDP and TCP on one port; with port 0, retry until both get the same one."""
        for _ in range(50):
            udp = tcp = None
            try:
                port = self.port
                if self.udp:
                    udp = socket.socket(self._family, socket.SOCK_DGRAM)
                    udp.bind((self.host, port))
                    port = udp.getsockname()[1]
                if self.tcp:
                    tcp = socket.socket(self._family, socket.SOCK_STREAM)
                    tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    tcp.bind((self.host, port))
                    tcp.listen(128)
                    port = tcp.getsockname()[1]
            except OSError as exc:
                for sock in (udp, tcp):
                    if sock is not None:
                        sock.close()
                if self.port == 0 and exc.errno == errno.EADDRINUSE:
                    continue
                raise
            for sock in (udp, tcp):
                if sock is not None:
                    sock.setblocking(False)
            self.port = port
            return udp, tcp
        raise OSError(errno.EADDRINUSE, f"no port free for UDP and TCP on {self.host}")

    def _close(self, reset: bool) -> None:
        self._timers.clear()
        self._drop_conns(reset)
        for sock in (self._udp, self._tcp):
            if sock is not None:
                self._forget(sock)
                sock.close()
        self._udp = self._tcp = None

    def _drop_conns(self, reset: bool) -> None:
        for conn in list(self._conns):
            self._close_conn(conn, reset)

    def _forget(self, sock: socket.socket) -> None:
        if self._sel is not None:
            with contextlib.suppress(KeyError, ValueError):
                self._sel.unregister(sock)

    def _teardown(self) -> None:
        self._close(False)
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None
        if self._sel is not None:
            self._sel.close()
            self._sel = None

    # -- the UAS thread --------------------------------------------------------------------

    def _loop(self) -> None:
        assert self._sel is not None
        try:
            while not self._stopping:
                timeout = None
                if self._timers:
                    timeout = max(0.0, self._timers[0][0] - time.monotonic())
                for key, mask in self._sel.select(timeout):
                    self._guard(functools.partial(key.data, key.fileobj, mask))
                now = time.monotonic()
                while self._timers and self._timers[0][0] <= now:
                    self._guard(heapq.heappop(self._timers)[2])
                while self._commands:
                    fn, done, box = self._commands.popleft()
                    try:
                        box.append(fn())
                    except BaseException as exc:
                        box.append(exc)
                    done.set()
        finally:
            self._teardown()
            while self._commands:
                _, done, box = self._commands.popleft()
                box.append(RuntimeError("the UAS stopped"))
                done.set()

    def _guard(self, fn: Callable[[], object]) -> None:
        try:
            fn()
        except Exception as exc:
            self.errors.append(exc)
            print(f"uas {self.host}:{self.port}: {exc!r}", file=sys.stderr)

    def _later(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), fn))

    def _handle(
        self, raw: bytes, transport: str, source: tuple[str, int]
    ) -> tuple[float, bytes] | None:
        """Record one message and decide: (delay, reply) or None for no reply."""
        req = parse_request(raw, transport, source)
        if req is None:
            with self._cond:
                self.non_requests.append((raw, source))
            return None
        with self._cond:
            self.requests.append(req)
            self._cond.notify_all()
        answer = normalize(self._behaviour(req))
        if answer is None or req.method == "ACK":
            return None
        return answer.delay, build_response(req, answer.code, answer.reason, answer.headers)

    def _on_udp(self, sock: socket.socket, mask: int) -> None:
        for _ in range(64):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP errors from earlier sends surface here
                continue
            decided = self._handle(data, "udp", addr[:2])
            if decided is None:
                continue
            delay, reply = decided
            if delay > 0:
                self._later(delay, functools.partial(self._send_udp, sock, reply, addr))
            else:
                self._send_udp(sock, reply, addr)

    def _send_udp(self, sock: socket.socket, data: bytes, addr: tuple[str, int]) -> None:
        if sock is self._udp:
            with contextlib.suppress(OSError):
                sock.sendto(data, addr)

    def _on_accept(self, sock: socket.socket, mask: int) -> None:
        assert self._sel is not None
        for _ in range(64):
            try:
                raw, addr = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                continue
            raw.setblocking(False)
            conn = _Conn(raw, addr[:2])
            if self.tls_context is not None:
                try:
                    conn.sock = self.tls_context.wrap_socket(
                        raw, server_side=True, do_handshake_on_connect=False
                    )
                except (OSError, ssl.SSLError):
                    raw.close()
                    continue
                conn.handshaking = True
            self._conns.add(conn)
            self._sel.register(conn.sock, selectors.EVENT_READ, self._on_conn_event(conn))

    def _on_conn_event(self, conn: _Conn) -> Callable[[socket.socket, int], None]:
        def handler(sock: socket.socket, mask: int) -> None:
            self._service(conn, mask)

        return handler

    def _service(self, conn: _Conn, mask: int) -> None:
        if conn.handshaking:
            if not self._handshake(conn):
                return
            mask |= selectors.EVENT_READ  # a request may follow the handshake at once
        if mask & selectors.EVENT_WRITE:
            self._flush(conn)
        if not conn.closed and mask & selectors.EVENT_READ:
            self._read(conn)

    def _handshake(self, conn: _Conn) -> bool:
        sock = conn.sock
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            conn.want_write = False
        except ssl.SSLWantWriteError:
            conn.want_write = True
        except (OSError, ssl.SSLError):
            self._close_conn(conn, False)
            return False
        else:
            conn.handshaking = conn.want_write = False
            self._update(conn)
            return True
        self._update(conn)
        return False

    def _read(self, conn: _Conn) -> None:
        while True:
            try:
                data = conn.sock.recv(65536)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                break
            except ssl.SSLWantWriteError:
                conn.want_write = True
                self._update(conn)
                break
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                self._close_conn(conn, False)
                return
            conn.inbuf += data
        messages, pings = split_stream(conn.inbuf)
        if len(conn.inbuf) > MAX_HEADER and b"\r\n\r\n" not in conn.inbuf:
            self._close_conn(conn, True)  # no end of header in sight: not SIP
            return
        if pings:
            self.crlf_pings += pings
            self._write(conn, b"\r\n" * pings)
        transport = "tcp" if self.tls_context is None else "tls"
        for raw in messages:
            decided = self._handle(raw, transport, conn.peer)
            if decided is None:
                continue
            delay, reply = decided
            if delay > 0:
                self._later(delay, functools.partial(self._write, conn, reply))
            else:
                self._write(conn, reply)

    def _write(self, conn: _Conn, data: bytes) -> None:
        if conn.closed:
            return
        conn.outbuf += data
        self._flush(conn)

    def _flush(self, conn: _Conn) -> None:
        while conn.outbuf and not conn.closed:
            try:
                sent = conn.sock.send(conn.outbuf)
            except (BlockingIOError, InterruptedError, ssl.SSLWantWriteError):
                break
            except ssl.SSLWantReadError:
                break
            except (OSError, ssl.SSLError):
                self._close_conn(conn, False)
                return
            del conn.outbuf[:sent]
        conn.want_write = bool(conn.outbuf)
        self._update(conn)

    def _update(self, conn: _Conn) -> None:
        if conn.closed or self._sel is None:
            return
        events = selectors.EVENT_READ | (selectors.EVENT_WRITE if conn.want_write else 0)
        with contextlib.suppress(KeyError, ValueError):
            self._sel.modify(conn.sock, events, self._on_conn_event(conn))

    def _close_conn(self, conn: _Conn, reset: bool) -> None:
        if conn.closed:
            return
        conn.closed = True
        self._conns.discard(conn)
        self._forget(conn.sock)
        with contextlib.suppress(OSError):
            if reset:
                conn.sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
                )
            else:
                conn.sock.shutdown(socket.SHUT_RDWR)
        conn.sock.close()


def alternating(code: int = 200) -> Behaviour:
    """A behaviour answering every other transaction (per Call-ID and CSeq)."""
    counter = itertools.count()
    decided: dict[tuple[str | None, str | None], int | None] = {}

    def every_other(req: Request) -> int | None:
        key = (req.call_id, req.cseq)
        if key not in decided:
            decided[key] = code if next(counter) % 2 == 0 else None
        return decided[key]

    return every_other


def parse_mode(mode: str) -> Answer | str | None:
    """A CLI mode -> Answer, None (blackhole), or the strings ``close`` / ``alternate``."""
    kind, _, rest = mode.strip().partition(":")
    if kind in ("blackhole", "none"):
        return None
    if kind == "close":
        return "close"
    if kind == "delay":
        seconds, _, code = rest.partition(":")
        return Answer(int(code or 200), float(seconds))
    if kind == "alternate":
        int(rest or 200)
        return "alternate"
    return Answer(int(kind))


def hostport(text: str) -> tuple[str, int]:
    """``127.0.0.1:5060``, ``[::1]:5060`` -> (host, port)."""
    host, _, port = text.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--udp", type=hostport, help="HOST:PORT to listen on with UDP")
    parser.add_argument("--tcp", type=hostport, help="HOST:PORT to listen on with TCP")
    parser.add_argument("--host", default="127.0.0.1", help="both UDP and TCP (no --udp/--tcp)")
    parser.add_argument("--port", type=int, default=5060)
    parser.add_argument("--mode", default="200", help="CODE|blackhole|alternate[:CODE]|"
                        "delay:SECONDS[:CODE]|close")  # fmt: skip
    parser.add_argument("--mode-file", help="file whose content (re-read per request) is the mode")
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log requests (CLOCK_MONOTONIC) to stderr"
    )
    args = parser.parse_args(argv)

    listeners: dict[tuple[str, int], dict[str, bool]] = {}
    if args.udp is None and args.tcp is None:
        listeners[(args.host, args.port)] = {"udp": True, "tcp": True}
    for proto in ("udp", "tcp"):
        where = getattr(args, proto)
        if where is not None:
            listeners.setdefault(where, {"udp": False, "tcp": False})[proto] = True

    try:
        parse_mode(args.mode)
    except ValueError:
        parser.error(f"bad --mode {args.mode!r}")

    def current_mode() -> str:
        """The mode file's content if it is a valid mode (it may be mid-write), else --mode."""
        if args.mode_file:
            with contextlib.suppress(OSError, ValueError), open(args.mode_file) as f:
                mode = f.read().strip()
                parse_mode(mode)
                return mode or str(args.mode)
        return str(args.mode)

    alternates: dict[str, Behaviour] = {}

    def behaviour(req: Request) -> int | Answer | None:
        mode = current_mode()
        if args.verbose:
            print(f"{req.mono:.6f} {req.transport} {req.source} {req.method} {req.uri} -> {mode}",
                  file=sys.stderr, flush=True)  # fmt: skip
        decision = parse_mode(mode)
        if decision == "alternate":
            code = int(mode.partition(":")[2] or 200)
            return alternates.setdefault(mode, alternating(code))(req)
        return None if isinstance(decision, str) else decision

    uases = [
        ScriptedUAS(host, port, udp=p["udp"], tcp=p["tcp"]) for (host, port), p in listeners.items()
    ]
    for uas in uases:
        uas.set_behaviour(behaviour)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        for uas in uases:
            uas.start()
            protos = "+".join(p for p in ("udp", "tcp") if getattr(uas, p))
            print(f"uas listening {protos} {uas.host}:{uas.port} mode {args.mode}", flush=True)
        while True:  # apply `close` (and undo it) from the mode file without a request
            closed = parse_mode(current_mode()) == "close"
            for uas in uases:
                if closed and uas.listening:
                    uas.close()
                elif not closed and not uas.listening:
                    uas.reopen()
            time.sleep(0.1)
    except KeyboardInterrupt:
        pass
    finally:
        for uas in uases:
            uas.stop()


if __name__ == "__main__":
    main()
