"""Benchmark route, ka-kemi side: the same variants as ``route_c.py`` with ka-kemi's
``kemi.functions.ka_is_alive`` (``BENCH_CHECK ka``), and ``ka_select`` round robin over the
instance's destinations (``BENCH_CHECK sel``, owner ``_params``), against ``route_c.py``'s
dispatcher variant.  The handler subclasses
``KeepaliveHandler`` (reply route, pinger process, JSON-RPC) and ``setup()`` runs in
``mod_init``, as every ka-kemi script must.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

import KSR  # type: ignore[import-not-found]  # noqa: TID251 - a KEMI script talks to Kamailio

from kemi.functions import ka_is_alive, ka_select
from kemi.handler import KeepaliveHandler, setup


def _define(name: str, default: str) -> str:
    value = KSR.pv.get(f"$def({name})")
    return default if value is None else str(value).strip('"')


def mod_init() -> KeepaliveHandler:
    setup()
    mode = _define("BENCH_MODE", "cost")
    if mode == "state":
        return StateHandler()
    if _define("BENCH_CHECK", "none") == "ka":
        return CheckHandler(_define("BENCH_TARGET", ""))
    if _define("BENCH_CHECK", "none") == "sel":
        return SelectHandler()
    return PlainHandler()


class PlainHandler(KeepaliveHandler):
    def ksr_request_route(self, msg: object) -> int:
        KSR.sl.sl_send_reply(200, "OK")
        return 1


class CheckHandler(KeepaliveHandler):
    def __init__(self, target: str) -> None:
        self.target = target

    def ksr_request_route(self, msg: object) -> int:
        if ka_is_alive(self.target) == 2:
            KSR.sl.sl_send_reply(503, "Destination down")
            return 1
        KSR.sl.sl_send_reply(200, "OK")
        return 1


class SelectHandler(KeepaliveHandler):
    def ksr_request_route(self, msg: object) -> int:
        if ka_select("_params", "rr") < 0:
            KSR.sl.sl_send_reply(503, "No gateway")
            return 1
        KSR.sl.sl_send_reply(200, "OK")
        return 1


class StateHandler(KeepaliveHandler):
    def ksr_request_route(self, msg: object) -> int:
        if KSR.pv.get("$rU") == "state":
            uris = (KSR.pv.get("$hdr(X-Uris)") or "").split()
            states = " ".join(str(ka_is_alive(u)) for u in uris)
            KSR.hdr.append_to_reply(f"X-States: {states}\r\n")
        KSR.sl.sl_send_reply(200, "OK")
        return 1
