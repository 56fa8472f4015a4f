"""``scripts/bench``: every tier measured side by side in one run, printed as ratios.

1. Our VCL's hit path vs stock Varnish (built-in VCL, same object, same flags; the median of
   short interleaved pairs): requests per second, and Varnish's CPU per hit; nginx
   ``proxy_cache`` hit and nginx static beside them as the peers; gzip bytes vs raw.
2. Renderer Redis-hit path vs a bare Tornado handler (same bytes) and a minimal Tornado handler
   doing one Redis GET (the design's floor).
3. Cold render (MongoDB read + render + Redis write) vs the Redis-hit path, and where its time goes
   (each process's CPU per render, the renderer's MongoDB and Redis call timings).
4. Stampede: 1000 concurrent requests for one cold article over two renderer processes.
5. Zipf workload through the whole stack with time compressed: tier shares beside the seed's;
   then again with 30 % of URLs carrying random tracking parameters (one object per page).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import redis

from devstack import box_cost, breaking, fleet_bench, servers
from devstack.probes import concurrent_gets, cpu_seconds, metric, tier_names, unnamed_tier, varnish_counters
from devstack.samples import load_samples
from devstack.stack import Ports, Stack, start_stack
from devstack.workload import (
    FEED_PATHS,
    FEED_SHARE,
    FRONT_SHARE,
    SECTIONS,
    Zipf,
    insert_articles,
    progress,
    tracked,
    warm,
)

HOT_SLUG = "tiroteio-deixa-um-morto-e-feridos"
BENCH_TOKEN = "bench-" + "0" * 40  # the editors' API refuses tokens under 32 characters


def wrk_run(
    url: str,
    seconds: float,
    threads: int,
    connections: int,
    script: Path | None = None,
    gzip: bool = False,
    cpus: str | None = None,
) -> tuple[int, float]:
    """How many requests wrk completed, and how many per second (non-2xx/3xx answers are an error);
    ``cpus``: wrk runs on those cores only (taskset's list)."""
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds:.0f}s"]
    if script is not None:
        cmd += ["-s", str(script)]
    if gzip:
        cmd += ["-H", "Accept-Encoding: gzip"]
    if cpus is not None:
        cmd = ["taskset", "-c", cpus, *cmd]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    if "Non-2xx or 3xx responses" in out:
        raise RuntimeError(f"wrk saw errors on {url}:\n{out}")
    completed = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return completed, float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]


def cpu_per_hit(varnish: servers.Server, url: str) -> tuple[float, float]:
    """Varnish's CPU time per request (µs; its manager and cache processes) under 3 s of wrk with
    gzip clients, and the requests per second. CPU per request is the steadier of the two on a
    small machine: wrk's share of the same cores moves the rate, not what each request costs.
    During the probe varnishd runs on the first core and wrk on the second, so that neither takes
    the other's (unpinned, the pair ratio moved by ±0.05 between runs; pinned, by ±0.01)."""
    assert varnish.pid is not None
    with pinned(varnish.pid, "0"):
        before = cpu_seconds(varnish.pid, children=True)
        completed, rate = wrk_run(url, 3, 2, 64, gzip=True, cpus="1")
        return (cpu_seconds(varnish.pid, children=True) - before) / completed * 1e6, rate


def pinned_rate(
    server: servers.Server, url: str, seconds: float, gzip: bool = True, threads: int = 2, connections: int = 64
) -> float:
    """Requests per second wrk (on the second core) gets from ``server`` (on the first)."""
    assert server.pid is not None
    with pinned(server.pid, "0"):
        return wrk_run(url, seconds, threads, connections, gzip=gzip, cpus="1")[1]


@contextmanager
def pinned(pid: int, cpus: str) -> Iterator[None]:
    """Every thread of ``pid`` and of its children on ``cpus`` (taskset's list) while inside; all cores after."""
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    pids = [str(pid), *children]

    def pin(to: str) -> None:
        for each in pids:
            subprocess.run(["taskset", "-a", "-c", "-p", to, each], capture_output=True, check=True)

    pin(cpus)
    try:
        yield
    finally:
        pin(f"0-{(os.cpu_count() or 1) - 1}")


def nginx(run_dir: Path, port: int, root: Path, proxy_port: int, upstream: int) -> servers.Server:
    """nginx serving ``root/page.html`` on ``port``, and a ``proxy_cache`` of ``upstream`` on ``proxy_port``."""
    conf = run_dir / "nginx.conf"
    # The run dir is private (0700): workers must run as the user who made it.
    user = "user root;\n" if __import__("os").geteuid() == 0 else ""
    conf.write_text(
        user
        + f"""worker_processes auto;
pid {run_dir}/nginx.pid;
error_log {run_dir}/nginx-error.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    default_type text/html;
    keepalive_requests 1000000;
    server {{ listen 127.0.0.1:{port}; root {root}; location / {{ try_files /page.html =404; }} }}
    proxy_cache_path {run_dir}/nginx-cache keys_zone=pages:10m;
    server {{
        listen 127.0.0.1:{proxy_port};
        location / {{
            proxy_pass http://127.0.0.1:{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache pages;
            proxy_ignore_headers Cache-Control Expires;
            proxy_cache_valid 200 10s;
            proxy_cache_use_stale updating error timeout;
            proxy_cache_background_update on;
            proxy_cache_lock on;
        }}
    }}
}}
"""
    )
    argv = [servers.require_binary("nginx"), "-c", str(conf), "-p", str(run_dir), "-g", "daemon off;"]
    return servers.Server("nginx", argv, port, run_dir / "nginx.log")


