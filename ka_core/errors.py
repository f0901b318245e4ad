"""The error tree.  Every operation that raises leaves the shared table unchanged."""

from __future__ import annotations


class KaError(Exception):
    """Base of every error ka_core raises on purpose."""


class InvalidUri(KaError):
    """A destination URI that cannot be parsed or is not supported."""


class InvalidArgument(KaError):
    """A bad owner, interval, callback name or parameter value."""


class DuplicateDestination(KaError):
    """The same (URI, owner) is already monitored (as in C, this is an error)."""


class UnknownDestination(KaError):
    """No destination with this (URI, owner)."""


class TableFull(KaError):
    """``max_destinations`` reached, or the change queue to the pinger is full."""


class StringPoolFull(TableFull):
    """The shared table's pool for long strings is full (``KA_STRING_CHUNKS``); its text
    names the error itself, so the log line and the RPC fault say the same."""


class RpcFault(KaError):
    """An RPC error reply, with the code and text kamcmd prints (``error: 500 - text``)."""

    def __init__(self, code: int, text: str) -> None:
        super().__init__(f"{code} - {text}")
        self.code = code
        self.text = text
