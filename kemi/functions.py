"""Script functions for KEMI Python routes: ``ka_is_alive``, ``ka_add_destination``,
``ka_del_destination``, ``ka_report`` (passive health), ``ka_select`` / ``ka_next``
(selection in a group, ``ka_core.route``) and ``ka_cluster_request`` (cluster mode's KDMQ
requests).

Return codes follow the C module: 1 success/up, 2 down, -1 error or unknown destination;
never 0, which would stop the route.  Nothing raises into Kamailio: every error is logged once
and becomes -1.
"""

from __future__ import annotations

import functools
import inspect
import traceback
from collections.abc import Callable
from typing import ParamSpec

from ka_core.errors import InvalidArgument, KaError, TableFull
from ka_core.probe.liveness import NO_PINGER, not_running_reason
from ka_core.probe.outlier import EJECTED_VALUE, parse_retry_after
from ka_core.route import failover
from ka_core.route.selection import Selector
from ka_core.state import SCRIPT_VALUES
from ka_core.store import registry, ring
from ka_core.store.layout import FLAG_EJECTED, USED
from ka_core.uri import parse_uri
from kemi import cluster_receive, runtime
from kemi.ksr_port import KsrPort

P = ParamSpec("P")
CACHE_MAX = 4096
# Per process: URI text as the script gives it -> (reader of the slot's hot fields, gen).
# The generation check makes a deleted or re-added destination fall back to the slow path,
# so the cache is never stale.  The reader is one C call: the routing path runs no Python
# of ours beyond this function.
_slot_cache: dict[object, tuple[Callable[[], tuple[int, int, int, int]], int]] = {}
_selector = Selector()
"""Per process: each group's members and its round-robin turn (``ka_core.route.selection``)."""


def _log_port() -> KsrPort:
    try:
        return runtime.get().ksr
    except RuntimeError:  # setup() never ran: still say so in Kamailio's log
        from kemi.kamailio_ksr import KamailioKsr

        return KamailioKsr()


def _log_error(kind: str, text: str) -> None:
    """Errors a script can cause on every request are rate-limited per process and kind."""
    try:
        runtime.get().limited_err(kind, text)
    except RuntimeError:  # setup() never ran: child_init(0) stops Kamailio, say it anyway
        _log_port().err(text)


def script_function(name: str) -> Callable[[Callable[P, int]], Callable[P, int]]:
    """Log (as ``name``) and return -1 on any error; the one return-code boundary."""

    def decorate(fn: Callable[P, int]) -> Callable[P, int]:
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> int:
            # Arguments are checked only when the call fails (binding them first costs more
            # than a whole routing-path call): wrong ones fail before the body runs.
            try:
                return fn(*args, **kwargs)
            except KaError as exc:
                _log_error(f"{name}: {exc}", f"{name}: {exc}")
            except Exception as exc:
                wrong = _bind_error(signature, args, kwargs) if isinstance(exc, TypeError) else ""
                if wrong:
                    _log_error(f"{name}: {wrong}", f"{name}: wrong arguments: {wrong}")
                    return -1
                _log_error(f"{name} internal", f"{name}: internal error: {traceback.format_exc()}")
            return -1

        return wrapper

    return decorate


def _bind_error(signature: inspect.Signature, args: tuple[object, ...], kwargs: object) -> str:
    """Why these arguments do not fit (``inspect``'s words, as the log always said), or ""."""
    try:
        signature.bind(*args, **kwargs)  # type: ignore[arg-type]
    except TypeError as exc:
        return str(exc) or "no match"
    return ""


def ka_is_alive(uri: object = None, *extra: object) -> int:
    """1 up (or not probed yet), 2 down, 3 degraded, 4 ejected by passive health (2 with
    ``KA_EJECT_AS down``), -1 unknown destination or bad URI."""
    if type(uri) is str and not extra:
        hit = _slot_cache.get(uri)
        if hit is not None:
            gen, used, state, flags = hit[0]()
            if gen == hit[1] and used == USED:
                if flags & FLAG_EJECTED:
                    return _ejected()
                return SCRIPT_VALUES[state] if state else _unprobed()
        return _is_alive_slow(uri)
    return _is_alive_slow(uri, *extra)


@script_function("ka_is_alive")
def _is_alive_slow(uri: object) -> int:
    table = runtime.get().table
    slot = table.find(parse_uri(uri).key)
    if slot < 0:
        return -1  # unknown destination: not an error worth a log line per request
    reader = table.hot_reader(slot)
    gen, _, state, flags = reader()
    if len(_slot_cache) >= CACHE_MAX:
        _slot_cache.clear()
    _slot_cache[uri] = (reader, gen)
    if flags & FLAG_EJECTED:
        return _ejected()
    return SCRIPT_VALUES[state] if state else _unprobed()


def _ejected() -> int:
    """Held out by passive health: its own value, or DOWN's with ``KA_EJECT_AS down``."""
    return SCRIPT_VALUES[2] if runtime.get().config.eject_as == "down" else EJECTED_VALUE


