"""Wake-up pipes: a byte written wakes a thread or process sleeping in ``select`` on the
read end.  Both ends are non-blocking: a full pipe already has wake-ups pending, and the
reader drains whatever is there."""

from __future__ import annotations

import contextlib
import os


def pipe() -> tuple[int, int]:
    """(read end, write end), both non-blocking."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    os.set_blocking(write_fd, False)
    return read_fd, write_fd


def poke(write_fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        os.write(write_fd, b"\0")


def drain(read_fd: int) -> None:
    with contextlib.suppress(BlockingIOError):
        while os.read(read_fd, 4096):
            pass
