"""Digest credentials for a 401/407 to a ping: the header (ka_core.probe.digest, against
the RFCs' own examples), the prober's retry (ka_core.probe.auth_hooks), the settings and
their redaction, and the glue path from a SIP worker to the pinger (kemi.challenges)."""

from __future__ import annotations

import threading

import pytest

from ka_core.errors import InvalidArgument
from ka_core.ops.state_file import from_rows
from ka_core.probe.digest import Challenge, authorization, parse_challenge
from ka_core.probe.prober import Prober
from ka_core.settings import Credentials, parse_settings, public_settings
from ka_core.state import State
from ka_core.store import registry
from ka_core.store.table import SharedTable, buffer_size
from ka_core.uri import address_tag
from kemi import pinger
from tests.unit.conftest import Glue

RFC2617 = (
    'Digest realm="testrealm@host.com", qop="auth,auth-int", '
    'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
)
RFC7616 = (
    'Digest realm="http-auth@example.org", qop="auth, auth-int", algorithm=SHA-256, '
    'nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", '
    'opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)


def fields(header: str) -> dict[str, str]:
    _, _, rest = header.partition("Digest ")
    return dict(p.strip().replace('"', "").split("=", 1) for p in rest.split(", "))


def test_rfc_2617_example_md5_with_qop_auth() -> None:
    challenge = parse_challenge(RFC2617)
    assert challenge is not None and challenge.qop_auth and challenge.algorithm == "md5"
    creds = Credentials("Mufasa", "Circle Of Life")
    line = authorization(401, challenge, creds, "GET", "/dir/index.html", "0a4f113b")
    assert line.startswith("Authorization: Digest ")
    got = fields(line)
    assert got["response"] == "6629fae49393a05397450978507c4ef1"
    assert (got["nc"], got["qop"], got["cnonce"]) == ("00000001", "auth", "0a4f113b")
    assert got["opaque"] == "5ccc069c403ebaf9f0171e9517f40e41"
    assert "Circle" not in line and "Circle" not in repr(creds)


def test_rfc_7616_examples_sha256_and_md5() -> None:
    creds = Credentials("Mufasa", "Circle of Life")
    cnonce = "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ"
    sha = parse_challenge(RFC7616)
    assert sha is not None
    got = fields(authorization(407, sha, creds, "GET", "/dir/index.html", cnonce))
    assert got["response"] == "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
    md5 = parse_challenge(RFC7616.replace("algorithm=SHA-256", "algorithm=MD5"))
    assert md5 is not None
    line = authorization(407, md5, creds, "GET", "/dir/index.html", cnonce)
    assert line.startswith("Proxy-Authorization: Digest ")
    assert fields(line)["response"] == "8ca523f5e9506fed4657c9700eebdbec"


def test_without_qop_the_rfc_2069_form() -> None:
    challenge = Challenge("r", "n", "md5", None, qop_auth=False)
    got = fields(authorization(401, challenge, Credentials("u", "p"), "OPTIONS", "sip:h", "c"))
    assert "qop" not in got and "cnonce" not in got and "opaque" not in got
    assert len(got["response"]) == 32


@pytest.mark.parametrize(
    "header",
    [
        'Basic realm="x"',
        'Digest realm="x"',  # no nonce
        'Digest realm="x", nonce="n", algorithm=SHA-512-256',
        'Digest realm="x", nonce="n", qop="auth-int"',
        'Digest realm="x\r\nEvil: 1", nonce="n"',
        'Digest realm="a\\"b", nonce="n"',
        'Digest nonce="' + "n" * 3000 + '"',
        "",
    ],
)
def test_challenges_ka_kemi_cannot_or_must_not_answer(header: str) -> None:
    assert parse_challenge(header) is None


def test_md5_sess_and_an_unquoted_nonce() -> None:
    challenge = parse_challenge("Digest realm=r, nonce=abc, algorithm=MD5-sess, qop=auth")
    assert challenge == Challenge("r", "abc", "md5-sess", None, True)
    line = authorization(401, challenge, Credentials("u", "p"), "OPTIONS", "sip:h", "c")
    assert "algorithm=MD5-SESS" in line


# -- settings ---------------------------------------------------------------------------------


def test_credentials_settings_and_their_public_text() -> None:
    settings = parse_settings("auth_user=alice;auth_password=pw1;down_after=2")
    assert settings.credentials == Credentials("alice", "pw1")
    assert "pw1" not in repr(settings)
    assert parse_settings(settings.text) == settings
    assert public_settings(settings.text) == "down_after=2;auth_user=alice"
    assert public_settings("down_after=2") == "down_after=2"
    rows = [("sip:h", "o", settings.text, 1000, 0, 1, 0, 0, 0, "", "", "")]
    assert "pw1" not in repr(from_rows(rows))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("auth_user=alice", "go together"),
        ("auth_password=pw", "go together"),
        ("auth_user=a b;auth_password=p", "setting auth_user: 'a b' has a blank"),
        ('auth_user=a;auth_password=p"w', "setting auth_password: the password has"),
        ("auth_user=a;auth_password=p\\w", "setting auth_password: the password has"),
        ("auth_user=a;auth_password=" + "x" * 129, "auth_password: longer than 128"),
    ],
)
def test_bad_credentials_are_refused_and_never_echo_the_password(text: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as caught:
        parse_settings(text)
    assert 'p"w' not in str(caught.value) and "p\\w" not in str(caught.value)


# -- the prober -------------------------------------------------------------------------------

CHALLENGE = 'Digest realm="ka", nonce="n1", qop="auth"'


def prober_with(settings: str):
    buf = bytearray(buffer_size(8, 64))
    SharedTable.format_buffer(buf, 8, 64)
    table = SharedTable(buf, threading.Lock())
    rec = registry.add(table, "sip:10.0.0.1", "t", interval_s=10, wall=0, settings=settings)
    prober = Prober(table, delete_counter=0, ping_timeout_s=2.0)
    prober.use_cnonce(lambda seq: f"c{seq}")
    (ping,) = (
        prober.step(100.0, 1000.0, table.drain()).pings or prober.step(100.0, 1000.0, []).pings
    )
    return table, prober, rec.slot, ping


def reply(table: SharedTable, prober: Prober, seq: int, code: int, now: float, challenge=""):
    if challenge:
        prober.take_challenge(seq, challenge)
    table.push_reply(seq, code, now, now + 900, address_tag("10.0.0.1"))
    return prober.step(now, now + 900, table.drain())


def test_a_challenge_is_answered_once_with_a_new_ping_carrying_the_credentials() -> None:
    table, prober, slot, ping = prober_with("auth_user=alice;auth_password=pw")
    step = reply(table, prober, ping.seq, 401, 100.2, CHALLENGE)
    (again,) = step.resent
    assert (
        again.seq != ping.seq
        and again.uri == ping.uri
        and again.auth.startswith(
            'Authorization: Digest username="alice", realm="ka", nonce="n1", uri="sip:10.0.0.1"'
        )
    )
    assert 'cnonce="c2"' in again.auth and table.state_at(slot) is State.UNKNOWN
    assert reply(table, prober, ping.seq, 200, 100.3).events == [], "the first ping is done"
    reply(table, prober, again.seq, 200, 100.4)
    assert table.state_at(slot) is State.UP
    assert 180 < table.read(slot).rtt_ms < 220, "measured from the authenticated send"


def test_a_second_challenge_or_no_credentials_is_judged_as_the_401() -> None:
    table, prober, slot, ping = prober_with("auth_user=alice;auth_password=pw")
    (again,) = reply(table, prober, ping.seq, 401, 100.1, CHALLENGE).resent
    assert reply(table, prober, again.seq, 401, 100.2, CHALLENGE).resent == []
    assert table.state_at(slot) is State.DOWN
    table, prober, slot, ping = prober_with("")
    assert reply(table, prober, ping.seq, 401, 100.1, CHALLENGE).resent == []
    assert table.state_at(slot) is State.DOWN
    table, prober, slot, ping = prober_with("auth_user=alice;auth_password=pw")
    assert reply(table, prober, ping.seq, 401, 100.1, "Basic realm=x").resent == []
    assert table.state_at(slot) is State.DOWN


def test_the_authenticated_ping_keeps_the_first_deadline() -> None:
    table, prober, slot, ping = prober_with("auth_user=alice;auth_password=pw")
    reply(table, prober, ping.seq, 407, 101.5, CHALLENGE.replace("Digest", "Digest "))
    prober.step(101.9, 1001.9, [])
    assert table.state_at(slot) is State.UNKNOWN
    prober.step(102.0, 1002.0, [])
    assert table.state_at(slot) is State.DOWN, "2 s after the first send"


# -- the glue ---------------------------------------------------------------------------------


def test_a_workers_challenge_reaches_the_pinger_and_the_request_carries_it(glue: Glue) -> None:
    assert glue.rt.add("sip:10.0.0.1", "t", settings="auth_user=alice;auth_password=pw") is not None
    p = pinger.Pinger(glue.rt)
    for at in (1000.0, 1000.4):
        glue.clock.now = at
        glue.rt.wake()
        p.run_once()
    first = glue.ksr.sent[-1][2]
    glue.ksr.reply = (first, 401, "10.0.0.1")
    glue.ksr.reply_headers = {"WWW-Authenticate": CHALLENGE}
    assert pinger.on_reply(glue.rt) == 0
    glue.clock.now = 1000.45
    p.run_once()
    _, text = glue.ksr.requests[-1]
    assert glue.ksr.sent[-1][2] != first
    assert '\r\nAuthorization: Digest username="alice", realm="ka"' in text
    assert text.endswith("\r\n\r\n") and text.count("\r\n\r\n") == 1
    assert "pw" not in " ".join(glue.ksr.texts())


def test_a_challenge_for_no_pending_ping_or_a_deleted_destination_is_ignored() -> None:
    table, prober, _, ping = prober_with("auth_user=alice;auth_password=pw")
    prober.take_challenge(ping.seq + 99, CHALLENGE)  # no such ping: not kept
    assert prober._auth.challenges == {}
    prober.take_challenge(ping.seq, CHALLENGE)
    registry.remove(table, "sip:10.0.0.1", "t")
    table.push_reply(ping.seq, 401, 100.1, 1000.1, address_tag("10.0.0.1"))
    step = prober.step(100.1, 1000.1, table.drain())
    assert step.resent == [] and step.events == [], "deleted: no authenticated ping"
