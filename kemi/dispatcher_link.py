"""Performs the dispatcher bridge (``ka_core.ops.dispatcher``) in the pinger's core thread:
``dispatcher.list`` and ``dispatcher.set_state`` run through jsonrpcs in this process."""

from __future__ import annotations

import contextlib
import json

from ka_core.errors import KaError
from ka_core.events import StateChanged
from ka_core.ops.dispatcher import OWNER, Bridge, SetState, parse_list
from ka_core.store import registry
from kemi.runtime import Runtime

LIST = json.dumps({"jsonrpc": "2.0", "method": "dispatcher.list", "id": 1})


class DispatcherLink:
    def __init__(self, rt: Runtime) -> None:
        self._rt = rt
        self.bridge = Bridge(float(rt.config.dispatcher_sync_s))

    def step(self, now: float) -> None:
        if not self.bridge.due(now):
            return
        rt = self._rt
        code, body = rt.ksr.jsonrpc_exec(LIST)
        try:
            if str(code) != "200" or not isinstance(body, str):
                raise KaError(f"code {code}: {body}")
            listed = parse_list(body)
        except KaError as exc:
            self.bridge.failed(now)
            rt.limited_err("dispatcher list", f"dispatcher bridge: dispatcher.list: {exc}")
            return
        plan = self.bridge.sync(now, listed, rt.table.rows(("uri", "owner", "state")))
        for warning in plan.warnings:
            rt.ksr.warn(f"dispatcher bridge: {warning}")
        for uri in plan.adds:
            try:
                rt.add(uri, OWNER)
            except KaError as exc:
                rt.limited_err("dispatcher add", f"dispatcher bridge: cannot add {uri}: {exc}")
        for key in plan.dels:
            with contextlib.suppress(KaError):  # deleted by an operator meanwhile: as wanted
                registry.remove(rt.table, key, OWNER)
        for command in plan.commands:
            self._set(command)

    def on_event(self, event: StateChanged) -> None:
        for command in self.bridge.on_change(event.uri, event.owner, event.new):
            self._set(command)

    def _set(self, command: SetState) -> None:
        request = {"jsonrpc": "2.0", "method": "dispatcher.set_state", "id": 1}
        code, body = self._rt.ksr.jsonrpc_exec(json.dumps(request | {"params": command.params()}))
        if str(code) != "200":
            self._rt.limited_err(
                "dispatcher set_state",
                f"dispatcher bridge: dispatcher.set_state {' '.join(map(str, command.params()))}"
                f": code {code}: {body}",
            )
