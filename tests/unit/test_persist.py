"""The state file (``KA_STATE_FILE``): the pure codec (``ka_core.ops.state_file``), the table's
fingerprint, snapshot and ``restore_state``, and the glue (``kemi.persistence``) on a
FakeKsr: a restart brings back runtime destinations and states, bad files are logged and
never stop start-up, the writer writes atomically and only when something changed."""

from __future__ import annotations

import itertools
import json
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from ka_core.config.kaconfig import load_config
from ka_core.errors import InvalidArgument
from ka_core.ops import state_file as persist
from ka_core.ops.restore import SHOWN_SKIPS
from ka_core.ops.state_file import Saved, StateFileError
from ka_core.state import State
from ka_core.store.layout import FLAG_NAME, FLAG_TARGET
from ka_core.store.table import SharedTable, buffer_size
from ka_core.uri import parse_uri
from kemi import api, persistence, pinger, runtime
from kemi.persistence import StateWriter
from tests.unit.conftest import Glue, GlueFactory
from tests.unit.fake_ksr import FakeKsr

WRITTEN = 1_700_000_123.25


def saved(uri: str = "sip:10.0.0.1", owner: str = "rpc", **kw: object) -> Saved:
    values: dict[str, object] = {
        "uri": uri, "owner": owner, "settings": "", "interval_ms": 30000,
        "own_interval": False, "paused": False, "state": State.UP, "last_checked": 1.5,
        "last_up": 1.5, "last_down": 0.0, "state_cb": "", "response_cb": "", "user": "",
    }  # fmt: skip
    values.update(kw)
    return Saved(**values)  # type: ignore[arg-type]


def file_text(*dests: dict[str, object], **top: object) -> bytes:
    body: dict[str, object] = {
        "format": "ka-kemi-state", "version": 1, "written": WRITTEN, "destinations": list(dests)
    }  # fmt: skip
    body.update(top)
    return json.dumps(body).encode()


def row(**kw: object) -> dict[str, object]:
    data: dict[str, object] = json.loads(persist.encode([saved()], WRITTEN))["destinations"][0]
    data.update(kw)
    return data


# -- the codec -------------------------------------------------------------------------------


def test_round_trip_keeps_every_field() -> None:
    dests = [
        saved(),
        saved("sip:u@[::1]:5070;transport=tcp", "ünï \"owner\"",
              settings="interval=10;down_after=3", interval_ms=10000, own_interval=True,
              paused=True, state=State.DEGRADED,
              last_checked=1_700_000_000.123456789, last_up=1e9, last_down=0.1,
              state_cb="m:f", response_cb="m:g", user='{"gw": [7, "x\\n"]}'),
    ]  # fmt: skip
    snapshot = persist.decode(persist.encode(dests, WRITTEN))
    assert snapshot == persist.Snapshot(WRITTEN, tuple(dests))
    assert persist.decode(persist.encode([], 0.0)) == persist.Snapshot(0.0, ())


