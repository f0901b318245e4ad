"""TCP keepalive script functions (the C ``tcpops``/``tcp_keepalive`` functions, in Python).

* ``tcp_keepalive_enable(idle, count, interval)`` / ``tcp_keepalive_enable(conid, idle, count,
  interval)``
* ``tcp_keepalive_disable()`` / ``tcp_keepalive_disable(conid)``
* ``tcp_keepalive_enable_uri(uri, idle, count, interval)`` (beyond the C module): every
  Kamailio TCP/TLS connection whose peer is the URI's host and port.

All return 1 on success and -1 on failure (logged; nothing raises into Kamailio).

How the socket is reached, in this order:

1. **own fd** - the process that is handling a message received over TCP holds the
   connection's file descriptor.  It is found in ``/proc/self/fd`` by comparing each socket's
   ``getsockname()``/``getpeername()`` with the message's ``$Ri:$Rp``/``$si:$sp`` (or with
   ``core.tcp_list``'s addresses for a conid), then ``dup``-ed and configured with
   ``setsockopt``.  Needs no privilege.
2. **pidfd_getfd** - any other connection: its 4-tuple comes from ``core.tcp_list`` (through
   ``KSR.jsonrpcs.exec``), the socket inode from a sock_diag netlink lookup (``/proc/net/tcp``
   if netlink fails), the fd number from
   ``/proc/<tcp main>/fd`` (Kamailio's ``tcp main process`` holds every connection), and a
   duplicate from ``pidfd_open`` + ``pidfd_getfd`` (Linux >= 5.6).  The kernel allows this when
   the caller may ptrace tcp main: always as root; as the same non-root user only while the
   process is dumpable (Kamailio's default; not with ``disable_core_dump=yes``) and Yama
   ``ptrace_scope`` is 0.
3. **tcpops** - when step 2 is refused (EPERM/EACCES, or no pidfd support) and ``tcpops.so``
   is loaded, ``KSR.tcpops.tcp_keepalive_enable_cid``/``tcp_keepalive_disable_cid`` (tcp main
   passes the fd to the worker over its internal socket).  Otherwise -1.

Each process logs once which path it uses.  ``#!define KA_TCP_KEEPALIVE_METHOD`` (or
``-A KA_TCP_KEEPALIVE_METHOD=...``) chooses the path for other connections: ``auto`` (default:
pidfd_getfd, tcpops if refused), ``pidfd`` (never tcpops) or ``tcpops`` (always tcpops); any
other value stops Kamailio at start-up.  The socket work itself is in ``kemi.tcp_fds``.
"""

from __future__ import annotations

import json
import os
import socket
import sys

from ka_core import tcpka
from ka_core.errors import InvalidArgument
from ka_core.tcpka import TcpConn, TcpKaError
from ka_core.uri import parse_uri
from kemi import runtime, tcp_fds
from kemi.functions import script_function
from kemi.runtime import Runtime
from kemi.tcp_fds import Refused, Values

# ---- entry points ------------------------------------------------------------------------


@script_function("tcp_keepalive_enable")
def tcp_keepalive_enable(*args: object) -> int:
    """``(idle, count, interval)`` on the current message's connection, or
    ``(conid, idle, count, interval)`` on connection ``conid``.  1 ok, -1 error."""
    conid: int | None = None
    if len(args) == 3:
        values = tcpka.keepalive_values(*args)
    elif len(args) == 4:
        conid = tcpka.conid_value(args[0])
        values = tcpka.keepalive_values(*args[1:])
    else:
        raise InvalidArgument(
            f"expects (idle, count, interval) or (conid, idle, count, interval), "
            f"got {len(args)} argument(s)"
        )
    _paths().set(conid, values)
    return 1


@script_function("tcp_keepalive_disable")
def tcp_keepalive_disable(conid: object = None) -> int:
    """On the current message's connection, or on connection ``conid``.  1 ok, -1 error."""
    _paths().set(None if conid is None else tcpka.conid_value(conid), None)
    return 1


@script_function("tcp_keepalive_enable_uri")
def tcp_keepalive_enable_uri(uri: object, idle: object, count: object, interval: object) -> int:
    """Every TCP/TLS connection of Kamailio whose peer is ``uri``'s host:port (e.g. the
    connection the keepalive pings of a ``;transport=tcp`` destination use).
    1 if at least one connection was found and all were set, -1 otherwise."""
    values = tcpka.keepalive_values(idle, count, interval)
    parsed = parse_uri(uri)
    if parsed.transport == "udp":
        raise InvalidArgument(f"{uri}: transport=udp has no TCP connection")
    _check_platform()
    paths = _paths()
    table = paths.tcp_list()
    conns: list[TcpConn] = []
    for ip in _resolve(parsed.host, parsed.port):
        conns += tcpka.connections_to(table, ip, parsed.port)
    if not conns:
        raise TcpKaError(f"no TCP connection to {parsed.host}:{parsed.port}")
    for conn in conns:
        paths.set_conn(conn, values)
    return 1


_cached: TcpPaths | None = None


def _paths() -> TcpPaths:
    """This process's ``TcpPaths`` (it caches tcp main's pid)."""
    global _cached
    rt = runtime.get()
    if _cached is None or _cached.rt is not rt:
        _cached = TcpPaths(rt)
    return _cached


