"""A small history checker for publishing (Jepsen/Elle in spirit, far smaller).

Concurrent clients write (``PUT``, ``PUT`` with ``If-Match``, ``DELETE``) and read (through every
tier) a few articles; each operation is recorded with its start, its end and the version its
answer names. ``check`` then looks for what exactness forbids:

(a) acknowledged writes of one article get increasing versions: a ``PUT`` acknowledged after
    another write was acknowledged has a higher version (a ``DELETE`` of an article already taken
    down may repeat the takedown's version), and no two ``PUT``\\s share one;
(b) once a write is acknowledged (``settle``: 0, the contract starts at the acknowledgement), no
    read of any tier names an older version;
(c) after quiescence every tier shows what MongoDB holds;
(d) once a takedown is acknowledged, no read of a listing (the home, a section front) or of the
    "latest news" box in any page shows the article, unless a save of it (which may publish it
    again) overlaps the time from the takedown to the read. Edits to listings and the box are
    soft-purged (the old copy may be served once while it is refetched): only takedowns, which
    are hard, are held to the acknowledgement.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

WRITES = ("put", "put-if-match", "delete")


@dataclass(frozen=True)
class Op:
    """One operation as a client saw it; ``version`` is what its answer named (None: nothing)."""

    client: int
    kind: str  # "put", "put-if-match", "delete" or "get"
    slug: str
    start: float  # monotonic seconds
    end: float
    status: int  # HTTP status; 0 when no answer came
    version: int | None
    where: str = ""  # for a read: the tier it went to
    # For a read: the articles its listing or box shows (slugs), when it showed one.
    shown: frozenset[str] = frozenset()

    @property
    def acknowledged(self) -> bool:
        """A write the API said it committed."""
        return self.kind in WRITES and self.status in (200, 201, 202) and self.version is not None


def check(history: Iterable[Op], settle: float) -> list[str]:
    """Violations of (a) and (b) in ``history``, described one per line (empty: none)."""
    by_slug: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        by_slug[op.slug].append(op)
    violations: list[str] = []
    for slug, ops in sorted(by_slug.items()):
        acked = sorted((op for op in ops if op.acknowledged), key=lambda op: op.end)
        put_versions: dict[int, Op] = {}
        for op in acked:
            if op.kind != "delete":
                if op.version in put_versions:
                    violations.append(
                        f"(a) {slug}: two PUTs acknowledged version {op.version}: {put_versions[op.version]} and {op}"
                    )
                put_versions[op.version or 0] = op
        for later in acked:
            for earlier in acked:
                if earlier.end >= later.start or earlier is later:
                    continue
                older = (later.version or 0) < (earlier.version or 0)
                repeated = later.kind != "delete" and later.version == earlier.version
                if older or repeated:
                    violations.append(f"(a) {slug}: {later} acknowledged after {earlier}")
        reads = [op for op in ops if op.kind == "get" and op.status in (200, 404) and op.version is not None]
        for read in reads:
            newest = max(
                (op for op in acked if op.end + settle < read.start), key=lambda op: op.version or 0, default=None
            )
            if newest is not None and (read.version or 0) < (newest.version or 0):
                violations.append(f"(b) {slug}: {read} older than {newest}")
    return violations


def check_takedowns(history: Iterable[Op]) -> list[str]:
    """Violations of (d) in ``history``, one per line (empty: none)."""
    ops = list(history)
    takedowns = [op for op in ops if op.kind == "delete" and op.acknowledged]
    saves = [op for op in ops if op.kind in ("put", "put-if-match")]
    violations = []
    for read in (op for op in ops if op.kind == "get" and op.shown):
        for takedown in (d for d in takedowns if d.slug in read.shown and d.end < read.start):
            published_again = any(
                save.slug == takedown.slug and save.start < read.end and save.end > takedown.start for save in saves
            )
            if not published_again:
                violations.append(f"(d) {takedown.slug}: shown by {read} after {takedown}")
    return violations


def check_final(reads: Iterable[Op], source_of_truth: dict[str, tuple[int, bool]]) -> list[str]:
    """(c): every read after quiescence names MongoDB's version and status (slug -> (version, published))."""
    violations = []
    for read in reads:
        version, published = source_of_truth[read.slug]
        if read.version != version or read.status != (200 if published else 404):
            violations.append(f"(c) {read.slug}: {read} but MongoDB holds version {version}, published={published}")
    return violations