def body_bytes(url: str, gzip: bool) -> int:
    """Bytes of the body as sent (compressed when ``gzip``)."""
    headers = ["-H", "Accept-Encoding: gzip"] if gzip else []
    out = subprocess.run(["curl", "-s", *headers, url], capture_output=True, check=True).stdout
    return len(out)


def reference(run_dir: Path, kind: str, *args: str) -> servers.Server:
    port = servers.free_port()
    argv = [sys.executable, "-m", "devstack.bench_refs", kind, str(port), *args]
    return servers.Server(f"tornado-{kind}", argv, port, run_dir / f"ref-{kind}.log", cwd=servers.REPO)


def pool_wait_tracing() -> aiohttp.TraceConfig:
    """Adds to each request's ``trace_request_ctx["pool_wait"]`` the seconds it queued for one of
    the client's connections: the client's own wait, which is not the server's latency."""
    tracing = aiohttp.TraceConfig()

    async def queued(session: Any, ctx: Any, params: Any) -> None:
        ctx.trace_request_ctx["queued_at"] = time.monotonic()

    async def dequeued(session: Any, ctx: Any, params: Any) -> None:
        ctx.trace_request_ctx["pool_wait"] += time.monotonic() - ctx.trace_request_ctx["queued_at"]

    tracing.on_connection_queued_start.append(queued)
    tracing.on_connection_queued_end.append(dequeued)
    return tracing


async def zipf_load(
    site: str,
    slugs: list[str],
    rate: float,
    seconds: float,
    s: float,
    tracked_share: float = 0.0,
    fronts: Counter[str] | None = None,
    pool_waits: list[float] | None = None,
) -> list[tuple[float, float, str]]:
    """Open-loop Zipf traffic: (second, latency in s, what answered) per request; ``tracked_share``
    of the URLs carry random tracking parameters. With ``fronts``, ``FRONT_SHARE`` of the requests
    go to section fronts and ``FEED_SHARE`` to feeds, counted there by what answered them.
    ``pool_waits`` gets each request's wait for a client connection (part of its latency, and the
    client's doing)."""
    zipf = Zipf(len(slugs), s)
    rng = random.Random(11)
    samples: list[tuple[float, float, str]] = []
    connector = aiohttp.TCPConnector(limit=256)
    timeout = aiohttp.ClientTimeout(total=10)
    tracing = [pool_wait_tracing()]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, trace_configs=tracing) as session:
        start = time.monotonic()

        async def one(path: str, front: bool) -> None:
            sent = time.monotonic()
            traced = {"pool_wait": 0.0}
            try:
                async with session.get(site + path, trace_request_ctx=traced) as resp:
                    await resp.read()
                    cache = resp.headers.get("X-Cache", "")
                    # A miss is named from the renderer's log after the run (readers aren't told).
                    tier = "varnish" if cache.startswith("HIT") else unnamed_tier(resp.headers.get("X-Request-Id", ""))
                    if resp.status >= 500:
                        tier = "error"
            except Exception:
                tier = "error"
            samples.append((sent - start, time.monotonic() - sent, tier))
            if pool_waits is not None:
                pool_waits.append(traced["pool_wait"])
            if front and fronts is not None:
                fronts[tier] += 1

        tasks: set[asyncio.Task[None]] = set()
        sent_count = 0
        next_report = 5.0
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(elapsed * rate) - sent_count
            for _ in range(max(0, due)):
                roll = rng.random() if fronts is not None else 1.0
                front = roll < FRONT_SHARE + FEED_SHARE  # listings: fronts, then feeds
                if roll < FRONT_SHARE:
                    path = f"/{rng.choice(SECTIONS)}/"
                elif front:
                    path = rng.choice(FEED_PATHS)
                else:
                    path = f"/noticia/{slugs[zipf.draw()]}.ghtml"
                if rng.random() < tracked_share:
                    path = tracked(path, rng)
                task = asyncio.ensure_future(one(path, front))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            sent_count += max(0, due)
            if elapsed >= next_report:
                progress(f"zipf: {elapsed:.0f}/{seconds:.0f} s, {sent_count} requests sent")
                next_report += 5
            await asyncio.sleep(0.005)
        await asyncio.gather(*tasks)
    return samples


def named_tiers(
    samples: list[tuple[float, float, str]], fronts: Counter[str], log: Path
) -> tuple[list[tuple[float, float, str]], Counter[str]]:
    """``zipf_load``'s samples and fronts with each miss (``unnamed_tier``) named by the tier the
    renderer's access log gives it: the public edge does not tell readers."""
    name = tier_names(log)
    named_fronts: Counter[str] = Counter()
    for tier, count in fronts.items():
        named_fronts[name(tier)] += count
    return [(t, lat, name(tier)) for t, lat, tier in samples], named_fronts


def renderer_log(log: Path, since: float) -> list[dict[str, Any]]:
    """The renderer's access-log lines (both processes) from ``since`` on."""
    lines = []
    for line in log.read_text().splitlines():
        if line.startswith("{"):
            entry = json.loads(line)
            if entry.get("message") == "request" and datetime.fromisoformat(entry["time"]).timestamp() >= since:
                lines.append(entry)
    return lines


