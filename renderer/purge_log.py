"""The purge log: one Redis stream every Varnish node's agent reads (docs/architecture.rst, "The
purge log").

A publish appends one event and waits until every live node has applied it; nodes are whoever
reads the log and says so. The keys share one hash tag, so they live on one Cluster slot:

- ``{purges}:log``      the stream of events (``PurgeEvent``), trimmed by age (``MINID``);
- ``{purges}:horizon``  the newest event trimming removed: a reader behind it has lost events;
- ``{purges}:nodes``    node -> its state (``NodeState``, JSON): applied up to, last seen, readiness;
- ``{purges}:acks``     a short stream of "target applied up to id": what publishers wait on.

Every key here has no TTL: the page cache's Redis runs ``volatile-lru``, which evicts only keys
with one (every page record has one), so memory pressure never reaches the log.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import redis.exceptions as redis_errors

from renderer.purge import Purge
from renderer.resilience import Deadline

LOG_KEY = "{purges}:log"
HORIZON_KEY = "{purges}:horizon"
NODES_KEY = "{purges}:nodes"
ACKS_KEY = "{purges}:acks"
ACKS_KEPT = 10_000  # acks are only waited on for a few seconds
CDN_GROUP = "cdn"  # the renderers' consumer group that purges the CDN

# Append an event, trim what is older than the retention, and say where the acks stood before it
# (a waiter reads acks from there, so none of this event's is missed). KEYS: log, horizon, acks.
# ARGV: min id kept (ms), then the event's field/value pairs.
_APPEND = """
local last_ack = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
local id = redis.call('XADD', KEYS[1], '*', unpack(ARGV, 2))
local older = redis.call('XREVRANGE', KEYS[1], '(' .. ARGV[1] .. '-0', '-', 'COUNT', 1)
if #older > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', ARGV[1] .. '-0')
  redis.call('SET', KEYS[2], older[1][1])
end
if #last_ack > 0 then return {id, last_ack[1][1]} end
return {id, '0-0'}
"""


class Runner(Protocol):
    """How calls reach Redis: a ``Guard`` (breaker, retries) or ``Timed``."""

    async def run(self, deadline: Deadline, func: Any, *args: Any) -> Any: ...


def id_key(stream_id: str | bytes) -> tuple[int, int]:
    """A stream id (``ms-seq``) as something that sorts as the stream does."""
    text = stream_id.decode() if isinstance(stream_id, bytes) else stream_id
    ms, _, seq = text.partition("-")
    return int(ms), int(seq or 0)


def id_ms(stream_id: str) -> float:
    """When an event was appended (Redis's clock, s since the epoch)."""
    return id_key(stream_id)[0] / 1000


@dataclass(frozen=True)
class PurgeEvent:
    """One publish's purge, as the log holds it. ``cdn_only``: a rebound for the CDN alone (a node
    applied an event after its publisher had stopped waiting, and the CDN may have refetched that
    node's old copy meanwhile)."""

    purge: Purge
    slug: str = ""
    version: int = 0
    request_id: str = ""
    cdn: bool = False  # the CDN's consumer purges it too, once every live node has
    cdn_only: bool = False

    def fields(self) -> list[str]:
        """Field/value pairs for XADD."""
        values = {
            "hard": " ".join(self.purge.hard),
            "soft": " ".join(self.purge.soft),
            "box": str(self.purge.box_version),
            "slug": self.slug,
            "version": str(self.version),
            "request_id": self.request_id,
            "cdn": "1" if self.cdn else "",
            "cdn_only": "1" if self.cdn_only else "",
        }
        return [part for pair in values.items() for part in pair]

    @classmethod
    def from_fields(cls, values: dict[Any, Any]) -> PurgeEvent:
        """The event XREAD returned (bytes or str keys)."""
        text = {_text(k): _text(v) for k, v in values.items()}
        hard, soft = tuple(text.get("hard", "").split()), tuple(text.get("soft", "").split())
        purge = Purge(hard, soft, int(text.get("box") or 0))
        return cls(
            purge,
            text.get("slug", ""),
            int(text.get("version") or 0),
            text.get("request_id", ""),
            cdn=text.get("cdn") == "1",
            cdn_only=text.get("cdn_only") == "1",
        )


@dataclass(frozen=True)
class NodeState:
    """What a node's agent last said about itself."""

    applied: str = "0-0"  # every event up to this id is applied on the node
    seen: float = 0.0  # when (the agent's clock, s since the epoch)
    ready: bool = False
    url: str = ""  # the agent's HTTP listener, for peers
    lag_events: int = 0
    lag_seconds: float = 0.0

    def to_json(self) -> str:
        """The hash field's value."""
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, raw: str | bytes) -> NodeState:
        """Read back what ``to_json`` wrote (unknown fields ignored: a newer agent's)."""
        try:
            values = json.loads(raw)
        except ValueError:
            return cls()
        return cls(**{k: v for k, v in values.items() if k in cls.__dataclass_fields__})

    def live(self, now: float, dead_after: float) -> bool:
        """Whether publishes wait for this node: it has said something within ``dead_after``."""
        return now - self.seen <= dead_after


