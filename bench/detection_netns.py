"""The detection benchmark's ``linkdown`` peers: a network namespace behind a veth pair
whose namespace side is set down to cut the link (see ``bench.detection``)."""

from __future__ import annotations

import os
import random
import subprocess
import time
from dataclasses import dataclass, field


@dataclass
class NetnsHost:
    count: int
    name: str = field(default_factory=lambda: f"kabench{os.getpid() % 100000}")
    prefix: str = ""

    def __post_init__(self) -> None:
        tag = os.getpid() % 100000
        self.root_if, self.host_if = f"kbr{tag}", f"kbh{tag}"
        routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True).stdout
        for _ in range(100):
            cand = f"10.{random.randint(200, 254)}.{random.randint(0, 255)}"
            if f"{cand}." not in routes:
                self.prefix = cand
                break
        self.gw_c, self.gw_ka = f"{self.prefix}.1", f"{self.prefix}.3"
        self.peers = [f"{self.prefix}.{100 + i}" for i in range(self.count)]
        steps = [
            ["ip", "netns", "add", self.name],
            ["ip", "link", "add", self.root_if, "type", "veth", "peer", "name", self.host_if],
            ["ip", "link", "set", self.host_if, "netns", self.name],
            ["ip", "addr", "add", f"{self.gw_c}/24", "dev", self.root_if],
            ["ip", "addr", "add", f"{self.gw_ka}/24", "dev", self.root_if],
            ["ip", "link", "set", self.root_if, "up"],
            ["ip", "-n", self.name, "link", "set", "lo", "up"],
            *[
                ["ip", "-n", self.name, "addr", "add", f"{p}/24", "dev", self.host_if]
                for p in self.peers
            ],
            ["ip", "-n", self.name, "link", "set", self.host_if, "up"],
        ]
        try:
            for argv in steps:
                subprocess.run(argv, check=True, capture_output=True, timeout=10)
            # Permanent neighbour entries on the root side: while the link is down a ping is
            # dropped at once, as on a cut cable, instead of waiting in the ARP queue and
            # reaching the peer seconds later, after its transaction expired.
            mac = self._mac(["ip", "-n", self.name, "link", "show", self.host_if])
            batch = "".join(
                f"neigh replace {p} lladdr {mac} dev {self.root_if} nud permanent\n"
                for p in self.peers
            )
            subprocess.run(["ip", "-batch", "-"], input=batch, text=True, check=True,
                           capture_output=True, timeout=10)  # fmt: skip
        except Exception:
            self.close()
            raise
        time.sleep(0.5)  # DAD / carrier

    @staticmethod
    def _mac(argv: list[str]) -> str:
        out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=10).stdout
        return out.split("link/ether", 1)[1].split()[0]

    def link(self, state: str) -> None:
        subprocess.run(
            ["ip", "-n", self.name, "link", "set", self.host_if, state],
            check=True,
            capture_output=True,
            timeout=10,
        )

    def close(self) -> None:
        subprocess.run(["ip", "link", "del", self.root_if], capture_output=True, timeout=10)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True, timeout=10)
