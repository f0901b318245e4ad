"""Test routing script: a Python route that exposes ka-kemi's script functions to tests.

A request to ``sip:call@...`` with ``X-Fn: <function>`` and ``X-Arg1``.. ``X-Arg4`` headers calls
that function in the SIP worker that received it and answers 200 with ``X-Result: <rc>``
and ``X-Pid: <worker pid>``.  ``X-Int: 1`` passes numeric arguments as ints.  OPTIONS without
a user part get 200 (Kamailio answering its own pings).
"""

import json
import os
import sys

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..")))

import KSR

from kemi import api, functions, tcp_keepalive
from kemi.handler import KeepaliveHandler, setup
from tests.integration.scripts import api_callbacks


def api_add(uri, owner, interval, out):
    return api.add_destination(
        uri,
        owner,
        0,
        float(interval),
        api_callbacks.on_state,
        "tests.integration.scripts.api_callbacks:on_response",
        {"out": out, "tag": owner},
    )


def api_add_settings(uri, owner, settings, out):
    return api.add_destination(
        uri, owner, settings=settings, statechanged_clb=api_callbacks.on_state_rtt,
        user_attr={"out": out, "tag": owner},
    )  # fmt: skip


def select_into(group, alg="first", var="$du"):
    """``ka_select``'s code and what it wrote (test_selection.py)."""
    rc = functions.ka_select(group, alg, var)
    return f"{rc} {KSR.pv.get(var)}" if rc > 0 else rc


CALLS = {
    "api_add_destination": api_add,
    "api_add_settings": api_add_settings,
    "api_del_destination": api.del_destination,
    "ka_is_alive": functions.ka_is_alive,
    "ka_add_destination": functions.ka_add_destination,
    "ka_del_destination": functions.ka_del_destination,
    "ka_cluster_request": functions.ka_cluster_request,
    "ka_report": functions.ka_report,
    "ka_select": select_into,
    "tcp_keepalive_enable": tcp_keepalive.tcp_keepalive_enable,
    "tcp_keepalive_disable": tcp_keepalive.tcp_keepalive_disable,
    "tcp_keepalive_enable_uri": tcp_keepalive.tcp_keepalive_enable_uri,
}


def mod_init():
    setup()
    return Handler()


def _args(prefix="X-Arg"):
    args = []
    for i in range(1, 5):
        value = KSR.pv.get(f"$hdr({prefix}{i})")
        if value is None:
            break
        if value == "<none>":
            value = None
        elif value == "<conid>":  # relay: this request's $conid, for the reply route
            value = KSR.pv.get("$conid")
        elif KSR.pv.get("$hdr(X-Int)") == "1":
            value = int(value)
        args.append(value)
    return args


def _run(fn, args):
    try:
        return fn(*args)
    except TypeError as exc:
        return f"TypeError {exc}"