# ---- paths -------------------------------------------------------------------------------


class TcpPaths:
    """How this process reaches a connection's socket: own fd, pidfd_getfd or tcpops."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._method = rt.config.tcp_keepalive_method
        self._tcp_main_pid: int | None = None

    def set(self, conid: int | None, values: Values) -> None:
        _check_platform()
        proto, cur_conid, si, sp, ri, rp = self.rt.ksr.message_connection()
        current = _as_int(cur_conid)
        if conid is None or conid == current:
            if str(proto).lower() not in tcpka.STREAM_PROTOS:
                what = "the current message" if conid is None else f"conid {conid}"
                raise TcpKaError(f"{what}: not a TCP connection (message proto {proto})")
            local = (tcpka.normalize_ip(str(ri)), _port(rp))
            remote = (tcpka.normalize_ip(str(si)), _port(sp))
            fd = tcp_fds.own_fd(local, remote)
            if fd is not None:
                self._announce("own", "current connections: own file descriptor")
                tcp_fds.apply(fd, values)
                return
            if current is None:
                raise TcpKaError(f"no socket {local} <-> {remote} in this process and no $conid")
            conid = current  # not held here (unexpected): reach it like any other connection
        conn = self.tcp_list().get(conid)
        if conn is None:
            raise TcpKaError(f"unknown conid {conid} (not in core.tcp_list)")
        self.set_conn(conn, values)

    def set_conn(self, conn: TcpConn, values: Values) -> None:
        """Any connection from ``core.tcp_list``: own fd, else pidfd_getfd, else tcpops."""
        if conn.type not in tcpka.STREAM_TYPES:
            raise TcpKaError(f"conid {conn.conid} is a {conn.type} connection, not TCP")
        local, remote = (conn.dst_ip, conn.dst_port), (conn.src_ip, conn.src_port)
        fd = tcp_fds.own_fd(local, remote)
        if fd is not None:
            self._announce("own", "current connections: own file descriptor")
            tcp_fds.apply(fd, values)
            return
        if self._method == "tcpops":
            self._announce("tcpops", "other connections: tcpops (KA_TCP_KEEPALIVE_METHOD=tcpops)")
            self._tcpops(conn.conid, values)
            return
        try:
            pid = self._main_pid()
            fd = tcp_fds.fd_from_tcp_main(conn, pid, lambda text: self._announce("procnet", text))
        except Refused as exc:
            if self._method == "pidfd":
                msg = f"conid {conn.conid}: {exc} (KA_TCP_KEEPALIVE_METHOD=pidfd)"
                raise TcpKaError(msg) from None
            self._announce("tcpops", f"other connections: tcpops fallback ({exc})")
            self._tcpops(conn.conid, values)
            return
        self._announce("pidfd", f"other connections: pidfd_getfd on tcp main pid {pid}")
        tcp_fds.apply(fd, values)

    def tcp_list(self) -> dict[int, TcpConn]:
        return tcpka.parse_tcp_list(self._rpc("core.tcp_list"))

    def _tcpops(self, conid: int, values: Values) -> None:
        ksr = self.rt.ksr
        if not ksr.tcpops_loaded():
            raise TcpKaError(
                f"conid {conid}: cannot reach its socket (no access to tcp main) "
                "and tcpops.so is not loaded"
            )
        if values is None:
            rc = ksr.tcpops_keepalive_disable_cid(conid)
        else:
            rc = ksr.tcpops_keepalive_enable_cid(conid, *values)
        if rc < 0:
            raise TcpKaError(f"conid {conid}: tcpops failed (rc {rc})")

    def _rpc(self, method: str) -> str:
        request = json.dumps({"jsonrpc": "2.0", "method": method, "id": 1})
        code, body = self.rt.ksr.jsonrpc_exec(request)
        if str(code) != "200" or not isinstance(body, str):
            raise TcpKaError(f"{method} via jsonrpcs failed: code {code}")
        return body

    def _main_pid(self) -> int:
        if self._tcp_main_pid is None:
            self._tcp_main_pid = tcpka.tcp_main_pid(self._rpc("core.psx"))
        return self._tcp_main_pid

    def _announce(self, key: str, text: str) -> None:
        self.rt.announce(f"tcp:{key}", f"tcp_keepalive: process {os.getpid()} uses {text}")


# ---- helpers -----------------------------------------------------------------------------


def _check_platform() -> None:
    if not sys.platform.startswith("linux") or not hasattr(socket, "TCP_KEEPIDLE"):
        raise TcpKaError(f"TCP keepalive functions need Linux (this is {sys.platform})")


def _resolve(host: str, port: int) -> list[str]:
    """IP literal as is; a name through the system resolver (may block)."""
    try:
        return [tcpka.normalize_ip(host)]
    except TcpKaError:
        pass
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TcpKaError(f"cannot resolve {host}: {exc}") from None
    return sorted({tcpka.normalize_ip(str(info[4][0])) for info in infos})


def _as_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _port(value: object) -> int:
    port = _as_int(value)
    if port is None:
        raise TcpKaError(f"the current message has no port ({value!r})")
    return port