def test_the_file_is_ascii_json_with_one_destination_per_line() -> None:
    data = persist.encode([saved(f"sip:10.0.0.{i}", "é") for i in range(3)], WRITTEN)
    data.decode("ascii")
    lines = data.splitlines()
    assert len(lines) == 5 and all(b'"uri": "sip:10.0.0.' in ln for ln in lines[1:4])
    top = json.loads(data)
    assert (top["format"], top["version"], top["written"]) == ("ka-kemi-state", 1, WRITTEN)
    assert set(top["destinations"][0]) == {
        "uri", "owner", "settings", "interval_ms", "own_interval", "paused", "state",
        "last_checked", "last_up", "last_down", "state_cb", "response_cb", "user",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty file"),
        (b"  \n", "empty file"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"format": "ka-kemi-state", "version": 1, "wri', "not valid JSON"),
        (b"[" * 100_000, "nested too deeply|not valid JSON"),
        (b"[]", "not a state file"),
        (b'{"format": "other"}', "not a state file"),
        (file_text(version=2), "version 2 not supported"),
        (file_text(version="1"), "version '1' not supported"),
        (file_text(version=True), "version True not supported"),
        (file_text(written=-1), "written is not a time"),
        (file_text(written="now"), "written is not a time"),
        (file_text(extra=1), r"unknown keys \['extra'\]"),
        (b'{"format": "ka-kemi-state", "format": "ka-kemi-state"}', "key 'format' given twice"),
        (file_text(destinations={}), "destinations is not a list"),
        (file_text("x"), "destination 1: not an object"),
        (file_text(row(), {k: v for k, v in row().items() if k != "state"}),
         r"destination 2: missing \['state'\]"),
        (file_text(row(colour="red")), r"unknown \['colour'\]"),
        (file_text(row(uri=5)), "destination 1: uri is not a string"),
        (file_text(row(paused=1)), "paused is not true/false"),
        (file_text(row(state=7)), "state 7 is not 0-3"),
        (file_text(row(state=True)), "state True is not 0-3"),
        (file_text(row(state=1.0)), "state 1.0 is not 0-3"),
        (file_text(row(interval_ms=0)), r"interval_ms 0 not in \[1, 86400000\]"),
        (file_text(row(interval_ms="30000")), "interval_ms '30000' not in"),
        (file_text(row(last_up=-5)), "last_up is not a time"),
        (file_text(row(last_down=None)), "last_down is not a time"),
        (file_text(row()).replace(b'"last_checked": 1.5', b'"last_checked": NaN'),
         "last_checked is not a time"),
    ],
)  # fmt: skip
def test_bad_files_are_refused_naming_the_problem(data: bytes, reason: str) -> None:
    with pytest.raises(StateFileError, match=reason):
        persist.decode(data)


def test_a_hand_edited_file_with_keys_in_another_order_reads_the_same() -> None:
    written = row()
    shuffled = dict(reversed(list(written.items())))
    assert persist.decode(file_text(shuffled)) == persist.decode(file_text(written))


def test_a_key_given_twice_inside_a_destination_is_refused() -> None:
    text = file_text(row()).replace(b'"owner": "rpc"', b'"owner": "rpc", "owner": "other"')
    with pytest.raises(StateFileError, match="key 'owner' given twice"):
        persist.decode(text)


# -- the table -------------------------------------------------------------------------------


def make_table(max_destinations: int = 16) -> SharedTable:
    buf = bytearray(buffer_size(max_destinations, 4 * max_destinations + 64))
    SharedTable.format_buffer(buf, max_destinations, 4 * max_destinations + 64)
    return SharedTable(buf, threading.Lock())


def test_fingerprint_changes_with_what_the_file_keeps_but_not_with_each_probe() -> None:
    t = make_table()
    marks = [t.fingerprint()]
    slot, gen = t.insert(parse_uri("10.0.0.1"), "o", interval_ms=1000, wall=0)
    marks.append(t.fingerprint())
    t.record_pings([(slot, gen, 5.0)])
    t.record_result(slot, gen, state=State.UNKNOWN, failures=0, stopped=False, code=200,
                    wall=3.0, rtt_ms=1.0, replied=True)  # fmt: skip
    assert t.fingerprint() == marks[-1], "a probe that changed no state: nothing to write"
    t.record_result(slot, gen, state=State.UP, failures=0, stopped=False, code=200, wall=4.0,
                    rtt_ms=1.0, replied=True)  # fmt: skip
    marks.append(t.fingerprint())
    t.pause_slot(slot, gen, True)
    marks.append(t.fingerprint())
    t.remove("sip:10.0.0.1:5060", "o")
    marks.append(t.fingerprint())
    assert len(set(marks)) == len(marks)


