"""A LAN of test hosts: a bridge in the root namespace and one network namespace per host,
each plugged into the bridge by a veth (``Host(bridge=...)``).

Hosts reach each other at layer 2 (no forwarding, no sysctl changed) and reach processes in
the root namespace on the bridge's address (``gateway``).  ``host.link_down()`` cuts one
host's cable: the others and the root namespace keep talking.  ``close()`` removes every
host, then the bridge.
"""

from __future__ import annotations

import contextlib
import secrets
from typing import Any

from tests.harness.netns import Host, _pick_subnet, check_available, release_subnet


class Lan:
    def __init__(self) -> None:
        check_available()
        from pyroute2 import IPRoute

        self.bridge = f"kakb{secrets.token_hex(3)}"
        self.hosts: list[Host] = []
        with IPRoute() as ipr:
            self._net = _pick_subnet(ipr, prefixlen=24)
            self._free = list(self._net.hosts())
            self.gateway = str(self._free.pop(0))
            ipr.link("add", ifname=self.bridge, kind="bridge")
            (index,) = ipr.link_lookup(ifname=self.bridge)
            ipr.addr("add", index=index, address=self.gateway, prefixlen=24)
            ipr.link("set", index=index, state="up")

    def add_host(self) -> Host:
        host = Host(
            address=str(self._free.pop(0)), gateway=self.gateway, prefixlen=24,
            bridge=self.bridge,
        )  # fmt: skip
        self.hosts.append(host)
        return host

    def close(self) -> None:
        for host in self.hosts:
            host.close()
        self.hosts.clear()
        from pyroute2 import IPRoute

        with contextlib.suppress(Exception), IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=self.bridge):
                ipr.link("del", index=index)
        release_subnet(self._net)

    def __enter__(self) -> Lan:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
