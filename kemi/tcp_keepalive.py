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
pidfd_getfd, tcpops if refused), ``pidfd`` (never tcpops) or ``tcpops`` (always tcpops).
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import sys

from ka_core import tcpka
from ka_core.errors import InvalidArgument
from ka_core.tcpka import TcpConn, TcpKaError
from ka_core.uri import parse_uri
from kemi import ksr_port
from kemi.functions import script_function

SYS_PIDFD_GETFD = 438  # the same number on every architecture with the unified syscall table
METHODS = ("auto", "pidfd", "tcpops")
_REFUSED = (errno.EPERM, errno.EACCES, errno.ENOSYS)

Address = tuple[str, int]
Values = tuple[int, int, int] | None
"""(idle, count, interval) to enable, None to disable."""

_tcp_main_pid: int | None = None
_method: str | None = None
_announced: set[str] = set()


class Refused(Exception):
    """The kernel refused access to tcp main's file descriptors."""


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
    _set(conid, values)
    return 1


@script_function("tcp_keepalive_disable")
def tcp_keepalive_disable(conid: object = None) -> int:
    """On the current message's connection, or on connection ``conid``.  1 ok, -1 error."""
    _set(None if conid is None else tcpka.conid_value(conid), None)
    return 1


@script_function("tcp_keepalive_enable_uri")
def tcp_keepalive_enable_uri(uri: object, idle: object, count: object, interval: object) -> int:
    """Every TCP/TLS connection of Kamailio whose peer is ``uri``'s host:port (e.g. the
    connection the keepalive pings of a ``;transport=tcp`` destination use).
    1 if at least one connection was found and all were set, -1 otherwise."""
    values = tcpka.keepalive_values(idle, count, interval)
    if not isinstance(uri, str):
        raise InvalidArgument(f"uri must be a string, not {type(uri).__name__}")
    parsed = parse_uri(uri)
    if parsed.transport == "udp":
        raise InvalidArgument(f"{uri}: transport=udp has no TCP connection")
    _check_platform()
    table = _tcp_list()
    conns: list[TcpConn] = []
    for ip in _resolve(parsed.host, parsed.port):
        conns += tcpka.connections_to(table, ip, parsed.port)
    if not conns:
        raise TcpKaError(f"no TCP connection to {parsed.host}:{parsed.port}")
    for conn in conns:
        _set_conn(conn, values)
    return 1


# ---- paths -------------------------------------------------------------------------------


def _set(conid: int | None, values: Values) -> None:
    _check_platform()
    proto, cur_conid, si, sp, ri, rp = ksr_port.message_connection()
    current = _as_int(cur_conid)
    if conid is None or conid == current:
        if str(proto).lower() not in tcpka.STREAM_PROTOS:
            what = "the current message" if conid is None else f"conid {conid}"
            raise TcpKaError(f"{what}: not a TCP connection (message proto {proto})")
        local = (tcpka.normalize_ip(str(ri)), _port(rp))
        remote = (tcpka.normalize_ip(str(si)), _port(sp))
        fd = _own_fd(local, remote)
        if fd is not None:
            _announce("own", "current connections: own file descriptor")
            _apply(fd, values)
            return
        if current is None:
            raise TcpKaError(f"no socket {local} <-> {remote} in this process and no $conid")
        conid = current  # not held here (unexpected): reach it like any other connection
    conn = _tcp_list().get(conid)
    if conn is None:
        raise TcpKaError(f"unknown conid {conid} (not in core.tcp_list)")
    _set_conn(conn, values)


def _set_conn(conn: TcpConn, values: Values) -> None:
    """Any connection from ``core.tcp_list``: own fd, else pidfd_getfd, else tcpops."""
    if conn.type not in tcpka.STREAM_TYPES:
        raise TcpKaError(f"conid {conn.conid} is a {conn.type} connection, not TCP")
    local, remote = (conn.dst_ip, conn.dst_port), (conn.src_ip, conn.src_port)
    fd = _own_fd(local, remote)
    if fd is not None:
        _announce("own", "current connections: own file descriptor")
        _apply(fd, values)
        return
    method = _configured_method()
    if method != "tcpops":
        try:
            fd = _fd_from_tcp_main(conn)
        except Refused as exc:
            if method == "pidfd":
                msg = f"conid {conn.conid}: {exc} (KA_TCP_KEEPALIVE_METHOD=pidfd)"
                raise TcpKaError(msg) from None
            _announce("tcpops", f"other connections: tcpops fallback ({exc})")
        else:
            _announce("pidfd", f"other connections: pidfd_getfd on tcp main pid {_tcp_main_pid}")
            _apply(fd, values)
            return
    else:
        _announce("tcpops", "other connections: tcpops (KA_TCP_KEEPALIVE_METHOD=tcpops)")
    _tcpops(conn.conid, values)


def _tcpops(conid: int, values: Values) -> None:
    if not ksr_port.tcpops_loaded():
        raise TcpKaError(
            f"conid {conid}: cannot reach its socket (no access to tcp main) "
            "and tcpops.so is not loaded"
        )
    if values is None:
        rc = ksr_port.tcpops_keepalive_disable_cid(conid)
    else:
        rc = ksr_port.tcpops_keepalive_enable_cid(conid, *values)
    if rc < 0:
        raise TcpKaError(f"conid {conid}: tcpops failed (rc {rc})")


def _apply(fd: int, values: Values) -> None:
    """setsockopt on ``fd`` (a duplicate, closed here)."""
    try:
        sock = socket.socket(fileno=fd)
    except OSError:
        os.close(fd)
        raise
    with sock:
        if values is None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 0)
            return
        idle, count, interval = values
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, count)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, interval)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)