def test_snapshot_and_restore_state() -> None:
    t = make_table()
    slot, gen = t.insert(parse_uri("sip:h"), "own", interval_ms=500, wall=0, settings="x=1",
                         flags=16, state_cb="m:f", user="u")  # fmt: skip
    t.insert(parse_uri("10.0.0.2"), "_params", interval_ms=30000, wall=0)
    t.insert(parse_uri("10.0.0.3"), "own", interval_ms=500, wall=0, flags=FLAG_TARGET)
    t.pause_slot(slot, gen, True)
    assert t.restore_state(slot, gen, State.DOWN, 10.0, 8.0, 10.0)
    assert not t.restore_state(slot, gen + 1, State.UP, 1.0, 1.0, 1.0), "stale generation"
    rec = t.read(slot)
    assert (rec.state, rec.last_checked, rec.last_up, rec.last_down) == (State.DOWN, 10, 8, 10)
    assert sorted(persist.from_rows(t.rows(persist.ROW_FIELDS)), key=lambda s: s.owner) == [
        saved("sip:10.0.0.2", "_params", state=State.UNKNOWN, last_checked=0.0, last_up=0.0),
        saved("sip:h", "own", settings="x=1", interval_ms=500, own_interval=True, paused=True,
              state=State.DOWN, last_checked=10.0, last_up=8.0, last_down=10.0,
              state_cb="m:f", user="u"),
    ]  # fmt: skip


# -- the glue: restore -----------------------------------------------------------------------


def restart(glue_factory: GlueFactory, path: Path, **defines: str) -> Glue:
    defines.setdefault("KA_PING_INTERVAL", "1")
    return glue_factory(KA_STATE_FILE=f'"{path}"', **defines)


def write_now(glue: Glue) -> bool:
    w = persistence.writer(glue.rt.table, glue.rt.config, glue.rt.wall)
    assert w is not None
    return w.write_if_changed(0.0)


def drive(glue: Glue, p: pinger.Pinger, to: float) -> None:
    glue.clock.now = to
    glue.rt.wake()
    p.run_once()


def test_restart_brings_back_runtime_destinations_and_every_last_state(
    glue_factory: GlueFactory, tmp_path: Path
) -> None:
    path = tmp_path / "ka.state"
    static = "sip:10.0.0.9"
    first = restart(glue_factory, path, KA_DESTINATION=f'"{static} sip:10.0.0.8"')
    rt = first.rt
    rt.add("sip:10.0.0.1", "script", settings="down_after=3;alive=2xx,404")
    rt.commands.call("keepalive.add", ["sip:10.0.0.2;transport=tcp", "rpc", "interval=7"])
    assert api.add_destination("sip:10.0.0.3", "dev", 0, 0.5, "m:on_state", "m:on_resp",
                               {"gw": 7}) == 0  # fmt: skip
    rt.commands.call("keepalive.pause", ["sip:10.0.0.3", "dev"])
    results = [
        ("sip:10.0.0.1", "script", State.DOWN),
        ("sip:10.0.0.3", "dev", State.UP),
        (static, "_params", State.UP),
    ]
    for uri, owner, state in results:
        rec = rt.table.get(parse_uri(uri).key, owner)
        rt.table.record_result(rec.slot, rec.gen, state=state, failures=1, stopped=False,
                               code=200, wall=1234.5, rtt_ms=2.0, replied=True)  # fmt: skip
    before = {(r.uri, r.owner): r for r in rt.table.records()}
    assert write_now(first)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["ka.state"], "no temp file left"
    runtime.close(rt)

    second = restart(glue_factory, path, KA_DESTINATION=f'"{static} sip:10.0.0.7"')
    after = {(r.uri, r.owner): r for r in second.rt.table.records()}
    assert set(after) == set(before) - {("sip:10.0.0.8", "_params")} | {("sip:10.0.0.7", "_params")}
    for key in set(after) - {("sip:10.0.0.7", "_params")}:
        old, new = before[key], after[key]
        for name in ("state", "last_checked", "last_up", "last_down", "settings", "interval_ms",
                     "paused", "state_cb", "response_cb", "user", "uri", "owner"):  # fmt: skip
            assert getattr(new, name) == getattr(old, name), (key, name)
        assert second.rt.table.flags(new.slot) == first.rt.table.flags(old.slot), key
    assert after[("sip:10.0.0.7", "_params")].state is State.UNKNOWN
    info = second.ksr.texts("info")
    assert any(
        f"state file {path} (written 2023-11-14 22:13:20 UTC): 3 runtime destinations added "
        "back, last state of 4 restored, 0 skipped, 1 no longer configured" in t
        for t in info
    ), info
    assert not second.ksr.texts("err")

    # every destination is probed at once, within one interval, from its restored state
    p = pinger.Pinger(second.rt)
    start = second.clock.now
    for k in range(11):
        drive(second, p, start + k / 10)
    pinged = {ruri for ruri, _, _ in second.ksr.sent}
    assert pinged == {"sip:10.0.0.9", "sip:10.0.0.7", "sip:10.0.0.1", "sip:10.0.0.2;transport=tcp"}
    assert "sip:10.0.0.3" not in pinged, "still paused"


