"""The pinger process: an rtimer ``mode=1`` callback that never returns.

Theory of operation.  Threads never run in SIP workers on 5.6.3 (app_python3 never releases
the GIL), but they do in a process whose Python code blocks in Python.  So:

* the **core thread** owns the ``Prober``: each step it hands it the shared ring's entries,
  sends the pings it returns (OPTIONS through Kamailio's sockets, without tm: see
  ``ka_core.probe.wire``), acts on its events (a log line, a user
  callback), serves the BINRPC socket, and sleeps in ``select`` until the step's deadline
  (pings and timeouts sit on a 100 ms grid, see ``ka_core.probe.scheduler``) or a wake-up byte
  from another process (an RPC, an added destination, a reply that changes a state);
* the **main thread** (the rtimer callback) starts it and parks in ``join``.  The core thread
  is thus the only thread that calls ``KSR``, so request building never races.
"""

from __future__ import annotations

import gc
import importlib
import os
import secrets
import select
import threading
import traceback
from collections.abc import Callable
from typing import TypeVar

from ka_core.config.banner import pinger_started
from ka_core.events import Event, StateChanged
from ka_core.node import Inputs, Node
from ka_core.probe import replies
from ka_core.probe.digest import CHALLENGE_HEADERS
from ka_core.probe.liveness import PingerStatus
from ka_core.probe.outlier import parse_retry_after
from ka_core.probe.ping_text import busy_line
from ka_core.probe.prober import Ping, Prober
from ka_core.probe.wire import retransmit_offsets
from ka_core.script import callbacks
from ka_core.settings import socket_tag
from ka_core.store import ring
from ka_core.store.layout import FLAG_SOCKET
from kemi import events as ka_events
from kemi import persistence, wakeup
from kemi.cluster import Cluster
from kemi.dispatcher_link import DispatcherLink
from kemi.dns_resolver import DnsNames
from kemi.jsonrpc_socket import JsonrpcSocket
from kemi.rpc_server import RpcServer
from kemi.runtime import Runtime
from kemi.sender import Sender

MAX_SLEEP_S = 5.0
"""With nothing due the pinger still wakes this often (a wake-up costs ~0.2 ms of CPU on a
VM); everything that needs it sooner writes the wake pipe."""
JOIN_WAIT_S = 3600.0
"""The main thread only waits for the core thread (which never ends): wake it rarely."""
FREEZE_EVERY_S = 30.0
"""How often the pinger moves what it holds (destinations, the schedule) out of the garbage
collector's reach: with 100,000 destinations a full collection paused pings by tens of ms."""


def resolve_callback(path: str) -> Callable[..., object]:
    """``module:function`` (or ``module:Class.method``) to the callable, in this process."""
    module_name, _, qualname = path.partition(":")
    target: object = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{path} is not callable")
    return target


Server = TypeVar("Server")


def served(kind: str, path: str, make: Callable[[], Server]) -> Server:
    """``make()``, with an ``OSError`` that names the socket (``kemi.startup`` logs it)."""
    try:
        return make()
    except OSError as exc:
        where = os.path.dirname(path) or "."
        raise RuntimeError(
            f"cannot create the {kind} socket {path}: {exc.strerror or exc} "
            f"(that user needs write access to {where})"
        ) from None


