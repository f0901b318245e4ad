"""Test "hosts": network namespaces joined to the root namespace by a veth pair (pyroute2).

Each host gets a unique netns name (pid + random suffix) and a random /30 in 10.200-10.254
that no root-namespace address overlaps, so parallel runs and several hosts per test do not
clash.  The root side of the veth holds ``gateway`` (give it to Kamailio as its listen
address); the host holds ``address``.  With ``ipv6=True`` the pair also gets
``gateway6``/``address6`` in an fd00::/64 (no DAD, usable at once).

``link_down()`` cuts the cable (both ends lose carrier), ``remove_address()`` takes the
host's addresses away; ``close()`` kills what ``run()`` started (by PID) and deletes the veth
and the namespace.  Without root or netns support the constructor skips the test under
pytest (fails it under ``make test``, see ``tests.harness.tiers``), else raises
NetnsUnavailable.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from typing import Any, NoReturn

IFA_F_NODAD = 0x02
_taken: set[ipaddress.IPv4Network] = set()
_taken_lock = threading.Lock()


class NetnsUnavailable(RuntimeError):
    """Network namespaces cannot be created here (not root, no CAP_SYS_ADMIN, no ip)."""


def unavailable(reason: str) -> NoReturn:
    """Skip (or fail, see ``tests.harness.tiers``) the running test under pytest, else raise
    NetnsUnavailable."""
    if "pytest" in sys.modules:
        from tests.harness.tiers import tier_unavailable

        tier_unavailable(f"network namespaces unavailable: {reason}")
    raise NetnsUnavailable(reason)


def check_available() -> None:
    """Cheap preconditions, checked before touching the system."""
    if os.geteuid() != 0:
        unavailable("not root")
    if shutil.which("ip") is None:
        unavailable("the ip command (iproute2) is missing")
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        unavailable("pyroute2 is not installed")


@contextlib.contextmanager
def _quiet_fork() -> Iterator[None]:
    """pyroute2 forks a helper to enter a netns; the helper exits leaving a netlink socket
    unclosed, which under ``-W error`` (our pytest config) prints a noisy ResourceWarning."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        yield


def _pick_subnet(ipr: Any, prefixlen: int = 30) -> ipaddress.IPv4Network:
    """A random 10.a.b.c/prefixlen (a in 200-254) not used in the root namespace or by us."""
    used = [
        ipaddress.ip_interface(f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}").network
        for a in ipr.get_addr(family=socket.AF_INET)
    ]
    size = 2 ** (32 - prefixlen)
    for _ in range(1000):
        net = ipaddress.IPv4Network(
            f"10.{random.randint(200, 254)}.{random.randint(0, 255)}."
            f"{random.randrange(0, 256, size)}/{prefixlen}"
        )
        with _taken_lock:
            if any(net.overlaps(u) for u in [*_taken, *used]):
                continue
            _taken.add(net)
            return net
    raise RuntimeError(f"no free 10.200-10.254 /{prefixlen} subnet")


def release_subnet(net: ipaddress.IPv4Network) -> None:
    with _taken_lock:
        _taken.discard(net)