def test_no_file_yet_is_not_an_error(glue_factory: GlueFactory, tmp_path: Path) -> None:
    glue = restart(glue_factory, tmp_path / "ka.state")
    path = tmp_path / "ka.state"
    assert glue.ksr.texts("info") == [f"state file {path}: none yet, nothing to restore"]
    assert persistence.writer(glue.rt.table, load_config({}), glue.rt.wall) is None, "off"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (
            b'{"format": "ka-kemi-state", "version": 1, "written": 1, "destina',
            "not valid JSON (Unterminated string starting at: line 1 column 57 (char 56))",
        ),
        (file_text(version=2), "version 2 not supported (this ka-kemi reads 1)"),
        (file_text(row(state=9)), "destination 1: state 9 is not 0-3"),
    ],
)
def test_a_bad_file_is_logged_once_set_aside_and_start_up_goes_on(
    glue_factory: GlueFactory, tmp_path: Path, content: bytes, reason: str
) -> None:
    path = tmp_path / "ka.state"
    path.write_bytes(content)
    glue = restart(glue_factory, path, KA_DESTINATION='"sip:10.0.0.9"')
    assert glue.ksr.texts("err") == [
        f"state file {path}: {reason}; nothing restored (moved to {path}.rejected)"
    ]
    assert (tmp_path / "ka.state.rejected").read_bytes() == content
    assert glue.rt.table.count == 1
    assert write_now(glue) and persist.decode(path.read_bytes()).destinations[0].owner == "_params"


def test_an_unreadable_path_is_logged_and_the_writer_reports_once(
    glue_factory: GlueFactory, tmp_path: Path
) -> None:
    path = tmp_path / "ka.state"
    path.mkdir()
    glue = restart(glue_factory, path)
    assert glue.ksr.texts("err") == [
        f"state file {path}: cannot read it: not a regular file (a directory); nothing restored"
    ]
    w = StateWriter(glue.rt.table, str(path), glue.rt.wall)
    assert not w.write_if_changed(100.0)
    assert not w.write_if_changed(100.0 + persistence.RETRY_S - 0.1), "waits before a retry"
    assert not w.write_if_changed(100.0 + persistence.RETRY_S)
    w.report(glue.ksr)
    errors = glue.ksr.texts("err")[1:]
    assert errors == [f"state file {path}: cannot write it: Is a directory (retrying)"]
    assert os.listdir(tmp_path) == ["ka.state"] and os.listdir(path) == []
    path.rmdir()
    assert w.write_if_changed(200.0)
    w.report(glue.ksr)
    assert glue.ksr.texts("info")[-1] == f"state file {path}: written again"


