"""What a KEMI script needs: ``setup()`` for ``mod_init`` and a handler base class.

Subclass ``KeepaliveHandler`` in your app_python3 script and add your own
``ksr_request_route``.  The base class defines the callbacks Kamailio looks up, including
``ksr_reply_route`` (always defined: on 5.6.3 a missing optional callback leaves an
``AttributeError`` set that breaks the next KSR call in that process).

A configuration ka-kemi cannot work with stops Kamailio at start-up with one log line
(``kemi.startup``): a bad parameter or a missing module in ``setup()``, a handler that is
not a ``KeepaliveHandler`` when ``mod_init`` returns it, no ``setup()`` or a pinger that did
not start in ``child_init`` of the main process.
"""

from __future__ import annotations

import traceback

from ka_core.config.banner import ready_lines
from kemi import http_rpc, pinger, runtime, startup
from kemi.ksr_port import KsrPort
from kemi.runtime import Runtime


def setup(ksr: KsrPort | None = None) -> Runtime:
    """Read the ``KA_*`` defines and create the shared table; call from ``mod_init``.

    On an invalid parameter or a missing module it logs one line and raises ``SystemExit``
    (app_python3 logs that at debug level only, so no traceback follows the line) and
    Kamailio refuses to start.  ``ksr`` is for tests; Kamailio's own is used by default.
    """
    in_kamailio = ksr is None
    if ksr is None:
        from kemi.kamailio_ksr import KamailioKsr

        ksr = KamailioKsr()
    try:
        startup.check_modules(ksr)
        rt = runtime.setup(ksr)
    except Exception as exc:
        ksr.err(f"cannot start: {exc}")
        raise SystemExit(1) from None
    for line in ready_lines(rt.config, rt.table.count):
        ksr.info(line)
    if in_kamailio:
        startup.watch_handler(ksr, KeepaliveHandler)
    return rt


class KeepaliveHandler:
    """Base for the object ``mod_init`` returns."""

    def child_init(self, rank: int) -> int:
        """In the main process (rank 0): refuse to start without ``setup()`` or a pinger.
        A subclass with its own ``child_init`` must return what this one returns."""
        return startup.child_init(rank)

    def ksr_reply_route(self, msg: object) -> int:
        rt = runtime.get()
        try:
            return pinger.on_reply(rt)
        except Exception:
            rt.limited_err("reply route", f"reply route: {traceback.format_exc()}")
            return 1

    def ksr_onsend_route(self, msg: object) -> int:
        """Defined so ``t_relay`` works: 5.6.3 leaves an error set when it is missing."""
        return 1

    def ksr_xhttp_event(self, msg: object, evname: str) -> int:
        """JSON-RPC over HTTP, for allowed sources only (``kemi.http_rpc``)."""
        rt = runtime.get()
        try:
            http_rpc.serve(rt)
        except Exception:
            rt.limited_err("xhttp event", f"xhttp event: {traceback.format_exc()}")
            rt.ksr.http_reply(500, "Internal Server Error", "text/plain", "internal error")
        return 1

    def ksr_ka_pinger(self, msg: object, evname: str) -> int:
        """rtimer ``mode=1`` route: becomes the pinger process and never returns (also when
        it cannot start: it logs why once and waits for Kamailio to stop)."""
        startup.run_pinger(self)
        return 1
