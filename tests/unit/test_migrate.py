"""``python3 -m kemi.migrate``: a C keepalive cfg rewritten for ka-kemi (``ka_core.config.migrate``,
``ka_core.config.migrate_calls``): what changes, that nothing else does, and the cfgs it refuses."""

from __future__ import annotations

import io
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ka_core.config.migrate import Migration, migrate
from ka_core.config.migrate_calls import rewrite_line
from ka_core.errors import InvalidArgument
from kemi import migrate as cli

DATA = Path(__file__).resolve().parent.parent / "data"
DOCS = DATA / "c_docs_example.cfg"
FULL = DATA / "c_full.cfg"
SCRIPT = "/opt/ka/native.py"
ROOT = Path(__file__).resolve().parents[2]


def run(text: str) -> Migration:
    return migrate(text, native_script=SCRIPT)


def defines(text: str) -> dict[str, str]:
    return dict(re.findall(r"^#!define (\w+) (.*)$", text, re.M))


def changed_input_lines(before: str, after: str) -> set[str]:
    return set(before.splitlines()) - set(after.splitlines())


def test_docs_example_defines_and_modules() -> None:
    result = run(DOCS.read_text())
    assert 'loadmodule "keepalive.so"' not in result.text
    assert "keepalive" not in "".join(re.findall(r"^modparam\(.*$", result.text, re.M))
    assert defines(result.text) == {
        "KA_PING_TIMEOUT_MS": "30000",  # no fr_timer: tm's default
        "KA_EVENT_INITIAL": "1",
        "KA_PING_INTERVAL": "10",
        "KA_DESTINATION_1": '"192.168.10.20"',
        "KA_DESTINATION_2": '"sip.provider.com"',
        "KA_DELETE_COUNTER": "5",
        "KA_PING_FROM": '"sip:keepalive@kamailio.org"',
    }
    for module in ("corex", "jsonrpcs", "rtimer", "evrexec", "app_python3"):
        assert f'loadmodule "{module}.so"\n' in result.text
    assert result.text.count('loadmodule "pv.so"') == 1, "pv is loaded already: not twice"
    assert f'modparam("app_python3", "load", "{SCRIPT}")' in result.text
    assert "route[KA_PINGER] {" in result.text and 'python_exec("ka_pinger")' in result.text
    assert 'reply_route {\n\tpython_exec("ka_reply");' in result.text
    assert result.warnings == ()


def test_docs_example_calls_rewritten() -> None:
    result = run(DOCS.read_text())
    assert re.search(r"\bka_(is_alive|add_destination|del_destination)\(", result.text) is None
    assert (
        '\tpython_exec("ka_is_alive", "192.168.10.20"); $var(ka_rc1) = $rc;\n'
        "\tif($var(ka_rc1) == 1) {\n"
    ) in result.text
    for line in (
        'python_exec("ka_add_destination", "$avp(duri3) config");',
        'python_exec("ka_add_destination", "sip:192.168.1.10:5060;transport=tcp config");',
        'python_exec("ka_del_destination", "$avp(duri3) config");',
        'python_exec("ka_del_destination", "sip:192.168.1.10:5060;transport=tcp config");',
    ):
        assert f"\t{line}\n" in result.text


def test_docs_example_other_lines_unchanged() -> None:
    before = DOCS.read_text()
    result = run(before)
    gone = changed_input_lines(before, result.text)
    assert gone == {
        'loadmodule "keepalive.so"',
        'modparam("keepalive", "ping_interval", 10)',
        'modparam("keepalive", "destination", "192.168.10.20")',
        'modparam("keepalive", "destination", "sip.provider.com")',
        'modparam("keepalive", "delete_counter", 5)',
        'modparam("keepalive", "ping_from", "sip:keepalive@kamailio.org")',
        '\tif(ka_is_alive("192.168.10.20") == 1) {',
        '\tka_add_destination("$avp(duri3)", "config");',
        '\tka_add_destination("sip:192.168.1.10:5060;transport=tcp", "config");',
        '\tka_del_destination("$avp(duri3)", "config");',
        '\tka_del_destination("sip:192.168.1.10:5060;transport=tcp", "config");',
    }
    kept = [line for line in before.splitlines() if line not in gone]
    out = result.text.splitlines()
    positions = [out.index(line) for line in kept if line]
    assert positions == sorted(positions), "kept lines stay in their order"