class Pinger:
    def __init__(self, rt: Runtime, handler: object = None) -> None:
        """``handler``: the script's handler object, whose ``event_callback`` method gets
        the state changes (``kemi.events``)."""
        self._rt = rt
        self._prober = Prober(
            rt.table,
            delete_counter=rt.config.delete_counter,
            ping_timeout_s=rt.config.ping_timeout_ms / 1000.0,
            policy=rt.config.policy,
            down_backoff_max_s=rt.config.down_backoff_max,
            retransmit=retransmit_offsets(rt.config.ping_timeout_ms / 1000.0),
            ping_proxy=rt.config.ping_proxy,
            ping_method=rt.config.ping_method,
            ejection=rt.config.ejection,
        )
        self._cluster = None if rt.cluster is None else Cluster(rt, rt.cluster, self._prober)
        self._events = ka_events.EventSink(rt, handler)
        self._dns = DnsNames(rt) if rt.config.dns else None  # KA_DNS: names resolved here
        self._node = Node(
            rt.table, self._prober,
            None if self._cluster is None else self._cluster.machine,
            None if self._dns is None else self._dns.machine,
        )  # fmt: skip
        self._unsent: list[int] = []
        self._dispatcher = DispatcherLink(rt) if rt.config.dispatcher_bridge else None
        self._writer = persistence.writer(rt.table, rt.config, rt.wall)  # KA_STATE_FILE
        self._frozen_at = 0.0
        self._prober.use_cnonce(lambda seq: secrets.token_hex(8))
        self._sender = Sender(rt.ksr, rt.key, rt.prefix, rt.config.ping_from)
        self._servers: list[RpcServer | JsonrpcSocket] = []
        config = rt.config
        if config.rpc_socket:
            self._servers.append(
                served("kamcmd", config.rpc_socket, lambda: RpcServer(
                    config.rpc_socket, rt.commands, config.ctl_forward, rt.monotonic))
            )  # fmt: skip
        if config.jsonrpc_socket:  # for kamcli
            self._servers.append(
                served("kamcli", config.jsonrpc_socket, lambda: JsonrpcSocket(
                    config.jsonrpc_socket, rt.commands, config.jsonrpc_forward, rt.monotonic))
            )  # fmt: skip

    def run_forever(self) -> None:
        """Main thread: start the core thread and park; the core thread does everything.

        The main thread blocks in ``join`` (GIL released) and never touches Kamailio again,
        so the core thread is the only KSR caller and borrows an idle context.  Handing each
        ping to the main thread instead cost a GIL hand-off per job (measured: ~10x the CPU).
        """
        self._rt.table.header.write_pinger_life(PingerStatus.RUNNING, self._rt.monotonic())
        self._rt.ksr.info(pinger_started(self._rt.config, self._rt.table.count))
        if self._writer is not None:
            self._writer.start()
        if self._dns is not None:
            self._dns.start()
        core = threading.Thread(target=self._core_loop, name="ka-core", daemon=True)
        core.start()
        while core.is_alive():
            core.join(timeout=JOIN_WAIT_S)

    # -- core thread ---------------------------------------------------------------------

    def _core_loop(self) -> None:
        while True:
            try:
                self.run_once()
            except Exception:
                self._rt.limited_err("pinger core", f"pinger core error: {traceback.format_exc()}")
                select.select([], [], [], 0.1)

    def run_once(self) -> None:
        """One step of the core thread: read the clock once, drain the inputs, step the node
        (``ka_core.node``), perform what it returns, then wait for its deadline or a wake-up."""
        rt, cluster, dns = self._rt, self._cluster, self._dns
        now, wall = rt.monotonic(), rt.wall()
        inputs = Inputs(rt.table.drain(), self._unsent)
        inputs.challenges = rt.challenges.drain()  # after the ring: see kemi.challenges
        self._unsent = []
        if cluster is not None:
            inputs.messages = cluster.messages()
            inputs.dmq = cluster.dmq_nodes() if self._node.wants_dmq_nodes(now) else None
        if dns is not None:
            inputs.resolutions = dns.answers()
        step = self._node.step(now, wall, inputs, self._send)
        if self._sender.busy:
            rt.limited_err("socket busy", busy_line(self._sender.busy))
            self._sender.busy = 0
        for warning in step.warnings:
            rt.ksr.warn(warning)
        if dns is not None:
            for names_out in step.names:
                dns.perform(names_out)
        if cluster is not None:
            for cluster_out in step.cluster:
                cluster.perform(cluster_out)
        for event in step.events:
            try:
                self._act(event)
            except Exception:
                rt.ksr.err(f"keepalive event {event!r} failed: {traceback.format_exc()}")
        deadline = step.deadline
        if self._dispatcher is not None:
            self._dispatcher.step(now)
            later_sync = self._dispatcher.bridge.next_sync
            deadline = later_sync if deadline is None else min(deadline, later_sync)
        if self._writer is not None:
            self._writer.report(rt.ksr)  # its thread never calls KSR
        later = rt.monotonic()
        if later - self._frozen_at >= FREEZE_EVERY_S:
            gc.freeze()  # long-lived: never scanned again (freed by reference counts)
            self._frozen_at = later
        self._wait(MAX_SLEEP_S if deadline is None else deadline - later)

    def _wait(self, seconds: float) -> None:
        """Sleep in ``select`` at most ``seconds`` (and ``MAX_SLEEP_S``): a wake-up byte or
        an RPC socket ends it sooner; the RPC sockets are served here."""
        readers: list[int] = [self._rt.wake_read_fd, self._rt.challenges.fileno()]
        writers: list[int] = []
        for server in self._servers:
            r, w = server.fds()
            readers += r
            writers += w
        sleep = max(0.0, min(MAX_SLEEP_S, seconds))
        ready, writable, _ = select.select(readers, writers, [], sleep)
        if self._rt.wake_read_fd in ready:
            wakeup.drain(self._rt.wake_read_fd)
        for server in self._servers:
            server.handle(ready, writable)

    def _send(self, ping: Ping) -> None:
        busy = self._sender.busy
        if not self._sender.send(ping):
            if self._sender.busy == busy:
                self._rt.ksr.warn(f"could not send OPTIONS to {ping.uri}")
            self._unsent.append(ping.seq)  # a failure at the next step

    def _act(self, event: Event) -> None:
        line = callbacks.log_line(event)
        if line is not None:
            level, text = line
            (self._rt.ksr.info if level == callbacks.INFO else self._rt.ksr.warn)(text)
        call = callbacks.user_call(event)
        try:
            if call is not None:
                path, rtt_ms, args = call
                callbacks.call_with_rtt(resolve_callback(path), rtt_ms, *args)
        finally:
            if isinstance(event, StateChanged):
                self._events.deliver(event)  # the script's method sees every change
                if self._dispatcher is not None:
                    self._dispatcher.on_event(event)


