"""The lines a node writes when it starts: its settings as an operator reads them."""

from __future__ import annotations

from collections.abc import Callable

from ka_core.config.kaconfig import KaConfig, define_names


def ready_lines(config: KaConfig, destinations: int) -> list[str]:
    """After ``setup()``: the module's settings, and the health policy when not C's."""
    lines = [
        f"ready: {destinations} destinations, ping_interval {config.ping_interval} s, "
        f"delete_counter {config.delete_counter}, ping_timeout {config.ping_timeout_ms} ms"
    ]
    if not config.policy.is_default or config.down_backoff_max:
        p = config.policy
        lines.append(
            f"health: down_after {p.down_after}, up_after {p.up_after}, alive {p.alive.text}, "
            f"degraded_ms {p.degraded_ms} ({config.degraded_as}), "
            f"down_backoff_max {config.down_backoff_max} s"
        )
    return lines


def pinger_started(config: KaConfig, destinations: int) -> str:
    return f"pinger started: {destinations} destinations, interval {config.ping_interval} s"


def dns_started(config: KaConfig, server: str) -> str:
    return (
        f"DNS: host names resolved by ka-kemi via {server}"
        f"{', NAPTR first' if config.dns_naptr else ''}, refresh up to "
        f"{config.dns_refresh} s, state {config.dns_state}"
    )


def read_defines(define: Callable[[str], str | None]) -> dict[str, str]:
    """The ``KA_*`` defines the cfg sets, by parameter name (``define`` reads one)."""
    found = {}
    for name in define_names():
        value = define(name)
        if value is not None:
            found[name.removeprefix("KA_")] = value
    return found
