"""Where the benchmarks' files are.

Importing this module puts the repository on ``sys.path``, so the bench modules that import
it first can then import ``ka_core`` and ``tests.harness``.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BENCH = REPO / "bench"
RESULTS = BENCH / "results"
C_CFG = BENCH / "cfg" / "c_keepalive.cfg"
ROUTE_C = BENCH / "scripts" / "route_c.py"
ROUTE_KA = BENCH / "scripts" / "route_ka.py"
RESPONDER = BENCH / "responder.py"