def test_docs_example_changes_reported() -> None:
    changes = run(DOCS.read_text()).changes
    text = "\n".join(changes)
    assert 'line 11: loadmodule "keepalive.so"' in text
    assert "KA_PING_TIMEOUT_MS 30000 ms (tm's default fr_timer" in text
    for lineno in (13, 14, 15, 16, 17, 20, 28, 29, 30, 31):
        assert f"line {lineno}: " in text, lineno
    assert "line 20: ka_is_alive(...) == 1 ->" in text
    assert any(c.startswith("end: reply_route added") for c in changes)
    assert any(c.startswith("end: route[KA_PINGER] added") for c in changes)


def test_full_cfg_fr_timer_define_ctl_and_guard() -> None:
    before = FULL.read_text()
    result = run(before)
    found = defines(result.text)
    assert found["KA_PING_TIMEOUT_MS"] == "1500", "fr_timer via #!define FR_TIMER 1500"
    assert found["KA_PING_INTERVAL"] == "1" and found["KA_DELETE_COUNTER"] == "3"
    assert [found[f"KA_DESTINATION_{n}"] for n in (1, 2, 3)] == ['"@UP@"', '"@FAIL@"',
                                                                  '"@CLOSED@"']  # fmt: skip
    assert found["KA_PING_FROM"] == '"sip:probe@example.test"'
    assert found["KA_RPC_SOCKET"] == '"@CTL@"' and found["KA_CTL_FORWARD"] == '"@CTL@.core"'
    assert 'modparam("ctl", "binrpc", "unix:@CTL@.core")' in result.text
    assert 'loadmodule "keepalive.so"' not in result.text
    assert (
        "onreply_route {\n#!ifndef NO_KEEPALIVE\n"
        '\tpython_exec("ka_reply");  # ka-kemi: replies to its pings end here (0: dropped)\n'
        "#!endif\n"
    ) in result.text
    assert result.text.endswith(
        '#!ifndef NO_KEEPALIVE\nroute[KA_PINGER] {\n\tpython_exec("ka_pinger");  # never '
        "returns\n}\n#!endif\n"
    )
    assert "reply_route {" not in result.text.replace("onreply_route {", ""), "not added twice"


def test_full_cfg_calls_and_other_lines() -> None:
    before = FULL.read_text()
    result = run(before)
    assert '\t\tif (python_exec("ka_add_destination", "$hdr(X-Uri) cfg")) {\n' in result.text
    assert '\t\tpython_exec("ka_del_destination", "$hdr(X-Uri) cfg");\n' in result.text
    assert (
        '\t\tpython_exec("ka_is_alive", "$hdr(X-Uri)"); $var(ka_rc1) = $rc;\n'
        "\t\tif ($var(ka_rc1) == 2) {  /* down */\n"
    ) in result.text, "the comment after the code is kept"
    assert '\t\tif (!python_exec("ka_is_alive", "$hdr(X-Uri)")) {\n' in result.text
    gone = changed_input_lines(before, result.text)
    assert gone == {
        'loadmodule "keepalive.so"',
        'modparam("ctl", "binrpc", "unix:@CTL@")',
        'modparam("keepalive", "ping_interval", 1)',
        'modparam("keepalive", "destination", "@UP@")',
        'modparam("keepalive", "destination", "@FAIL@")',
        'modparam("keepalive", "destination", "@CLOSED@")',
        'modparam("keepalive", "delete_counter", 3)   # stop after 3 failures',
        'modparam("keepalive", "ping_from", "sip:probe@example.test")',
        '\t\tif (ka_add_destination("$hdr(X-Uri)", "cfg")) {',
        '\t\tka_del_destination("$hdr(X-Uri)", "cfg");',
        '\t\tif (ka_is_alive("$hdr(X-Uri)") == 2) {  /* down */',
        '\t\tif (!ka_is_alive("$hdr(X-Uri)")) {',
    }
    assert result.warnings == ()
    assert any("line 23: ctl binrpc @CTL@ -> @CTL@.core" in c for c in result.changes)


