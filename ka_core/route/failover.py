"""What ``ka_select`` leaves for ``ka_next``: the variable the URI goes into and the
candidates not tried yet, as one text (``"$du sip:b sip:c"``) kept in an xavp, which tm
keeps with the transaction, so failure_route finds it even in tm's timer process."""

from __future__ import annotations

import functools
import re

from ka_core.errors import InvalidArgument

DEFAULT_VAR = "$du"
_PV = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*(\([A-Za-z0-9_.:=>\[\]-]+\))?")
"""A writable pseudo-variable as a script names it: ``$du``, ``$var(gw)``, ``$avp(x)``."""


def check_var(name: object) -> str:
    """``name`` when it reads as a pseudo-variable.

    Raises:
        InvalidArgument: anything else (Kamailio would refuse it on every call).
    """
    if not isinstance(name, str) or not _is_pv(name):
        raise InvalidArgument(f"not a pseudo-variable name (e.g. $du, $var(gw)): {name!r}")
    return name


@functools.lru_cache(maxsize=64)  # a script names a few variables, on every call
def _is_pv(name: str) -> bool:
    return _PV.fullmatch(name) is not None


def pending(var: str, uris: list[str]) -> str:
    """The xavp text for ``uris`` still to try (URIs hold no blank)."""
    return " ".join([var, *uris])


def take_next(text: object) -> tuple[str, str, str] | None:
    """(variable, next URI, the text left) from an xavp text; None when nothing is left or
    no ``ka_select`` ran for this request."""
    words = text.split() if isinstance(text, str) else []
    if len(words) < 2:
        return None
    return words[0], words[1], pending(words[0], words[2:])
