"""Digest credentials of a destination: the answer to a 401/407 challenge to its ping.

As Asterisk's ``authenticate_qualify``: a destination with ``auth_user`` and
``auth_password`` answers a ``WWW-Authenticate`` (401) or ``Proxy-Authenticate`` (407)
challenge by sending its ping again with ``Authorization`` or ``Proxy-Authorization``
(RFC 2617 and RFC 7616: MD5, MD5-sess, SHA-256 and SHA-256-sess; ``qop=auth`` when offered,
the RFC 2069 form when no qop is; ``auth-int`` alone is not supported).  Sans I/O: the
client nonce is an argument.  The password is never part of any text this module returns
but the response hash.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from ka_core.settings import Credentials

CHALLENGE_CODES = {401: "Authorization", 407: "Proxy-Authorization"}
"""Challenge reply code -> the header that answers it."""
CHALLENGE_HEADERS = {401: "WWW-Authenticate", 407: "Proxy-Authenticate"}
ALGORITHMS = {"md5": hashlib.md5, "sha-256": hashlib.sha256}
MAX_CHALLENGE_BYTES = 2048
_PARAM = re.compile(r'\s*([A-Za-z][A-Za-z0-9_-]*)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s,]*)\s*(?:,|$)')


@dataclass(frozen=True, slots=True)
class Challenge:
    realm: str
    nonce: str
    algorithm: str
    """Lower-case: ``md5``, ``md5-sess``, ``sha-256``, ``sha-256-sess``."""
    opaque: str | None
    qop_auth: bool
    """The server offered ``qop=auth``."""


def parse_challenge(header: str) -> Challenge | None:
    """A ``Digest`` challenge header value; None when it is not one ka-kemi can answer
    (another scheme, no nonce, an unknown algorithm, only ``auth-int``)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest" or len(header) > MAX_CHALLENGE_BYTES:
        return None
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        value = match[2]
        if value.startswith('"'):
            value = re.sub(r"\\(.)", r"\1", value[1:-1])
        params[match[1].lower()] = value
    algorithm = params.get("algorithm", "MD5").lower()
    qops = {q.strip().lower() for q in params.get("qop", "").split(",") if q.strip()}
    if "nonce" not in params or algorithm.removesuffix("-sess") not in ALGORITHMS:
        return None
    if qops and "auth" not in qops:
        return None
    quoted = [params.get(k) or "" for k in ("realm", "nonce", "opaque")]
    if any(not v.isprintable() or '"' in v or "\\" in v for v in quoted):
        return None  # it is copied into our header: no CR, LF or quote gets through
    return Challenge(
        params.get("realm", ""), params["nonce"], algorithm, params.get("opaque"), "auth" in qops
    )


def authorization(
    code: int, challenge: Challenge, creds: Credentials, method: str, uri: str, cnonce: str
) -> str:
    """The header line (without CRLF) answering ``challenge`` for one request, ``nc`` 1."""
    digest = ALGORITHMS[challenge.algorithm.removesuffix("-sess")]

    def h(text: str) -> str:
        return digest(text.encode()).hexdigest()

    ha1 = h(f"{creds.user}:{challenge.realm}:{creds.password}")
    if challenge.algorithm.endswith("-sess"):
        ha1 = h(f"{ha1}:{challenge.nonce}:{cnonce}")
    ha2 = h(f"{method}:{uri}")
    fields = [
        f'username="{creds.user}"', f'realm="{challenge.realm}"',
        f'nonce="{challenge.nonce}"', f'uri="{uri}"',
    ]  # fmt: skip
    if challenge.qop_auth:
        response = h(f"{ha1}:{challenge.nonce}:00000001:{cnonce}:auth:{ha2}")
        fields += [f'response="{response}"', f'cnonce="{cnonce}"', "qop=auth", "nc=00000001"]
    else:
        fields.append(f'response="{h(f"{ha1}:{challenge.nonce}:{ha2}")}"')
    fields.append(f"algorithm={challenge.algorithm.upper()}")
    if challenge.opaque is not None:
        fields.append(f'opaque="{challenge.opaque}"')
    return f"{CHALLENGE_CODES[code]}: Digest " + ", ".join(fields)
