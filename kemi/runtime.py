"""Process-wide state, built once in ``mod_init`` (before Kamailio forks).

The shared table's memory (anonymous ``MAP_SHARED`` mmap), its process-shared lock and the
pipe that wakes the pinger are created here, so every forked process inherits the same ones.
``multiprocessing.Lock`` is a POSIX semaphore in shared memory and starts no helper process
(unlike ``multiprocessing.shared_memory``, which breaks Kamailio's shutdown).

The ``Runtime`` carries the Kamailio port and the clocks, and everything below the script
entry points takes it as an argument; ``get()`` is only for those entry points, which
Kamailio calls with the script's arguments alone.
"""

from __future__ import annotations

import contextlib
import functools
import mmap
import multiprocessing
import os
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from ka_core.cluster import status as cluster_status
from ka_core.config.banner import read_defines
from ka_core.config.kaconfig import KaConfig, load_config
from ka_core.loglimit import LogLimiter
from ka_core.ops.access import HttpGuard
from ka_core.ops.commands import RpcCommands, RpcValue
from ka_core.probe.callid import callid_prefix
from ka_core.probe.replies import SourceTags
from ka_core.store import registry
from ka_core.store.records import Record
from ka_core.store.registry import PARAMS_OWNER
from ka_core.store.ring import capacity_for
from ka_core.store.table import SharedTable, buffer_size
from kemi import cluster_port, persistence, wakeup
from kemi.challenges import ChallengeChannel
from kemi.cluster_port import ClusterRuntime
from kemi.ksr_port import Clock, KsrPort


@dataclass(slots=True)
class Runtime:
    config: KaConfig
    table: SharedTable
    commands: RpcCommands
    ksr: KsrPort
    wake_fd: int
    wake_read_fd: int
    token: str
    """Random per start: Call-IDs of this run's pings start with it."""
    http_guard: HttpGuard
    metrics_guard: HttpGuard
    cluster: ClusterRuntime | None = None
    """Cluster mode (``KA_CLUSTER``): the inbox from SIP workers to the pinger, dmq's port."""
    monotonic: Clock = time.monotonic
    wall: Clock = time.time
    wakes_on_change: bool = True
    """The module's health policy is C's: a reply that ``changes_state`` wakes the pinger."""
    announced: set[str] = field(default_factory=set)
    """Per process (a copy after fork): one-time log lines already written."""
    set_up_at: float = 0.0
    """Monotonic time of ``setup()``: how long the pinger has had to start."""
    log_limiter: LogLimiter = field(default_factory=LogLimiter)
    """Per process: errors that can repeat on every call are logged at most once a window."""
    source_tags: SourceTags = field(default_factory=SourceTags)
    """Per process: the source tag of each slot's replies (the reply route's, SIP workers)."""
    challenges: ChallengeChannel = field(default_factory=ChallengeChannel)
    """Digest challenges from SIP workers to the pinger (``kemi.challenges``), made before
    fork like the rest."""
    key: bytes = field(default_factory=lambda: secrets.token_bytes(16))
    """Random per start, made before fork: the Via branch of a ping is a hash of its Call-ID
    with this key, so SIP workers can tell our replies from forged ones."""
    prefix: str = ""
    """``callid_prefix(token)``, made once: every reply route compares a Call-ID with it."""

    def __post_init__(self) -> None:
        self.prefix = callid_prefix(self.token)

    def wake(self) -> None:
        wakeup.poke(self.wake_fd)

    def add(
        self,
        uri: object,
        owner: object,
        *,
        interval_s: float | None = None,
        state_cb: object = "",
        response_cb: object = "",
        user: str = "",
        settings: object = "",
    ) -> Record:
        """Add a destination for a script or the developer API, and wake the pinger so its
        first ping is on time (RPC adds go through ``RpcCommands``, which wakes it too)."""
        rec = registry.add(
            self.table, uri, owner, interval_s=interval_s, wall=self.wall(),
            state_cb=state_cb, response_cb=response_cb, user=user, settings=settings,
            resolve_names=bool(self.config.dns),
        )  # fmt: skip
        self.wake()
        return rec

    def limited_err(self, kind: str, text: str) -> None:
        """Log an error that can repeat on every call, rate-limited per ``kind``."""
        left_out = self.log_limiter.admit(kind, self.monotonic())
        if left_out is not None:
            self.ksr.err(self.log_limiter.text(text, left_out))

    def announce(self, key: str, text: str) -> None:
        """Log ``text`` once per process."""
        if key not in self.announced:
            self.announced.add(key)
            self.ksr.info(text)


_runtime: Runtime | None = None


def build(
    config: KaConfig, ksr: KsrPort, *, monotonic: Clock = time.monotonic, wall: Clock = time.time
) -> Runtime:
    """Create the shared table, seed it with the ``destination`` parameters, install it."""
    global _runtime
    ring, chunks = capacity_for(config.max_destinations), config.string_chunks
    size = buffer_size(config.max_destinations, ring, chunks)
    memory = mmap.mmap(-1, size, flags=mmap.MAP_SHARED)
    SharedTable.format_buffer(
        memoryview(memory), config.max_destinations, ring, config.ping_interval, chunks
    )
    # "fork": on Python 3.14 (forkserver by default) any other lock starts a resource tracker
    # process that keeps Kamailio from exiting on SIGTERM.
    table = SharedTable(memoryview(memory), multiprocessing.get_context("fork").Lock())
    registry.add_static(
        table, config.destinations, PARAMS_OWNER, interval_s=config.ping_interval, wall=wall(),
        resolve_names=bool(config.dns),
    )  # fmt: skip
    persistence.restore(table, config, ksr, wall())  # KA_STATE_FILE; never fails start-up
    read_fd, write_fd = wakeup.pipe()
    cluster = cluster_port.build(config) if config.cluster else None
    table.notes_deletes = cluster is not None
    _runtime = Runtime(
        config=config,
        table=table,
        commands=RpcCommands(
            table,
            wall,
            add_rate=config.rpc_add_rate,
            on_added=functools.partial(wakeup.poke, write_fd),
            resolve_names=bool(config.dns),
            cluster_status=None if cluster is None else cluster_view(cluster),
        ),
        ksr=ksr,
        wake_fd=write_fd,
        wake_read_fd=read_fd,
        token=secrets.token_hex(4),
        http_guard=config.http_guard,
        metrics_guard=config.metrics_guard,
        cluster=cluster,
        monotonic=monotonic,
        wall=wall,
        wakes_on_change=config.policy.is_default,
        set_up_at=monotonic(),
    )
    return _runtime


def cluster_view(cluster: ClusterRuntime) -> Callable[[Sequence[object]], list[RpcValue]]:
    """``keepalive.cluster`` in any process: the status the pinger last published."""
    return lambda params: cluster_status.rpc_view(cluster.inbox.status(), params)


def setup(ksr: KsrPort) -> Runtime:
    """Read ``KA_*`` defines from kamailio.cfg and build the runtime (call in mod_init)."""
    return build(load_config(read_defines(ksr.define)), ksr)


def get() -> Runtime:
    if _runtime is None:
        raise RuntimeError("ka-kemi is not set up: call kemi.handler.setup() in mod_init")
    return _runtime


def close(rt: Runtime) -> None:
    """Release the wake pipe of a runtime no longer used (unit tests build many)."""
    global _runtime
    for fd in (rt.wake_fd, rt.wake_read_fd):
        with contextlib.suppress(OSError):
            os.close(fd)
    rt.challenges.close()
    if _runtime is rt:
        _runtime = None
