"""What a state file's snapshot puts back into the table at start-up (``KA_STATE_FILE``).

Runtime destinations are added again with their settings, interval and pause; configured
(``_params``) destinations get only their state, and one no longer configured is dropped:
the configuration decides which exist.  Every destination restored gets its last state and
times back through the store's one state writer.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from ka_core.errors import KaError
from ka_core.ops.state_file import Snapshot
from ka_core.settings import Settings
from ka_core.store import registry
from ka_core.store.registry import PARAMS_OWNER
from ka_core.store.table import SharedTable
from ka_core.uri import parse_uri

SHOWN_SKIPS = 10


@dataclass(slots=True)
class Restored:
    added: int = 0
    restored: int = 0
    dropped: int = 0
    skipped: list[str] = field(default_factory=list)

    def lines(self, path: str, written: float) -> tuple[list[str], str]:
        """(error lines, the summary line) for the log."""
        errors = [f"state file {path}: not restored: {line}" for line in self.skipped[:SHOWN_SKIPS]]
        if len(self.skipped) > SHOWN_SKIPS:
            errors.append(f"state file {path}: {len(self.skipped) - SHOWN_SKIPS} more not restored")
        when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(written))
        return errors, (
            f"state file {path} (written {when}): {self.added} runtime destinations added back, "
            f"last state of {self.restored} restored, {len(self.skipped)} skipped, "
            f"{self.dropped} no longer configured"
        )


def restore_snapshot(table: SharedTable, snapshot: Snapshot, wall: float, dns: int) -> Restored:
    """``dns``: ``KA_DNS``; a host name is then a name again (its targets are resolved
    anew, the file does not keep them)."""
    done = Restored()
    parsed: dict[str, Settings] = {}  # one parse per settings text (the same for most)
    for dest in snapshot.destinations:
        try:
            if dest.owner == PARAMS_OWNER:
                slot = table.find(parse_uri(dest.uri).key, PARAMS_OWNER)
                if slot < 0:
                    done.dropped += 1
                    continue
                gen = table.hot(slot)[0]
            else:
                settings = parsed.get(dest.settings)
                if settings is None:
                    settings = parsed[dest.settings] = registry.settings_of(dest.settings)
                slot, gen = registry.add_slot(
                    table, dest.uri, dest.owner,
                    interval_s=dest.interval_ms / 1000 if dest.own_interval else None,
                    wall=wall, state_cb=dest.state_cb, response_cb=dest.response_cb,
                    user=dest.user, settings=settings, resolve_names=bool(dns),
                )  # fmt: skip
                if dest.paused:
                    table.pause_slot(slot, gen, True)
                done.added += 1
            table.restore_state(
                slot, gen, dest.state, dest.last_checked, dest.last_up, dest.last_down
            )
            done.restored += 1
        except KaError as exc:
            done.skipped.append(f"{dest.uri} owner {dest.owner}: {exc}")
    return done
