"""Opt-in persistence (``KA_STATE_FILE``): destinations added at runtime (script, RPC, API),
and the last state of every destination, survive a restart of Kamailio.

* ``restore`` runs in ``mod_init`` (before fork and before the pinger), right after the
  ``destination`` parameters are in the table.  Runtime destinations are added again with
  their settings, interval and pause; every destination gets its last state and times back,
  so ``ka_is_alive`` answers as before the restart until the first probe.  Configured
  (``_params``) destinations get only their state: the configuration decides which exist.
  All of them reach the pinger as one start-up batch, probed at once, spread over an interval.
  A bad file never stops Kamailio: one error line, nothing restored, and the file moved to
  ``<path>.rejected`` so the next write does not destroy what an operator may want back.
* ``StateWriter`` is a daemon thread of the pinger process.  Twice a second it compares the
  table's fingerprint (each slot's generation, state, flags and ejections: ~2 ms at
  100,000) with the one of the last snapshot written, and on a difference writes a new
  one atomically; after a long round (a large table's snapshot) it waits four times as
  long as that round took (``state_file.next_round_s``), so it never holds the GIL more
  than a fifth of the time.  A probe that changes nothing does not count, so a steady
  table is not rewritten.  The thread never calls ``KSR``: its log lines wait in a queue
  for the core thread (``report``).
"""

from __future__ import annotations

import contextlib
import glob
import os
import queue
import stat
import tempfile
import threading
import time
import traceback

from ka_core.config.kaconfig import KaConfig
from ka_core.ops import state_file as persist
from ka_core.ops.restore import restore_snapshot
from ka_core.store.table import SharedTable
from kemi.ksr_port import Clock, KsrPort

CHECK_PERIOD_S = 0.5
"""At most this much of the latest changes is lost by a crash (plus one write; at 100,000
destinations and more, five writes: ``state_file.next_round_s``)."""
RETRY_S = 5.0
"""After a failed write: a snapshot costs ~100 ms of the pinger's CPU at 10,000."""
REJECTED = ".rejected"


def _temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}."


def write_atomic(path: str, data: bytes) -> None:
    """Replace ``path`` by ``data``: a crash at any moment leaves the old file or the new
    one, never a mix.  Temp file (mode 0600) in the same directory, fsync, rename over,
    fsync of the directory so the rename itself is on disk."""
    directory = os.path.dirname(path) or "/"
    fd, temp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _why(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _read(path: str) -> bytes | None:
    """The file's bytes; None if there is none yet.  Refuses what is not a regular file
    (a directory, and a FIFO that would block ``mod_init``)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a special file"
        raise OSError(f"not a regular file ({kind})")
    with open(path, "rb") as src:
        return src.read()


def _set_aside(path: str) -> str:
    try:
        os.replace(path, path + REJECTED)
    except OSError as exc:
        return f" (could not move it aside: {_why(exc)})"
    return f" (moved to {path}{REJECTED})"


def restore(table: SharedTable, config: KaConfig, ksr: KsrPort, wall: float) -> None:
    """Put the state file's destinations and states back; never raises because of the file."""
    path = config.state_file
    if not path:
        return
    for stale in glob.glob(os.path.join(glob.escape(os.path.dirname(path)), ".*.tmp")):
        if os.path.basename(stale).startswith(_temp_prefix(path)):  # a write cut by a crash
            with contextlib.suppress(OSError):
                os.unlink(stale)
    try:
        data = _read(path)
    except OSError as exc:
        ksr.err(f"state file {path}: cannot read it: {_why(exc)}; nothing restored")
        return
    if data is None:
        ksr.info(f"state file {path}: none yet, nothing to restore")
        return
    try:
        snapshot = persist.decode(data)
    except persist.StateFileError as exc:
        ksr.err(f"state file {path}: {exc}; nothing restored{_set_aside(path)}")
        return
    try:
        done = restore_snapshot(table, snapshot, wall, config.dns)
    except Exception as exc:  # a bug must not stop Kamailio either
        ksr.err(f"state file {path}: restore failed: {exc!r}")
        return
    errors, summary = done.lines(path, snapshot.written)
    for line in errors:
        ksr.err(line)
    ksr.info(summary)


class StateWriter:
    """The pinger process's writer thread; see the module docstring."""

    def __init__(
        self, table: SharedTable, path: str, wall: Clock, period_s: float = CHECK_PERIOD_S
    ) -> None:
        self._table = table
        self._path = path
        self._wall = wall
        self._period_s = period_s
        self._written: bytes | None = None
        """Fingerprint of the table when the snapshot on disk was taken."""
        self._failed = ""
        self._retry_at = 0.0
        self._messages: queue.SimpleQueue[tuple[bool, str]] = queue.SimpleQueue()
        """(is an error, text) for the core thread to log."""
        self._stop = threading.Event()

    def write_if_changed(self, now: float) -> bool:
        """One round: write a snapshot if the table changed since the last one written.
        The fingerprint is taken first, so a change during the write makes another one."""
        if now < self._retry_at:
            return False
        mark = self._table.fingerprint()
        if mark == self._written:
            return False
        rows = self._table.rows(persist.ROW_FIELDS)
        data = persist.encode(persist.from_rows(rows), self._wall())
        try:
            write_atomic(self._path, data)
        except OSError as exc:
            self._retry_at = now + RETRY_S
            text = f"state file {self._path}: cannot write it: {_why(exc)} (retrying)"
            if text != self._failed:  # once, not every RETRY_S
                self._failed = text
                self._messages.put((True, text))
            return False
        if self._failed:
            self._failed = ""
            self._messages.put((False, f"state file {self._path}: written again"))
        self._written = mark
        return True

    def run(self) -> None:
        wait_s = self._period_s
        while not self._stop.wait(wait_s):
            started = time.monotonic()
            try:
                self.write_if_changed(started)
            except Exception:
                self._messages.put((True, f"state file writer: {traceback.format_exc()}"))
                self._retry_at = time.monotonic() + RETRY_S
            wait_s = persist.next_round_s(time.monotonic() - started, self._period_s)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="ka-state", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def report(self, ksr: KsrPort) -> None:
        """Log what the thread queued (the core thread: the only one that calls ``KSR``)."""
        while True:
            try:
                error, text = self._messages.get_nowait()
            except queue.Empty:
                return
            if error:
                ksr.err(text)
            else:
                ksr.info(text)


def writer(table: SharedTable, config: KaConfig, wall: Clock) -> StateWriter | None:
    """The pinger's writer, or None when ``KA_STATE_FILE`` is off."""
    return StateWriter(table, config.state_file, wall) if config.state_file else None
