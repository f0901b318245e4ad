"""Probe options (ka_core.probe.options): outbound proxy and request method, as settings,
as module parameters, in the prober's pings and in the bytes sent."""

from __future__ import annotations

import threading

import pytest

from ka_core.config.kaconfig import load_config
from ka_core.errors import InvalidArgument
from ka_core.probe.options import route_of
from ka_core.probe.prober import Prober
from ka_core.probe.wire import Listener, options_request
from ka_core.settings import NO_PROXY, parse_method, parse_proxy, parse_settings
from ka_core.state import State
from ka_core.store import registry
from ka_core.store.layout import FLAG_NAME
from ka_core.store.table import SharedTable, buffer_size
from ka_core.uri import address_tag, parse_uri


def table() -> SharedTable:
    buf = bytearray(buffer_size(16, 64))
    SharedTable.format_buffer(buf, 16, 64)
    return SharedTable(buf, threading.Lock())


def first_ping(settings: str = "", **prober_kw: str):
    tbl = table()
    registry.add(tbl, "sip:10.0.0.1:5080", "t", interval_s=10, wall=0, settings=settings)
    prober = Prober(tbl, delete_counter=0, ping_timeout_s=2.0, **prober_kw)  # type: ignore[arg-type]
    step = prober.step(100.0, 1000.0, tbl.drain())
    assert step.pings == [] or len(step.pings) == 1
    pings = step.pings or prober.step(100.0, 1000.0, []).pings
    return tbl, prober, pings[0]


# -- method ---------------------------------------------------------------------------------


def test_methods_are_sip_tokens_kept_as_given() -> None:
    assert parse_method("OPTIONS") == "OPTIONS"
    assert parse_method("INFO") == "INFO"
    assert parse_method("X-Probe.1") == "X-Probe.1"


@pytest.mark.parametrize("method", ["INVITE", "ACK", "cancel", "Bye"])
def test_dialog_methods_are_refused_with_one_clear_error(method: str) -> None:
    with pytest.raises(InvalidArgument, match=r"cannot be a probe \(INVITE, ACK, CANCEL and BYE"):
        parse_method(method)


@pytest.mark.parametrize("method", ["", "OPT IONS", "OPTIONS\r\n", "ÖPTIONS", "A" * 33, "a:b"])
def test_a_method_that_is_not_a_token_is_refused(method: str) -> None:
    with pytest.raises(InvalidArgument, match="not a SIP method"):
        parse_method(method)


def test_the_request_carries_the_method_in_the_request_line_and_cseq() -> None:
    listener = Listener("udp", "127.0.0.1", 5060, "127.0.0.1")
    text = options_request("sip:10.0.0.1", "sip:ka@h", "cid", "z9hG4bKab", listener, "", "INFO")
    assert text.startswith("INFO sip:10.0.0.1 SIP/2.0\r\n")
    assert "\r\nCSeq: 10 INFO\r\n" in text
    default = options_request("sip:10.0.0.1", "sip:ka@h", "cid", "z9hG4bKab", listener, "")
    assert default.startswith("OPTIONS ") and "CSeq: 10 OPTIONS\r\n" in default


def test_the_method_setting_and_parameter_reach_the_ping() -> None:
    assert first_ping()[2].method == "OPTIONS"
    assert first_ping("method=INFO")[2].method == "INFO"
    assert first_ping(ping_method="NOTIFY")[2].method == "NOTIFY"
    assert first_ping("method=INFO", ping_method="NOTIFY")[2].method == "INFO"


# -- proxy ----------------------------------------------------------------------------------


def test_proxy_uris_and_none() -> None:
    assert parse_proxy("sip:10.0.0.5:5070;transport=tcp") == "sip:10.0.0.5:5070;transport=tcp"
    assert parse_proxy("10.0.0.5") == "sip:10.0.0.5"
    assert parse_proxy("NONE") == NO_PROXY


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sip:alice@10.0.0.5", "no user part"),
        ("http://10.0.0.5", "unsupported scheme"),
        ("sip:10.0.0.5;lr", "unsupported uri parameter"),
        ("sip:10.0.0.5:99999", "bad port"),
    ],
)
def test_bad_proxies_are_refused(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=f"setting proxy: .*{message}"):
        parse_proxy(value)


