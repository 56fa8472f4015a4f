"""The purge agent beside a Varnish node: reads the purge log with the node's own consumer group,
applies each event to its Varnish over localhost, and says how far it got (docs/architecture.rst,
"The purge log").

A node joins by starting its agent and leaves by stopping it: there is no list anywhere. The agent
answers ``/ready`` for the node (the load balancer's and Kubernetes' readiness probe): a node that
is behind the log, or cut off from it while its peers are not, turns unready; a log that nobody can
reach never takes a node out.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import time
from typing import Any

import aiohttp
import redis.exceptions as redis_errors
import tornado.web
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from tenacity import AsyncRetrying, retry_if_exception, wait_exponential_jitter

from healthcheck import describe_error
from renderer import contract, logs
from renderer.backends import redis_pages
from renderer.http_session import LazySession
from renderer.purge import Purge
from renderer.purge_log import (
    HORIZON_KEY,
    LOG_KEY,
    NODES_KEY,
    NodeState,
    PurgeEvent,
    PurgeLog,
    Timed,
    id_key,
    id_ms,
    node_group,
)
from renderer.resilience import Deadline
from renderer.settings import Settings

log = logging.getLogger("pagecache.purge_agent")

HEARTBEAT_SECONDS = 1.0
PRUNE_EVERY = 60.0  # or the log's retention, if shorter
READ_BLOCK_MS = 1000


class VarnishRefused(Exception):
    """The node answered a purge with something other than 200."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _transient(exc: BaseException) -> bool:
    if isinstance(exc, VarnishRefused):
        return exc.status >= 500
    return isinstance(exc, (aiohttp.ClientError, OSError, TimeoutError))


class AgentMetrics:
    """What the agent exports on ``/metrics``, labelled by node."""

    def __init__(self, node: str) -> None:
        self.registry = CollectorRegistry()
        labels = ["node"]
        self.lag_events = Gauge(
            "pagecache_purge_node_lag_events",
            "events in the log this node has not applied",
            labels,
            registry=self.registry,
        )
        self.lag_seconds = Gauge(
            "pagecache_purge_node_lag_seconds",
            "age of the oldest event this node has not applied (0: caught up)",
            labels,
            registry=self.registry,
        )
        self.applied = Counter(
            "pagecache_purge_node_events_applied", "events applied to this node", labels, registry=self.registry
        )
        self.full_bans = Counter(
            "pagecache_purge_node_full_bans",
            "times this node banned everything (it joined without a cursor, or fell off the log's retention)",
            labels,
            registry=self.registry,
        )
        self.ready = Gauge(
            "pagecache_purge_node_ready", "1 when this node may serve readers", labels, registry=self.registry
        )
        for metric in (self.lag_events, self.lag_seconds, self.applied, self.full_bans, self.ready):
            metric.labels(node)
        self.node = node


