"""Per-destination settings: the ``key=value;...`` text, its checks, the merge with the
module's health parameters and the local socket tag replies are matched with."""

from __future__ import annotations

import re

import pytest

from ka_core.errors import InvalidArgument
from ka_core.policy import CodeSet, Policy
from ka_core.settings import Settings, parse_settings, parse_socket, socket_tag
from ka_core.state import Outcome

EVERY_KEY = (
    "interval=10;from=sip:probe@example.com;down_after=3;up_after=2;alive=2xx,404;"
    "degraded_ms=250;socket=udp:10.0.0.1:5060"
)


def test_every_key_is_parsed() -> None:
    s = parse_settings(EVERY_KEY)
    assert (s.interval, s.from_uri, s.down_after, s.up_after) == (
        10, "sip:probe@example.com", 3, 2,
    )  # fmt: skip
    assert s.alive is not None and 404 in s.alive and 200 in s.alive and 503 not in s.alive
    assert (s.degraded_ms, s.socket) == (250, "udp:10.0.0.1:5060")


def test_canonical_text_round_trips() -> None:
    assert parse_settings(EVERY_KEY).text == EVERY_KEY
    assert parse_settings(parse_settings(EVERY_KEY).text) == parse_settings(EVERY_KEY)


def test_canonical_text_has_a_fixed_order_lower_case_keys_and_no_blanks() -> None:
    messy = ' " SOCKET = TLS:[0:0::1]:5061 ; alive= 2XX ;; Down_After=4 " '
    assert parse_settings(messy).text == "down_after=4;alive=2xx;socket=tls:[::1]:5061"


def test_empty_text_is_no_settings() -> None:
    for text in ("", "  ", ";", '""'):
        assert parse_settings(text) == Settings()
    assert Settings().text == ""


def test_degraded_ms_zero_is_kept_in_the_text() -> None:
    """0 is an explicit "no latency threshold", not "follow the module"."""
    s = parse_settings("degraded_ms=0")
    assert s.degraded_ms == 0 and s.text == "degraded_ms=0"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("interval=0", "setting interval: 0 out of range [1, 86400]"),
        ("interval=86401", "setting interval: 86401 out of range [1, 86400]"),
        ("interval=ten", "setting interval: not an integer: 'ten'"),
        ("interval=1.5", "setting interval: not an integer"),
        ("down_after=0", "setting down_after: 0 out of range [1, 1000]"),
        ("down_after=1001", "setting down_after: 1001 out of range [1, 1000]"),
        ("up_after=0", "setting up_after: 0 out of range [1, 1000]"),
        ("up_after=1001", "setting up_after: 1001 out of range [1, 1000]"),
        ("up_after=x", "setting up_after: not an integer"),
        ("degraded_ms=-1", "setting degraded_ms: -1 out of range"),
        ("degraded_ms=600001", "setting degraded_ms: 600001 out of range"),
        ("alive=2yy", "alive codes: bad item '2yy'"),
        ("alive=!2xx", "alive codes: '!2xx' leaves no code alive"),
        ("from=sip:example.com", "setting from: needs a user part"),
        ("from=sip:bad host!", "setting from:"),
        ("socket=udp:10.0.0.1", "setting socket:"),
    ],
)
def test_values_out_of_range_name_the_key(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        parse_settings(text)


def test_upper_limits_are_accepted() -> None:
    s = parse_settings("interval=86400;down_after=1000;up_after=1000;degraded_ms=600000")
    assert (s.interval, s.down_after, s.up_after, s.degraded_ms) == (86400, 1000, 1000, 600000)


def test_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(InvalidArgument, match=r"unknown setting 'timeout' \(interval, from, "):
        parse_settings("down_after=2;timeout=5")


@pytest.mark.parametrize("text", ["down_after", "down_after=", "alive= "])
def test_items_without_a_value_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match="expected key=value"):
        parse_settings(text)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("down_after=2;down_after=3", "down_after"),
        ("from=sip:a@example.com;from=sip:b@example.com", "from"),
        ("alive=2xx;ALIVE=2xx", "alive"),
        ("socket=udp:10.0.0.1:5060;socket=udp:10.0.0.2:5060", "socket"),
    ],
)
def test_a_key_given_twice_is_refused(text: str, key: str) -> None:
    with pytest.raises(InvalidArgument, match=f"setting {key} given twice"):
        parse_settings(text)