def test_destinations_that_do_not_fit_are_skipped_and_logged(
    glue_factory: GlueFactory, tmp_path: Path
) -> None:
    path = tmp_path / "ka.state"
    dests = [saved("sip:10.0.1.0"), saved("sip:10.0.1.0"), saved("sip:bad uri"),
             saved("sip:10.0.2.1", settings="x=1")]  # fmt: skip
    dests += [saved(f"sip:10.0.1.{i}") for i in range(1, 25)]
    path.write_bytes(persist.encode(dests, WRITTEN))
    glue = restart(glue_factory, path, KA_MAX_DESTINATIONS="15")
    assert glue.rt.table.count == 15
    errors = glue.ksr.texts("err")
    assert len(errors) == SHOWN_SKIPS + 1
    prefix = f"state file {path}: not restored: "
    assert errors[0] == prefix + "sip:10.0.1.0 owner rpc: sip:10.0.1.0 already added by rpc"
    assert errors[1].startswith(prefix + "sip:bad uri owner rpc: ")
    assert errors[2].startswith(prefix + "sip:10.0.2.1 owner rpc: unknown setting 'x'")
    assert errors[3] == prefix + "sip:10.0.1.15 owner rpc: max_destinations (15) reached"
    assert errors[-1] == f"state file {path}: 3 more not restored"
    (info,) = glue.ksr.texts("info")
    assert "15 runtime destinations added back, last state of 15 restored, 13 skipped" in info


def test_a_full_table_restores_in_one_start_up_batch(
    glue_factory: GlueFactory, tmp_path: Path
) -> None:
    """The ring takes ``max_destinations`` ADDED entries before the pinger's first drain,
    and that first step pings the whole batch within one interval."""
    path = tmp_path / "ka.state"
    n = 1000
    dests = [saved(f"sip:u{i}@10.0.{i // 250}.{i % 250 + 1}", state=State.DOWN) for i in range(n)]
    path.write_bytes(persist.encode(dests, WRITTEN))
    glue = restart(glue_factory, path, KA_MAX_DESTINATIONS=str(n))
    assert glue.rt.table.count == n and not glue.ksr.texts("err")
    assert all(r.state is State.DOWN for r in glue.rt.table.records())
    p = pinger.Pinger(glue.rt)
    start = glue.clock.now
    for k in range(11):
        drive(glue, p, start + k / 10)
    assert len({ruri for ruri, _, _ in glue.ksr.sent}) == n


def test_stale_temp_files_of_a_cut_write_are_removed(
    glue_factory: GlueFactory, tmp_path: Path
) -> None:
    (tmp_path / ".ka.state.abc123.tmp").write_bytes(b"{")
    (tmp_path / ".other.x.tmp").write_bytes(b"mine")
    restart(glue_factory, tmp_path / "ka.state")
    assert sorted(os.listdir(tmp_path)) == [".other.x.tmp"]


# -- the glue: the writer --------------------------------------------------------------------


def test_the_writer_writes_only_when_something_changed(glue_factory: GlueFactory,
                                                       tmp_path: Path) -> None:  # fmt: skip
    path = tmp_path / "ka.state"
    glue = restart(glue_factory, path)
    w = StateWriter(glue.rt.table, str(path), glue.rt.wall)
    assert w.write_if_changed(0.0), "the first round writes the start-up table"
    assert persist.decode(path.read_bytes()).destinations == ()
    assert not w.write_if_changed(0.5)
    rec = glue.rt.add("sip:10.0.0.1", "o")
    assert w.write_if_changed(1.0) and not w.write_if_changed(1.5)
    glue.rt.table.record_pings([(rec.slot, rec.gen, 9.0)])
    assert not w.write_if_changed(2.0), "a ping is not worth a write"
    glue.rt.table.record_result(rec.slot, rec.gen, state=State.UP, failures=0, stopped=False,
                                code=200, wall=5.0, rtt_ms=1.0, replied=True)  # fmt: skip
    assert w.write_if_changed(2.5)
    (dest,) = persist.decode(path.read_bytes()).destinations
    assert (dest.uri, dest.state, dest.last_up) == ("sip:10.0.0.1", State.UP, 5.0)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_writer_thread_and_the_core_thread_that_logs_for_it(
    glue_factory: GlueFactory, tmp_path: Path
) -> None:
    path = tmp_path / "sub" / "ka.state"
    glue = restart(glue_factory, path)
    p = pinger.Pinger(glue.rt)
    w = p._writer
    assert isinstance(w, StateWriter)
    w._period_s = 0.01
    thread = w.start()
    try:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not w._failed:
            time.sleep(0.01)
        drive(glue, p, glue.clock.now + 0.1)
        assert glue.ksr.texts("err") == [
            f"state file {path}: cannot write it: No such file or directory (retrying)"
        ]
        path.parent.mkdir()
        w._retry_at = 0.0
        while time.monotonic() < deadline and not path.exists():
            time.sleep(0.01)
        assert persist.decode(path.read_bytes()).destinations == ()
    finally:
        w.stop()
        thread.join(timeout=5)
    assert not thread.is_alive()