class Agent:
    """One node's agent: the log's reader, the node's purger and its readiness."""

    def __init__(self, settings: Settings, client: Any) -> None:
        host = socket.gethostname()
        self.node = settings.purge_agent_node or host
        self.url = settings.purge_agent_url or f"http://{host}:{settings.purge_agent_port}"
        self.varnish = settings.purge_agent_varnish_url.rstrip("/")
        self.client = client
        self.log = PurgeLog(
            client, Timed(settings.redis_timeout), settings.purge_max_age, settings.purge_node_dead_after
        )
        self.group = node_group(self.node)
        self.timeout = settings.purge_timeout
        self.redis_timeout = settings.redis_timeout
        self.unready_after = settings.purge_node_unready_after
        self.late_after = settings.publish_deadline
        self.metrics = AgentMetrics(self.node)
        self.applied = "0-0"
        self.joined = False  # caught up with what the log held when we (re)joined
        self.resync = False  # a call failed since: read our pending events and what came meanwhile
        # Monotonic time of the last answer from the log. A node that has not read the log yet is
        # unready for the bound after its start, then serves if nobody else can read it either.
        self.started = time.monotonic()
        self.last_contact: float | None = None
        self.last_failure = 0.0  # monotonic time of the last call that got no answer
        self.lag_events = 0
        self.lag_seconds = 0.0
        self.peers: dict[str, str] = {}  # the other nodes' agent URLs, as the log last said
        self.pruned_at = time.monotonic()
        self._session = LazySession(self.timeout)

    # -- the log ---------------------------------------------------------------------------------

    async def _call(self, func: Any, *args: Any, seconds: float | None = None) -> Any:
        try:
            async with asyncio.timeout(seconds or self.redis_timeout):
                result = await func(*args)
        except redis_errors.ResponseError:
            self.last_contact = time.monotonic()  # an answer, if not the one hoped for
            raise
        except Exception:
            self.last_failure = time.monotonic()
            raise
        self.last_contact = time.monotonic()
        return result

    async def _last_id(self) -> str:
        newest = await self._call(self.client.xrevrange, LOG_KEY, "+", "-", 1)
        return _text(newest[0][0]) if newest else "0-0"

    async def _reset(self, reason: str) -> None:
        """Start reading at the log's end, then ban everything: whatever the node holds may be
        older than an event we will never see. The ban comes after the cursor moves, so an event
        appended in between is read too."""
        last = await self._last_id()
        try:
            await self._call(self.client.xgroup_create, LOG_KEY, self.group, last, True)
        except redis_errors.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
            await self._call(self.client.xgroup_setid, LOG_KEY, self.group, last)
        log.warning("node %s bans everything before turning ready: %s", self.node, reason)
        await self._to_varnish("BAN", "/", {"X-Ban-Url": "."})
        self.metrics.full_bans.labels(self.node).inc()
        self.applied = last
        await self._applied(last)

    async def _group_cursor(self) -> str | None:
        try:
            groups = await self._call(self.client.xinfo_groups, LOG_KEY)
        except redis_errors.ResponseError:
            return None  # no stream
        for group in groups:
            if _text(group["name"]) == self.group:
                return _text(group["last-delivered-id"])
        return None

    async def join(self) -> None:
        """Catch up with the log, learn the peers, then count as joined (ready, if not behind).
        Knowing its peers, a node cut off later can ask them whether the log is down for all."""
        await self._catch_up()
        await self._learn_peers()
        self.joined, self.resync = True, False

    async def _catch_up(self) -> None:
        """Resume from this node's cursor; or, without one or behind the log's retention, reset."""
        cursor = await self._group_cursor()
        if cursor is None:
            await self._reset("no cursor in the log (a new node, or the log was lost)")
            return
        horizon = await self._call(self.client.get, HORIZON_KEY)
        if horizon is not None and id_key(horizon) > id_key(cursor):
            await self._reset(f"its cursor {cursor} fell off the log's retention (trimmed up to {_text(horizon)})")
            return
        # Events read before a crash and never acknowledged come first.
        pending = await self._call(self.client.xreadgroup, self.group, self.node, {LOG_KEY: "0"}, 10_000)
        for _, entries in pending or []:
            for event_id, values in entries:
                if not values:  # trimmed while pending
                    await self._reset("an unacknowledged event was trimmed")
                    return
                await self.apply(_text(event_id), PurgeEvent.from_fields(values))
        self.applied = max(self.applied, cursor, key=id_key)
        # Then everything appended while we were away: ready only once caught up.
        while answer := await self._call(self.client.xreadgroup, self.group, self.node, {LOG_KEY: ">"}, 1000):
            for _, entries in answer:
                for event_id, values in entries:
                    await self.apply(_text(event_id), PurgeEvent.from_fields(values))

    async def consume(self) -> None:
        """Read and apply events until cancelled; rejoin after any trouble with the log."""
        while True:
            try:
                if not self.joined or self.resync:
                    await self.join()
                answer = await self._call(
                    self.client.xreadgroup,
                    self.group,
                    self.node,
                    {LOG_KEY: ">"},
                    100,
                    READ_BLOCK_MS,
                    seconds=READ_BLOCK_MS / 1000 + self.redis_timeout,
                )
                for _, entries in answer or []:
                    for event_id, values in entries:
                        await self.apply(_text(event_id), PurgeEvent.from_fields(values))
            except asyncio.CancelledError:
                raise
            except redis_errors.ResponseError as exc:
                log.warning("purge log: %s; rejoining", exc)  # NOGROUP: the log was lost
                self.joined = False
                await asyncio.sleep(0.1)
            except Exception as exc:
                # Rejoin once it answers: Redis may have handed us events whose reply never came
                # (they wait in our pending list, which '>' never reads again), and until we have
                # read what was appended meanwhile we are behind (the lag we last measured is old).
                # Still joined meanwhile: a log down for everyone must not make us unready.
                log.info("purge log unreachable: %s", describe_error(exc))
                self.resync = True
                await asyncio.sleep(0.2)

    async def apply(self, event_id: str, event: PurgeEvent) -> None:
        """Purge the node (retrying until it takes it: events apply in order), refresh what was
        soft-purged, acknowledge."""
        if not event.cdn_only:
            for part in event.purge.split():
                headers = part.headers()
                if event.request_id:
                    headers["X-Request-Id"] = event.request_id
                await self._to_varnish("PURGE", "/", headers)
            # Whether or not a CDN comes after us: a soft-purged listing (a front, a feed) would
            # otherwise be served once more by this node while it refetches.
            await self._refresh(event.purge)
        if event.cdn and not event.cdn_only and time.time() - id_ms(event_id) > self.late_after:
            # Its publisher stopped waiting for us and the CDN was purged meanwhile: the CDN may
            # have refetched our old copy since. Once more, for the CDN alone.
            rebound = PurgeEvent(event.purge, event.slug, event.version, event.request_id, cdn=True, cdn_only=True)
            await self.log.append(Deadline.after(self.redis_timeout * 4), rebound)
        await self._call(self.client.xack, LOG_KEY, self.group, event_id)
        self.metrics.applied.labels(self.node).inc()
        await self._applied(event_id)

    async def _applied(self, event_id: str) -> None:
        self.applied = max(self.applied, event_id, key=id_key)
        await self._call(self.log.acked, self.node, self.applied, self.state())

    # -- the node --------------------------------------------------------------------------------

    async def _to_varnish(self, method: str, path: str, headers: dict[str, str]) -> None:
        """One admin request, retried until the node takes it (a node that refuses for good is
        logged and skipped: a 4xx would never change)."""
        retrying = AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=0.05, max=2.0, jitter=0.05),
            retry=retry_if_exception(_transient),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with self._session().request(method, self.varnish + path, headers=headers) as resp:
                        await resp.read()
                        if resp.status != 200:
                            raise VarnishRefused(resp.status)
        except VarnishRefused as exc:
            log.error("node %s refused %s %s: %s", self.node, method, headers, exc)

    async def _refresh(self, purge: Purge) -> None:
        """Fetch the new copy of every page a soft-purged key names (the VCL's REFRESH), so neither
        a reader nor the CDN, purged after us, gets the old one from this node."""
        paths = [path for key in purge.soft for path in contract.public_paths_of_key(key)]

        async def one(path: str) -> None:
            try:
                async with self._session().request("REFRESH", self.varnish + path) as resp:
                    await resp.read()
            except Exception as exc:
                log.info("refresh of %s failed: %s", path, describe_error(exc))

        await asyncio.gather(*(one(path) for path in paths))

    # -- readiness -------------------------------------------------------------------------------

    def log_reachable(self) -> bool:
        """Whether the log answered within the unready bound."""
        return self.last_contact is not None and time.monotonic() - self.last_contact <= self.unready_after

    def log_answering(self) -> bool:
        """Whether the log answers now: our latest call got an answer, lately (what peers ask: a
        node that lost the log a moment ago must not tell a peer it reaches it)."""
        return self.log_reachable() and (self.last_contact or 0.0) > self.last_failure

    async def _peers_reach_log(self) -> tuple[int, int]:
        """(peers that answered, of which reach the log)."""

        async def ask(url: str) -> bool | None:
            try:
                async with self._session().get(url + "/log", timeout=aiohttp.ClientTimeout(total=0.5)) as resp:
                    return bool((await resp.json()).get("reachable"))
            except Exception:
                return None

        answers = [a for a in await asyncio.gather(*(ask(url) for url in self.peers.values())) if a is not None]
        return len(answers), sum(answers)

    async def readiness(self) -> tuple[bool, str]:
        """Whether this node may serve readers, and why."""
        if self.last_contact is None and time.monotonic() - self.started <= self.unready_after:
            return False, "has not read the purge log yet"
        if self.log_reachable():
            # Answering again after a failure, we are behind until we have read what we missed;
            # not answering (for less than the bound), we serve as we did.
            if not self.joined or (self.resync and self.log_answering()):
                return False, "catching up with the purge log"
            if self.lag_seconds > self.unready_after:
                return False, f"{self.lag_events} events behind, the oldest {self.lag_seconds:.1f} s old"
            return True, "caught up with the purge log"
        if not self.peers:
            return True, "the purge log is unreachable and no peer is known: serving what it has"
        answered, reach = await self._peers_reach_log()
        if reach:
            return False, f"cut off from the purge log, which {reach} of {len(self.peers)} peers reach"
        if not answered:
            return False, "cut off from the purge log and from every peer"
        return True, "the purge log is unreachable for every peer too: serving what it has"

    def state(self) -> NodeState:
        """What the node says about itself in the log."""
        return NodeState(
            applied=self.applied,
            seen=time.time(),
            ready=self.joined and self.lag_seconds <= self.unready_after,
            url=self.url,
            lag_events=self.lag_events,
            lag_seconds=round(self.lag_seconds, 3),
        )

    async def heartbeat(self) -> None:
        """Every second: measure the lag, say we are alive, learn the peers."""
        while True:
            try:
                await self._beat()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.debug("heartbeat failed: %s", describe_error(exc))
            ready, _ = await self.readiness()
            self.metrics.ready.labels(self.node).set(1 if ready else 0)
            if time.monotonic() - self.pruned_at >= min(PRUNE_EVERY, self.log.retention):
                await self._prune()
            await asyncio.sleep(HEARTBEAT_SECONDS)

    async def _prune(self) -> None:
        self.pruned_at = time.monotonic()
        try:
            removed = await self.log.prune(Deadline.after(self.redis_timeout * 10))
        except Exception as exc:
            log.info("pruning the log's departed failed: %s", describe_error(exc))
            return
        if removed:
            log.info("the log forgot who left the fleet: %s", ", ".join(removed))

    async def _beat(self) -> None:
        behind = await self._call(self.client.xrange, LOG_KEY, "(" + self.applied, "+", 1000)
        self.lag_events = len(behind)
        self.lag_seconds = max(0.0, time.time() - id_ms(_text(behind[0][0]))) if behind else 0.0
        self.metrics.lag_events.labels(self.node).set(self.lag_events)
        self.metrics.lag_seconds.labels(self.node).set(self.lag_seconds)
        await self._call(self.client.hset, NODES_KEY, self.node, self.state().to_json())
        await self._learn_peers()

    async def _learn_peers(self) -> None:
        nodes = await self._call(self.client.hgetall, NODES_KEY)
        now = time.time()
        self.peers = {
            _text(name): state.url
            for name, raw in nodes.items()
            if _text(name) != self.node
            and (state := NodeState.from_json(raw)).url
            and state.live(now, self.log.dead_after)  # a dead peer could not tell us anything
        }

    async def leave(self) -> None:
        """A node that stops leaves the fleet: publishes stop waiting for it at once."""
        for attempt in range(3):  # patient: a node that fails to leave is waited for until it is dead
            try:
                await self._call(self.client.hdel, NODES_KEY, self.node, seconds=1.0)
                break
            except Exception as exc:
                log.warning("could not leave the fleet (attempt %d): %s", attempt + 1, describe_error(exc))
        await self._session.close()


