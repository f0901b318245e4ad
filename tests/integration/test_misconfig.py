"""Every misconfiguration of issue 28 fails loudly, once, on a real Kamailio.

Each test starts Kamailio with a modified copy of kamailio.cfg or kemi/example.py, the way an
operator gets it wrong.  Where ka-kemi can tell at start-up, Kamailio must exit non-zero with
one ``keepalive: cannot start: ...`` line and no traceback; where only run time can tell, one
line (a warning or an error) and a log that stays short.
"""

from __future__ import annotations

import os
import pwd
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import KamailioFactory, result_of
from tests.harness.kamailio import REPO, Kamailio
from tests.integration.test_keepalive import wait_state

pytestmark = pytest.mark.integration

EXIT_TIMEOUT_S = 30
MAX_LINES = 60
"""A refused start logs Kamailio's own lines plus ours: well under this."""


def example_copy(tmp_path: Path, old: str = "", new: str = "") -> Path:
    """kemi/example.py with ``old`` replaced by ``new`` (which must occur), importing ka-kemi
    from the repository."""
    text = (REPO / "kemi" / "example.py").read_text()
    text = text.replace(
        "sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))",
        f"sys.path.insert(0, {str(REPO)!r})",
    )
    if old:
        assert old in text, old
        text = text.replace(old, new)
    path = tmp_path / "script.py"
    path.write_text(text)
    return path


def without(*lines: str):  # type: ignore[no-untyped-def]
    """A ``cfg_edit`` that comments out the cfg lines starting with each of ``lines``."""

    def edit(cfg: str) -> str:
        for start in lines:
            assert re.search(rf"^{re.escape(start)}", cfg, re.M), start
            cfg = re.sub(rf"^{re.escape(start)}", "# " + start, cfg, flags=re.M)
        return cfg

    return edit


def refused(kam: Kamailio, message: str) -> str:
    """Kamailio exited non-zero with exactly one ``cannot start`` line holding ``message``,
    no traceback, and a short log; returns that line."""
    kam.start(wait=False)
    assert kam.proc is not None
    code = kam.proc.wait(timeout=EXIT_TIMEOUT_S)
    log = kam.log()
    assert code != 0, log[-3000:]
    ours = [ln for ln in log.splitlines() if "keepalive: cannot start" in ln]
    assert len(ours) == 1 and message in ours[0], log[-3000:]
    assert "Traceback" not in log and "Unhandled exception" not in log, log[-3000:]
    assert len(log.splitlines()) < MAX_LINES, log[-3000:]
    return ours[0]


