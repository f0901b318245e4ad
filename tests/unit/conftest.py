"""A kemi runtime on a ``FakeKsr`` and a settable clock: the glue without a Kamailio."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from ka_core.config.banner import read_defines
from ka_core.config.kaconfig import load_config
from kemi import runtime
from kemi.runtime import Runtime
from tests.unit.fake_ksr import FakeKsr


@dataclass
class Clock:
    now: float = 1000.0
    wall_offset: float = 1_700_000_000.0 - 1000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return self.now + self.wall_offset


@dataclass
class Glue:
    rt: Runtime
    ksr: FakeKsr
    clock: Clock


GlueFactory = Callable[..., Glue]


@pytest.fixture
def glue_factory() -> Iterator[GlueFactory]:
    """``glue_factory(KA_PING_INTERVAL="1", ...)``: a runtime built from those defines,
    installed as the process runtime; closed at teardown."""
    built: list[Runtime] = []

    def make(**defines: str) -> Glue:
        ksr = FakeKsr(defines=dict(defines))
        clock = Clock()
        config = load_config(read_defines(ksr.define))
        rt = runtime.build(config, ksr, monotonic=clock.monotonic, wall=clock.wall)
        built.append(rt)
        return Glue(rt, ksr, clock)

    yield make
    for rt in built:
        runtime.close(rt)


@pytest.fixture
def glue(glue_factory: GlueFactory) -> Glue:
    return glue_factory(KA_PING_INTERVAL="1", KA_PING_TIMEOUT_MS="500")