# -- socket ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "parsed", "canonical"),
    [
        ("udp:1.2.3.4:5060", ("udp", "1.2.3.4", 5060), "udp:1.2.3.4:5060"),
        ("tls:[::1]:5061", ("tls", "::1", 5061), "tls:[::1]:5061"),
        ("TCP:10.0.0.1:65535", ("tcp", "10.0.0.1", 65535), "tcp:10.0.0.1:65535"),
        ("udp:[2001:DB8:0::1]:1", ("udp", "2001:db8::1", 1), "udp:[2001:db8::1]:1"),
    ],
)
def test_socket_forms(text: str, parsed: tuple[str, str, int], canonical: str) -> None:
    assert parse_socket(text) == parsed
    assert parse_settings(f"socket={text}").socket == canonical


@pytest.mark.parametrize(
    "text",
    [
        "tcp:::1:5060",  # IPv6 without brackets
        "udp:::1]:5060",
        "udp:[1.2.3.4]:5060",  # IPv4 in brackets
        "udp:gw.example.com:5060",  # a host name, not one of Kamailio's listeners
        "sctp:1.2.3.4:5060",
        "ws:1.2.3.4:5060",
        "1.2.3.4:5060",
        "udp:1.2.3.4:0",
        "udp:1.2.3.4:65536",
        "udp:1.2.3.4:",
        "udp:1.2.3.4",
        "udp::5060",
        "udp:1.2.3.999:5060",
    ],
)
def test_bad_sockets_are_refused(text: str) -> None:
    with pytest.raises(InvalidArgument, match=r"setting socket: .* is not proto:address:port"):
        parse_socket(text)
    with pytest.raises(InvalidArgument, match="setting socket"):
        parse_settings(f"socket={text}")


@pytest.mark.parametrize("text", ["udp:[::1:5060", "udp:[[::1]]:5060"])
def test_unbalanced_ipv6_brackets_are_refused(text: str) -> None:
    """BUG (ka_core/settings.py parse_socket): ``host.strip("[]")`` drops any number of
    brackets on either side and only the opening one is checked, so ``udp:[::1:5060`` is
    accepted (the URI parser refuses the same "unclosed IPv6 bracket")."""
    with pytest.raises(InvalidArgument, match="setting socket"):
        parse_socket(text)


def test_socket_tag_is_the_same_for_one_address_and_port_in_any_spelling() -> None:
    assert socket_tag("10.0.0.1", 5060) == socket_tag("10.0.0.1", 5060)
    assert socket_tag("::1", 5061) == socket_tag("[::1]", 5061) == socket_tag("0:0::1", 5061)
    _, address, port = parse_socket("tls:[0::1]:5061")
    assert socket_tag(address, port) == socket_tag("[::1]", 5061)


def test_socket_tag_differs_by_port_and_address_and_is_never_zero() -> None:
    base = socket_tag("10.0.0.1", 5060)
    assert base != socket_tag("10.0.0.1", 5061)
    assert base != socket_tag("10.0.0.2", 5060)
    assert socket_tag("::1", 5060) != socket_tag("127.0.0.1", 5060)
    assert 0 not in {base, socket_tag("", 0), socket_tag("not-an-ip", 5060)}


# -- merge with the module's parameters ---------------------------------------------------

MODULE = Policy(down_after=2, up_after=3, alive=CodeSet.parse("2xx,404"), degraded_ms=500)


def test_no_settings_follow_the_module_policy() -> None:
    assert Settings().policy(MODULE) == MODULE
    assert parse_settings("interval=5;from=sip:a@example.com").policy(MODULE) == MODULE


def test_each_setting_overrides_only_its_own_parameter() -> None:
    p = parse_settings("down_after=5").policy(MODULE)
    assert (p.down_after, p.up_after, p.alive, p.degraded_ms) == (5, 3, MODULE.alive, 500)
    p = parse_settings("up_after=1;alive=2xx,486").policy(MODULE)
    assert (p.down_after, p.up_after, p.degraded_ms) == (2, 1, 500)
    assert p.judge(486, True, 1.0) is Outcome.OK
    assert p.judge(404, True, 1.0) is Outcome.FAIL, "the destination's list replaces the module's"


def test_degraded_ms_setting_changes_or_turns_off_the_module_threshold() -> None:
    slow = 800.0
    assert Settings().policy(MODULE).judge(200, True, slow) is Outcome.SLOW
    assert parse_settings("degraded_ms=0").policy(MODULE).judge(200, True, slow) is Outcome.OK
    tighter = parse_settings("degraded_ms=100").policy(MODULE)
    assert tighter.judge(200, True, 150.0) is Outcome.SLOW


def test_degraded_as_down_of_the_module_applies_to_a_destination_threshold() -> None:
    module = Policy(degraded_as_down=True)
    p = parse_settings("degraded_ms=100").policy(module)
    assert p.judge(200, True, 150.0) is Outcome.FAIL
    assert p.judge(200, True, 50.0) is Outcome.OK