def _own_fd(local: Address, remote: Address) -> int | None:
    """A duplicate of this process's TCP socket ``local`` <-> ``remote``, or None."""
    for name in os.listdir("/proc/self/fd"):
        try:
            if not os.readlink(f"/proc/self/fd/{name}").startswith("socket:"):
                continue
            dup = os.dup(int(name))
        except (OSError, ValueError):
            continue  # closed meanwhile (the listdir fd itself)
        try:
            sock = socket.socket(fileno=dup)
        except OSError:
            os.close(dup)
            continue
        try:
            if (
                sock.type == socket.SOCK_STREAM
                and sock.family in (socket.AF_INET, socket.AF_INET6)
                and _address(sock.getsockname()) == local
                and _address(sock.getpeername()) == remote
            ):
                return sock.detach()
        except OSError:
            pass  # not connected (listening socket)
        finally:
            sock.close()  # no-op after detach()
    return None


def _fd_from_tcp_main(conn: TcpConn) -> int:
    """A duplicate of tcp main's fd of ``conn``.

    Raises:
        Refused: the kernel denies access to tcp main's fds.
        TcpKaError: the socket is gone.
    """
    local, remote = (conn.dst_ip, conn.dst_port), (conn.src_ip, conn.src_port)
    inode = _inode(local, remote)
    if inode is None:
        raise TcpKaError(f"conid {conn.conid}: no socket {local} <-> {remote} in /proc/net/tcp")
    if not hasattr(os, "pidfd_open"):
        raise Refused("os.pidfd_open is not available")
    pid = _main_pid()
    for _ in range(2):  # tcp main may close and reuse the fd number in between: check, retry
        target = _fd_with_inode(pid, inode)
        if target is None:
            raise TcpKaError(f"conid {conn.conid}: tcp main (pid {pid}) holds no socket {inode}")
        fd = _pidfd_getfd(pid, target)
        if os.fstat(fd).st_ino == inode:
            return fd
        os.close(fd)
    raise TcpKaError(f"conid {conn.conid}: socket {inode} changed under us in tcp main")


def _fd_with_inode(pid: int, inode: int) -> int | None:
    directory = f"/proc/{pid}/fd"
    try:
        names = os.listdir(directory)
    except PermissionError as exc:
        raise Refused(f"{directory}: {exc.strerror}") from None
    for name in names:
        try:
            link = os.readlink(f"{directory}/{name}")
        except PermissionError as exc:
            raise Refused(f"{directory}: {exc.strerror}") from None
        except OSError:
            continue
        if tcpka.socket_inode(link) == inode:
            return int(name)
    return None


def _pidfd_getfd(pid: int, target: int) -> int:
    try:
        pidfd = os.pidfd_open(pid)
    except OSError as exc:
        if exc.errno in _REFUSED:
            raise Refused(f"pidfd_open({pid}): {exc.strerror}") from None
        raise
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        fd = int(
            libc.syscall(
                ctypes.c_long(SYS_PIDFD_GETFD), ctypes.c_int(pidfd), ctypes.c_int(target),
                ctypes.c_uint(0),
            )
        )  # fmt: skip
        if fd < 0:
            code = ctypes.get_errno()
            if code in _REFUSED:
                raise Refused(f"pidfd_getfd on tcp main pid {pid}: {os.strerror(code)}")
            raise OSError(code, f"pidfd_getfd({pid}, {target}): {os.strerror(code)}")
        return fd
    finally:
        os.close(pidfd)


def _inode(local: Address, remote: Address) -> int | None:
    """Inode of the socket ``local`` <-> ``remote``: sock_diag, else /proc/net/tcp[6]."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, tcpka.NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(1.0)
            nl.sendto(tcpka.diag_request(local, remote), (0, 0))
            return tcpka.diag_inode(nl.recv(65536), local, remote)
    except (OSError, TcpKaError) as exc:
        _announce("procnet", f"/proc/net/tcp to find sockets (sock_diag: {exc})")
    v6 = ":" in local[0]
    for name in ("tcp6", "tcp") if v6 else ("tcp", "tcp6"):
        try:
            with open(f"/proc/net/{name}") as f:
                inode = tcpka.find_inode(f.read(), local, remote)
        except FileNotFoundError:
            continue
        if inode is not None:
            return inode
    return None


# ---- Kamailio state ----------------------------------------------------------------------


def _rpc(method: str) -> str:
    code, body = ksr_port.jsonrpc_exec(f'{{"jsonrpc": "2.0", "method": "{method}", "id": 1}}')
    if str(code) != "200" or not isinstance(body, str):
        raise TcpKaError(f"{method} via jsonrpcs failed: code {code}")
    return body


def _tcp_list() -> dict[int, TcpConn]:
    return tcpka.parse_tcp_list(_rpc("core.tcp_list"))


def _main_pid() -> int:
    global _tcp_main_pid
    if _tcp_main_pid is None:
        _tcp_main_pid = tcpka.tcp_main_pid(_rpc("core.psx"))
    return _tcp_main_pid


def _configured_method() -> str:
    global _method
    if _method is None:
        value = (ksr_port.define("KA_TCP_KEEPALIVE_METHOD") or "auto").strip().strip('"').lower()
        if value not in METHODS:
            ksr_port.err(f"KA_TCP_KEEPALIVE_METHOD {value!r} is not one of {METHODS}; using auto")
            value = "auto"
        _method = value
    return _method


def _announce(key: str, text: str) -> None:
    if key not in _announced:
        _announced.add(key)
        ksr_port.info(f"tcp_keepalive: process {os.getpid()} uses {text}")


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


def _address(sockaddr: object) -> Address:
    assert isinstance(sockaddr, tuple)
    return tcpka.normalize_ip(str(sockaddr[0])), int(sockaddr[1])


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
