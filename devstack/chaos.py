"""``scripts/chaos``: outages of the running stack's real processes, under steady reader traffic.

Each scenario sends an open-loop stream of requests through Varnish (the sample articles, the home
page and a few never-cached slugs), hurts one server (kill, SIGSTOP), heals it, and records what
every reader got. It prints a table and draws a timeline of status codes and tiers per second.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from pymongo import MongoClient

from devstack import probes, servers
from devstack.fleet import start_fleet
from devstack.probes import metric, tier_names, unnamed_tier
from devstack.samples import forget_listings, load_samples, outdate_listings, sample_articles
from devstack.stack import CURRENT_STACK, Ports, Stack, start_stack
from devstack.workload import SECTIONS, Zipf, insert_articles, warm
from renderer import contract

TIER_COLOURS = {
    "varnish": "#2b8cbe",
    "varnish-stale": "#7bccc4",
    "redis": "#41ab5d",
    "mongo": "#fd8d3c",
    "stale": "#fdd49e",
    "404": "#bdbdbd",
    "5xx": "#e31a1c",
}


@dataclass(frozen=True)
class Scenario:
    """Traffic for ``before`` seconds, then ``hurt``, ``during`` seconds, ``heal``, ``after`` seconds."""

    name: str
    server: str
    # kill | freeze | kill-stale-only | kill-worker | kill-redis-slow-mongodb | kill-primary | cold-fronts
    # | cut-host | kill-host | slow-host (``server`` names a host then)
    hurt: str
    before: float
    during: float
    after: float
    sentinel: bool = False  # runs on a stack of its own whose Redis is behind Sentinel
    # Runs on a fleet of its own: Varnish hosts in network namespaces behind HAProxy, which sends
    # readers to the hosts whose purge agent says ready.
    hosts: bool = False
    # Articles added for this scenario alone (written behind the publisher's back, then each front
    # read once, as a publish would leave them); half of its readers ask for a section front.
    fronts_of: int = 0


SLOW_LINK_MS = 300  # what "slow-host" adds to every round trip over the host's back link
SCENARIOS = [
    Scenario("FerretDB killed", "ferretdb", "kill", 3, 12, 10),
    Scenario("FerretDB killed, Redis holding only stale copies", "ferretdb", "kill-stale-only", 3, 10, 8),
    Scenario("Redis frozen (SIGSTOP)", "redis", "freeze", 3, 8, 8),
    Scenario("a renderer worker crashes (SIGKILL)", "renderer", "kill-worker", 3, 6, 4),
    Scenario("every renderer killed", "renderer", "kill", 3, 8, 6),
    # Losing Redis sends every renderer miss to MongoDB; at production scale that is ~10x its load,
    # emulated by a database that runs 15 ms of every 100 ms.
    Scenario("Redis killed, MongoDB at ~15 % capacity", "redis", "kill-redis-slow-mongodb", 3, 30, 8),
    # Issue 26: every cached copy of the fronts dropped (Redis and Varnish) while MongoDB runs at
    # ~15 %, with 2,000 articles, whose listing query the stand-in answers by a full scan (0.4 s).
    Scenario("cold fronts behind a slow database", "ferretdb", "cold-fronts", 3, 12, 6, fronts_of=2000),
    Scenario("Redis primary killed, Sentinel fails over", "redis", "kill-primary", 6, 12, 8, sentinel=True),
    # Issue 33: a Varnish host cut off from the renderers and the purge log (its back link down;
    # readers still reach it), then one that loses every process at once.
    Scenario("a Varnish host cut off behind HAProxy", "edge-3", "cut-host", 3, 10, 5, hosts=True),
    Scenario("a Varnish host killed behind HAProxy", "edge-3", "kill-host", 3, 6, 5, hosts=True),
    Scenario("a Varnish host's back link 300 ms slower", "edge-3", "slow-host", 3, 6, 4, hosts=True),
]

_duty_cycles: dict[str, threading.Event] = {}


def duty_cycle(pid: int, stop: threading.Event, frozen: float = 0.085, period: float = 0.1) -> None:
    """SIGSTOP ``pid`` for ``frozen`` s of every ``period`` until ``stop``: a server at a fraction
    of its capacity (slow, not dead)."""
    try:
        while not stop.is_set():
            os.kill(pid, signal.SIGSTOP)
            time.sleep(frozen)
            os.kill(pid, signal.SIGCONT)
            time.sleep(period - frozen)
    finally:
        os.kill(pid, signal.SIGCONT)


def slow_down(server: servers.Server, capacity: float) -> None:
    """Start a duty cycle on ``server`` that leaves it ``capacity`` of its time (``speed_up`` ends it)."""
    stop = _duty_cycles[server.name] = threading.Event()
    frozen = 0.1 * (1 - capacity)
    threading.Thread(target=duty_cycle, args=(server.pid or 0, stop, frozen), daemon=True).start()


def speed_up(server: servers.Server) -> None:
    """End ``slow_down``'s duty cycle."""
    stop = _duty_cycles.pop(server.name, None)
    if stop is not None:
        stop.set()
        time.sleep(0.2)


