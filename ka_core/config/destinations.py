"""The ``destination`` parameters' text: URIs separated by spaces or commas, each with its
settings after a ``|``.  A start-up list can hold 1,000,000 of them, so each distinct
settings text is parsed once and its ``Settings`` shared (they are frozen)."""

from __future__ import annotations

from ka_core.errors import InvalidArgument, InvalidUri
from ka_core.settings import Settings, parse_settings
from ka_core.uri import SipUri, parse_uri


def parse_destinations(text: str) -> list[tuple[SipUri, Settings]]:
    """URIs of one ``destination`` value, separated by spaces or commas, each with its
    settings after a ``|`` (commas inside an item with settings belong to them)."""
    items = []
    for word in text.strip().strip('"').split():
        items += [word] if "|" in word else [w for w in word.split(",") if w]
    out = []
    parsed: dict[str, Settings] = {}  # one object per settings text (the same for most)
    for item in items:
        uri_text, _, settings_text = item.partition("|")
        try:
            settings = parsed.get(settings_text)
            if settings is None:
                settings = parsed[settings_text] = parse_settings(settings_text)
            out.append((parse_uri(uri_text), settings))
        except (InvalidUri, InvalidArgument) as exc:
            raise InvalidArgument(f"parameter destination: {exc}") from None
    return out