def test_fr_timer_literal_and_bad_value() -> None:
    base = DOCS.read_text()
    pv = 'loadmodule "pv.so"\n'
    literal = run(base.replace(pv, pv + 'modparam("tm", "fr_timer", 4000)\n'))
    assert defines(literal.text)["KA_PING_TIMEOUT_MS"] == "4000"
    odd = run(base.replace(pv, pv + 'modparam("tm", "fr_timer", $var(x))\n'))
    assert any("fr_timer" in w and "KA_PING_TIMEOUT_MS" in w for w in odd.warnings)


def test_unknown_and_empty_keepalive_params() -> None:
    text = DOCS.read_text().replace(
        'modparam("keepalive", "ping_interval", 10)',
        'modparam("keepalive", "ping_interval", 10)\nmodparam("keepalive", "bogus", 1)\n'
        'modparam("keepalive", "ping_from", "")',
    )
    result = run(text)
    assert '# kemi.migrate: not migrated: modparam("keepalive", "bogus", 1)' in result.text
    assert "# kemi.migrate: empty, left out:" in result.text
    assert any("'bogus' unknown" in w for w in result.warnings)
    assert any("ping_from is empty" in w for w in result.warnings)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ('cfgengine "python"\n', "cfgengine 'python'"),
        ('modparam("app_python3", "load", "/etc/kamailio/mine.py")\n', "app_python3 already"),
        ('modparam("app_python3", "script_name", "/x.py")\n', "app_python3 already"),
        ("route[KA_PINGER] {\n}\n", "route[KA_PINGER] exists"),
        ('modparam("rtimer", "timer", "name=ka_pinger;interval=1;")\n', "ka_pinger exists"),
    ],
)
def test_refused_cfgs(extra: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(message)):
        run(DOCS.read_text() + extra)


def test_no_keepalive_refused() -> None:
    with pytest.raises(InvalidArgument, match="no loadmodule"):
        run('loadmodule "tm.so"\nrequest_route {\n}\n')
    commented = DOCS.read_text().replace('loadmodule "keepalive.so"', '# loadmodule "keepalive.so"')
    with pytest.raises(InvalidArgument, match="no loadmodule"):
        run(commented)


def test_migrating_twice_is_refused() -> None:
    """A migrated cfg is refused as such, never migrated again (nor sent to merge by hand)."""
    once = run(DOCS.read_text()).text
    with pytest.raises(InvalidArgument, match=r"native.py.? already: this cfg is migrated") as err:
        run(once)
    assert "by hand" not in str(err.value)


@pytest.mark.parametrize(
    "line",
    [
        '\t} else if (ka_is_alive("sip:a") == 1) {',
        '\twhile (ka_is_alive("sip:a") == 1) {',
        "\tif (ka_is_alive(DEST) == 1) {",
        '\tka_add_destination("sip:a");',
        '\tka_add_destination("sip:a b", "o");',
        '\tka_del_destination("sip:a",',
        '\tif (1 == ka_is_alive("sip:a")) {',
        '\t$var(x) = 1; if (ka_is_alive("sip:a") == 1) {',
        '\t$var(x) = ka_is_alive("sip:a") + 1;',
        '\t$var(x) = ka_is_alive("sip:a");',
        '\t$var(x) = 10 * ka_is_alive("sip:a");',
    ],
)
def test_forms_left_untouched_with_warning(line: str) -> None:
    last = '\tsl_send_reply("404", "Not here");'
    result = run(DOCS.read_text().replace(last, line + "\n" + last))
    assert line + "\n" in result.text
    assert any("left as it was" in w and "line 32" in w for w in result.warnings), result.warnings


