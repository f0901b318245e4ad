"""Finding and configuring the kernel socket of a Kamailio TCP connection (no KSR here).

* ``own_fd`` - a duplicate of this process's socket with a given 4-tuple (``/proc/self/fd``);
* ``fd_from_tcp_main`` - a duplicate of Kamailio's ``tcp main`` socket for a connection:
  inode from sock_diag netlink (``/proc/net/tcp`` if netlink fails), fd number from
  ``/proc/<pid>/fd``, then ``pidfd_open`` + ``pidfd_getfd`` (Linux >= 5.6).  Raises
  ``Refused`` when the kernel denies access (see docs/tcp_keepalive.md for when);
* ``apply`` - set or clear keepalive on a duplicate and close it.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
from collections.abc import Callable

from ka_core import tcpka
from ka_core.script.tcp_calls import Address, Values
from ka_core.tcpka import TcpConn, TcpKaError

TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)  # Linux's value
SYS_PIDFD_GETFD = 438  # the same number on every architecture with the unified syscall table
_REFUSED = (errno.EPERM, errno.EACCES, errno.ENOSYS)


class Refused(Exception):
    """The kernel refused access to tcp main's file descriptors."""


def apply(fd: int, values: Values) -> None:
    """setsockopt on ``fd`` (a duplicate, closed here).

    Kamailio 6 sets ``TCP_USER_TIMEOUT`` on its connections (10 s by default, measured on
    6.0.1 and 6.1.5; 5.6 sets none).  With one set, Linux ignores the probe count and resets
    a silent connection when that timeout has passed since the last ACK.  So where the
    socket has one, enabling keepalive also sets it to idle + count x interval: the
    connection is then reset after exactly the probes the script asked for, on every version
    (and that is also its timeout for unacknowledged data).
    """
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
        if sock.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT):
            budget_ms = (idle + count * interval) * 1000
            sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT, budget_ms)


def own_fd(local: Address, remote: Address) -> int | None:
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
                and address(sock.getsockname()) == local
                and address(sock.getpeername()) == remote
            ):
                return sock.detach()
        except OSError:
            pass  # not connected (listening socket)
        finally:
            sock.close()  # no-op after detach()
    return None


def fd_from_tcp_main(conn: TcpConn, pid: int, on_procnet: Callable[[str], None]) -> int:
    """A duplicate of tcp main's fd of ``conn``.

    Raises:
        Refused: the kernel denies access to tcp main's fds.
        TcpKaError: the socket is gone.
    """
    local, remote = (conn.dst_ip, conn.dst_port), (conn.src_ip, conn.src_port)
    inode = find_inode(local, remote, on_procnet)
    if inode is None:
        raise TcpKaError(f"conid {conn.conid}: no socket {local} <-> {remote} in /proc/net/tcp")
    if not hasattr(os, "pidfd_open"):
        raise Refused("os.pidfd_open is not available")
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


def find_inode(local: Address, remote: Address, on_procnet: Callable[[str], None]) -> int | None:
    """Inode of the socket ``local`` <-> ``remote``: sock_diag, else /proc/net/tcp[6]."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM, tcpka.NETLINK_SOCK_DIAG) as nl:
            nl.settimeout(1.0)
            nl.sendto(tcpka.diag_request(local, remote), (0, 0))
            return tcpka.diag_inode(nl.recv(65536), local, remote)
    except (OSError, TcpKaError) as exc:
        on_procnet(f"/proc/net/tcp to find sockets (sock_diag: {exc})")
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


def address(sockaddr: object) -> Address:
    assert isinstance(sockaddr, tuple)
    return tcpka.normalize_ip(str(sockaddr[0])), int(sockaddr[1])
