"""Benchmark route, C side: app_python3 script for a Kamailio running the C keepalive module.

The variant is read once in ``mod_init`` from ``#!define`` values, so the per-request code of
each variant is only what it measures:

* ``BENCH_MODE cost`` + ``BENCH_CHECK none``: answer every request with a stateless 200;
* ``BENCH_MODE cost`` + ``BENCH_CHECK c``: the same after ``KSR.keepalive.is_alive(target)``
  (``BENCH_TARGET``: the URI as the C module compares it, without ``sip:``);
* ``BENCH_MODE cost`` + ``BENCH_CHECK ds``: the same after dispatcher's round robin
  ``KSR.dispatcher.ds_select_dst(1, 4)`` (set 1 of the instance's list file) into ``$du``;
* ``BENCH_MODE state``: a request to ``sip:state@...`` with ``X-Uris: u1 u2 ...`` is answered
  with ``X-States: s1 s2 ...`` (the routing-path state of each, as the detection benchmark
  polls it); anything else gets a plain 200.
"""

import KSR  # type: ignore[import-not-found]  # noqa: TID251 - a KEMI script talks to Kamailio


def _define(name: str, default: str) -> str:
    value = KSR.pv.get(f"$def({name})")
    return default if value is None else str(value).strip('"')


def mod_init() -> "Base":
    mode = _define("BENCH_MODE", "cost")
    if mode == "state":
        return StateHandler()
    if _define("BENCH_CHECK", "none") == "c":
        return CheckHandler(_define("BENCH_TARGET", ""))
    if _define("BENCH_CHECK", "none") == "ds":
        return DispatcherHandler()
    return PlainHandler()


class Base:
    def child_init(self, rank: int) -> int:
        return 0

    def ksr_reply_route(self, msg: object) -> int:
        return 1

    def ksr_xhttp_event(self, msg: object, evname: str) -> int:
        KSR.jsonrpcs.dispatch()
        return 1


class PlainHandler(Base):
    def ksr_request_route(self, msg: object) -> int:
        KSR.sl.sl_send_reply(200, "OK")
        return 1


class CheckHandler(Base):
    def __init__(self, target: str) -> None:
        self.target = target

    def ksr_request_route(self, msg: object) -> int:
        if KSR.keepalive.is_alive(self.target) == 2:
            KSR.sl.sl_send_reply(503, "Destination down")
            return 1
        KSR.sl.sl_send_reply(200, "OK")
        return 1


class DispatcherHandler(Base):
    def ksr_request_route(self, msg: object) -> int:
        if KSR.dispatcher.ds_select_dst(1, 4) < 0:
            KSR.sl.sl_send_reply(503, "No gateway")
            return 1
        KSR.sl.sl_send_reply(200, "OK")
        return 1


class StateHandler(Base):
    def ksr_request_route(self, msg: object) -> int:
        if KSR.pv.get("$rU") == "state":
            uris = (KSR.pv.get("$hdr(X-Uris)") or "").split()
            states = " ".join(str(KSR.keepalive.is_alive(u)) for u in uris)
            KSR.hdr.append_to_reply(f"X-States: {states}\r\n")
        KSR.sl.sl_send_reply(200, "OK")
        return 1