def test_truth_tests_with_logical_operators_are_rewritten() -> None:
    """``&&``/``||`` are truth tests, not arithmetic: the call is rewritten in place."""
    result = rewrite_line('if (ka_is_alive("sip:a") && ka_is_alive("sip:b") || $var(x))', 3, [0])
    assert result.code == (
        'if (python_exec("ka_is_alive", "sip:a") && python_exec("ka_is_alive", "sip:b") || $var(x))'
    )
    assert result.warnings == []


def test_rewrite_line_counts_and_several_calls() -> None:
    counter = [0]
    one = rewrite_line('if (ka_is_alive("a") == 1 && ka_is_alive("b") != 2) {', 7, counter)
    assert one.before == [
        'python_exec("ka_is_alive", "a"); $var(ka_rc1) = $rc;',
        'python_exec("ka_is_alive", "b"); $var(ka_rc2) = $rc;',
    ]
    assert one.code == "if ($var(ka_rc1) == 1 && $var(ka_rc2) != 2) {"
    assert counter == [2] and len(one.changes) == 2 and one.warnings == []
    plain = rewrite_line('xlog("nothing");', 8, counter)
    assert plain.code == 'xlog("nothing");' and plain.changes == [] and counter == [2]


def test_calls_in_comments_untouched() -> None:
    text = DOCS.read_text().replace(
        "\t\t# do stuff", '\t\t# ka_is_alive("x") here\n\t\t/* ka_del_destination("a", "b") */'
    )
    result = run(text)
    assert '\t\t# ka_is_alive("x") here\n' in result.text
    assert '\t\t/* ka_del_destination("a", "b") */\n' in result.text


def test_event_route_c_pvs_warned() -> None:
    text = FULL.read_text().replace('"cfg event: dst-up\\n"', '"up $ru\\n"')
    result = run(text)
    assert any("$ru in a keepalive event route" in w for w in result.warnings)
    assert not any("$rs" in w for w in result.warnings), "$rs in onreply_route is not warned"