class Host:
    """A network namespace with a veth to the root namespace; see the module docstring."""

    def __init__(
        self,
        name: str | None = None,
        address: str | None = None,
        gateway: str | None = None,
        *,
        prefixlen: int = 30,
        ipv6: bool = False,
        bridge: str | None = None,
    ) -> None:
        if (address is None) != (gateway is None):
            raise ValueError("give both address and gateway, or neither")
        check_available()
        from pyroute2 import IPRoute, netns

        suffix = secrets.token_hex(3)
        self.name = name or f"kak-{os.getpid()}-{suffix}"
        self.veth_root, self.veth_host = f"kak{suffix}r", f"kak{suffix}h"
        self.prefixlen = prefixlen
        self.bridge = bridge
        """A root-namespace bridge to plug the veth into (``Lan``): the gateway is its address."""
        self.procs: list[subprocess.Popen[Any]] = []
        self._subnet: ipaddress.IPv4Network | None = None
        self._created = False
        with IPRoute() as ipr:
            if address is None or gateway is None:  # (both, see above)
                self._subnet = _pick_subnet(ipr)
                self.prefixlen = 30
                gateway, address = (str(h) for h in self._subnet.hosts())
        self.address, self.gateway = address, gateway
        self.address6 = self.gateway6 = None
        if ipv6:
            o = self.gateway.split(".")
            self.gateway6, self.address6 = (f"fd00:{o[1]}:{o[2]}:{o[3]}::{i}" for i in (1, 2))
        try:
            with _quiet_fork():
                netns.create(self.name)
        except OSError as exc:
            self._release()
            unavailable(f"cannot create netns {self.name}: {exc}")
        self._created = True
        try:
            self._wire()
        except Exception:
            self.close()
            raise

    # aliases matching the Host(name, addr, peer_addr) spelling
    @property
    def addr(self) -> str:
        return self.address

    @property
    def peer_addr(self) -> str:
        return self.gateway

    def _wire(self) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            ipr.link("add", ifname=self.veth_root, kind="veth", peer=self.veth_host)
            (inner,) = ipr.link_lookup(ifname=self.veth_host)
            ipr.link("set", index=inner, net_ns_fd=self.name)
            (outer,) = ipr.link_lookup(ifname=self.veth_root)
            if self.bridge is not None:
                (master,) = ipr.link_lookup(ifname=self.bridge)
                ipr.link("set", index=outer, master=master)
            else:
                ipr.addr("add", index=outer, address=self.gateway, prefixlen=self.prefixlen)
            if self.gateway6 and self.bridge is None:
                # keep the address across link_down(): IPv6 flushes it on admin down
                keep = f"/proc/sys/net/ipv6/conf/{self.veth_root}/keep_addr_on_down"
                with open(keep, "w") as f:
                    f.write("1")
                ipr.addr("add", index=outer, address=self.gateway6, prefixlen=64,
                         flags=IFA_F_NODAD)  # fmt: skip
            ipr.link("set", index=outer, state="up")
        with self._ns() as ns:
            (lo,) = ns.link_lookup(ifname="lo")
            ns.link("set", index=lo, state="up")
            (inner,) = ns.link_lookup(ifname=self.veth_host)
            ns.link("set", index=inner, state="up")
        self.restore_address()

    def _ns(self) -> Any:
        """IPRoute inside the namespace; flags=0 so a deleted netns is not re-created."""
        from pyroute2 import IPRoute

        with _quiet_fork():
            return IPRoute(netns=self.name, flags=0)

    # -- faults ----------------------------------------------------------------------------

    def _set_link(self, state: str) -> None:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            (outer,) = ipr.link_lookup(ifname=self.veth_root)
            ipr.link("set", index=outer, state=state)

    def link_down(self) -> None:
        """Cut the cable: the root end goes down, both ends lose carrier."""
        self._set_link("down")

    def link_up(self) -> None:
        self._set_link("up")

    def remove_address(self) -> None:
        """Take the host's addresses (and so its routes) away; the link stays up."""
        with self._ns() as ns:
            (inner,) = ns.link_lookup(ifname=self.veth_host)
            ns.addr("del", index=inner, address=self.address, prefixlen=self.prefixlen)
            if self.address6:
                ns.addr("del", index=inner, address=self.address6, prefixlen=64)

    def restore_address(self) -> None:
        """Give the host its addresses and default routes (via the gateway) back."""
        with self._ns() as ns:
            (inner,) = ns.link_lookup(ifname=self.veth_host)
            ns.addr("add", index=inner, address=self.address, prefixlen=self.prefixlen)
            ns.route("replace", dst="default", gateway=self.gateway)
            if self.address6 and self.gateway6:
                ns.addr("add", index=inner, address=self.address6, prefixlen=64,
                        flags=IFA_F_NODAD)  # fmt: skip
                ns.route("replace", dst="::/0", gateway=self.gateway6, family=socket.AF_INET6)

    # -- processes -------------------------------------------------------------------------

    def run(self, argv: list[str], **popen_kw: Any) -> subprocess.Popen[Any]:
        """Start ``argv`` inside the namespace (``ip netns exec`` execs it: same PID)."""
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **popen_kw)
        self.procs.append(proc)
        return proc

    def exists(self) -> bool:
        from pyroute2 import netns

        return self.name in netns.listnetns()

    def close(self) -> None:
        """Kill started processes by PID, delete the veth and the netns; idempotent."""
        from pyroute2 import IPRoute, netns

        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=2)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
        self.procs.clear()
        with contextlib.suppress(Exception), IPRoute() as ipr:
            for index in ipr.link_lookup(ifname=self.veth_root):
                ipr.link("del", index=index)
        if self._created and self.exists():
            netns.remove(self.name)
        self._created = False
        self._release()

    def _release(self) -> None:
        if self._subnet is not None:
            with _taken_lock:
                _taken.discard(self._subnet)
            self._subnet = None

    def __enter__(self) -> Host:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.address!r}, gateway={self.gateway!r})"
