"""What one invalidation removes: surrogate keys, hard or soft, and the box version it fences
(the purge log carries it to every Varnish node's agent, and to the CDN's reader)."""

from __future__ import annotations

from dataclasses import dataclass

from renderer import contract

PURGED = "purged"
# Varnish refuses a request header over http_req_hdr_len (8 KiB by default); keys go in well under.
MAX_HEADER_BYTES = 4096


@dataclass(frozen=True)
class Purge:
    """Surrogate keys to purge on a node, in one PURGE request: ``hard`` ones are gone at once,
    ``soft`` ones keep their old copy for the one refetch that replaces it (no herd)."""

    hard: tuple[str, ...] = ()
    soft: tuple[str, ...] = ()
    # The box version this purge makes the oldest a node may keep (0: the box did not change).
    box_version: int = 0

    def headers(self) -> dict[str, str]:
        """The xkey headers the VCL's admin listener reads."""
        headers = {}
        if self.hard:
            headers["xkey-purge"] = " ".join(self.hard)
        if self.soft:
            headers["xkey-softpurge"] = " ".join(self.soft)
        if self.box_version:
            headers[contract.HEADER_BOX_MIN] = str(self.box_version)
        return headers

    def describe(self) -> str:
        """For logs."""
        return " ".join([*(f"{key} (hard)" for key in self.hard), *self.soft])

    def split(self, max_header: int = MAX_HEADER_BYTES) -> list[Purge]:
        """This purge as requests whose key headers each fit in ``max_header`` bytes."""
        parts: list[Purge] = []
        hard: list[str] = []
        soft: list[str] = []
        for kind, key in [*(("hard", k) for k in self.hard), *(("soft", k) for k in self.soft)]:
            bucket = hard if kind == "hard" else soft
            if bucket and len(" ".join([*bucket, key])) > max_header:
                parts.append(Purge(tuple(hard), tuple(soft), self.box_version))
                hard, soft = [], []
                bucket = hard if kind == "hard" else soft
            bucket.append(key)
        if hard or soft or not parts:
            parts.append(Purge(tuple(hard), tuple(soft), self.box_version))
        return parts