def mongo_reads_per_article_per_ttl(lines: list[dict[str, Any]], ttl: float) -> int:
    """The most MongoDB reads any one article needed within one Redis TTL."""
    reads: dict[str, list[float]] = defaultdict(list)
    for entry in lines:
        # Coalesced waiters share the one read of the request they waited for.
        if entry.get("tier") == "mongo" and "coalesced" not in entry.get("cache_status", ""):
            reads[entry["path"]].append(datetime.fromisoformat(entry["time"]).timestamp())
    worst = 0
    for stamps in reads.values():
        stamps.sort()
        for i, first in enumerate(stamps):
            worst = max(worst, bisect.bisect_right(stamps, first + ttl * 0.999) - i)
    return worst


@dataclass
class Peers:
    """Phases 1-4's stack (one renderer process) and what it is measured against, with ``path``,
    the hot article, and ``body``, its page as the renderer serves it."""

    stack: Stack
    path: str
    body: bytes
    quiet: servers.Server  # a second renderer, its access log off
    stock_varnish: servers.Server
    nginx: servers.Server  # static and proxy_cache, one server
    nginx_url: str
    nginx_proxy_url: str
    bare: servers.Server  # Tornado returning the page's bytes
    redisget: servers.Server  # Tornado doing one Redis GET

    @property
    def quiet_url(self) -> str:
        return f"http://127.0.0.1:{self.quiet.port}"

    @property
    def stock_url(self) -> str:
        return f"http://127.0.0.1:{self.stock_varnish.port}"


@contextmanager
def peers(run_dir: Path) -> Iterator[Peers]:
    """Start phases 1-4's stack with the sample articles, and the peers beside it (stock Varnish,
    nginx static and proxy_cache, bare Tornado, Tornado + one Redis GET, a quiet renderer)."""
    started: list[servers.Server] = []
    progress("starting the stack")
    # One process each: the renderer is compared with single-process references.
    stack = start_stack(
        run_dir / "main", Ports.free(), environ={"EDITOR_TOKENS": BENCH_TOKEN}, renderer_env={"PROCESSES": "1"}
    )
    try:
        load_samples(stack.env["MONGODB_URL"], stack.env["MONGODB_DB"], stack.env["REDIS_URL"])
        path = f"/noticia/{HOT_SLUG}.ghtml"
        body = subprocess.run(["curl", "-s", stack.renderer_url + path], capture_output=True, check=True).stdout
        for _ in range(3):
            subprocess.run(["curl", "-s", "-o", "/dev/null", stack.site_url + path], check=True)
        static = run_dir / "static"
        static.mkdir()
        (static / "page.html").write_bytes(body)
        redis.Redis.from_url(stack.env["REDIS_URL"]).set("bench:page", body)
        quiet = servers.renderer(run_dir, servers.free_port(), {**stack.env, "LOG_LEVEL": "WARNING", "PROCESSES": "1"})
        stock_varnish = servers.varnish(run_dir, servers.free_port(), stack.ports.renderer, stock=True)
        nginx_proxy_port = servers.free_port()
        for server in (
            nginx(run_dir, servers.free_port(), static, nginx_proxy_port, stack.ports.renderer),
            reference(run_dir, "bare", str(static / "page.html")),
            reference(run_dir, "redis-get", stack.env["REDIS_URL"], "bench:page"),
            quiet,
            stock_varnish,
        ):
            started.append(server.start())
        made = Peers(
            stack,
            path,
            body,
            quiet,
            stock_varnish,
            started[0],
            f"http://127.0.0.1:{started[0].port}",
            f"http://127.0.0.1:{nginx_proxy_port}",
            started[1],
            started[2],
        )
        for url in (made.stock_url, made.nginx_proxy_url, stack.site_url):
            for page in (path, "/"):
                for _ in range(3):
                    subprocess.run(["curl", "-s", "-o", "/dev/null", url + page], check=True)
        yield made
    finally:
        for server in started:
            server.stop()
        stack.stop()


def edge(args: argparse.Namespace, p: Peers) -> dict[str, Any]:
    """Phase 1: our VCL's hit path against stock Varnish's, nginx proxy_cache and nginx static."""
    d = args.seconds
    progress(f"1. our VCL vs stock Varnish, nginx proxy_cache and nginx static ({d:.0f} s each)")
    site, path = p.stack.site_url, p.path
    # Short interleaved pairs with gzip-accepting clients (as browsers are), the median of the
    # pairs' ratios: on two shared cores one long run of each swings by +-15 %. On an article
    # page, the commonest hit: both serve the same bytes (the renderer puts the box in).
    pairs = [
        (cpu_per_hit(p.stack.started["varnish"], site + path), cpu_per_hit(p.stock_varnish, p.stock_url + path))
        for _ in range(args.edge_pairs)
    ]
    # Every rate below is measured as the pairs' are (the server on the first core, wrk on the
    # second), so that the ratios between them compare like with like.
    ours = p.stack.started["varnish"]
    rps = {
        "varnish": statistics.median(ours for (_, ours), _ in pairs),
        "varnish-stock": statistics.median(stock for _, (_, stock) in pairs),
        "varnish-plain": pinned_rate(ours, site + path, d / 2, gzip=False),
        # An article page beside the home: what the "latest news" box costs a hit (nothing, now
        # that no page is assembled at the edge).
        "varnish-article": pinned_rate(ours, site + path, d / 2),
        "varnish-home": pinned_rate(ours, site + "/", d / 2),
        "nginx-proxy-cache": pinned_rate(p.nginx, p.nginx_proxy_url + path, d),
        "nginx": pinned_rate(p.nginx, p.nginx_url + path, d),
    }
    return {
        "throughput": rps,
        "edge_pairs": args.edge_pairs,
        "cpu_per_hit_us": {
            "varnish": statistics.median(ours for (ours, _), _ in pairs),
            "varnish-stock": statistics.median(stock for _, (stock, _) in pairs),
        },
        "ratios": {
            "varnish / varnish-stock": statistics.median(ours / stock for (_, ours), (_, stock) in pairs),
            # As an efficiency: stock's CPU per hit over ours (1.0: ours costs what stock's does).
            "varnish-stock cpu per hit / varnish cpu per hit": statistics.median(
                stock / ours for (ours, _), (stock, _) in pairs
            ),
        },
        "gzip": {"raw_bytes": body_bytes(site + path, gzip=False), "gzip_bytes": body_bytes(site + path, gzip=True)},
    }