def test_route_goes_to_the_proxy_and_expects_replies_from_it() -> None:
    uri = parse_uri("sip:10.0.0.1:5080")
    direct = route_of(uri, "")
    assert (direct.hop, direct.source) == (
        "sip:10.0.0.1:5080;transport=udp",
        address_tag("10.0.0.1"),
    )
    assert route_of(uri, NO_PROXY) == direct
    via = route_of(uri, "sip:[::5]:5070;transport=tcp")
    assert (via.transport, via.ipv6, via.hop) == ("tcp", True, "sip:[::5]:5070;transport=tcp")
    assert via.source == address_tag("[::5]")
    assert route_of(uri, "sips:proxy.example").hop == "sip:proxy.example:5061;transport=tls"


def test_settings_round_trip_with_the_proxy_transport_parameter() -> None:
    parsed = parse_settings("proxy=sip:10.0.0.5:5070;transport=tcp;down_after=2;method=INFO")
    assert parsed.proxy == "sip:10.0.0.5:5070;transport=tcp"
    assert parsed.method == "INFO" and parsed.down_after == 2
    assert parse_settings(parsed.text) == parsed
    with pytest.raises(InvalidArgument, match="unknown setting 'transport'"):
        parse_settings("transport=tcp;proxy=sip:10.0.0.5")
    with pytest.raises(InvalidArgument, match="setting method: INVITE cannot be a probe"):
        parse_settings("method=INVITE")


def test_the_ping_goes_to_the_proxy_with_the_destination_as_request_uri() -> None:
    tbl, prober, ping = first_ping("proxy=sip:10.0.0.5:5070;transport=tcp")
    assert ping.uri == "sip:10.0.0.1:5080"
    assert (ping.hop, ping.transport) == ("sip:10.0.0.5:5070;transport=tcp", "tcp")
    tbl.push_reply(ping.seq, 200, 100.1, 1000.1, address_tag("10.0.0.1"))
    prober.step(100.1, 1000.1, tbl.drain())
    assert tbl.state_at(ping.slot) is State.UNKNOWN, "a reply from the destination itself is stray"
    tbl.push_reply(ping.seq, 200, 100.2, 1000.2, address_tag("10.0.0.5"))
    prober.step(100.2, 1000.2, tbl.drain())
    assert tbl.state_at(ping.slot) is State.UP


def test_the_module_proxy_is_the_default_and_none_opts_out() -> None:
    assert first_ping(ping_proxy="sip:10.0.0.5")[2].hop == "sip:10.0.0.5:5060;transport=udp"
    assert first_ping()[2].hop == "sip:10.0.0.1:5080;transport=udp"
    opted_out = first_ping("proxy=none", ping_proxy="sip:10.0.0.5")[2]
    assert opted_out.hop == "sip:10.0.0.1:5080;transport=udp"


def test_a_name_with_a_proxy_is_not_resolved_by_ka_dns() -> None:
    tbl = table()
    named = registry.add(tbl, "sip:gw.example", "t", interval_s=10, wall=0, resolve_names=True)
    proxied = registry.add(
        tbl, "sip:gw2.example", "t", interval_s=10, wall=0, resolve_names=True,
        settings="proxy=sip:10.0.0.5",
    )  # fmt: skip
    assert tbl.flags(named.slot) & FLAG_NAME
    assert not tbl.flags(proxied.slot) & FLAG_NAME


# -- module parameters ----------------------------------------------------------------------


def test_parameters_ping_proxy_and_ping_method() -> None:
    config = load_config({"PING_PROXY": '"sip:10.0.0.5;transport=tcp"', "PING_METHOD": "INFO"})
    assert (config.ping_proxy, config.ping_method) == ("sip:10.0.0.5;transport=tcp", "INFO")
    default = load_config({})
    assert (default.ping_proxy, default.ping_method) == ("", "OPTIONS")
    assert load_config({"PING_PROXY": '""'}).ping_proxy == ""
    assert load_config({"PING_PROXY": "none"}).ping_proxy == ""


@pytest.mark.parametrize(
    ("defines", "message"),
    [
        ({"PING_METHOD": "BYE"}, "parameter ping_method: BYE cannot be a probe"),
        ({"PING_METHOD": '""'}, "parameter ping_method: not a SIP method"),
        ({"PING_PROXY": "sip:u@10.0.0.5"}, "parameter ping_proxy: a proxy URI has no user"),
        ({"PING_PROXY": "sip:10.0.0.5", "DNS": "1"}, "ping_proxy: not supported together"),
        (
            {"DESTINATION": "sip:10.0.0.1|proxy=sip:bad_host"},
            "parameter destination: setting proxy",
        ),
    ],
)
def test_bad_parameters_stop_start_up(defines: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        load_config(defines)
