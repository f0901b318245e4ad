"""Example app_python3 script: routing in Python with ka-kemi's keepalive functions.

kamailio.cfg loads this file; copy it as the start of your own script.

A REGISTER that arrives over TCP or TLS gets TCP keepalive on its connection: when the client
vanishes without closing it (crash, power loss, expired NAT binding), the kernel resets the
connection after IDLE + COUNT x INTERVAL seconds of silence and Kamailio drops it.  The values
come from these defines (``#!define`` in kamailio.cfg or ``kamailio -A NAME=value``):

    KA_REGISTER_KEEPALIVE_IDLE       seconds of silence before the first probe (default 60)
    KA_REGISTER_KEEPALIVE_COUNT      unanswered probes before the reset (default 5)
    KA_REGISTER_KEEPALIVE_INTERVAL   seconds between probes (default 5)
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import KSR  # type: ignore[import-not-found]

from ka_core.tcpka import keepalive_values
from kemi.functions import ka_cluster_request, ka_is_alive
from kemi.handler import KeepaliveHandler, setup
from kemi.tcp_keepalive import tcp_keepalive_enable


def define(name: str, default: object) -> object:
    value = KSR.pv.get(f"$def({name})")
    return default if value is None else value


def mod_init() -> "Handler":
    setup()
    # Checked here, so a bad define stops Kamailio instead of failing every REGISTER.
    register_keepalive = keepalive_values(
        define("KA_REGISTER_KEEPALIVE_IDLE", 60),
        define("KA_REGISTER_KEEPALIVE_COUNT", 5),
        define("KA_REGISTER_KEEPALIVE_INTERVAL", 5),
    )
    return Handler(register_keepalive)


class Handler(KeepaliveHandler):
    def __init__(self, register_keepalive: tuple[int, int, int]) -> None:
        self.register_keepalive = register_keepalive  # (idle, count, interval)

    def ksr_request_route(self, msg: object) -> int:
        if ka_cluster_request() == 1:  # KA_CLUSTER: a KDMQ between the nodes, answered
            return 1
        if KSR.is_OPTIONS() and KSR.pv.get("$rU") is None:
            KSR.sl.sl_send_reply(200, "OK")  # answers pings, including our own
            return 1
        if KSR.is_REGISTER():
            if KSR.is_TCP() or KSR.is_TLS():
                tcp_keepalive_enable(*self.register_keepalive)  # this REGISTER's connection
            # No registrar in this example: a real script saves the contact here
            # (KSR.registrar.save("location", 0)), which sends the reply itself.
            KSR.sl.sl_send_reply(200, "OK")
            return 1
        if KSR.is_INVITE() and ka_is_alive(KSR.pv.get("$ru")) == 2:
            KSR.sl.sl_send_reply(503, "Destination down")
            return 1
        KSR.sl.sl_send_reply(404, "Not here")
        return 1