def test_the_writer_thread_survives_a_bug_and_reports_it(tmp_path: Path) -> None:
    class Broken:
        def fingerprint(self) -> bytes:
            raise RuntimeError("boom")

    w = StateWriter(Broken(), str(tmp_path / "s"), time.time, period_s=0.01)  # type: ignore[arg-type]
    thread = w.start()
    deadline = time.monotonic() + 5
    ksr = FakeKsr()
    while time.monotonic() < deadline and not ksr.texts("err"):
        w.report(ksr)
        time.sleep(0.01)
    w.stop()
    thread.join(timeout=5)
    assert "RuntimeError: boom" in ksr.texts("err")[0]


def test_after_a_long_write_the_writer_waits_four_times_as_long(tmp_path: Path) -> None:
    """A large table's snapshot must not be taken back to back: the core thread needs the
    GIL for every ping."""
    assert persist.next_round_s(0.001, 0.5) == 0.5, "a small table: every period"
    assert persist.next_round_s(17.0, 0.5) == 68.0, "1,000,000 destinations: 4x the write"
    rounds: list[float] = []

    class Slow:  # a table that changed each time, whose snapshot costs 50 ms
        def fingerprint(self) -> bytes:
            rounds.append(time.monotonic())
            return str(len(rounds)).encode()

        def rows(self, fields: object) -> list[tuple[object, ...]]:
            time.sleep(0.05)
            return []

    w = StateWriter(Slow(), str(tmp_path / "s"), time.time, period_s=0.01)  # type: ignore[arg-type]
    thread = w.start()
    time.sleep(0.7)
    w.stop()
    thread.join(timeout=5)
    gaps = [b - a for a, b in itertools.pairwise(rounds)]
    assert gaps and min(gaps) >= 0.05 + 4 * 0.05 * 0.9, gaps


def test_the_parameter_needs_an_absolute_path_and_is_off_by_default() -> None:
    assert load_config({}).state_file == ""
    assert load_config({"STATE_FILE": '"/var/lib/ka.state"'}).state_file == "/var/lib/ka.state"
    with pytest.raises(InvalidArgument, match="parameter state_file: needs an absolute path"):
        load_config({"STATE_FILE": "ka.state"})


def test_with_ka_dns_a_host_name_comes_back_as_a_name_and_targets_are_not_kept(
    glue_factory: GlueFactory, tmp_path: Path
) -> None:
    """A resolved target (``FLAG_TARGET``) is left out of the file: the name is resolved
    again at start-up; the name itself gets ``FLAG_NAME`` back."""
    path = tmp_path / "ka.state"
    path.write_bytes(persist.encode([saved("sip:gw.example.com"), saved("sip:10.0.0.1")], 1.0))
    glue = restart(glue_factory, path, KA_DNS="1")
    table = glue.rt.table
    assert table.flags(table.find("sip:gw.example.com:5060", "rpc")) & FLAG_NAME
    assert not table.flags(table.find("sip:10.0.0.1:5060", "rpc")) & FLAG_NAME
    assert not glue.ksr.texts("err")