def _unprobed() -> int:
    """A destination not probed yet: 1 (as C) while the pinger runs; -1, said once per
    process, when it never started, failed or stopped stepping (UNKNOWN would be up for
    ever)."""
    rt = runtime.get()
    status, beat = rt.table.header.pinger_life()
    now = rt.monotonic()
    why = not_running_reason(status, beat, now, now - rt.set_up_at)
    if not why:
        return SCRIPT_VALUES[0]
    if "no pinger" not in rt.announced:
        rt.announced.add("no pinger")
        rt.ksr.err(NO_PINGER.format(why=why))
    return -1


@script_function("ka_add_destination")
def ka_add_destination(uri: str, owner: str, settings: str = "") -> int:
    """1 added (first ping ~0.5 s later), -1 bad URI/owner/settings, duplicate or table
    full.  ``settings``: optional per-destination settings (``ka_core.settings``)."""
    rt = runtime.get()
    rec = rt.add(uri, owner, settings=settings)
    rt.ksr.info(f"ka_add_destination: added {rec.uri} owner {rec.owner}")
    return 1


@script_function("ka_del_destination")
def ka_del_destination(uri: str, owner: str) -> int:
    """1 removed, -1 unknown destination or bad input."""
    rt = runtime.get()
    rec = registry.remove(rt.table, uri, owner)
    rt.ksr.info(f"ka_del_destination: removed {rec.uri} owner {rec.owner}")
    return 1


@script_function("ka_report")
def ka_report(uri: str, code: object, owner: str = "", retry_after: object = None) -> int:
    """Passive health: the final code of a request relayed to ``uri`` (408 for a local
    timeout), from failure_route or onreply_route.  1 queued for the pinger (which ignores
    it unless passive health is on for that destination), -1 unknown destination (not
    logged, as ``ka_is_alive``), or (logged) a code outside 200-699, bad input, or the
    pinger's queue too full.  ``retry_after``: the reply's Retry-After header (or seconds),
    which holds the destination out with ``KA_RETRY_AFTER_MAX`` (an unreadable one is
    ignored, as a peer's)."""
    number = _final_code(code)
    rt = runtime.get()
    key = parse_uri(uri).key
    slot = rt.table.find(key, registry.check_owner(owner)) if owner else rt.table.find(key)
    if slot < 0:
        return -1  # not a monitored destination: as ka_is_alive, no log line per request
    gen = rt.table.hot(slot)[0]
    seconds = parse_retry_after(retry_after)
    entry = ring.outcome(slot, gen, number, rt.monotonic(), rt.wall(), seconds)
    if not rt.table.push(entry, rt.table.ring_capacity // 2):  # the rest: adds and replies
        raise TableFull("pinger queue more than half full: report dropped")
    rt.wake()
    return 1


@script_function("ka_select")
def ka_select(
    group: str, alg: str = "first", dst_var: str = failover.DEFAULT_VAR, skip_degraded: object = 0
) -> int:
    """One live destination of ``group`` (its owner) by ``alg`` (first, rr, weight, rtt)
    into ``dst_var`` (default ``$du``); the other candidates wait for ``ka_next``.  1 found,
    -1 none live (not logged), or (logged) an unknown group or algorithm or a bad variable.
    ``skip_degraded``: 1 leaves DEGRADED destinations out as DOWN ones."""
    if not isinstance(group, str) or not group:
        raise InvalidArgument(f"group is an owner name, not {group!r}")
    var = failover.check_var(dst_var)
    if skip_degraded not in (0, 1, "0", "1"):
        raise InvalidArgument(f"skip_degraded is 0 or 1, not {skip_degraded!r}")
    rt = runtime.get()
    uris = _selector.select(
        rt.table, group, alg, skip_degraded=skip_degraded in (1, "1"),
        panic_percent=rt.config.select_panic_percent,
    )  # fmt: skip
    rt.ksr.push_candidates(failover.pending(var, uris[1:]))
    return _write(rt.ksr, var, uris[0]) if uris else -1


@script_function("ka_next")
def ka_next() -> int:
    """In failure_route: the next candidate of the last ``ka_select`` into its variable.
    1 set, -1 none left (or no ``ka_select`` ran for this request)."""
    ksr = runtime.get().ksr
    taken = failover.take_next(ksr.candidates())
    if taken is None:
        return -1
    var, uri, rest = taken
    ksr.replace_candidates(rest)
    return _write(ksr, var, uri)


def _write(ksr: KsrPort, var: str, uri: str) -> int:
    if not ksr.set_pv(var, uri):
        raise InvalidArgument(f"cannot set {var} (not a writable variable?)")
    return 1


def _final_code(code: object) -> int:
    """An int or its decimal text (``$T_reply_code`` from a native cfg) in 200-699."""
    text = code.strip() if isinstance(code, str) else code
    if isinstance(text, str) and text.isdecimal():
        text = int(text)
    if isinstance(text, bool) or not isinstance(text, int) or not 200 <= text <= 699:
        raise InvalidArgument(f"not a final reply code (200-699): {code!r}")
    return text


@script_function("ka_cluster_request")
def ka_cluster_request() -> int:
    """Cluster mode: 1 when the request was a KDMQ and is answered (return from the route),
    -1 otherwise (not a KDMQ, or ``KA_CLUSTER`` off).  Call it first in the request route."""
    return cluster_receive.handle(runtime.get())
