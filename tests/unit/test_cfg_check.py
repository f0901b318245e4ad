"""The ``check`` command's logic (ka_core.config.cfg_text, ka_core.config.cfg_check) and its CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from ka_core.config import cfg_text
from ka_core.config.cfg_check import check_cfg, check_script, define_arguments, script_path
from kemi import check

REPO = Path(__file__).resolve().parents[2]
NATIVE = """#!KAMAILIO
#!define KA_SCRIPT "/opt/ka/native.py"
loadmodule "corex.so"
loadmodule "jsonrpcs.so"
loadmodule "rtimer.so"
loadmodule "/usr/lib/kamailio/modules/app_python3.so"
modparam("app_python3", "load", KA_SCRIPT)
modparam("rtimer", "timer", "name=ka;interval=100000u;mode=1;")  # the pinger's process
modparam("rtimer", "exec", "timer=ka;route=KA_PINGER")
request_route { if (python_exec("ka_is_alive", "$du")) { exit; } }
route[KA_PINGER] { python_exec("ka_pinger"); }
reply_route { python_exec("ka_reply"); if ($rc == 0) { drop; } }
"""


def problems_of(text: str, defines: dict[str, str] | None = None) -> list[str]:
    body, defined = cfg_text.preprocess(text, defines or {}, lambda name: None)
    return check_cfg(cfg_text.parse(body, defined))


def test_the_example_cfg_and_script_have_nothing_missing() -> None:
    body, defined = cfg_text.preprocess((REPO / "kamailio.cfg").read_text(), {}, lambda n: None)
    cfg = cfg_text.parse(body, defined)
    assert cfg.engine == "python" and cfg.modules.index("rtimer") < cfg.modules.index("app_python3")
    assert check_cfg(cfg) == []
    assert script_path(cfg) == "kemi/example.py"
    assert check_script((REPO / "kemi" / "example.py").read_text()) == []
    assert check_script((REPO / "tests/integration/scripts/ka_routes.py").read_text()) == []


def test_a_native_cfg_with_pinger_route_and_reply_hook_passes() -> None:
    body, defined = cfg_text.preprocess(NATIVE, {}, lambda n: None)
    cfg = cfg_text.parse(body, defined)
    assert cfg.engine == "native" and "app_python3" in cfg.modules
    assert script_path(cfg) == "/opt/ka/native.py"
    assert check_cfg(cfg) == []


def test_a_native_cfg_without_the_reply_hook_says_so() -> None:
    cfg = NATIVE.replace('reply_route { python_exec("ka_reply"); if ($rc == 0) { drop; } }', "")
    [problem] = problems_of(cfg)
    assert problem.startswith("no reply_route calls python_exec") and "DOWN" in problem


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (('loadmodule "jsonrpcs.so"', ""), 'jsonrpcs is not loaded (the pinger reads'),
        (('loadmodule "corex.so"', ""), 'add loadmodule "corex.so"'),
        (('modparam("rtimer", "exec", "timer=ka;route=KA_PINGER")', ""), "no rtimer exec runs"),
        (("route[KA_PINGER] {", "route[OTHER] {"), "no rtimer exec runs the pinger"),
        (("mode=1;", "mode=0;"), 'rtimer timer "ka" needs mode=1'),
        (("name=ka;", "name=other;"), 'on timer "ka", which no rtimer timer'),
        (('modparam("app_python3", "load", KA_SCRIPT)', ""), "app_python3 loads no script"),
        (('loadmodule "rtimer.so"\n', ""), "rtimer is not loaded"),
    ],
)  # fmt: skip
def test_each_missing_piece_of_a_native_cfg_is_named(edit: tuple[str, str], expected: str) -> None:
    assert edit[0] in NATIVE
    problems = problems_of(NATIVE.replace(*edit))
    assert any(expected in p for p in problems), problems


def test_rtimer_after_app_python3_and_dmq_for_the_cluster() -> None:
    cfg = NATIVE.replace('loadmodule "rtimer.so"\n', "") + 'loadmodule "rtimer.so"\n'
    assert any("rtimer is loaded after app_python3" in p for p in problems_of(cfg))
    assert problems_of(NATIVE, {"KA_CLUSTER": "1"}) == [
        'dmq is not loaded (KA_CLUSTER shares destinations over dmq): add loadmodule "dmq.so"'
    ]
    assert problems_of("#!KAMAILIO\n") == [
        'app_python3 is not loaded: ka-kemi runs in it (loadmodule "app_python3.so")'
    ]


def test_the_preprocessor_follows_ifdef_defines_includes_and_comments() -> None:
    text = """#!define WITH_RT
