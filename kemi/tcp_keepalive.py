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

import os
import socket
import sys

from ka_core import tcpka
from ka_core.script import tcp_calls
from ka_core.script.tcp_calls import Values
from ka_core.tcpka import TcpConn, TcpKaError
from kemi import runtime, tcp_fds
from kemi.functions import script_function
from kemi.runtime import Runtime
from kemi.tcp_fds import Refused

# ---- entry points ------------------------------------------------------------------------


@script_function("tcp_keepalive_enable")
def tcp_keepalive_enable(*args: object) -> int:
    """``(idle, count, interval)`` on the current message's connection, or
    ``(conid, idle, count, interval)`` on connection ``conid``.  1 ok, -1 error."""
    _paths().set(*tcp_calls.enable_args(args))
    return 1


@script_function("tcp_keepalive_disable")
def tcp_keepalive_disable(conid: object = None) -> int:
    """On the current message's connection, or on connection ``conid``.  1 ok, -1 error."""
    _paths().set(tcp_calls.optional_conid(conid), None)
    return 1


@script_function("tcp_keepalive_enable_uri")
def tcp_keepalive_enable_uri(uri: object, idle: object, count: object, interval: object) -> int:
    """Every TCP/TLS connection of Kamailio whose peer is ``uri``'s host:port (e.g. the
    connection the keepalive pings of a ``;transport=tcp`` destination use).
    1 if at least one connection was found and all were set, -1 otherwise."""
    values = tcpka.keepalive_values(idle, count, interval)
    host, port = tcp_calls.uri_peer(uri)
    _check_platform()
    paths = _paths()
    table = paths.tcp_list()
    for conn in tcp_calls.connections_to(table, _resolve(host, port), host, port):
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
        target = tcp_calls.message_target(conid, self.rt.ksr.message_connection())
        if target.sockets is not None:
            if self._own(target.sockets, values):
                return
            conid = tcp_calls.not_held(target)  # reach it like any other connection
        assert conid is not None
        self.set_conn(tcp_calls.listed(self.tcp_list(), conid), values)

    def set_conn(self, conn: TcpConn, values: Values) -> None:
        """Any connection from ``core.tcp_list``: own fd, else pidfd_getfd, else tcpops."""
        if self._own(tcp_calls.conn_sockets(conn), values):
            return
        if self._method == "tcpops":
            self._announce(*tcp_calls.TCPOPS_CHOSEN)
            self._tcpops(conn.conid, values)
            return
        try:
            pid = self._main_pid()
            fd = tcp_fds.fd_from_tcp_main(
                conn, pid, lambda text: self._announce(*tcp_calls.procnet_used(text))
            )
        except Refused as exc:
            if self._method == "pidfd":
                raise tcp_calls.pidfd_refused(conn.conid, exc) from None
            self._announce(*tcp_calls.tcpops_fallback(exc))
            self._tcpops(conn.conid, values)
            return
        self._announce(*tcp_calls.pidfd_used(pid))
        tcp_fds.apply(fd, values)

    def tcp_list(self) -> dict[int, TcpConn]:
        return tcpka.parse_tcp_list(self._rpc("core.tcp_list"))

    def _own(self, sockets: tuple[tcp_calls.Address, tcp_calls.Address], values: Values) -> bool:
        """Set it through this process's own fd of the socket, if it has one."""
        fd = tcp_fds.own_fd(*sockets)
        if fd is None:
            return False
        self._announce(*tcp_calls.OWN)
        tcp_fds.apply(fd, values)
        return True

    def _tcpops(self, conid: int, values: Values) -> None:
        ksr = self.rt.ksr
        if not ksr.tcpops_loaded():
            raise tcp_calls.tcpops_missing(conid)
        if values is None:
            rc = ksr.tcpops_keepalive_disable_cid(conid)
        else:
            rc = ksr.tcpops_keepalive_enable_cid(conid, *values)
        tcp_calls.tcpops_result(conid, rc)

    def _rpc(self, method: str) -> str:
        code, body = self.rt.ksr.jsonrpc_exec(tcp_calls.rpc_request(method))
        return tcp_calls.rpc_body(method, code, body)

    def _main_pid(self) -> int:
        if self._tcp_main_pid is None:
            self._tcp_main_pid = tcpka.tcp_main_pid(self._rpc("core.psx"))
        return self._tcp_main_pid

    def _announce(self, key: str, text: str) -> None:
        self.rt.announce(*tcp_calls.announcement(key, text, os.getpid()))


# ---- helpers -----------------------------------------------------------------------------


def _check_platform() -> None:
    tcp_calls.platform_check(sys.platform, hasattr(socket, "TCP_KEEPIDLE"))


def _resolve(host: str, port: int) -> list[str]:
    """IP literal as is; a name through the system resolver (may block)."""
    literal = tcp_calls.ip_literal(host)
    if literal is not None:
        return [literal]
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise TcpKaError(f"cannot resolve {host}: {exc}") from None
    return sorted({tcpka.normalize_ip(str(info[4][0])) for info in infos})
