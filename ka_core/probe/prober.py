"""The pinger's brain: turns time, table changes and replies into pings and events.

Theory of operation.  Exactly one ``Prober`` exists, in the pinger process.  It is the only
writer of probe results.  Its glue calls ``step(now, wall, table.drain(), unsent)`` in a loop,
sends the returned pings, acts on the events, and sleeps until the returned deadline or until
a process writes to the wake pipe.  Inside a step, in this order:

1. the pings now due are taken and handed to ``send`` at once (before the ring is read, so a
   destination added in this tick gets its first ping on the next one, as the schedule says,
   and no reply processing delays a ping);
2. the ring entries: destinations added by any process are scheduled, replies that SIP
   workers saw are applied (matched by ping sequence number; an unknown, late or duplicated
   sequence is ignored, so stray and spoofed replies never change a state);
3. UDP pings still unanswered are sent again on tm's schedule (``retransmit``), after the
   replies so that an answered ping is not;
4. pings the glue could not hand to Kamailio last step count as failures;
5. pings whose timeout passed fail (after the replies, so a reply that arrived in time wins).

Deletions need no message: every step checks the slot generation in the shared table.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ka_core.events import Event, ProbingStopped, ResponseReceived, StateChanged
from ka_core.policy import DEFAULT_POLICY, OFF, Ejection, Policy
from ka_core.probe.auth_hooks import AuthBook, AuthHooks
from ka_core.probe.cluster_hooks import ClusterHooks
from ka_core.probe.health import backoff_interval, transition
from ka_core.probe.options import Route, route_of
from ka_core.probe.passive import PASSIVE_KINDS, PassiveHooks
from ka_core.probe.ping import Ping as Ping
from ka_core.probe.ping import Step as Step
from ka_core.probe.scheduler import (
    FIRST_DELAY_S,
    MAX_PINGS_PER_STEP,
    TICK_S,
    RateMeter,
    Scheduler,
    first_due,
    grid_for,
    next_due,
    on_grid,
)
from ka_core.probe.wire import Resends
from ka_core.settings import DEFAULT_METHOD, Credentials, parse_settings, parse_socket, socket_tag
from ka_core.state import Outcome, State, stops
from ka_core.store.layout import FLAG_NAME, FLAG_PAUSED, USED
from ka_core.store.ring import KIND_ADDED, KIND_REPLY, RingEntry
from ka_core.store.table import SharedTable
from ka_core.uri import parse_uri

TIMEOUT_CODE = 408
STOPPED_CHECK_S = 60.0
"""How often a destination whose probing stopped is looked at, so that its copy here goes
soon after it is deleted (nothing else comes due for it)."""


@dataclass(slots=True)
class _Dest:
    gen: int
    uri: str
    owner: str
    interval_s: float
    state: State
    failures: int
    successes: int
    stopped: bool
    response_cb: str
    user: str
    route: Route
    """Transport, family, next hop (the destination or its proxy) and the reply source."""
    method: str
    auth: Credentials | None
    policy: Policy
    from_uri: str
    socket: str
    local: int
    """``socket_tag`` replies must arrive on; 0 = any socket."""
    paused: bool = False
    epoch: int = -1
    """The prober's control epoch ``interval_s`` and ``paused`` were read in."""


@dataclass(slots=True)  # not frozen: a frozen __init__ costs ~1 µs per ping
class _Pending:
    slot: int
    gen: int
    sent: float
    deadline: float
    ping: Ping | None = None
    """Kept for UDP pings, which are sent again until answered."""


