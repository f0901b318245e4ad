"""keepalive.* through the stock Debian ``kamcli`` (JSON-RPC over a unix datagram socket),
against real Kamailio: ka-kemi serves kamcli's socket, answers ``keepalive.*`` itself and
relays everything else to Kamailio's jsonrpcs."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory
from tests.harness.kamailio import REPO, VERSION, Kamailio
from tests.harness.tiers import tier_unavailable
from tests.integration.test_keepalive import assert_intervals, wait_state
from tests.integration.test_rpc import jsonrpc_call

pytestmark = pytest.mark.integration

KAMCLI = "/usr/bin/kamcli"


def kamcli_config(kam: Kamailio, directory: Path) -> Path:
    """kamcli's ini: the socket transport on ka-kemi's path, JSON output, no group change."""
    cfg = directory / "kamcli.ini"
    cfg.write_text(
        "[jsonrpc]\ntransport=socket\n"
        f"srvaddr={kam.jsonrpc_socket}\nrcvaddr={directory / 'kamcli_reply.sock'}\n"
        "outformat=json\n"
    )
    return cfg


# Debian 13's kamcli 2.0.0 calls configparser.SafeConfigParser (kamcli/cli.py), which Python
# 3.12 removed: on 3.12+ the package's own code runs with that one alias restored (docs/
# operations.md says how to fix the package).
SHIM = (
    "import configparser, runpy, sys\n"
    "if not hasattr(configparser, 'SafeConfigParser'):\n"
    "    configparser.SafeConfigParser = configparser.ConfigParser\n"
    f"sys.argv[0] = 'kamcli'\nrunpy.run_path({KAMCLI!r}, run_name='__main__')\n"
)


def kamcli(cfg: Path, *args: str, timeout: float = 15) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["/usr/bin/python3", "-c", SHIM, "--no-default-configs", "-c", str(cfg), "rpc", *args],
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def rpc(cfg: Path, *args: str) -> dict[str, object]:
    """The JSON-RPC response kamcli printed."""
    out = kamcli(cfg, *args)
    assert out.returncode == 0 and out.stdout.strip(), (out.stdout, out.stderr)
    reply: dict[str, object] = json.loads(out.stdout)
    return reply


@pytest.fixture
def cfg(kam: Kamailio, tmp_path: Path) -> Path:
    if not os.access(KAMCLI, os.X_OK):
        tier_unavailable(f"{KAMCLI} not installed (apt-get install kamcli)")
    return kamcli_config(kam, tmp_path)


def documented_ini() -> str:
    """The kamcli.ini block of docs/operations.md, as an operator copies it."""
    text = (REPO / "docs" / "operations.md").read_text()
    block = re.search(r"```ini\n(\[jsonrpc\]\n.*?)```", text, re.S)
    assert block, "docs/operations.md has no kamcli.ini block"
    return block.group(1)


def test_the_documented_kamcli_ini_works(kam: Kamailio, cfg: Path, tmp_path: Path) -> None:
    """The ini of docs/operations.md, with this Kamailio's paths: Debian's kamcli runs with
    it (it used to lack ``outformat``: NoOptionError)."""
    ini = documented_ini()
    assert "outformat=" in ini
    ini = ini.replace("/run/kamailio/kamailio_rpc.sock", str(kam.jsonrpc_socket), 1)
    ini = ini.replace("/run/kamailio/kamailio_rpc_reply.sock", str(tmp_path / "reply.sock"))
    documented = tmp_path / "documented.ini"
    documented.write_text(ini)
    out = kamcli(documented, "keepalive.list")
    assert out.returncode == 0 and "Error" not in out.stderr, (out.stdout, out.stderr)
    assert json.loads(out.stdout)["result"] == []
    version = kamcli(documented, "core.version")
    assert version.returncode == 0 and "kamailio" in version.stdout, version


def test_keepalive_commands_through_kamcli(kam: Kamailio, cfg: Path, uas_factory) -> None:
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    assert rpc(cfg, "keepalive.add", uri, "cli")["result"] == "Ok. Destination added."
    assert rpc(cfg, "keepalive.add", uri, "cli")["error"] == {
        "code": 500, "message": "couldn't add data to list",
    }  # fmt: skip
    wait_state(kam, uri, 1, owner="cli")
    got = rpc(cfg, "keepalive.get", uri, "cli")
    assert got["result"] == {"uri": uri, "owner": "cli", "state": 1}
    listed = rpc(cfg, "keepalive.list")
    assert listed["result"] == jsonrpc_call(kam, "keepalive.list")["result"], "same as HTTP"
    assert isinstance(listed["result"], list) and listed["result"][0]["uri"] == uri
    info = rpc(cfg, "keepalive.info", uri, "cli")["result"]
    assert isinstance(info, list) and info[0]["probing"] == "active"
    assert info[0]["last code"] == 200
    paged = rpc(cfg, "keepalive.list", "i:0", "i:1")["result"]
    assert isinstance(paged, list) and len(paged) == 1
    assert rpc(cfg, "keepalive.del", uri, "cli")["result"] == "Ok. Destination removed."
    assert rpc(cfg, "keepalive.get", uri, "cli")["error"] == {
        "code": 500, "message": "couldn't get data from list",
    }  # fmt: skip
    assert rpc(cfg, "keepalive.list")["result"] == []
    assert kam.kamcmd("keepalive.list") == "", "the same shared table as kamcmd"


def test_other_methods_are_relayed_to_kamailios_jsonrpcs(kam: Kamailio, cfg: Path) -> None:
    version = rpc(cfg, "core.version")
    assert VERSION.match(str(version["result"])), version
    uptime = rpc(cfg, "core.uptime")["result"]
    assert isinstance(uptime, dict) and "uptime" in uptime
    methods = rpc(cfg, "system.listMethods")["result"]
    assert isinstance(methods, list) and "core.version" in methods and "keepalive.list" in methods
    assert rpc(cfg, "no.such")["error"] == {"code": 500, "message": "Method Not Found"}
    assert stat.S_IMODE(os.stat(kam.jsonrpcs_socket).st_mode) == 0o600, "Kamailio's own"


def test_socket_mode_and_garbage(kam: Kamailio, cfg: Path, tmp_path: Path) -> None:
    assert stat.S_IMODE(os.stat(kam.jsonrpc_socket).st_mode) == 0o660
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client:
        client.bind(str(tmp_path / "raw.sock"))
        client.settimeout(5)
        for garbage in (os.urandom(200), b"{" * 9000, b'[{"method": "core.version"}]'):
            client.sendto(garbage, str(kam.jsonrpc_socket))
            reply = json.loads(client.recv(65536))
            assert reply["jsonrpc"] == "2.0" and reply["error"]["code"] in (-32700, -32600)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as anonymous:
            anonymous.sendto(b'{"jsonrpc":"2.0","method":"keepalive.flush","id":1}',
                             str(kam.jsonrpc_socket))  # fmt: skip
    assert rpc(cfg, "keepalive.list")["result"] == [], "still serving"


@pytest.fixture
def silent_target(tmp_path: Path) -> Iterator[Path]:
    """Where ``KA_JSONRPC_FORWARD`` points: nothing at first; the test may bind a socket
    there that never answers."""
    path = tmp_path / "jsonrpcs-down.sock"
    yield path
    if path.exists():
        path.unlink()


def test_relay_target_down_is_a_clear_error_in_bounded_time(
    kamailio_factory: KamailioFactory, tmp_path: Path, silent_target: Path, uas_factory
) -> None:
    if not os.access(KAMCLI, os.X_OK):
        tier_unavailable(f"{KAMCLI} not installed (apt-get install kamcli)")
    kam = kamailio_factory({"KA_JSONRPC_FORWARD": f'"{silent_target}"'})
    cfg = kamcli_config(kam, tmp_path)
    started = time.monotonic()
    error = rpc(cfg, "core.version")["error"]
    assert isinstance(error, dict) and "kamailio jsonrpcs not reachable" in str(error["message"])
    assert time.monotonic() - started < 3
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    assert rpc(cfg, "keepalive.add", uri, "t")["result"] == "Ok. Destination added."
    wait_state(kam, uri, 1)
    with (
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as silent,
        socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as client,
    ):
        silent.bind(str(silent_target))
        client.bind(str(tmp_path / "pending.sock"))
        for i in range(5):  # relayed requests pending while the pinger keeps pinging
            client.sendto(json.dumps({"jsonrpc": "2.0", "method": "core.psx", "id": i}).encode(),
                          str(kam.jsonrpc_socket))  # fmt: skip
        started = time.monotonic()
        error = rpc(cfg, "core.uptime")["error"]
        assert isinstance(error, dict) and "no reply from kamailio jsonrpcs" in error["message"]
        assert 1.5 < time.monotonic() - started < 4, "before kamcli gives up (4 s)"
        fast = time.monotonic()
        assert rpc(cfg, "keepalive.get", uri, "t")["result"] == {"uri": uri, "owner": "t",
                                                                  "state": 1}  # fmt: skip
        assert time.monotonic() - fast < 2
    pings = [r.mono for r in uas.received("OPTIONS") if r.mono > started - 1]
    assert_intervals(pings, 1.0)


def test_no_socket_or_no_relay_when_turned_off(
    kamailio_factory: KamailioFactory, tmp_path: Path
) -> None:
    kam = kamailio_factory({"KA_JSONRPC_SOCKET": '""'})
    assert not (kam.workdir / "jsonrpc.sock").exists()
    assert not (kam.workdir / "jsonrpc.sock.reply").exists()
    assert kam.kamcmd("keepalive.list") == ""
    if not os.access(KAMCLI, os.X_OK):
        tier_unavailable(f"{KAMCLI} not installed (apt-get install kamcli)")
    alone = kamailio_factory({"KA_JSONRPC_FORWARD": '""'})
    assert not (alone.workdir / "jsonrpc.sock.reply").exists()
    cfg = kamcli_config(alone, tmp_path)
    assert rpc(cfg, "core.version")["error"] == {"code": 500, "message": "Method Not Found"}
    assert rpc(cfg, "keepalive.list")["result"] == []
