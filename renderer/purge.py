"""Invalidation on every Varnish node at once, then on the CDN in front of them, and a durable
queue (MongoDB) for the targets that miss it."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

from healthcheck import describe_error
from renderer import contract
from renderer.backends.mongo_purges import PurgeStore
from renderer.breaker import CircuitOpen
from renderer.cdn import CdnPurger
from renderer.http_session import LazySession
from renderer.metrics import Metrics
from renderer.resilience import Deadline, DeadlineExceeded, Guard

log = logging.getLogger("pagecache.purge")

PURGED = "purged"
QUEUED = "queued"
# Varnish refuses a request header over http_req_hdr_len (8 KiB by default); keys go in well under.
MAX_HEADER_BYTES = 4096
HYGIENE_EVERY_PASSES = 60  # an idle queue's length is re-read this often


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


class NodeRefused(Exception):
    """A Varnish node answered the purge with something other than 200."""


def describe_purge_error(exc: BaseException) -> str:
    """Why a node did not take a purge, in an operator's words."""
    if isinstance(exc, CircuitOpen):
        return "breaker open: not tried"
    if isinstance(exc, DeadlineExceeded):
        return "deadline reached"
    return describe_error(exc)


def is_transient(exc: BaseException) -> bool:
    """Purge failures worth another try: the network, or a node answering 5xx."""
    if isinstance(exc, NodeRefused):
        return str(exc).startswith("HTTP 5")
    return isinstance(exc, (aiohttp.ClientError, OSError))


class Purger:
    """Sends xkey purges to every node in ``VARNISH_URLS`` concurrently, then to the CDN (``cdn``)
    if there is one. Each node has its own ``Guard`` (timeout, retries, circuit breaker): a dead
    node costs a publish nothing once its breaker is open, and every call ends within the deadline
    it is given.

    The CDN comes last, and only once every node that took the purge holds the new copy of each
    soft-purged page it can name (``refresh``): a CDN purged earlier would refetch the old copy
    from Varnish and keep it for ``CDN_TTL``.
    """

    def __init__(
        self, guards: dict[str, Guard], timeout: float, metrics: Metrics, cdn: CdnPurger | None = None
    ) -> None:
        self.guards = {node.rstrip("/"): guard for node, guard in guards.items()}
        self.varnish_nodes = tuple(self.guards)
        self.cdn = cdn
        # Every purge target, as the queue and the reports name them.
        self.nodes = self.varnish_nodes + ((cdn.target,) if cdn else ())
        self.timeout = timeout
        self.metrics = metrics
        self._client = LazySession(timeout)

    async def close(self) -> None:
        """Close the connection pools."""
        await self._client.close()
        if self.cdn is not None:
            await self.cdn.close()

    async def _send(self, node: str, purge: Purge, request_id: str | None) -> None:
        headers = purge.headers()
        if request_id:
            headers["X-Request-Id"] = request_id
        async with self._client().request("PURGE", node + "/", headers=headers) as resp:
            await resp.read()
            if resp.status != 200:
                raise NodeRefused(f"HTTP {resp.status}")

    async def purge_node(self, deadline: Deadline, node: str, purge: Purge, request_id: str | None = None) -> str:
        """``"purged"``, or what went wrong after every attempt the deadline allowed (``node``: a
        Varnish node, or the CDN's target name)."""
        try:
            if self.cdn is not None and node == self.cdn.target:
                await self.cdn.purge(deadline, purge)
            else:
                for part in purge.split():
                    await self.guards[node].run(deadline, self._send, node, part, request_id)
        except Exception as exc:
            result = describe_purge_error(exc)
            self.metrics.purges.labels(node, "failed").inc()
            log.warning("purge of %s on %s failed: %s", purge.describe(), node, result)
            return result
        self.metrics.purges.labels(node, PURGED).inc()
        return PURGED

    async def purge(self, deadline: Deadline, purge: Purge, request_id: str | None = None) -> dict[str, str]:
        """Purge on every Varnish node at once, then on the CDN; target -> ``"purged"`` or its error."""
        nodes = self.varnish_nodes
        outcomes = await asyncio.gather(*(self.purge_node(deadline, n, purge, request_id) for n in nodes))
        results = dict(zip(nodes, outcomes, strict=True))
        if self.cdn is not None:
            took = [node for node in nodes if results[node] == PURGED]
            await self.refresh(deadline, took, purge.soft)
            results[self.cdn.target] = await self.purge_node(deadline, self.cdn.target, purge, request_id)
        return results

    async def refresh(self, deadline: Deadline, nodes: list[str], soft_keys: tuple[str, ...]) -> None:
        """Have each of ``nodes`` fetch the new copy of every page a soft-purged key names (the
        VCL's REFRESH: a fetch that replaces the object), so that none hands the CDN the old one
        once the CDN is purged. A page it can't refresh is still safe, only slower: Varnish gives
        the CDN its stale copy with a one-second CDN lifetime."""
        paths = [path for key in soft_keys if (path := contract.public_path_of_key(key)) is not None]

        async def one(node: str, path: str) -> None:
            try:
                async with asyncio.timeout(max(0.0, min(self.timeout, deadline.remaining()))):
                    async with self._client().request("REFRESH", node + path) as resp:
                        await resp.read()
            except Exception as exc:
                log.info("refresh of %s on %s failed: %s", path, node, describe_error(exc))

        await asyncio.gather(*(one(node, path) for node in nodes for path in paths))