class _Handler(tornado.web.RequestHandler):
    def initialize(self, agent: Agent) -> None:
        self.agent = agent

    def _json(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body))


class ReadyHandler(_Handler):
    async def get(self) -> None:
        ready, why = await self.agent.readiness()
        agent = self.agent
        self._json(
            200 if ready else 503,
            {"node": agent.node, "ready": ready, "why": why, "applied": agent.applied, "lag_events": agent.lag_events,
             "lag_seconds": round(agent.lag_seconds, 3)},
        )  # fmt: skip


class LiveHandler(_Handler):
    def get(self) -> None:
        self._json(200, {"node": self.agent.node, "live": True})


class LogHandler(_Handler):
    def get(self) -> None:
        self._json(200, {"node": self.agent.node, "reachable": self.agent.log_answering()})


class MetricsHandler(_Handler):
    def get(self) -> None:
        self.set_header("Content-Type", "text/plain; version=0.0.4")
        self.finish(generate_latest(self.agent.metrics.registry))


def make_app(agent: Agent) -> tornado.web.Application:
    """The agent's HTTP listener."""
    args = {"agent": agent}
    return tornado.web.Application(
        [(r"/ready", ReadyHandler, args), (r"/live", LiveHandler, args), (r"/log", LogHandler, args),
         (r"/metrics", MetricsHandler, args)],
        log_function=lambda handler: None,
    )  # fmt: skip


async def serve(settings: Settings) -> None:
    """Run the agent until SIGTERM or SIGINT."""
    client = redis_pages.connect(settings.redis_url, max(settings.redis_timeout, READ_BLOCK_MS / 1000 + 1))
    agent = Agent(settings, client)
    server = make_app(agent).listen(settings.purge_agent_port, address=settings.address)
    tasks = [asyncio.create_task(agent.consume()), asyncio.create_task(agent.heartbeat())]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    log.info("purge agent of node %s on :%d, purging %s", agent.node, settings.purge_agent_port, agent.varnish)
    await stop.wait()
    server.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await agent.leave()
    await client.aclose()


def main() -> None:
    """``pagecache-purge-agent``: settings from the environment (see the README)."""
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    asyncio.run(serve(settings))


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


if __name__ == "__main__":
    main()