def renderer_hits(args: argparse.Namespace, p: Peers) -> dict[str, float]:
    """Phase 2: the renderer's Redis-hit path against bare Tornado and Tornado + one Redis GET.
    Each server has the first core to itself while wrk runs on the second (Redis takes what is
    left), in short interleaved rounds, the median of each: unpinned, one 15 s run each moved the
    renderer's ratio to its floor by ±0.07 between runs; pinned, two quick runs gave 0.94x and 0.97x."""
    progress("2. renderer Redis-hit path vs bare Tornado and Tornado + one Redis GET")
    contenders = {
        "renderer": (p.stack.started["renderer"], p.stack.renderer_url),
        "renderer-quiet": (p.quiet, p.quiet_url),
        "tornado-bare": (p.bare, f"http://127.0.0.1:{p.bare.port}"),
        "tornado-redis-get": (p.redisget, f"http://127.0.0.1:{p.redisget.port}"),
    }
    rates: dict[str, list[float]] = defaultdict(list)
    for _ in range(args.edge_pairs):
        for name, (server, url) in contenders.items():
            rates[name].append(pinned_rate(server, url + p.path, 3, gzip=False, threads=1, connections=32))
    return {name: statistics.median(each) for name, each in rates.items()}


def cold_renders(args: argparse.Namespace, p: Peers, run_dir: Path) -> dict[str, Any]:
    """Phase 3: every request a different article, never read before; and where a cold render's
    time goes: the CPU each process spends per render (the renderer: our code; the stand-in:
    MongoDB's share; Redis), and the renderer's own timings of its MongoDB and Redis calls."""
    progress("3. cold renders: every request a different article")
    cold = insert_articles(p.stack, "bench-cold", args.cold_articles)
    script = run_dir / "cold.lua"
    script.write_text(
        "n = 0\n"
        "request = function()\n"
        '  n = n + 1\n  return wrk.format(nil, "/noticia/bench-cold-" .. n .. ".ghtml")\n'
        "end\n"
    )
    url = p.stack.renderer_url
    processes = {name: p.stack.started[name].pid for name in ("renderer", "ferretdb", "redis")}

    def counters() -> dict[str, float]:
        taken = {f"{name} cpu": cpu_seconds(pid) for name, pid in processes.items() if pid is not None}
        for backend in ("mongodb", "redis"):
            for part in ("sum", "count"):
                taken[f"{backend} {part}"] = metric(url, f"pagecache_backend_call_seconds_{part}", backend=backend)
        taken["render sum"] = metric(url, "pagecache_cold_render_seconds_sum")
        taken["reads"] = metric(url, "pagecache_mongodb_reads_total")
        return taken

    before = counters()
    completed, rps = wrk_run(url, min(args.seconds, 5), 1, 16, script)
    after = counters()
    spent = {key: after[key] - before[key] for key in before}
    if spent["reads"] >= len(cold):
        raise RuntimeError("the cold phase ran out of distinct articles; raise --cold-articles")
    per_render = 1000 / max(1, completed)  # ms per render, from seconds
    split = {
        "renders": completed,
        "renderer_cpu_ms": spent["renderer cpu"] * per_render,
        "standin_cpu_ms": spent["ferretdb cpu"] * per_render,
        "redis_cpu_ms": spent["redis cpu"] * per_render,
        "mongodb_calls_per_render": spent["mongodb count"] / max(1, completed),
        "mongodb_call_ms": 1000 * spent["mongodb sum"] / max(1, spent["mongodb count"]),
        "redis_calls_per_render": spent["redis count"] / max(1, completed),
        "redis_call_ms": 1000 * spent["redis sum"] / max(1, spent["redis count"]),
        # The renderer's MongoDB read plus its template, per render (cold_render_seconds).
        "read_and_render_ms": spent["render sum"] * per_render,
    }
    return {"cold-render": rps, "cold_split": split}


def cold_lines(split: dict[str, Any] | None) -> list[str]:
    """Phase 3's split of a cold render, for the table."""
    if not split:
        return []
    return [
        f"   per render, CPU: renderer {split['renderer_cpu_ms']:.2f} ms, MongoDB stand-in "
        f"{split['standin_cpu_ms']:.2f} ms, Redis {split['redis_cpu_ms']:.2f} ms",
        f"   per render, calls: {split['mongodb_calls_per_render']:.1f} MongoDB of {split['mongodb_call_ms']:.2f} ms, "
        f"{split['redis_calls_per_render']:.1f} Redis of {split['redis_call_ms']:.2f} ms; "
        f"read + template {split['read_and_render_ms']:.2f} ms",
    ]