def on_reply(rt: Runtime) -> int:
    """Call from ``ksr_reply_route`` and return what it returns (``ka_core.probe.replies``):
    0 for every reply with our Call-ID, 1 for anybody else's."""
    callid = rt.ksr.reply_callid()
    if not callid or not callid.startswith(rt.prefix):
        return replies.PASS
    code, source, branch = rt.ksr.reply_fields()
    verdict, reply, warning = replies.classify(
        callid, code, branch, prefix=rt.prefix, key=rt.key, capacity=rt.table.capacity
    )
    if warning:
        rt.ksr.warn(f"{warning}, from {source}")
    if reply is None:
        return verdict
    if reply.code in CHALLENGE_HEADERS:  # before the ring entry: see kemi.challenges
        header = rt.ksr.reply_header(CHALLENGE_HEADERS[reply.code])
        if header:
            rt.challenges.send(reply.seq, header)
    state, flags = rt.table.state_flags(reply.slot)
    local = socket_tag(*rt.ksr.reply_local()) if flags & FLAG_SOCKET else 0
    tag = rt.source_tags.tag(reply.slot, source) if source else 0
    if rt.config.retry_after_max and reply.code in rt.config.retry_after_codes:
        seconds = parse_retry_after(rt.ksr.reply_header("Retry-After"))
        if seconds and not rt.table.push(ring.retry_after(reply.seq, seconds), 1):
            rt.ksr.warn("pinger queue full: Retry-After dropped")
    if not rt.table.push_reply(reply.seq, reply.code, rt.monotonic(), rt.wall(), tag, local):
        rt.ksr.warn("pinger queue full: reply dropped")
    elif replies.wakes(state, flags, reply.code, rt.wakes_on_change):
        rt.wake()
    return verdict