def check_says(kam: Kamailio, expected: str) -> None:
    """``python3 -m kemi.check`` (Kamailio's own Python) on the cfg Kamailio just refused
    names the same problem."""
    out = subprocess.run(
        ["/usr/bin/python3", "-m", "kemi.check", str(kam.workdir / "kamailio.cfg")],
        cwd=REPO, capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 1 and expected in out.stdout, (out.stdout, out.stderr)


def test_without_the_rtimer_pinger_kamailio_refuses_to_start(
    kamailio_factory: KamailioFactory, tmp_path: Path
) -> None:
    kam = kamailio_factory(
        start=False,
        script=example_copy(tmp_path),
        cfg_edit=without('modparam("rtimer", "timer"', 'modparam("rtimer", "exec"'),
    )
    line = refused(kam, "config error: the pinger did not start within 5 s")
    assert "route=ksr_ka_pinger" in line and "python3 -m kemi.check" in line
    check_says(kam, "ka-kemi check: no rtimer exec runs the pinger")


def test_a_handler_that_is_no_keepalive_handler_is_refused(
    kamailio_factory: KamailioFactory, tmp_path: Path
) -> None:
    script = example_copy(
        tmp_path,
        "class Handler(KeepaliveHandler):\n",
        "class Handler:\n    def child_init(self, rank: int) -> int:\n        return 0\n\n",
    )
    kam = kamailio_factory(start=False, script=script)
    refused(kam, "config error: mod_init returned a Handler, which is not a KeepaliveHandler")
    check_says(kam, "Handler does not subclass KeepaliveHandler")


def test_without_setup_in_mod_init_kamailio_refuses_to_start(
    kamailio_factory: KamailioFactory, tmp_path: Path
) -> None:
    script = example_copy(tmp_path, "    setup()\n", "")
    kam = kamailio_factory(start=False, script=script)
    refused(kam, "config error: setup() was not called in mod_init")
    check_says(kam, "mod_init() does not call setup()")


@pytest.mark.parametrize("module", ["jsonrpcs", "corex"])
def test_without_a_needed_module_kamailio_refuses_to_start(
    kamailio_factory: KamailioFactory, tmp_path: Path, module: str
) -> None:
    lines = [f'loadmodule "{module}.so"']
    if module == "jsonrpcs":
        lines.append('modparam("jsonrpcs"')
    kam = kamailio_factory(start=False, script=example_copy(tmp_path), cfg_edit=without(*lines))
    line = refused(kam, f"config error: module {module} is not loaded")
    assert f'add loadmodule "{module}.so"' in line
    check_says(kam, f"ka-kemi check: {module} is not loaded")


def test_a_socket_the_kamailio_user_cannot_write_is_refused(
    kamailio_factory: KamailioFactory, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to run Kamailio as another user")
    try:
        pwd.getpwnam("kamailio")
    except KeyError:
        pytest.skip("no kamailio user (Debian's kamailio package creates it)")
    kam = kamailio_factory(
        start=False, script=example_copy(tmp_path), extra_args=["-u", "kamailio", "-g", "kamailio"]
    )
    # The sockets' directory is pytest's, root's and 0700: the kamailio user cannot write it.
    line = refused(kam, "the pinger cannot start as user kamailio: cannot create the kamcmd socket")
    assert f"{kam.rpc_socket}: Permission denied" in line


def test_a_bad_destination_is_one_line_without_a_traceback(
    kamailio_factory: KamailioFactory, tmp_path: Path
) -> None:
    kam = kamailio_factory(
        start=False, script=example_copy(tmp_path), defines={"KA_DESTINATION": '"sip:bad host!"'}
    )
    refused(kam, "cannot start: parameter destination: bad host name 'host!'")


def test_a_reply_route_that_keeps_the_replies_warns_once(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    """The trap of issue 28: every destination DOWN although it answers, and the log used to
    say nothing.  Now one warning names the reply hook, after a few intervals."""
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    script = example_copy(
        tmp_path,
        "    def ksr_request_route(",
        "    def ksr_reply_route(self, msg: object) -> int:\n        return 1\n\n"
        "    def ksr_request_route(",
    )
    kam = kamailio_factory(script=script, defines={"KA_DESTINATION": f'"{uri}"'})
    wait_state(kam, uri, 2, owner="_params")
    assert uas.wait_requests(1, timeout=3), "the peer is pinged and answers"
    check_says(kam, "Handler.ksr_reply_route does not hand replies to ka-kemi")
    line = kam.wait_log("reply hook", timeout=10)
    assert "WARNING" in line and "no reply to any of the" in line
    assert "super().ksr_reply_route(msg)" in line
    time.sleep(4)
    assert len([ln for ln in kam.log().splitlines() if "reply hook" in ln]) == 1


def test_no_warning_when_the_replies_arrive(
    kamailio_factory: KamailioFactory, uas_factory, tmp_path: Path
) -> None:
    uas = uas_factory()
    uri = f"sip:{uas.host}:{uas.port}"
    kam = kamailio_factory(script=example_copy(tmp_path), defines={"KA_DESTINATION": f'"{uri}"'})
    wait_state(kam, uri, 1, owner="_params")
    time.sleep(4)
    assert "reply hook" not in kam.log()


def test_a_bad_uri_in_ka_is_alive_is_logged_rate_limited(kam: Kamailio) -> None:
    for _ in range(30):
        assert result_of(kam, "ka_is_alive", "sip:h:50600000") == "-1"
    time.sleep(0.5)
    errors = [ln for ln in kam.log().splitlines() if "ka_is_alive: " in ln and "ERROR" in ln]
    assert 1 <= len(errors) <= kam.children, errors  # at most one per worker in 10 s
    assert "port" in errors[0]


def _pinger_pid(kam: Kamailio) -> int:
    psx = kam.ctl("core.psx")
    found = re.search(r"PID:\s*(\d+)\s*\n\s*DSC:\s*RTIMER EXEC child=0 timer=ka", psx)
    assert found, psx
    return int(found.group(1))


def test_a_stalled_pinger_makes_unprobed_destinations_minus_one(kam: Kamailio) -> None:
    """A pinger that stops stepping (frozen here) leaves new destinations UNKNOWN: after
    ka_core.probe.liveness.STALE_AFTER_S, ka_is_alive says -1 and each worker logs it once."""
    pid = _pinger_pid(kam)
    os.kill(pid, signal.SIGSTOP)
    try:
        assert result_of(kam, "ka_add_destination", "sip:127.27.0.9:5060", "t") == "1"
        assert result_of(kam, "ka_is_alive", "sip:127.27.0.9:5060") == "1", "not stale yet"
        time.sleep(21)
        for _ in range(6):
            assert result_of(kam, "ka_is_alive", "sip:127.27.0.9:5060") == "-1"
    finally:
        os.kill(pid, signal.SIGCONT)
        # The SIGCHLD this sends the main process must be handled before the fixture's
        # SIGTERM: Kamailio's main drops a signal that arrives while another is pending.
        time.sleep(1.0)
    lines = [ln for ln in kam.log().splitlines() if "the pinger is not running" in ln]
    assert 1 <= len(lines) <= kam.children and "no step for" in lines[0], lines