def stampede(p: Peers) -> dict[str, Any]:
    """Phase 4: 1000 concurrent requests for one cold article over two renderer processes."""
    progress("4. stampede: 1000 concurrent requests for one cold article over two processes")
    target = insert_articles(p.stack, "bench-stampede", 1)[0]
    renderers = [p.stack.renderer_url, p.quiet_url]
    before = sum(metric(u, "pagecache_mongodb_reads_total") for u in renderers)
    outcomes = asyncio.run(concurrent_gets([f"{renderers[i % 2]}/noticia/{target}.ghtml" for i in range(1000)]))
    statuses: Counter[int] = Counter()
    for (status, _tier), count in outcomes.items():
        statuses[status] += count
    reads = sum(metric(u, "pagecache_mongodb_reads_total") for u in renderers) - before
    return {"requests": 1000, "statuses": dict(statuses), "mongodb_reads": reads}


def side_by_side(rps: dict[str, float]) -> dict[str, float]:
    """Phases 1-3's throughputs as the ratios the README's table shows."""
    return {
        "varnish (plain clients) / varnish-stock": rps["varnish-plain"] / rps["varnish-stock"],
        "article / home, our VCL": rps["varnish-article"] / rps["varnish-home"],
        "varnish-stock / nginx-proxy-cache": rps["varnish-stock"] / rps["nginx-proxy-cache"],
        "varnish-stock / nginx": rps["varnish-stock"] / rps["nginx"],
        "varnish / nginx": rps["varnish"] / rps["nginx"],
        "renderer / tornado-redis-get": rps["renderer"] / rps["tornado-redis-get"],
        "renderer (access log off) / tornado-redis-get": rps["renderer-quiet"] / rps["tornado-redis-get"],
        "renderer / tornado-bare": rps["renderer"] / rps["tornado-bare"],
        "tornado-redis-get / tornado-bare": rps["tornado-redis-get"] / rps["tornado-bare"],
        "cold render / renderer redis-hit": rps["cold-render"] / rps["renderer"],
    }