class Handler(KeepaliveHandler):
    def ka_event(self, evname, ev):
        """KA_EVENT_CALLBACK in test_health.py: one JSON line per event (the pinger)."""
        path = KSR.pv.get("$def(KA_TEST_EVENTS)")
        if path:
            with open(str(path).strip('"'), "a") as out:
                row = [evname, ev.uri, ev.owner, ev.old_state, ev.new_state, ev.code, ev.rtt_ms]
                out.write(json.dumps([*row, os.getpid()]) + "\n")

    def ksr_request_route(self, msg):
        if functions.ka_cluster_request() == 1:  # KA_CLUSTER: KDMQ between the nodes
            return 1
        if KSR.pv.get("$rU") == "call":
            fn = CALLS.get(KSR.pv.get("$hdr(X-Fn)"))
            if fn is None:
                KSR.sl.sl_send_reply(400, "Unknown X-Fn")
                return 1
            rc = _run(fn, _args())
            KSR.hdr.append_to_reply(f"X-Result: {rc}\r\n")
            KSR.hdr.append_to_reply(f"X-Pid: {os.getpid()}\r\n")
            KSR.sl.sl_send_reply(200, "OK")
            return 1
        if KSR.pv.get("$rU") == "relay":
            # Forwarded to X-Dst; its reply runs X-Fn (X-Arg1..4) and X-Fn2 (X-Fn2-Arg1..4)
            # in ksr_onreply_call.  "<conid>" stands for this request's $conid.
            calls = [[KSR.pv.get(f"$hdr({fn})"), _args(prefix)]
                     for fn, prefix in (("X-Fn", "X-Arg"), ("X-Fn2", "X-Fn2-Arg"))]  # fmt: skip
            KSR.pv.sets("$avp(relay_calls)", json.dumps(calls))
            KSR.pv.sets("$du", KSR.pv.get("$hdr(X-Dst)"))
            KSR.tm.t_on_reply("ksr_onreply_call")
            if KSR.tm.t_relay() < 0:
                KSR.sl.sl_send_reply(500, "Relay failed")
            return 1
        if KSR.pv.get("$rU") in ("gw", "gwra"):
            # Passive health (test_passive.py): relayed to X-Dst; "gw" reports a failure from
            # failure_route with tm's final code, "gwra" every final reply from onreply_route
            # with its Retry-After
            KSR.pv.sets("$avp(gw)", KSR.pv.get("$hdr(X-Dst)"))
            KSR.pv.sets("$du", KSR.pv.get("$hdr(X-Dst)"))
            if KSR.pv.get("$rU") == "gw":
                KSR.tm.t_on_failure("ksr_failure_gw")
            else:
                KSR.tm.t_on_reply("ksr_onreply_gwra")
            if KSR.tm.t_relay() < 0:
                KSR.sl.sl_send_reply(500, "Relay failed")
            return 1
        if KSR.pv.get("$rU") == "sel":
            # Selection (test_selection.py): ka_select(X-Group, X-Alg) into $du, relayed;
            # failure_route fails over with ka_next
            if functions.ka_select(KSR.pv.get("$hdr(X-Group)"), KSR.pv.get("$hdr(X-Alg)")) < 0:
                KSR.sl.sl_send_reply(503, "No gateway")
                return 1
            KSR.info(f"select: {KSR.pv.get('$du')} pid {os.getpid()}\n")
            KSR.tm.t_on_failure("ksr_failure_select")
            if KSR.tm.t_relay() < 0:
                KSR.sl.sl_send_reply(500, "Relay failed")
            return 1
        if KSR.is_OPTIONS() and KSR.pv.get("$rU") is None:
            KSR.sl.sl_send_reply(200, "OK")
            return 1
        KSR.sl.sl_send_reply(404, "Not here")
        return 1

    def ksr_onreply_gwra(self, msg):
        code = KSR.pv.get("$rs")
        if code >= 200:
            functions.ka_report(KSR.pv.get("$avp(gw)"), code, "", KSR.pv.get("$hdr(Retry-After)"))
        return 1

    def ksr_failure_select(self, msg):
        if functions.ka_next() < 0:
            KSR.info("failure_route: no candidate left\n")
            return 1
        KSR.info(f"failure_route: next {KSR.pv.get('$du')} pid {os.getpid()}\n")
        KSR.tm.t_on_failure("ksr_failure_select")
        KSR.tm.t_relay()
        return 1

    def ksr_failure_gw(self, msg):
        code = KSR.tm.t_get_status_code()
        rc = functions.ka_report(KSR.pv.get("$avp(gw)"), code)
        KSR.info(f"failure_route: reported {code} for {KSR.pv.get('$avp(gw)')}: rc={rc}\n")
        return 1

    def ksr_onreply_call(self, msg):
        calls = json.loads(KSR.pv.get("$avp(relay_calls)") or "[]")
        for (name, args), out in zip(calls, ("X-Result", "X-Result2"), strict=False):
            fn = CALLS.get(name)
            if fn is None:
                continue
            rc = _run(fn, args)
            KSR.info(f"onreply {name} pid {os.getpid()} rc={rc}\n")
            KSR.hdr.append(f"{out}: {rc}\r\n")
        KSR.hdr.append(f"X-Reply-Pid: {os.getpid()}\r\n")
        return 1