def test_cli_writes_cfg_and_changes(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    assert cli.main([str(DOCS), "--script", SCRIPT], out, err) == 0
    assert out.getvalue() == run(DOCS.read_text()).text
    assert 'kemi.migrate: line 11: loadmodule "keepalive.so"' in err.getvalue()
    assert "warning" not in err.getvalue()


def test_cli_default_script_is_native_py() -> None:
    out = io.StringIO()
    assert cli.main([str(DOCS)], out, io.StringIO()) == 0
    assert f'"load", "{ROOT / "kemi" / "native.py"}")' in out.getvalue()


def test_cli_warnings_on_stderr(tmp_path: Path) -> None:
    cfg = tmp_path / "k.cfg"
    cfg.write_text(DOCS.read_text() + 'route[X] {\n\twhile (ka_is_alive("a") == 1) { }\n}\n')
    out, err = io.StringIO(), io.StringIO()
    assert cli.main([str(cfg)], out, err) == 0
    assert "kemi.migrate: warning: line " in err.getvalue()


def test_cli_unreadable_file(tmp_path: Path) -> None:
    err = io.StringIO()
    out = io.StringIO()
    assert cli.main([str(tmp_path / "missing.cfg")], out, err) == 1
    assert err.getvalue().startswith(f"kemi.migrate: cannot read {tmp_path / 'missing.cfg'}: ")
    assert out.getvalue() == ""
    binary = tmp_path / "bin.cfg"
    binary.write_bytes(b"\xff\xfe\x00loadmodule")
    assert cli.main([str(binary)], out, io.StringIO()) == 1
    assert cli.main([str(tmp_path)], out, io.StringIO()) == 1, "a directory"


def test_cli_cannot_migrate(tmp_path: Path) -> None:
    cfg = tmp_path / "k.cfg"
    cfg.write_text('loadmodule "tm.so"\n')
    out, err = io.StringIO(), io.StringIO()
    assert cli.main([str(cfg)], out, err) == 2
    assert out.getvalue() == "", "nothing written to stdout"
    assert err.getvalue() == (
        f'kemi.migrate: {cfg}: cannot migrate: no loadmodule "keepalive.so": nothing to migrate\n'
    )


@pytest.mark.parametrize(("content", "rc"), [(None, 1), ('cfgengine "python"\n', 2)])
def test_cli_process_exit_no_traceback(tmp_path: Path, content: str | None, rc: int) -> None:
    cfg = tmp_path / "k.cfg"
    if content is not None:
        cfg.write_text(content + DOCS.read_text())
    proc = subprocess.run(
        [sys.executable, "-m", "kemi.migrate", str(cfg)],
        cwd=ROOT, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == rc
    assert proc.stdout == ""
    assert proc.stderr.startswith("kemi.migrate: ") and "Traceback" not in proc.stderr
    assert proc.stderr.count("\n") == 1, "one clear line"


GUARDED = """loadmodule "ctl.so"
#!ifdef WITH_C
loadmodule "other.so"
#!else
loadmodule "keepalive.so"
#!endif
/* a block
ka_is_alive("x") == 1
*/
onreply_route
{
\txlog("r");
}
"""


def test_else_branch_guard_block_comment_and_brace_on_next_line() -> None:
    result = run(GUARDED)
    assert result.warnings == ()
    assert '/* a block\nka_is_alive("x") == 1\n*/\n' in result.text, "a comment is kept"
    assert (
        "onreply_route\n{\n#!ifndef WITH_C\n"
        '\tpython_exec("ka_reply");  # ka-kemi: replies to its pings end here (0: dropped)\n'
        '#!endif\n\txlog("r");\n}\n'
    ) in result.text, "the hook goes after the { of the next line, under the #!else guard"
    assert result.text.endswith('#!ifndef WITH_C\nroute[KA_PINGER] {\n\tpython_exec("ka_pinger");'
                                "  # never returns\n}\n#!endif\n")  # fmt: skip
    assert 'loadmodule "pv.so"\n' in result.text, "pv was not loaded: added"


def test_ctl_default_socket_is_taken_over() -> None:
    result = run(GUARDED)
    assert 'modparam("ctl", "binrpc", "unix:/run/kamailio/kamailio_ctl.core")\n' in result.text
    found = defines(result.text)
    assert found["KA_RPC_SOCKET"] == '"/run/kamailio/kamailio_ctl"'
    assert found["KA_CTL_FORWARD"] == '"/run/kamailio/kamailio_ctl.core"'
    assert any(c.startswith("ctl: kamcmd's /run/kamailio/kamailio_ctl") for c in result.changes)


def test_ctl_on_tcp_is_kept_with_a_warning() -> None:
    tcp = 'modparam("ctl", "binrpc", "tcp:127.0.0.1:2046")\n'
    result = run(GUARDED.replace('loadmodule "ctl.so"\n', 'loadmodule "ctl.so"\n' + tcp))
    assert tcp in result.text
    assert defines(result.text)["KA_RPC_SOCKET"] == '"/run/kamailio/kamailio_ctl_ka"'
    assert "KA_CTL_FORWARD" not in result.text
    assert any("not a unix socket" in w for w in result.warnings)


def test_no_ctl_no_rpc_defines() -> None:
    result = run(DOCS.read_text())
    assert "KA_RPC_SOCKET" not in result.text and '"ctl"' not in result.text
