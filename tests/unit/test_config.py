from __future__ import annotations

import re

import pytest

from ka_core.config.kaconfig import DEFAULT_PING_FROM, KaConfig, define_names, load_config
from ka_core.errors import InvalidArgument
from ka_core.policy import CodeSet, Policy


def test_defaults_match_the_c_module() -> None:
    cfg = load_config({})
    assert (cfg.ping_interval, cfg.delete_counter, cfg.ping_from) == (30, 5, DEFAULT_PING_FROM)
    assert cfg == KaConfig()


def test_values_and_repeatable_destinations() -> None:
    cfg = load_config(
        {
            "PING_INTERVAL": "10",
            "DELETE_COUNTER": '"0"',
            "PING_FROM": '"sip:ka@example.com"',
            "DESTINATION": '"sip:10.0.0.1, 10.0.0.2:5070;transport=tcp"',
            "DESTINATION_7": "sips:gw.example.com",
        }
    )
    assert cfg.ping_interval == 10 and cfg.delete_counter == 0
    assert cfg.ping_from == "sip:ka@example.com"
    assert [u.display for u, _ in cfg.destinations] == [
        "sip:10.0.0.1", "sip:10.0.0.2:5070;transport=tcp", "sips:gw.example.com",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("PING_INTERVAL", "0", "ping_interval: 0 out of range"),
        ("PING_INTERVAL", "ten", "ping_interval: not an integer: 'ten'"),
        ("DELETE_COUNTER", "-1", "delete_counter: -1 out of range"),
        ("PING_FROM", '"sip:"', "ping_from"),
        ("PING_FROM", '"sip:example.com"', "ping_from: needs a user part"),
        ("DESTINATION", '"sip:bad_host!"', "destination"),
        ("DESTINATION", '"sip:h sip:h:5060"', "listed twice"),
        ("RPC_SOCKET", '"relative/path"', "rpc_socket: needs an absolute path"),
    ],
)
def test_invalid_values_name_the_parameter(name: str, value: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        load_config({name: value})


def test_more_destinations_than_the_maximum_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="exceed max_destinations 1"):
        load_config({"DESTINATION": "h1 h2", "MAX_DESTINATIONS": "1"})


def test_every_parameter_has_a_define_name() -> None:
    names = define_names()
    assert "KA_PING_INTERVAL" in names and "KA_DESTINATION_99" in names


# -- health parameters and per-destination settings ------------------------------------------


def test_destination_items_carry_their_settings() -> None:
    cfg = load_config({"DESTINATION": '"sip:10.0.0.1|down_after=3;alive=2xx,404 sip:10.0.0.2"'})
    assert [(u.display, s.text) for u, s in cfg.destinations] == [
        ("sip:10.0.0.1", "down_after=3;alive=2xx,404"), ("sip:10.0.0.2", ""),
    ]  # fmt: skip


def test_commas_separate_plain_items_but_belong_to_settings() -> None:
    cfg = load_config({"DESTINATION": "h1,h2 h3|alive=2xx,486,603;socket=udp:10.0.0.9:5060"})
    assert [(u.display, s.text) for u, s in cfg.destinations] == [
        ("sip:h1", ""), ("sip:h2", ""),
        ("sip:h3", "alive=2xx,486,603;socket=udp:10.0.0.9:5060"),
    ]  # fmt: skip


def test_a_destination_listed_twice_with_other_settings_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="sip:h:5060 listed twice"):
        load_config({"DESTINATION": "h|down_after=2", "DESTINATION_1": "sip:h:5060"})


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("sip:10.0.0.1|down_after=0", "parameter destination: setting down_after: 0 out of range"),
        ("sip:10.0.0.1|colour=blue", "parameter destination: unknown setting 'colour'"),
        ("sip:10.0.0.1|socket=udp:gw:5060", "parameter destination: setting socket"),
        ("sip:10.0.0.1|alive=2yy", "parameter destination: alive codes: bad item"),
        ("sip:bad_host!|down_after=2", "parameter destination: bad host name"),
    ],
)
def test_a_bad_setting_names_the_destination_parameter(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        load_config({"DESTINATION_3": value})


def test_health_defines_make_the_module_policy() -> None:
    cfg = load_config(
        {
            "DOWN_AFTER": "3", "UP_AFTER": "2", "ALIVE_CODES": '"2xx,404"', "DEGRADED_MS": "250",
            "DEGRADED_AS": '"DOWN"', "DOWN_BACKOFF_MAX": "300", "EVENT_CALLBACK": '"ka_event"',
            "EVENT_INITIAL": "1",
        }
    )  # fmt: skip
    assert cfg.policy == Policy(3, 2, CodeSet.parse("2xx,404"), 250, degraded_as_down=True)
    assert (cfg.down_backoff_max, cfg.event_callback, cfg.event_initial) == (300, "ka_event", 1)
    assert not cfg.policy.is_default and load_config({}).policy.is_default
    assert load_config({"DEGRADED_AS": "degraded"}).policy.degraded_as_down is False


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DOWN_AFTER", "0", "down_after: 0 out of range [1, 1000]"),
        ("UP_AFTER", "1001", "up_after: 1001 out of range [1, 1000]"),
        ("ALIVE_CODES", '"2yy"', "alive_codes: alive codes: bad item '2yy'"),
        ("ALIVE_CODES", '""', "alive_codes: alive codes: empty list"),
        ("DEGRADED_MS", "-1", "degraded_ms: -1 out of range [0, 600000]"),
        ("DEGRADED_MS", "600001", "degraded_ms: 600001 out of range"),
        ("DEGRADED_AS", '"maybe"', "degraded_as: 'maybe' is not one of degraded, down"),
        ("DOWN_BACKOFF_MAX", "86401", "down_backoff_max: 86401 out of range [0, 86400]"),
        ("EVENT_CALLBACK", '"not a name"', "event_callback: not a method name: 'not a name'"),
        ("EVENT_CALLBACK", '"mod:fn"', "event_callback: not a method name"),
        ("EVENT_INITIAL", "2", "event_initial: 2 out of range [0, 1]"),
        ("EVENT_INITIAL", "yes", "event_initial: not an integer"),
    ],
)
def test_invalid_health_defines_name_the_parameter(name: str, value: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=f"parameter {re.escape(message)}"):
        load_config({name: value})


def test_health_defines_have_define_names() -> None:
    names = define_names()
    for name in ("DOWN_AFTER", "UP_AFTER", "ALIVE_CODES", "DEGRADED_MS", "DEGRADED_AS",
                 "DOWN_BACKOFF_MAX", "EVENT_CALLBACK", "EVENT_INITIAL"):  # fmt: skip
        assert f"KA_{name}" in names