#!ifdef WITH_RT
include_file "rt.cfg"
#!else
loadmodule "never.so"
#!endif
#!ifndef NAME
#!define NAME "ka"
#!endif
#!trydef NAME "other"
#!define EXEC "timer=ka;route=R"
/* loadmodule "commented.so" */
# loadmodule "commented2.so"
modparam("rtimer", "exec", EXEC)  // trailing comment
"""
    files = {"rt.cfg": 'loadmodule "rtimer.so" # the pinger\n'}
    body, defined = cfg_text.preprocess(text, {}, files.get)
    cfg = cfg_text.parse(body, defined)
    assert cfg.modules == ["rtimer"]
    assert defined["NAME"] == '"ka"' and "WITH_RT" in defined
    assert cfg.params("rtimer", "exec") == ["timer=ka;route=R"]
    on, _ = cfg_text.preprocess('#!ifdef X\nloadmodule "x.so"\n#!endif\n', {"X": ""}, files.get)
    assert cfg_text.parse(on).modules == ["x"]
    deep, _ = cfg_text.preprocess('include_file "self"\n', {}, lambda n: 'include_file "self"\n')
    assert deep == "", "include loops end at MAX_INCLUDE_DEPTH"


KEMI_SCRIPT = """
from kemi.handler import KeepaliveHandler, setup

def mod_init():
    setup()
    return Handler()

class Base(KeepaliveHandler):
    pass

class Handler(Base):
    def ksr_reply_route(self, msg):
        if mine(msg):
            return 1
        return super().ksr_reply_route(msg)
"""


def test_a_kemi_script_is_checked_without_running_it() -> None:
    assert check_script(KEMI_SCRIPT) == []
    no_super = KEMI_SCRIPT.replace("return super().ksr_reply_route(msg)", "return 1")
    assert "ksr_reply_route does not hand replies to ka-kemi" in check_script(no_super)[0]
    assert "does not call setup()" in check_script(KEMI_SCRIPT.replace("    setup()\n", ""))[0]
    plain = KEMI_SCRIPT.replace("class Base(KeepaliveHandler)", "class Base(object)")
    assert "Handler does not subclass KeepaliveHandler" in check_script(plain)[0]
    init = KEMI_SCRIPT + "\n    def child_init(self, rank):\n        return 0\n"
    assert "child_init does not call super().child_init(rank)" in check_script(init)[0]
    assert check_script("def f(:\n", "x.py")[0].startswith("x.py: cannot be parsed")
    assert "no mod_init()" in check_script("import os\n")[0]
    assert check_script("from kemi.native import mod_init\n") == []


def test_define_arguments_are_kamailios_dash_a() -> None:
    assert define_arguments(["KA_CLUSTER", "KA_PING_INTERVAL=5"]) == {
        "KA_CLUSTER": "",
        "KA_PING_INTERVAL": "5",
    }
    with pytest.raises(ValueError, match="bad define"):
        define_arguments(["=5"])


def test_the_cli_prints_one_line_per_problem(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert check.main([str(REPO / "kamailio.cfg"), "--workdir", str(REPO)]) == 0
    assert "nothing missing (KEMI, script" in capsys.readouterr().out
    cfg = tmp_path / "k.cfg"
    cfg.write_text(NATIVE.replace('loadmodule "corex.so"', ""))
    assert check.main([str(cfg)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ka-kemi check: corex is not loaded")
    assert out[1].startswith("ka-kemi check: cannot find the script /opt/ka/native.py")
    script = tmp_path / "s.py"
    script.write_text(KEMI_SCRIPT.replace("    setup()\n", ""))
    cfg.write_text(NATIVE)
    assert check.main([str(cfg), "--script", str(script)]) == 1
    assert "does not call setup()" in capsys.readouterr().out
    assert check.main([str(tmp_path / "missing.cfg")]) == 2
    assert check.main([str(cfg), "-A", "=x"]) == 2
