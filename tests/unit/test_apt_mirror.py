"""tests/matrix/apt-mirror.sh: the matrix's Debian mirror comes from the machine's apt
sources only (one-line and deb822), and no mirror there is a clear error, not a guess."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "tests" / "matrix" / "apt-mirror.sh"


def mirror(apt: Path) -> subprocess.CompletedProcess[str]:
    (apt / "sources.list.d").mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "APT_SOURCES_DIR": str(apt)}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env)


def test_one_line_sources_skip_other_repositories_and_security(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text(
        "deb [signed-by=/k.gpg arch=amd64] https://deb.nodesource.com/node_20.x nodistro main\n"
        "deb http://security.debian.org/debian-security bookworm-security main\n"
        "# deb http://commented.example/debian bookworm main\n"
        "deb [arch=amd64] http://mirror.example.net/debian/ bookworm main contrib\n"
    )
    out = mirror(tmp_path)
    assert (out.returncode, out.stdout) == (0, "http://mirror.example.net/debian\n")


def test_deb822_sources_skip_disabled_stanzas(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://off.example/debian\nSuites: trixie\nEnabled: no\n\n"
        "Types: deb\n# a comment\nURIs: http://deb.example/debian-security\n"
        "Suites: trixie-security\n\n"
        "Types: deb-src deb\nURIs: http://b.example/debian http://c.example/debian\n"
        "Suites: trixie-updates trixie\nComponents: main\n"
    )
    out = mirror(tmp_path)
    assert (out.returncode, out.stdout) == (0, "http://b.example/debian\n")


def test_no_mirror_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list.d" / "other.list").write_text(
        "deb https://packages.example.com/repo stable-ish main\n"
    )
    out = mirror(tmp_path)
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr.startswith("apt-mirror: no Debian mirror in ")
