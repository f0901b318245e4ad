"""The TCP keepalive script functions' decisions (``kemi/tcp_keepalive.py`` does the I/O):
their arguments, which socket a call means, and the texts of each path and failure.

A call names a connection by the current message (``message_target``: its addresses, so the
process's own fd can be found) or by conid (looked up in ``core.tcp_list``: ``listed``).
The glue then tries the own fd, pidfd_getfd on tcp main and tcpops, in that order, and
logs once per process which one it uses (the ``(key, text)`` pairs below).
"""

from __future__ import annotations

import json
from typing import NamedTuple

from ka_core import tcpka
from ka_core.errors import InvalidArgument
from ka_core.tcpka import TcpConn, TcpKaError
from ka_core.uri import parse_uri

Address = tuple[str, int]
Values = tuple[int, int, int] | None
"""(idle, count, interval) to enable, None to disable."""
OWN = ("own", "current connections: own file descriptor")
TCPOPS_CHOSEN = ("tcpops", "other connections: tcpops (KA_TCP_KEEPALIVE_METHOD=tcpops)")


class Target(NamedTuple):
    conid: int | None
    """The connection to reach through tcp main when this process holds no socket."""
    sockets: tuple[Address, Address] | None
    """(local, remote) of the message's own connection, or None for another conid."""


def enable_args(args: tuple[object, ...]) -> tuple[int | None, tuple[int, int, int]]:
    """``(idle, count, interval)`` or ``(conid, idle, count, interval)``."""
    if len(args) == 3:
        return None, tcpka.keepalive_values(*args)
    if len(args) == 4:
        return tcpka.conid_value(args[0]), tcpka.keepalive_values(*args[1:])
    raise InvalidArgument(
        f"expects (idle, count, interval) or (conid, idle, count, interval), "
        f"got {len(args)} argument(s)"
    )


def optional_conid(conid: object) -> int | None:
    return None if conid is None else tcpka.conid_value(conid)


def uri_peer(uri: object) -> tuple[str, int]:
    """(host, port) of a URI whose connections are meant; UDP has none."""
    parsed = parse_uri(uri)
    if parsed.transport == "udp":
        raise InvalidArgument(f"{uri}: transport=udp has no TCP connection")
    return parsed.host, parsed.port


def connections_to(
    table: dict[int, TcpConn], ips: list[str], host: str, port: int
) -> list[TcpConn]:
    """Every listed connection to one of ``ips`` at ``port``; none is an error."""
    conns: list[TcpConn] = []
    for ip in ips:
        conns += tcpka.connections_to(table, ip, port)
    if not conns:
        raise TcpKaError(f"no TCP connection to {host}:{port}")
    return conns


def ip_literal(host: str) -> str | None:
    """``host`` normalised when it is an IP address, None for a name."""
    try:
        return tcpka.normalize_ip(host)
    except TcpKaError:
        return None


def platform_check(platform: str, has_keepidle: bool) -> None:
    if not platform.startswith("linux") or not has_keepidle:
        raise TcpKaError(f"TCP keepalive functions need Linux (this is {platform})")


def message_target(conid: int | None, message: tuple[object, ...]) -> Target:
    """What a call on ``conid`` (None: the current message's) means, from the message's
    ``(proto, conid, si, sp, ri, rp)``."""
    proto, cur_conid, si, sp, ri, rp = message
    current = as_int(cur_conid)
    if conid is not None and conid != current:
        return Target(conid, None)
    if str(proto).lower() not in tcpka.STREAM_PROTOS:
        what = "the current message" if conid is None else f"conid {conid}"
        raise TcpKaError(f"{what}: not a TCP connection (message proto {proto})")
    local = (tcpka.normalize_ip(str(ri)), _port(rp))
    remote = (tcpka.normalize_ip(str(si)), _port(sp))
    return Target(current, (local, remote))


def not_held(target: Target) -> int:
    """The conid to reach through tcp main when this process does not hold the message's
    socket (unexpected); without a ``$conid`` that is an error."""
    if target.conid is None:
        assert target.sockets is not None
        local, remote = target.sockets
        raise TcpKaError(f"no socket {local} <-> {remote} in this process and no $conid")
    return target.conid


def listed(table: dict[int, TcpConn], conid: int) -> TcpConn:
    conn = table.get(conid)
    if conn is None:
        raise TcpKaError(f"unknown conid {conid} (not in core.tcp_list)")
    return conn


def conn_sockets(conn: TcpConn) -> tuple[Address, Address]:
    """(local, remote) of a listed connection, which must be a TCP socket."""
    if conn.type not in tcpka.STREAM_TYPES:
        raise TcpKaError(f"conid {conn.conid} is a {conn.type} connection, not TCP")
    return (conn.dst_ip, conn.dst_port), (conn.src_ip, conn.src_port)


def pidfd_refused(conid: int, why: object) -> TcpKaError:
    return TcpKaError(f"conid {conid}: {why} (KA_TCP_KEEPALIVE_METHOD=pidfd)")


def tcpops_fallback(why: object) -> tuple[str, str]:
    return "tcpops", f"other connections: tcpops fallback ({why})"


def pidfd_used(pid: int) -> tuple[str, str]:
    return "pidfd", f"other connections: pidfd_getfd on tcp main pid {pid}"


def procnet_used(text: str) -> tuple[str, str]:
    return "procnet", text


def announcement(key: str, text: str, pid: int) -> tuple[str, str]:
    """The once-per-process key and line of a path this process uses."""
    return f"tcp:{key}", f"tcp_keepalive: process {pid} uses {text}"


def tcpops_missing(conid: int) -> TcpKaError:
    return TcpKaError(
        f"conid {conid}: cannot reach its socket (no access to tcp main) "
        "and tcpops.so is not loaded"
    )


def tcpops_result(conid: int, rc: int) -> None:
    if rc < 0:
        raise TcpKaError(f"conid {conid}: tcpops failed (rc {rc})")


def rpc_request(method: str) -> str:
    return json.dumps({"jsonrpc": "2.0", "method": method, "id": 1})


def rpc_body(method: str, code: object, body: object) -> str:
    """The answer of a jsonrpcs call, or an error naming the call."""
    if str(code) != "200" or not isinstance(body, str):
        raise TcpKaError(f"{method} via jsonrpcs failed: code {code}")
    return body


def as_int(value: object) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _port(value: object) -> int:
    port = as_int(value)
    if port is None:
        raise TcpKaError(f"the current message has no port ({value!r})")
    return port
