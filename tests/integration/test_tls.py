"""sips: and ;transport=tls destinations are pinged over TLS through Kamailio's tls module."""

from __future__ import annotations

import re
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.harness.kamailio import make_certificate
from tests.peers.uas import ScriptedUAS

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_peer(tmp_path: Path, uas_factory: Callable[..., ScriptedUAS]) -> ScriptedUAS:
    cert, key = make_certificate(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    return uas_factory(udp=False, tls_context=ctx)


def test_sips_and_transport_tls_are_pinged_over_tls(
    kamailio_factory: KamailioFactory, tls_peer: ScriptedUAS
) -> None:
    kam = kamailio_factory(tls=True)
    sips = f"sips:{tls_peer.host}:{tls_peer.port}"
    tls = f"sip:{tls_peer.host}:{tls_peer.port};transport=tls"
    assert result_of(kam, "ka_add_destination", sips, "t") == "1"
    assert result_of(kam, "ka_add_destination", tls, "t") == "1"
    kam.wait_log(rf"destination {re.escape(sips)} owner t: UNKNOWN -> UP", 8)
    kam.wait_log(rf"destination {re.escape(tls)} owner t: UNKNOWN -> UP", 8)
    assert all(r.headers["Via"].startswith("SIP/2.0/TLS") for r in tls_peer.requests)
    assert {r.transport for r in tls_peer.requests} == {"tls"}
    assert result_of(kam, "ka_is_alive", sips) == "1"
    tls_peer.answer(503)
    kam.wait_log(rf"destination {re.escape(sips)} owner t: UP -> DOWN", 5)
    assert result_of(kam, "ka_is_alive", sips) == "2"
