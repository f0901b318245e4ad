from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ka_core.errors import InvalidUri
from ka_core.uri import lookup_key, parse_uri


@pytest.mark.parametrize(
    ("text", "display", "key"),
    [
        ("127.0.0.1", "sip:127.0.0.1", "sip:127.0.0.1:5060"),
        ("sip:127.0.0.1:5070", "sip:127.0.0.1:5070", "sip:127.0.0.1:5070"),
        ("SIP:Example.COM", "SIP:Example.COM", "sip:example.com:5060"),
        ("sips:gw.example.com", "sips:gw.example.com", "sips:gw.example.com:5061"),
        ("[::1]:5080", "sip:[::1]:5080", "sip:[::1]:5080"),
        ("sip:[0:0::1]", "sip:[0:0::1]", "sip:[::1]:5060"),
        ("h:5062;transport=TCP", "sip:h:5062;transport=TCP", "sip:h:5062;transport=tcp"),
        ("sip:alice@10.0.0.1", "sip:alice@10.0.0.1", "sip:alice@10.0.0.1:5060"),
    ],
)
def test_display_and_canonical_key(text: str, display: str, key: str) -> None:
    uri = parse_uri(text)
    assert (uri.display, uri.key) == (display, key)


def test_lookup_with_or_without_scheme_matches_the_same_key() -> None:
    """C's ka_is_alive fails on 'sip:' and 'sips:' lookups; here all spellings match."""
    assert lookup_key("10.1.1.1") == lookup_key("sip:10.1.1.1:5060") == lookup_key("SIP:10.1.1.1")
    assert lookup_key("sips:10.1.1.1") == "sips:10.1.1.1:5061"


@pytest.mark.parametrize(
    "bad",
    [
        "", "   ", "sip:", "sip:host:", "sip:host:0", "sip:host:65536", "sip:host:abc",
        "http://x", "sip:::1", "sip:[::1", "sip:[zz::1]", "sip:1.2.3.999", "sip:-bad-.com",
        "sip:h;transport=sctp", "sip:h;lr", "sip:h;transport=udp;transport=tcp",
        "sip:hé.com", "sip:a b", "sip:h\x00", "x" * 300, "sips:h;transport=udp",
    ],
)  # fmt: skip
def test_bad_uris_are_rejected_with_a_reason(bad: str) -> None:
    with pytest.raises(InvalidUri) as err:
        parse_uri(bad)
    assert str(err.value)


def test_non_string_is_rejected() -> None:
    with pytest.raises(InvalidUri, match="must be a string"):
        parse_uri(5)  # type: ignore[arg-type]


@given(st.text(max_size=300))
def test_any_text_parses_or_raises_invalid_uri(text: str) -> None:
    try:
        uri = parse_uri(text)
    except InvalidUri:
        return
    assert parse_uri(uri.key).key == uri.key
    assert parse_uri(uri.display).key == uri.key


@given(
    st.sampled_from(["sip:", "sips:", ""]),
    st.ip_addresses(v=4).map(str) | st.ip_addresses(v=6).map(lambda a: f"[{a}]"),
    st.none() | st.integers(1, 65535),
    st.sampled_from(["", ";transport=tcp", ";transport=tls", ";transport=udp"]),
)
def test_generated_valid_uris_round_trip(scheme: str, host: str, port: int | None, tp: str) -> None:
    text = f"{scheme}{host}{'' if port is None else f':{port}'}{tp}"
    if scheme == "sips:" and tp == ";transport=udp":
        with pytest.raises(InvalidUri):
            parse_uri(text)
        return
    uri = parse_uri(text)
    address = ipaddress.ip_address(host.strip("[]"))
    assert uri.host == (f"[{address.compressed}]" if address.version == 6 else str(address))
    assert uri.port == (port or (5061 if scheme == "sips:" else 5060))
    assert uri.transport == tp.removeprefix(";transport=")
    again = parse_uri(uri.key)
    assert (again.key, again.host, again.port) == (uri.key, uri.host, uri.port)
    assert lookup_key(uri.display) == uri.key


def test_the_fast_path_for_sip_ipv4_port_gives_what_the_full_parser_gives() -> None:
    from ka_core import uri as uri_mod

    for text in ("sip:10.0.0.1:5060", "sip:255.255.255.255:65535", "sip:0.0.0.0:1",
                 "sip:1.2.3.4:65536", "sip:01.2.3.4:5060", "sip:1.2.3.4:05060",
                 "sip:256.1.1.1:5060", "sip:1.2.3.4:5060;transport=tcp"):  # fmt: skip
        fast = uri_mod._PLAIN.fullmatch(text)
        try:
            full = parse_uri(" " + text)  # the leading blank bypasses the fast path
        except InvalidUri:
            full = None
        try:
            got = parse_uri(text)
        except InvalidUri:
            got = None
        if full is None:
            assert got is None, text
        else:
            assert got is not None and got.key == full.key and got.host == full.host, text
            assert (got.port, got.transport, got.display) == (
                full.port,
                full.transport,
                full.display,
            )
        assert fast is None or int(fast[2]) >= 65536 or got is not None


def test_address_tags_match_across_spellings_and_names_get_none() -> None:
    """The reply's source (as Kamailio prints it) and the destination's host must tag alike."""
    from ka_core.uri import address_tag

    assert address_tag("[2001:db8::1]") == address_tag("2001:db8:0:0:0:0:0:1") != 0
    assert address_tag("fe80::1%eth0") == address_tag("[fe80::1]")
    assert address_tag("10.0.0.1") != address_tag("10.0.0.2")
    assert address_tag("gw.example.com") == 0 and address_tag("10.0.0") == 0
