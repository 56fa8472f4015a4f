"""Which configured editor tokens the API accepts: long enough, and none the docs show."""

from __future__ import annotations

import logging

log = logging.getLogger("pagecache.tokens")

MIN_LENGTH = 32
# Example values shown in the repo's docs and manifests: never accepted, whatever their length.
PLACEHOLDERS = frozenset(
    {
        "replace-with-a-long-random-token",
        "replace-me",
        "changeme",
        "change-me",
        "secret",
        "token",
        "editor-token",
        "<token>",
    }
)


def usable_tokens(configured: tuple[str, ...]) -> tuple[str, ...]:
    """The tokens from ``EDITOR_TOKENS`` the API may accept; each refused one is logged (never
    the token itself, only its position and why)."""
    usable = []
    for position, token in enumerate(configured, start=1):
        if token.lower() in PLACEHOLDERS:
            log.error("EDITOR_TOKENS #%d is a placeholder from the docs: refused", position)
        elif len(token) < MIN_LENGTH:
            log.error("EDITOR_TOKENS #%d is shorter than %d characters: refused", position, MIN_LENGTH)
        else:
            usable.append(token)
    return tuple(usable)