class PurgeQueue:
    """Delivers queued purges until each node has taken its own, backing off per entry. An entry
    for a node no longer configured, or older than any object it could still remove, is dropped
    when claimed, counted and logged. Passes run one after another; leases keep processes off each
    other's entries."""

    def __init__(
        self,
        store: PurgeStore,
        purger: Purger,
        interval: float,
        max_age: float,
        metrics: Metrics,
        batch: int = 100,
    ) -> None:
        self.store = store
        self.purger = purger
        self.interval = interval
        self.max_age = max_age
        self.metrics = metrics
        self.batch = batch
        self._passes = 0

    async def record(self, deadline: Deadline, missed: dict[str, str], purge: Purge) -> str:
        """Queue the nodes in ``missed``; the step's outcome in words."""
        try:
            await self.store.add(deadline, [(node, purge.hard, purge.soft) for node in missed])
        except Exception as exc:
            log.error("could not queue purges for %s: %r", sorted(missed), exc)
            return f"not queued ({describe_error(exc)})"
        return QUEUED

    def _dropped(self, reason: str, entry: dict[str, Any]) -> None:
        self.metrics.purges_dropped.labels(reason).inc()
        log.warning(
            "dropped a queued purge for %s (%s): %s",
            entry["node"],
            reason,
            " ".join(entry.get("hard", []) + entry.get("soft", [])),
        )

    def _obsolete(self, entry: dict[str, Any]) -> str | None:
        """Why a queued purge is no longer worth delivering, or None."""
        if entry["node"] not in self.purger.nodes:
            return "node-not-configured"
        if entry["queued_at"] < time.time() - self.max_age:
            return "too-old"
        return None

    def _backoff(self, attempts: int) -> float:
        return float(min(self.interval * 2 ** max(attempts - 1, 0), 60.0))

    async def retry_pending(self) -> int:
        """One pass over the due entries; how many were delivered."""
        deadline = Deadline.after(max(self.interval, 1.0) * 5)
        # The lease outlives this pass's deadline: nobody else delivers an entry while we might.
        entries = await self.store.claim(deadline, self.batch, lease_seconds=max(self.interval, 1.0) * 10)
        counted = self._passes % HYGIENE_EVERY_PASSES == 0
        self._passes += 1
        if not entries and not counted:
            return 0  # idle: one findAndModify that matched nothing
        delivered = 0

        async def deliver(entry: dict[str, Any]) -> None:
            nonlocal delivered
            obsolete = self._obsolete(entry)
            if obsolete is not None:
                await self.store.done(deadline, entry)
                self._dropped(obsolete, entry)
                return
            # .get: FerretDB drops an empty array from $setOnInsert.
            purge = Purge(tuple(entry.get("hard", ())), tuple(entry.get("soft", ())))
            result = await self.purger.purge_node(deadline, entry["node"], purge)
            if result == PURGED:
                if entry["node"] in self.purger.varnish_nodes and self.purger.cdn is not None:
                    # The CDN may have refetched this node's old copy meanwhile: once the node
                    # holds the new one, the CDN is purged again, durably.
                    await self.purger.refresh(deadline, [entry["node"]], purge.soft)
                    await self.store.add(deadline, [(self.purger.cdn.target, purge.hard, purge.soft)])
                await self.store.done(deadline, entry)
                delivered += 1
            else:
                await self.store.retry_at(deadline, entry, time.time() + self._backoff(entry["attempts"]), result)

        for outcome in await asyncio.gather(*(deliver(entry) for entry in entries), return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("queued purge not handled (its lease will expire): %r", outcome)
        self.metrics.purge_queue.set(await self.store.length(deadline))
        return delivered

    async def run(self) -> None:
        """A pass every ``interval`` seconds until cancelled; never two at once."""
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.retry_pending()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("purge queue pass failed: %r", exc)  # MongoDB down: its breaker says so