class Prober(ClusterHooks, AuthHooks, PassiveHooks):
    def __init__(
        self,
        table: SharedTable,
        *,
        delete_counter: int,
        ping_timeout_s: float,
        policy: Policy = DEFAULT_POLICY,
        down_backoff_max_s: float = 0.0,
        retransmit: tuple[float, ...] = (),
        ping_proxy: str = "",
        ping_method: str = DEFAULT_METHOD,
        ejection: Ejection = OFF,
    ) -> None:
        """``policy``: the module's health parameters; ``down_backoff_max_s`` > 0 keeps
        probing DOWN destinations (never stops), backing off up to that many seconds;
        ``retransmit``: seconds after a UDP ping's due time at which it is sent again while
        unanswered (``ka_core.probe.wire.retransmit_offsets``); ``ping_proxy``,
        ``ping_method``: the module's probe options (``ka_core.probe.options``);
        ``ejection``: its passive-health policy (``ka_core.probe.outlier``)."""
        self._proxy, self._method = ping_proxy, ping_method
        self._auth = AuthBook()
        self._init_passive(ejection)
        self._table = table
        self._delete_counter = delete_counter
        self._timeout_s = ping_timeout_s
        self._policy = policy
        self._backoff_max_s = down_backoff_max_s
        self._schedule = Scheduler()
        self._dests: dict[int, _Dest] = {}
        self._unread: dict[int, int] = {}
        """slot -> gen adopted but not read yet: records are read at their first ping, so
        adopting 10,000 destinations at start-up only schedules them."""
        self._pending: dict[int, _Pending] = {}
        self._timeouts: list[tuple[float, int]] = []
        self._resends = Resends(retransmit)
        self._grid = TICK_S
        """``scheduler.grid_for`` the current rate of pings."""
        self._rates = RateMeter()
        self._seq = 0
        self._controls, self._epoch = -1, 0
        self._started = False
        self._moved: dict[int, tuple[int, float, bool, bool]] = {}
        """slot -> (gen, due of the expedited entry, it came up, the old entry came up)."""
        self.skip: Callable[[int, int], bool] | None = None
        """Cluster mode (``kemi.cluster``): True for a (slot, gen) another node probes.  It
        stays scheduled, unpinged, so a takeover needs no rescheduling."""

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    def step(
        self,
        now: float,
        wall: float,
        entries: list[RingEntry],
        unsent: Sequence[int] = (),
        send: Callable[[Ping], object] | None = None,
    ) -> Step:
        """One tick; ``unsent``: sequence numbers of last step's pings that Kamailio refused.

        ``send`` (the glue's OPTIONS sender) gets each due ping before any reply or timeout
        is applied, so that work never delays a ping (interval accuracy at 5,000+
        destinations); the pings are also in the returned ``Step``.
        """
        self._grid = grid_for(self._rates.rate)
        pings = self._due(now, wall)
        if send is not None:
            for ping in pings:
                send(ping)
        events = self._handle(entries, now, wall)
        resent = self._resend(now)
        if send is not None:
            for ping in resent:
                send(ping)
        for seq in unsent:
            events.extend(self._finish(seq, TIMEOUT_CODE, now, wall, False))
        events.extend(self._expire(now, wall))
        events.extend(self._reinstate_due(now, wall))
        return Step(pings, resent, events, self._next_deadline(now))

    def _handle(self, entries: list[RingEntry], now: float, wall: float) -> list[Event]:
        """Apply ring entries: new destinations get scheduled, replies get applied."""
        events: list[Event] = []
        table = self._table
        added: list[tuple[int, int, float]] = []  # (slot, gen, interval s), one read each
        for e in entries:
            if e.kind == KIND_ADDED:
                gen, used, flags, interval_ms = table.adoption(e.slot)
                if gen == e.gen and used == USED and not flags & FLAG_NAME:  # names: not pinged
                    added.append((e.slot, gen, interval_ms / 1000.0))
        delay = FIRST_DELAY_S if self._started else 0.0  # the start-up list: at once
        self._started = True
        for slot, gen, interval_s in added:
            self._rates.count(slot, gen, interval_s)
        self._grid = grid_for(self._rates.rate)
        for index, (slot, gen, interval_s) in enumerate(added):
            self._adopt(slot, gen, now, index, len(added), delay, interval_s)
        for entry in entries:
            reply = entry.kind == KIND_REPLY and self._from_destination(entry)
            if reply and not self._answer_challenge(entry, now):
                events.extend(self._finish(entry.seq, entry.code, entry.mono, entry.wall, True))
            elif entry.kind in PASSIVE_KINDS:
                events.extend(self._reported(entry, now, wall))
        return events

    def _due(self, now: float, wall: float) -> list[Ping]:
        pings: list[Ping] = []
        counted: list[tuple[int, int, float]] = []  # (slot, gen, next ping) of each one sent
        paused_all = self._table.header.paused
        if (controls := self._table.header.controls) != self._controls:
            self._controls, self._epoch = controls, self._epoch + 1
        for due, slot, gen in self._schedule.pop_due(now, MAX_PINGS_PER_STEP):
            if slot in self._moved and self._superseded(due, slot, gen):
                continue
            if (
                self.skip is not None
                and self.skip(slot, gen)
                and self._skipped(due, slot, gen, now)
            ):
                continue
            dest = self._live(slot, gen)
            if dest is None or dest.stopped:
                self._rates.forget(slot, gen)  # deleted, or probing stopped
                if dest is not None:  # not pinged, but looked at until deleted to forget it
                    self._schedule.schedule(next_due(due, STOPPED_CHECK_S, now), slot, gen)
                continue
            if dest.epoch != self._epoch:  # keepalive.pause/interval since: read them again
                dest.interval_s = self._table.interval_ms(slot) / 1000.0
                dest.paused = bool(self._table.flags(slot) & FLAG_PAUSED)
                dest.epoch = self._epoch
                self._rates.count(slot, gen, dest.interval_s)
            gap = dest.interval_s  # a backoff stretches it while DOWN
            if dest.state is State.DOWN:
                # this ping's own failure counts: 1st failure 1x, 2nd 2x, 3rd 4x ...
                gap = backoff_interval(gap, dest.failures + 1, dest.policy, self._backoff_max_s)
            following = next_due(due, gap, now)
            self._schedule.schedule(following, slot, gen)
            if paused_all or dest.paused:
                continue  # paused: no traffic, the state stays as it was
            self._seq = (self._seq + 1) & 0xFFFFFFFF
            # on time: the deadline stays on the grid, so timeouts share the ping wake-ups
            start = due if now - due < TICK_S / 2 else now
            deadline = start + min(self._timeout_s, dest.interval_s)
            ping = self._ping_for(self._seq, slot, gen, dest)
            # a DOWN destination's ping is not sent again: a loss only delays its recovery
            # by one interval, and the dead half of a list would double the traffic
            udp = ping.transport == "udp" and self._resends.offsets and dest.state is not State.DOWN
            self._pending[self._seq] = _Pending(slot, gen, now, deadline, ping if udp else None)
            heapq.heappush(self._timeouts, (deadline, self._seq))
            if udp:
                self._resends.plan(self._seq, 0, start, deadline, self._grid)
            counted.append((slot, gen, wall + (following - now)))
            pings.append(ping)
        if counted:
            self._table.record_pings(counted)
        return pings

    def _ping_for(self, seq: int, slot: int, gen: int, dest: _Dest) -> Ping:
        r = dest.route
        return Ping(seq, slot, gen, dest.uri, dest.from_uri, dest.socket, r.transport, r.ipv6,
                    r.hop, dest.method)  # fmt: skip

    def _resend(self, now: float) -> list[Ping]:
        """Unanswered UDP pings whose next retransmission is due (answered ones drop out),
        and the pings answering a challenge."""
        resent: list[Ping] = self._take_retries()
        for seq, index, due in self._resends.pop_due(now):
            pending = self._pending.get(seq)
            if pending is None or pending.ping is None:
                continue
            resent.append(pending.ping)
            self._resends.plan(seq, index + 1, due, pending.deadline, self._grid)
        return resent

    def _expire(self, now: float, wall: float) -> list[Event]:
        events: list[Event] = []
        while self._timeouts and self._timeouts[0][0] <= now:
            _, seq = heapq.heappop(self._timeouts)
            events.extend(self._finish(seq, TIMEOUT_CODE, now, wall, False))
        return events

    def _next_deadline(self, now: float) -> float | None:
        """While pings are outstanding that is the next grid point too: SIP workers queue
        replies that change no state without waking the pinger, so it drains them then.
        """
        candidates = [self._schedule.next_deadline()]
        if self._timeouts:
            candidates.append(self._timeouts[0][0])
        candidates += [self._resends.next_time(), self._next_reinstatement()]
        if self._pending:
            candidates.append(on_grid(now + 0.005, self._grid))
        present = [c for c in candidates if c is not None]
        return min(present) if present else None

    def _adopt(
        self, slot: int, gen: int, now: float, index: int, batch: int, delay_s: float,
        interval_s: float,
    ) -> None:  # fmt: skip
        self._dests.pop(slot, None)
        self._unread[slot] = gen
        due = first_due(now, index, batch, interval_s, delay_s, self._grid)
        self._schedule.schedule(due, slot, gen)

    def _load(self, slot: int, gen: int) -> _Dest:
        rec = self._table.read(slot)
        settings = parse_settings(rec.settings, internal=True)  # canonical: the table's
        local = socket_tag(*parse_socket(settings.socket)[1:]) if settings.socket else 0
        dest = _Dest(
            gen=gen, uri=rec.uri, owner=rec.owner, interval_s=rec.interval_ms / 1000.0,
            state=rec.state, failures=rec.failures, successes=rec.successes,
            stopped=rec.stopped, response_cb=rec.response_cb, user=rec.user,
            route=route_of(parse_uri(rec.key), settings.proxy or self._proxy),
            method=settings.method or self._method, auth=settings.credentials,
            policy=settings.policy(self._policy), from_uri=settings.from_uri,
            socket=settings.socket, local=local, paused=rec.paused, epoch=self._epoch,
        )  # fmt: skip
        self._dests[slot] = dest
        return dest

    def _from_destination(self, entry: RingEntry) -> bool:
        """False for a reply from another address than the (IP) destination, or received
        on another socket than the destination's own: spoofed, stray or answered through
        another interface, it neither changes the state nor consumes the pending ping.
        (A reply entry carries the source tag in ``slot`` and the local one in ``gen``.)"""
        pending = self._pending.get(entry.seq)
        dest = None if pending is None else self._dests.get(pending.slot)
        if dest is None:
            return True
        if dest.local and entry.gen != dest.local:
            return False
        source = dest.route.source
        return not source or not entry.slot or source == entry.slot

    def _live(self, slot: int, gen: int) -> _Dest | None:
        dest = self._dests.get(slot)
        if not self._table.is_used(slot, gen):  # deleted (maybe reused: keep the newer one)
            if dest is not None and dest.gen == gen:
                del self._dests[slot]
            if self._unread.get(slot) == gen:
                del self._unread[slot]
            return None
        if dest is not None and dest.gen == gen:
            return dest
        if self._unread.get(slot) == gen:
            del self._unread[slot]
            return self._load(slot, gen)
        return None

    def _finish(self, seq: int, code: int, now: float, wall: float, replied: bool) -> list[Event]:
        pending = self._pending.pop(seq, None)
        if pending is None:
            return []  # late, duplicated or stray reply
        dest = self._live(pending.slot, pending.gen)
        if dest is None or dest.stopped:
            return []  # deleted meanwhile, or probing stopped: C bug #3028
        rtt_ms = (now - pending.sent) * 1000.0 if replied else 0.0
        outcome = dest.policy.judge(code, replied, rtt_ms)
        verdict = transition(dest.state, dest.successes, dest.failures, outcome, dest.policy)
        # only a DOWN destination stops: down_after may be above delete_counter
        stopped = verdict.state is State.DOWN and stops(
            verdict.failures, self._delete_counter, self._backoff_max_s > 0
        )
        dest.state, dest.failures, dest.successes = (
            verdict.state,
            verdict.failures,
            verdict.successes,
        )
        dest.stopped = stopped
        alive = outcome is not Outcome.FAIL
        out, held = self._held(seq, pending.slot, pending.gen, code, alive, now, wall)
        changed = self._table.write_state(
            pending.slot, pending.gen, State.DOWN if out else verdict.state, wall, code=code,
            rtt_ms=rtt_ms, probe=(verdict.failures, verdict.successes, stopped, replied, alive),
            ejected=held,
        )  # fmt: skip
        events: list[Event] = []
        if dest.response_cb:
            events.append(
                ResponseReceived(dest.uri, dest.owner, code, dest.response_cb, dest.user, rtt_ms)
            )
        if isinstance(changed, StateChanged):
            events.append(changed)
        if stopped:
            events.append(ProbingStopped(dest.uri, dest.owner, verdict.failures))
        return events