def drop_fresh_copies(stack: Stack) -> None:
    """Leave only stale copies: every page's record in Redis past its freshness, every Varnish object gone."""
    import redis

    client = redis.Redis.from_url(stack.env["REDIS_URL"])
    with client:
        ids = [key.decode().removeprefix(contract.PAGE_KEY_PREFIX) for key in client.scan_iter("page:*", count=1000)]
        probes.expire_records(client, *ids)
    ban_everything(stack)


def ban_everything(stack: Stack) -> None:
    """Every object in every Varnish node gone."""
    for admin in stack.admin_urls:
        ban = urllib.request.Request(admin + "/", method="BAN", headers={"X-Ban-Url": "."})
        urllib.request.urlopen(ban, timeout=5).close()


def redis_primary(stack: Stack) -> servers.Server:
    """The Redis server that is the primary now (Sentinel may have promoted the replica)."""
    import redis

    for name in ("redis", "redis-replica"):
        server = stack.started[name]
        try:
            with redis.Redis(port=server.port, socket_timeout=1) as client:
                if client.info("replication")["role"] == "master":
                    return server
        except redis.RedisError:
            continue
    raise SystemExit("no Redis primary in the Sentinel group")


def hurt(stack: Stack, scenario: Scenario, mongodb_capacity: float = 0.15) -> None:
    """Do the scenario's damage to real processes (``mongodb_capacity``: what a slowed FerretDB keeps)."""
    if scenario.hurt == "cut-host":
        stack.hosts[scenario.server].cut()
        return
    if scenario.hurt == "kill-host":
        stack.hosts[scenario.server].kill()
        return
    if scenario.hurt == "slow-host":
        assert stack.links is not None
        stack.links.slow(scenario.server, SLOW_LINK_MS)
        return
    server = stack.started[scenario.server]
    if scenario.hurt == "kill-primary":
        redis_primary(stack).kill()
    elif scenario.hurt == "freeze":
        server.freeze()
    elif scenario.hurt == "kill-redis-slow-mongodb":
        server.kill()
        slow_down(stack.started["ferretdb"], mongodb_capacity)
    elif scenario.hurt == "cold-fronts":
        slow_down(server, mongodb_capacity)
        forget_listings(stack.env["REDIS_URL"])  # no copy of any listing, fresh or stale, in Redis
        ban_everything(stack)
    elif scenario.hurt == "kill-worker":
        workers = servers.child_pids(server.pid or 0)
        if not workers:
            raise SystemExit("the renderer runs a single process (PROCESSES=1): no worker to crash")
        os.kill(min(workers), signal.SIGKILL)
    else:
        server.kill()
        if scenario.hurt == "kill-stale-only":
            drop_fresh_copies(stack)


def heal(stack: Stack, scenario: Scenario) -> None:
    """Undo the damage (a crashed worker is replaced by the renderer's own supervisor)."""
    if scenario.hurt == "cut-host":
        stack.hosts[scenario.server].mend()
        return
    if scenario.hurt == "slow-host":
        assert stack.links is not None
        stack.links.restore(scenario.server)
        return
    if scenario.hurt == "kill-host":
        stack.hosts[scenario.server].boot()
        for kind in ("varnish", "agent"):  # the host's servers come back (its agent rejoins)
            stack.started[f"{kind}-{scenario.server}"].start()
        return
    server = stack.started[scenario.server]
    if scenario.hurt == "kill-primary":
        for name in ("redis", "redis-replica"):  # back as a replica: Sentinel reconfigures it
            if not stack.started[name].running:
                stack.started[name].start()
    elif scenario.hurt == "freeze":
        server.thaw()
    elif scenario.hurt == "kill-redis-slow-mongodb":
        speed_up(stack.started["ferretdb"])
        server.start()
    elif scenario.hurt == "cold-fronts":
        speed_up(server)
    elif scenario.hurt in ("kill", "kill-stale-only"):
        server.start()


