from __future__ import annotations

import pytest

from ka_core.config import DEFAULT_PING_FROM, KaConfig, define_names, load_config
from ka_core.errors import InvalidArgument


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