NODE_GROUP_PREFIX = "node:"


def node_group(node: str) -> str:
    """The consumer group a node's agent reads with."""
    return f"{NODE_GROUP_PREFIX}{node}"


class PurgeLog:
    """The log as publishers see it: append, then wait for the fleet."""

    def __init__(
        self,
        client: Any,
        guard: Runner,
        retention: float,
        dead_after: float,
        reader: Any = None,
        block_ms: int = 200,
        timeout: float = 0.25,
    ) -> None:
        self.client = client
        self.guard = guard
        self.retention = retention
        self.dead_after = dead_after
        # Blocking reads go through ``reader``, a client whose socket timeout outlasts them: Redis
        # ends a block only on its next cron tick (every 100 ms at the default hz), later than a
        # page read's timeout allows.
        self.reader = reader if reader is not None else client
        self.block_ms = block_ms
        self.timeout = timeout
        self._append = client.register_script(_APPEND)

    async def _append_event(self, event: PurgeEvent) -> tuple[str, str]:
        min_id = int((time.time() - self.retention) * 1000)
        new_id, last_ack = await self._append(keys=[LOG_KEY, HORIZON_KEY, ACKS_KEY], args=[min_id, *event.fields()])
        return _text(new_id), _text(last_ack)

    async def append(self, deadline: Deadline, event: PurgeEvent) -> tuple[str, str]:
        """Append ``event``: (its id, the last ack before it)."""
        event_id, after_ack = await self.guard.run(deadline, self._append_event, event)
        return str(event_id), str(after_ack)

    async def nodes(self, deadline: Deadline) -> dict[str, NodeState]:
        """Every node that has said something, dead or alive."""
        raw = await self.guard.run(deadline, self.client.hgetall, NODES_KEY)
        return {_text(name): NodeState.from_json(value) for name, value in raw.items()}

    async def prune(self, deadline: Deadline) -> list[str]:
        """Forget who left the fleet longer ago than the log keeps (any agent may do it, any number
        of times): the consumer group of a node that is not a member seen within ``retention`` and
        that nobody has read with for as long (back, it would ban everything anyway), a dead node's
        entry, and the CDN group's consumers (renderer processes) idle that long with nothing
        pending. Returns what it removed."""
        now, idle_ms = time.time(), self.retention * 1000
        states = await self.nodes(deadline)
        removed = []
        try:
            groups = await self.guard.run(deadline, self.client.xinfo_groups, LOG_KEY)
        except redis_errors.ResponseError:
            groups = []  # no stream yet
        for group in groups:
            name = _text(group["name"])
            consumers = await self.guard.run(deadline, self.client.xinfo_consumers, LOG_KEY, name)
            idle = [_text(c["name"]) for c in consumers if c["pending"] == 0 and c["idle"] > idle_ms]
            if name == CDN_GROUP:
                for consumer in idle:
                    await self.guard.run(deadline, self.client.xgroup_delconsumer, LOG_KEY, name, consumer)
                    removed.append(f"{name}/{consumer}")
            elif name.startswith(NODE_GROUP_PREFIX) and len(idle) == len(consumers):
                state = states.get(name[len(NODE_GROUP_PREFIX) :])
                if state is None or not state.live(now, self.retention):
                    await self.guard.run(deadline, self.client.xgroup_destroy, LOG_KEY, name)
                    removed.append(name)
        for node, state in states.items():
            if not state.live(now, self.retention):
                await self.guard.run(deadline, self.client.hdel, NODES_KEY, node)
                removed.append(f"{NODES_KEY}/{node}")
        return removed

    async def unapplied(self, deadline: Deadline, group: str) -> int:
        """How many events ``group`` has read and not acknowledged (0 when it does not exist)."""

        async def count() -> int:
            try:
                summary = await self.client.xpending(LOG_KEY, group)
            except Exception as exc:  # NOGROUP, no stream: nothing pending
                if "NOGROUP" in str(exc) or "no such key" in str(exc):
                    return 0
                raise
            return int(summary["pending"])

        return int(await self.guard.run(deadline, count))

    async def last_ack(self, deadline: Deadline) -> str:
        """The newest ack's id: a wait that reads the states after this misses none."""
        newest = await self.guard.run(deadline, self.client.xrevrange, ACKS_KEY, "+", "-", 1)
        return _text(newest[0][0]) if newest else "0-0"

    async def wait_applied(
        self, deadline: Deadline, event_id: str, after_ack: str, cdn: str | None = None
    ) -> dict[str, bool]:
        """Wait until every live node (and the CDN's consumer, target ``cdn``) has applied
        ``event_id``, or ``deadline``: target -> applied. One blocking read of the acks at a time,
        for every node at once; a node that stops being live meanwhile is no longer waited for.
        ``after_ack``: an ack id read before the event was appended (or before this call)."""
        wanted = id_key(event_id)
        states = await self.nodes(deadline)
        now = time.time()
        readers: dict[str, Reader] = {
            name: VarnishNode() for name, state in states.items() if state.live(now, self.dead_after)
        }
        if cdn is not None:
            readers[cdn] = CdnGroup()
        applied = {name: name in states and id_key(states[name].applied) >= wanted for name in readers}
        cursor = after_ack
        while not all(applied.values()):
            block_ms = int(min(self.block_ms, deadline.remaining() * 1000 - 150))
            if block_ms < 1:
                break
            answer = await self._read_acks(cursor, block_ms)
            for _, entries in answer or []:
                for ack_id, values in entries:
                    cursor = _text(ack_id)
                    target, upto = _text(values[b"target"]), id_key(values[b"applied"])
                    if target in applied and readers[target].has_applied(upto, wanted):
                        applied[target] = True
            if not answer:  # a quiet slice: a node may have died
                now = time.time()
                states = await self.nodes(deadline)
                for name in [name for name in applied if readers[name].mortal]:
                    if name not in states or not states[name].live(now, self.dead_after):
                        del applied[name]  # it left, or died
        return applied

    async def _read_acks(self, cursor: str, block_ms: int) -> Any:
        async with asyncio.timeout(block_ms / 1000 + 0.1 + self.timeout):
            return await self.reader.xread({ACKS_KEY: cursor}, count=1000, block=block_ms)

    async def acked(self, target: str, applied: str, state: NodeState | None = None) -> None:
        """Say that ``target`` has applied ``applied`` (and, for a node, its new state)."""
        async with self.client.pipeline(transaction=False) as pipe:
            if state is not None:
                pipe.hset(NODES_KEY, target, state.to_json())
            pipe.xadd(ACKS_KEY, {"target": target, "applied": applied}, maxlen=ACKS_KEPT, approximate=True)
            await pipe.execute()


class Reader(Protocol):
    """A reader of the log that a publish waits for."""

    mortal: bool  # True: it may die, and is then no longer waited for

    def has_applied(self, upto: tuple[int, int], wanted: tuple[int, int]) -> bool:
        """Whether an ack of ``upto`` says the event ``wanted`` is applied."""
        ...


class VarnishNode:
    """A node's agent acks how far it has applied the log, in order; a node may die."""

    mortal = True

    def has_applied(self, upto: tuple[int, int], wanted: tuple[int, int]) -> bool:
        return upto >= wanted


class CdnGroup:
    """The CDN's consumer group (every renderer) acks each event it purged, in any order; it lives
    as long as any renderer does."""

    mortal = False

    def has_applied(self, upto: tuple[int, int], wanted: tuple[int, int]) -> bool:
        return upto == wanted


class Timed:
    """A ``Guard``'s ``run`` without breaker or retries, for callers that loop by themselves."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout

    async def run(self, deadline: Deadline, func: Any, *args: Any) -> Any:
        """``func(*args)`` within ``timeout`` and ``deadline``."""
        async with asyncio.timeout(max(0.0, min(self.timeout, deadline.remaining()))):
            return await func(*args)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