@dataclass
class Outcome:
    """What the readers got during one scenario."""

    scenario: Scenario
    samples: list[tuple[float, int, str, bool]] = field(default_factory=list)  # (second, status, tier, cold)
    latencies: list[float] = field(default_factory=list)  # seconds, every answer
    mongodb_reads: float = 0.0
    mongodb_reads_per_second: tuple[float, float] = (0.0, 0.0)  # before the fault, during it

    def errors_share(self) -> float:
        """The share of answers that were 5xx or no answer at all."""
        return sum(1 for _, status, _, _ in self.samples if status >= 500 or status == 0) / max(1, len(self.samples))

    def statuses(self) -> Counter[int]:
        return Counter(status for _, status, _, _ in self.samples)

    def name_tiers(self, renderer_log: Path) -> None:
        """Name the tier of every miss from the renderer's access log (readers are not told)."""
        name = tier_names(renderer_log)
        self.samples = [(sent, status, name(tier), cold) for sent, status, tier, cold in self.samples]

    def tiers(self) -> Counter[str]:
        return Counter(tier for _, _, tier, _ in self.samples)

    def warm_failures(self) -> tuple[int, int]:
        """(non-200 answers, requests) for pages readers had already read: the ones that must not fail."""
        warm = [status for _, status, _, cold in self.samples if not cold]
        return sum(1 for status in warm if status != 200), len(warm)


def tier_of(status: int, headers: Mapping[str, str]) -> str:
    """Which tier answered a reader, from the response headers; a miss is named by its request id
    (``unnamed_tier``) until ``Outcome.name_tiers`` reads the renderer's log."""
    if status >= 500 or status == 0:
        return "5xx"
    if status == 404:
        return "404"
    cache = headers.get("X-Cache", "")
    if cache == "HIT":
        return "varnish"
    if cache == "HIT-STALE":
        return "varnish-stale"
    return unnamed_tier(headers.get("X-Request-Id", ""))


class MongoReads:
    """Sums the renderer's MongoDB read counter across scrapes, surviving a renderer restart."""

    def __init__(self, renderer_url: str) -> None:
        self.url = renderer_url
        self.total = 0.0
        self.last = self._scrape() or 0.0

    def _scrape(self) -> float | None:
        try:
            return metric(self.url, "pagecache_mongodb_reads_total", timeout=2)
        except OSError:
            return None  # the renderer is down (this scenario may have killed it)

    def checkpoint(self) -> float:
        """Reads since the last checkpoint (0 while the renderer is down)."""
        now = self._scrape()
        if now is None:
            return 0.0
        since = now - self.last if now >= self.last else now
        self.total += since
        self.last = now
        return since


def reader_paths() -> list[str]:
    """The pages readers ask for: every sample article and the home page."""
    return [f"/noticia/{a['slug']}.ghtml" for a in sample_articles()] + ["/"]


@dataclass
class Workload:
    """What readers ask for: ``paths`` uniformly, or ranked with a Zipf law (``zipf``); a
    ``fronts_share`` of them one of ``fronts``."""

    paths: list[str]
    zipf: Any = None
    fronts: list[str] = field(default_factory=list)
    fronts_share: float = 0.0

    def draw(self) -> str:
        if self.fronts and random.random() < self.fronts_share:
            return random.choice(self.fronts)
        if self.zipf is not None:
            return self.paths[self.zipf.draw()]
        return random.choice(self.paths)