def zipf(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Phase 5: Zipf traffic through the whole stack with time compressed, then again with
    tracking parameters on 30 % of the URLs."""
    progress(f"5. Zipf over {args.articles} articles, {args.zipf_seconds:.0f} s at {args.rate:.0f} req/s")
    scale = args.time_scale
    # The Redis TTL is crossed at least once in every run (the quick one shortens it).
    page_ttl = min(round(300 / scale), round(args.zipf_seconds / 3))
    zipf_env = {
        "SHARED_MAX_AGE": str(max(1, round(10 / scale))),
        "STALE_WHILE_REVALIDATE": str(max(1, round(10 / scale))),
        "PAGE_TTL": str(page_ttl),
        "REVALIDATE_WINDOW": str(3 * page_ttl),
        "NOT_FOUND_TTL": "1",
        "PROCESSES": "0",
    }
    zstack = start_stack(run_dir, Ports.free(), environ={"EDITOR_TOKENS": BENCH_TOKEN}, renderer_env=zipf_env)
    try:
        slugs = insert_articles(zstack, "zipf", args.articles)
        progress(f"   warming: every article, the home and each front read once, {args.warm_concurrency} at a time")
        warm_started = time.monotonic()
        warm_seconds, warm_statuses = asyncio.run(warm(zstack.site_url, slugs, args.warm_concurrency, listings=True))
        warmup = {"seconds": warm_seconds, "statuses": dict(warm_statuses)}
        log_start = time.time()
        counters_before = varnish_counters(zstack.started["varnish"])
        reads_before = {p: metric(zstack.renderer_url, "pagecache_mongodb_reads_total", path=p) for p in PATHS}
        fronts: Counter[str] = Counter()
        pool_waits: list[float] = []
        # Pages were written during the warm-up: they leave their freshness from here on.
        boundary = warm_started + page_ttl * (1 - 0.05) - time.monotonic()
        samples = asyncio.run(
            zipf_load(
                zstack.site_url, slugs, args.rate, args.zipf_seconds, args.zipf_s, fronts=fronts, pool_waits=pool_waits
            )
        )
        time.sleep(1)
        samples, fronts = named_tiers(samples, fronts, zstack.started["renderer"].log_path)
        counters = varnish_counters(zstack.started["varnish"])
        reads = {
            p: metric(zstack.renderer_url, "pagecache_mongodb_reads_total", path=p) - reads_before[p] for p in PATHS
        }
        requests = len(samples) - sum(fronts.values())  # article pages
        answered = renderer_log(zstack.started["renderer"].log_path, log_start)
        by_tier = Counter(entry["tier"] for entry in answered if entry["path"].startswith("/noticia/"))
        backend_fetches = counters.get("MAIN.backend_req", 0) - counters_before.get("MAIN.backend_req", 0)
        latencies = sorted(lat for _, lat, _ in samples)
        measured = {
            "articles": args.articles,
            "zipf_s": args.zipf_s,
            "rate": args.rate,
            "seconds": args.zipf_seconds,
            "time_scale": scale,
            "simulated_seconds": args.zipf_seconds * scale,
            "requests": requests,
            "errors": sum(1 for _, _, t in samples if t == "error"),
            "fronts": {
                "requests": sum(fronts.values()),
                "share_of_mix": sum(fronts.values()) / max(1, len(samples)),
                "shares": {tier: n / max(1, sum(fronts.values())) for tier, n in fronts.items()},
            },
            "shares": {
                "varnish": 1 - sum(by_tier.values()) / requests,
                "redis": by_tier["redis"] / requests,
                "mongo": by_tier["mongo"] / requests,
            },
            "varnish_backend_fetches": backend_fetches,
            "renderer_answers": sum(by_tier.values()),
            "p50_ms": 1000 * latencies[len(latencies) // 2],
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
            # The client's own queueing for a connection, and what is left: the server's part.
            "client_pool_wait_p99_ms": 1000 * percentile(pool_waits, 0.99),
            "client_pool_waited": sum(1 for wait in pool_waits if wait > 0),
            "server_p99_ms": 1000 * percentile(server_parts(samples, pool_waits), 0.99),
            "max_mongodb_reads_per_article_per_redis_ttl": mongo_reads_per_article_per_ttl(answered, page_ttl),
            "timeline": timeline(samples),
            "redis_ttl": page_ttl,
            "ttl_boundary_s": boundary,
            "p99_before_boundary_ms": p99(samples, 0, boundary),
            "p99_after_boundary_ms": p99(samples, boundary + 0.1 * page_ttl, args.zipf_seconds),
            "mongodb_reads": reads,
            "reader_mongodb_reads_per_s": reads["reader"] / args.zipf_seconds,
            "refresh_mongodb_reads_per_s": reads["refresh"] / args.zipf_seconds,
        }
        progress(f"5b. the same load for {args.tracked_seconds:.0f} s, 30 % of URLs with tracking parameters")
        tracked_samples = asyncio.run(
            zipf_load(zstack.site_url, slugs, args.rate, args.tracked_seconds, args.zipf_s, tracked_share=0.3)
        )
        tracked_run = {
            "seconds": args.tracked_seconds,
            "requests": len(tracked_samples),
            "errors": sum(1 for _, _, t in tracked_samples if t == "error"),
            "varnish_share": sum(1 for _, _, t in tracked_samples if t == "varnish") / len(tracked_samples),
        }
        return {"zipf_warmup": warmup, "zipf": measured, "zipf_tracked": tracked_run}
    finally:
        zstack.stop()


def hot_paths(args: argparse.Namespace, run_dir: Path) -> dict[str, Any]:
    """Phases 1-4, on one stack with its peers beside it."""
    results: dict[str, Any] = {}
    with peers(run_dir) as p:
        results.update(edge(args, p))
        results["throughput"].update(renderer_hits(args, p))
        cold = cold_renders(args, p, run_dir)
        results["cold_split"] = cold.pop("cold_split")
        results["throughput"].update(cold)
        results["stampede"] = stampede(p)
    results["ratios"].update(side_by_side(results["throughput"]))
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every phase, one after another, each on servers of its own; what each measured."""
    run_dir = Path(tempfile.mkdtemp(prefix="pagecache-bench-"))
    results: dict[str, Any] = {"machine": {"cores": os.cpu_count()}, "seconds_per_run": args.seconds}
    results.update(hot_paths(args, run_dir))
    results.update(zipf(args, run_dir / "zipf"))
    results.update(publishing(run_dir / "publishing", args.breaking_seconds))
    results.update(box_cost.box_at_cdn(run_dir / "box", BENCH_TOKEN, args.box_seconds))
    progress("9. two editors racing on one article, with 1, 4 and 16 Varnish nodes")
    results.update(fleet_bench.fleet_publishing(run_dir / "fleet", args.fleet_seconds))
    return results


PATHS = ("reader", "refresh")


def publishing(run_dir: Path, seconds: float) -> dict[str, Any]:
    """Phases 6 and 7 on a stack of their own (two renderer processes, the defaults otherwise)."""
    progress(f"6. breaking news: one article saved every second for {seconds:.0f} s, read at 500 req/s")
    stack = start_stack(run_dir, Ports.free(), environ={"EDITOR_TOKENS": BENCH_TOKEN}, renderer_env={"PROCESSES": "2"})
    try:
        results = {"breaking_news": breaking.breaking_news(stack, BENCH_TOKEN, seconds)}
        progress("7. concurrent edits, then 8 s of quiet: reads that disagree with MongoDB")
        results["concurrent_edits"] = breaking.disagreements_after_concurrent_edits(stack, BENCH_TOKEN)
        return results
    finally:
        stack.stop()


def server_parts(samples: list[tuple[float, float, str]], pool_waits: list[float]) -> list[float]:
    """Each request's latency less its wait for a client connection."""
    return [latency - wait for (_, latency, _), wait in zip(samples, pool_waits, strict=True)]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (0 for none)."""
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * q), len(ordered) - 1)] if ordered else 0.0


def p99(samples: list[tuple[float, float, str]], start: float, end: float) -> float:
    """The 99th percentile latency (ms) of requests sent between ``start`` and ``end`` s."""
    latencies = sorted(lat for t, lat, _ in samples if start <= t < end)
    return 1000 * latencies[int(len(latencies) * 0.99)] if latencies else float("nan")


def timeline(samples: list[tuple[float, float, str]]) -> list[dict[str, Any]]:
    seconds: dict[int, list[tuple[float, str]]] = defaultdict(list)
    for t, lat, tier in samples:
        seconds[int(t)].append((lat, tier))
    out = []
    for second in sorted(seconds):
        lats = sorted(lat for lat, _ in seconds[second])
        out.append(
            {
                "second": second,
                "tiers": dict(Counter(tier for _, tier in seconds[second])),
                "p50_ms": 1000 * statistics.median(lats),
                "p99_ms": 1000 * lats[min(len(lats) - 1, int(len(lats) * 0.99))],
            }
        )
    return out


TABLE_HEAD = [
    "measurement                                   result            target",
    "--------------------------------------------  ----------------  ---------------",
]


def hot_path_lines(results: dict[str, Any]) -> list[str]:
    """Phases 1-4 (the hot paths at each tier, the cold render, the stampede) as table lines."""
    rps, ratios = results["throughput"], results["ratios"]
    return [
        f"1. our VCL hit / stock Varnish (article page) {ratios['varnish / varnish-stock']:.2f}x "
        f"({rps['varnish']:.0f} / {rps['varnish-stock']:.0f} req/s, gzip clients, same bytes, median of "
        f"{results['edge_pairs']} pairs)  >= 0.95",
        f"   its CPU per hit: stock's / ours            "
        f"{ratios['varnish-stock cpu per hit / varnish cpu per hit']:.2f}x "
        f"(stock {results['cpu_per_hit_us']['varnish-stock']:.1f} / ours "
        f"{results['cpu_per_hit_us']['varnish']:.1f} µs, same pairs)  >= 0.95",
        f"   same, plain clients (gunzip on delivery)   {ratios['varnish (plain clients) / varnish-stock']:.2f}x "
        f"({rps['varnish-plain']:.0f} req/s)",
        f"   article (box put in by the renderer) / home {ratios['article / home, our VCL']:.2f}x "
        f"({rps['varnish-article']:.0f} / {rps['varnish-home']:.0f} req/s)  >= 0.9; edge nodes per 100 k "
        f"article req/s: {math.ceil(100_000 / rps['varnish'])}",
        f"   peers: stock Varnish / nginx proxy_cache   {ratios['varnish-stock / nginx-proxy-cache']:.2f}x "
        f"({rps['nginx-proxy-cache']:.0f} req/s)",
        f"          stock Varnish / nginx static        {ratios['varnish-stock / nginx']:.2f}x "
        f"({rps['nginx']:.0f} req/s)",
        f"   gzip body / raw body                       "
        f"{results['gzip']['gzip_bytes'] / results['gzip']['raw_bytes']:.2f} "
        f"({results['gzip']['gzip_bytes']} / {results['gzip']['raw_bytes']} bytes)  <= 0.35",
        f"2. renderer Redis-hit / Tornado + Redis GET   {ratios['renderer / tornado-redis-get']:.2f}x "
        f"({rps['renderer']:.0f} / {rps['tornado-redis-get']:.0f})  >= 0.9",
        f"   same, access log off                       {ratios['renderer (access log off) / tornado-redis-get']:.2f}x "
        f"({rps['renderer-quiet']:.0f} req/s)",
        f"   renderer / bare Tornado                    {ratios['renderer / tornado-bare']:.2f}x "
        f"(bare {rps['tornado-bare']:.0f} req/s)",
        f"   Tornado + Redis GET / bare Tornado         {ratios['tornado-redis-get / tornado-bare']:.2f}x"
        "                    ~0.6 here",
        f"3. cold render / Redis-hit                    {ratios['cold render / renderer redis-hit']:.2f}x "
        f"({rps['cold-render']:.0f} req/s)",
        *cold_lines(results.get("cold_split")),
        f"4. stampede: 1000 concurrent, 2 processes     {results['stampede']['mongodb_reads']:.0f} MongoDB read(s), "
        f"statuses {results['stampede']['statuses']}   exactly 1",
    ]


def table(results: dict[str, Any]) -> str:
    z = results["zipf"]
    lines = [
        *TABLE_HEAD,
        *hot_path_lines(results),
        f"5. Zipf s={z['zipf_s']} over {z['articles']} articles, {z['requests']} requests, "
        f"{z['simulated_seconds']:.0f} s simulated ({z['time_scale']:.0f}x), after warming every article once "
        f"({results['zipf_warmup']['seconds']:.0f} s, statuses {results['zipf_warmup']['statuses']})",
        f"   Varnish {100 * z['shares']['varnish']:.1f} %   (seed: > 80 %; Varnish's own count of backend fetches: "
        f"{z['varnish_backend_fetches']} for {z['renderer_answers']} renderer answers)",
        f"   Redis   {100 * z['shares']['redis']:.1f} %   (seed: ~ 15 %)",
        f"   MongoDB {100 * z['shares']['mongo']:.1f} %   (seed: < 5 %)",
        f"   latency p50 {z['p50_ms']:.1f} ms, p99 {z['p99_ms']:.1f} ms (the server's part: p99 "
        f"{z['server_p99_ms']:.1f} ms; "
        f"client waiting for a connection: p99 {z['client_pool_wait_p99_ms']:.1f} ms, {z['client_pool_waited']} "
        f"requests waited); errors {z['errors']}; "
        f"most MongoDB reads of one article per Redis TTL: {z['max_mongodb_reads_per_article_per_redis_ttl']} (<= 1)",
        f"   Redis TTL {z['redis_ttl']} s, first crossed {z['ttl_boundary_s']:.0f} s in: p99 before "
        f"{z['p99_before_boundary_ms']:.1f} ms, after {z['p99_after_boundary_ms']:.1f} ms "
        f"({z['p99_after_boundary_ms'] / z['p99_before_boundary_ms']:.2f}x, <= 1.5x); MongoDB reads/s on "
        f"readers' path {z['reader_mongodb_reads_per_s']:.2f}, in background refreshes "
        f"{z['refresh_mongodb_reads_per_s']:.2f}",
        f"   section fronts and feeds ({100 * z['fronts']['share_of_mix']:.1f} % of the mix, "
        f"{z['fronts']['requests']} requests; "
        "warmed with the articles): "
        + ", ".join(f"{tier} {100 * share:.1f} %" for tier, share in sorted(z["fronts"]["shares"].items())),
        f"   with 30 % tracked URLs ({results['zipf_tracked']['requests']} requests): Varnish "
        f"{100 * results['zipf_tracked']['varnish_share']:.1f} %, errors {results['zipf_tracked']['errors']}"
        "   >= 80 %",
    ]
    if "breaking_news" in results:
        lines += breaking.lines(results)
    if "box_at_cdn" in results:
        lines += box_cost.lines(results)
    if "fleet_publishing" in results:
        lines += fleet_bench.lines(results)
    return "\n".join(lines)


def draw(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rps = results["throughput"]
    fig, (bars, shares, lat) = plt.subplots(3, 1, figsize=(10, 11))
    names = [
        "varnish",
        "varnish-stock",
        "nginx-proxy-cache",
        "nginx",
        "renderer",
        "renderer-quiet",
        "tornado-redis-get",
        "tornado-bare",
        "cold-render",
    ]
    labels = [
        "our VCL\nhit",
        "stock\nVarnish",
        "nginx\nproxy_cache",
        "nginx\nstatic",
        "renderer\nRedis hit",
        "renderer\nno access log",
        "Tornado +\nRedis GET",
        "bare\nTornado",
        "cold\nrender",
    ]
    colours = ["#2b8cbe", "#9ecae1", "#bdbdbd", "#bdbdbd", "#41ab5d", "#a1d99b", "#bdbdbd", "#d9d9d9", "#fd8d3c"]
    bars.bar(labels, [rps[n] for n in names], color=colours)
    bars.set_ylabel("requests / s (log scale)")
    bars.set_yscale("log")
    bars.set_title("Throughput, each path beside its reference (one run, same machine)")
    for x, n in enumerate(names):
        bars.text(x, rps[n], f"{rps[n]:.0f}", ha="center", va="bottom", fontsize=8)
    z = results["zipf"]
    seconds = [p["second"] for p in z["timeline"]]
    tiers = ["varnish", "redis", "mongo", "stale", "error"]
    colours = {"varnish": "#2b8cbe", "redis": "#41ab5d", "mongo": "#fd8d3c", "stale": "#fdd49e", "error": "#e31a1c"}
    stacks = [[p["tiers"].get(t, 0) for p in z["timeline"]] for t in tiers]
    shares.stackplot(seconds, stacks, labels=tiers, colors=[colours[t] for t in tiers])
    shares.set_title(
        f"Zipf workload: answers per second by tier as the client saw them ({z['time_scale']:.0f}x compressed time)"
    )
    shares.set_ylabel("requests / s")
    shares.legend(loc="lower right", fontsize=8, ncol=5)
    lat.plot(seconds, [p["p50_ms"] for p in z["timeline"]], label="p50")
    lat.plot(seconds, [p["p99_ms"] for p in z["timeline"]], label="p99")
    lat.set_ylabel("latency (ms)")
    lat.set_xlabel("seconds")
    lat.set_yscale("log")
    lat.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shorter phases (a few minutes in all)")
    parser.add_argument("--out", default="bench-results", help="directory for bench.json and bench.png")
    parser.add_argument(
        "--only",
        choices=["hot", "publishing", "box", "fleet"],
        help="run only phases 1-4 (hot), 6 and 7 (publishing), 8 (box) or 9 (fleet), and print them",
    )
    args = parser.parse_args(argv)
    args.breaking_seconds = 30.0
    args.box_seconds = 20.0 if args.quick else 60.0
    args.fleet_seconds = 10.0 if args.quick else 20.0
    if args.only == "fleet":
        run_dir = Path(tempfile.mkdtemp(prefix="pagecache-bench-"))
        print("\n".join(fleet_bench.lines(fleet_bench.fleet_publishing(run_dir, args.fleet_seconds))))
        return 0
    if args.only == "publishing":
        print("\n".join(breaking.lines(publishing(Path(tempfile.mkdtemp(prefix="pagecache-bench-")), 30.0))))
        return 0
    if args.only == "box":
        run_dir = Path(tempfile.mkdtemp(prefix="pagecache-bench-"))
        print("\n".join(box_cost.lines(box_cost.box_at_cdn(run_dir, BENCH_TOKEN, args.box_seconds))))
        return 0
    args.seconds = 5.0 if args.quick else 15.0
    args.edge_pairs = 5 if args.quick else 9
    # Five seconds of cold renders, each a different article: room for 1,600 renders/s.
    args.cold_articles = 8000
    if args.only == "hot":
        hot = hot_paths(args, Path(tempfile.mkdtemp(prefix="pagecache-bench-")))
        print("\n".join([*TABLE_HEAD, *hot_path_lines(hot)]))
        return 0
    # ~2000 requests per Varnish TTL window (the seed's regime) at a rate one Python client can
    # sustain beside the stack on two cores: 400 req/s with time compressed 2x (5 s Varnish TTL).
    # Full: longer than one Redis TTL (150 s here), so expired pages are read from MongoDB again.
    args.zipf_seconds = 60.0 if args.quick else 300.0
    args.tracked_seconds = 30.0 if args.quick else 120.0
    args.articles = 2000
    args.zipf_s = 1.2
    args.rate = 400.0
    args.time_scale = 2.0
    args.warm_concurrency = 4
    results = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench.json").write_text(json.dumps(results, indent=1))
    draw(results, out / "bench.png")
    print(table(results))
    print(f"\nwritten: {out / 'bench.json'}, {out / 'bench.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