def catalogue(stack: Stack, articles: int) -> tuple[Workload, set[str], list[str]]:
    """``articles`` more articles, read with a Zipf law (s = 1.2); the top half is read once now
    (pages readers know), the tail never was (cold reads during the outage). Also their slugs,
    for ``remove_catalogue``."""
    slugs = insert_articles(stack, f"caos-{random.randrange(10**6)}", articles)
    asyncio.run(warm(stack.site_url, slugs[: articles // 2], concurrency=8))
    read = {f"/noticia/{slug}.ghtml" for slug in slugs[: articles // 2]}
    return Workload([f"/noticia/{slug}.ghtml" for slug in slugs], Zipf(len(slugs), 1.2)), read, slugs


def remove_catalogue(stack: Stack, slugs: list[str]) -> None:
    """Delete ``catalogue``'s articles, so that runs don't grow the database they measure."""
    with MongoClient(stack.env["MONGODB_URL"]) as client:
        client[stack.env["MONGODB_DB"]][contract.ARTICLES_COLLECTION].delete_many({"_id": {"$in": slugs}})
        outdate_listings(client[stack.env["MONGODB_DB"]])


@contextmanager
def fronts_of_a_catalogue(stack: Stack, articles: int, workload: Workload, read: set[str]) -> Iterator[Workload]:
    """``articles`` more articles across the bench's sections, the home and each front read once
    (which leaves their listings stored, as the publisher would), and ``workload`` with half its readers on the
    fronts; the articles are removed afterwards."""
    slugs = insert_articles(stack, f"caos-frente-{random.randrange(10**6)}", articles)
    try:
        fronts = [f"/{section}/" for section in SECTIONS]
        # Rendered anew, as a publish would: no cached copy (Redis, Varnish) may answer for them,
        # so each read stores its listing. The home lists the new articles too.
        forget_listings(stack.env["REDIS_URL"])
        read |= read_once(stack.renderer_url, ["/", *fronts])
        yield Workload(workload.paths, workload.zipf, fronts, fronts_share=0.5)
    finally:
        remove_catalogue(stack, slugs)


def read_once(site: str, paths: list[str]) -> set[str]:
    """Read every page once before any outage, as readers would have; the pages that answered 200."""
    read = set()
    for path in paths:
        try:
            with urllib.request.urlopen(site + path, timeout=5) as resp:
                if resp.status == 200:
                    read.add(path)
        except Exception:
            pass
    return read


async def reader_traffic(
    site: str, seconds: float, rate: float, outcome: Outcome, start: float, read: set[str], workload: Workload
) -> None:
    """Open-loop load: a request every 1/rate s whatever the answers, each with a 5 s timeout.

    ``read`` holds the pages that have answered 200 before: only those count as already read.
    """
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:

        async def one(path: str) -> None:
            sent = time.monotonic() - start
            cold = path not in read
            try:
                async with session.get(site + path) as resp:
                    await resp.read()
                    outcome.samples.append((sent, resp.status, tier_of(resp.status, resp.headers), cold))
                    if resp.status == 200:
                        read.add(path)
            except Exception:
                outcome.samples.append((sent, 0, "5xx", cold))
            outcome.latencies.append(time.monotonic() - start - sent)

        tasks = []
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            never_read = random.random() < 0.05
            path = f"/noticia/nunca-vista-{random.randrange(10**9)}.ghtml" if never_read else workload.draw()
            tasks.append(asyncio.ensure_future(one(path)))
            await asyncio.sleep(1 / rate)
        await asyncio.gather(*tasks)


async def run_scenario(
    stack: Stack,
    scenario: Scenario,
    rate: float,
    scale: float,
    read: set[str],
    workload: Workload,
    mongodb_capacity: float = 0.15,
) -> Outcome:
    """Traffic throughout; hurt and heal the server in a thread so that traffic never pauses."""
    outcome = Outcome(scenario)
    reads = MongoReads(stack.renderer_url)
    start = time.monotonic()
    total = (scenario.before + scenario.during + scenario.after) * scale
    traffic = asyncio.ensure_future(reader_traffic(stack.site_url, total, rate, outcome, start, read, workload))
    await asyncio.sleep(scenario.before * scale)
    before = reads.checkpoint() / (scenario.before * scale)
    await asyncio.to_thread(hurt, stack, scenario, mongodb_capacity)
    await asyncio.sleep(scenario.during * scale)
    outcome.mongodb_reads_per_second = (before, reads.checkpoint() / (scenario.during * scale))
    await asyncio.to_thread(heal, stack, scenario)
    stack.save_state()  # a restarted server has a new pid: scripts/run must stop that one
    await traffic
    reads.checkpoint()
    outcome.mongodb_reads = reads.total
    await asyncio.sleep(0.5)  # the last answers' log lines
    outcome.name_tiers(stack.started["renderer"].log_path)
    return outcome


def run_scenarios(
    stack: Stack, scenarios: list[Scenario], rate: float, scale: float, articles: int, mongodb_capacity: float
) -> list[Outcome]:
    """``scenarios`` one after another on ``stack``, read by the sample workload or, with
    ``articles``, by a Zipf catalogue of that many articles (removed afterwards)."""
    added: list[str] = []
    if articles:
        workload, read, added = catalogue(stack, articles)
    else:
        workload, read = Workload(reader_paths()), read_once(stack.site_url, reader_paths())
    outcomes = []
    try:
        for scenario in scenarios:
            print(f"… {scenario.name}", file=sys.stderr, flush=True)
            if scenario.fronts_of:
                with fronts_of_a_catalogue(stack, scenario.fronts_of, workload, read) as with_fronts:
                    run = run_scenario(stack, scenario, rate, scale, read, with_fronts, mongodb_capacity)
                    outcomes.append(asyncio.run(run))
            else:
                run = run_scenario(stack, scenario, rate, scale, read, workload, mongodb_capacity)
                outcomes.append(asyncio.run(run))
    finally:
        if added:
            remove_catalogue(stack, added)
    return outcomes


@contextmanager
def stack_with_sentinel(beside: Stack) -> Iterator[Stack]:
    """A stack of its own, in ``beside``'s run directory, whose Redis is a primary, a replica and
    three sentinels; the sample articles loaded."""
    run_dir = Path(tempfile.mkdtemp(prefix="sentinel-stack-", dir=beside.run_dir))
    own = start_stack(run_dir, Ports.free(), environ={}, redis_sentinel=True)
    try:
        load_samples(own.env["MONGODB_URL"], own.env["MONGODB_DB"], own.env["REDIS_URL"])
        yield own
    finally:
        own.stop()


@contextmanager
def fleet_of_hosts(beside: Stack) -> Iterator[Stack]:
    """A fleet of its own, in ``beside``'s run directory: three Varnish hosts behind HAProxy; the
    sample articles loaded."""
    run_dir = Path(tempfile.mkdtemp(prefix="fleet-", dir=beside.run_dir))
    fleet = start_fleet(run_dir, 3, environ={}, load_balancer=True, slow_links=True)
    try:
        load_samples(fleet.stack.env["MONGODB_URL"], fleet.stack.env["MONGODB_DB"], fleet.stack.env["REDIS_URL"])
        yield fleet.stack
    finally:
        fleet.stop()


def table(outcomes: list[Outcome]) -> str:
    """A plain-text table a person can read."""
    rows = [
        (
            "scenario",
            "requests",
            "status codes",
            "tiers served",
            "MongoDB reads",
            "reads/s before, during",
            "read pages not 200",
            "5xx share",
            "max latency",
        )
    ]
    for o in outcomes:
        statuses = ", ".join(f"{code or 'error'}: {n}" for code, n in sorted(o.statuses().items()))
        tiers = ", ".join(f"{tier} {n}" for tier, n in o.tiers().most_common())
        failed, warm = o.warm_failures()
        rows.append(
            (
                o.scenario.name,
                str(len(o.samples)),
                statuses,
                tiers,
                f"{o.mongodb_reads:.0f}",
                "{:.0f}, {:.0f}".format(*o.mongodb_reads_per_second),
                f"{failed} of {warm}",
                f"{100 * o.errors_share():.2f} %",
                f"{max(o.latencies, default=0):.2f} s",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def draw(outcomes: list[Outcome], scale: float, path: Path) -> None:
    """Per scenario: requests per second stacked by tier (5xx in red), the outage shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(outcomes), 1, figsize=(11, 3.2 * len(outcomes)), squeeze=False)
    for ax, o in zip(axes[:, 0], outcomes, strict=True):
        s = o.scenario
        seconds = int((s.before + s.during + s.after) * scale) + 1
        bottoms = [0] * seconds
        for tier, colour in TIER_COLOURS.items():
            counts = [0] * seconds
            for t, _, got, _ in o.samples:
                if got == tier and int(t) < seconds:
                    counts[int(t)] += 1
            if any(counts):
                ax.bar(range(seconds), counts, bottom=bottoms, color=colour, label=tier, width=0.9, align="edge")
                bottoms = [b + c for b, c in zip(bottoms, counts, strict=True)]
        hurt, heal = s.before * scale, (s.before + s.during) * scale
        ax.axvspan(hurt, heal, color="#e31a1c", alpha=0.12, zorder=3)
        for x in (hurt, heal):
            ax.axvline(x, color="#a50f15", linestyle="--", linewidth=1, zorder=4)
        ax.text(hurt + 0.1, max(bottoms or [1]) * 1.02, f"{s.server} {s.hurt}", color="#a50f15")
        ax.text(heal + 0.1, max(bottoms or [1]) * 1.02, "healed", color="#a50f15")
        ax.set_ylim(0, max(bottoms or [1]) * 1.15)
        failed, warm = o.warm_failures()
        ax.set_title(
            f"{s.name}: {len(o.samples)} requests, already-read pages not 200: {failed} of {warm}, "
            f"MongoDB reads {o.mongodb_reads:.0f}"
        )
        ax.set_xlabel("seconds")
        ax.set_ylabel("requests / s")
        ax.legend(loc="lower right", fontsize=8, ncol=4)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def find_stack(state: str | None) -> Stack:
    """The stack scripts/run started (its state file), or the one named by --state."""
    path = Path(state) if state else Path(CURRENT_STACK.read_text().strip()) if CURRENT_STACK.exists() else None
    if path is None or not path.exists():
        raise SystemExit("no running stack found: start it with scripts/run (or pass --state FILE)")
    stack = Stack.load_state(path)
    missing = [name for name in ("redis", "ferretdb", "renderer", "varnish") if name not in stack.started]
    if missing:
        raise SystemExit(f"scripts/chaos hurts servers the stack started itself; not started here: {missing}")
    if not all(server.running for server in stack.started.values()):
        raise SystemExit(f"the stack in {path} is not running: start it with scripts/run")
    return stack


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--state", help="stack.json of the stack to hurt (default: the one scripts/run started)")
    parser.add_argument("--rate", type=float, default=40, help="reader requests per second")
    parser.add_argument("--quick", action="store_true", help="halve every phase")
    parser.add_argument("--out", help="timeline PNG (default: chaos-timeline.png in the stack's run dir)")
    parser.add_argument("--json", help="also write the outcomes as JSON here")
    parser.add_argument("--scenario", help="run only the scenarios whose name contains this")
    parser.add_argument(
        "--articles", type=int, default=0, help="add this many articles, read with a Zipf law (half of them warm)"
    )
    parser.add_argument(
        "--mongodb-capacity",
        type=float,
        default=0.15,
        help="share of its time a slowed FerretDB runs (the overload scenario's SIGSTOP duty cycle)",
    )
    args = parser.parse_args(argv)
    stack = find_stack(args.state)
    scale = 0.5 if args.quick else 1.0
    chosen = [s for s in SCENARIOS if not args.scenario or args.scenario.lower() in s.name.lower()]
    outcomes = []
    on_this_stack = [s for s in chosen if not s.sentinel and not s.hosts]
    if on_this_stack:
        outcomes += run_scenarios(stack, on_this_stack, args.rate, scale, args.articles, args.mongodb_capacity)
    failovers = [s for s in chosen if s.sentinel]
    if failovers:
        with stack_with_sentinel(stack) as own:
            outcomes += run_scenarios(own, failovers, args.rate, scale, args.articles, args.mongodb_capacity)
    on_hosts = [s for s in chosen if s.hosts]
    if on_hosts:
        with fleet_of_hosts(stack) as own:
            outcomes += run_scenarios(own, on_hosts, args.rate, scale, args.articles, args.mongodb_capacity)
    print(table(outcomes))
    if args.mongodb_capacity != 0.15:
        print(f"(the overload scenario ran MongoDB at {args.mongodb_capacity:.0%} of its time, not 15 %)")
    out = Path(args.out) if args.out else stack.run_dir / "chaos-timeline.png"
    draw(outcomes, scale, out)
    print(f"timeline: {out}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "scenario": o.scenario.name,
                        "requests": len(o.samples),
                        "statuses": dict(o.statuses()),
                        "tiers": dict(o.tiers()),
                        "mongodb_reads": o.mongodb_reads,
                        "mongodb_reads_per_second": {
                            "before": o.mongodb_reads_per_second[0],
                            "during": o.mongodb_reads_per_second[1],
                        },
                        "read_pages_not_200": o.warm_failures()[0],
                        "errors_share": o.errors_share(),
                        "max_latency_s": max(o.latencies, default=0.0),
                    }
                    for o in outcomes
                ],
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
