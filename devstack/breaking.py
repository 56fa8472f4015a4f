"""Publishing under load, measured: how soon a correction reaches readers at the edge, what it
costs MongoDB, and whether every tier agrees with MongoDB once the edits stop.

Run by ``scripts/bench`` (phase 6) and alone with ``scripts/bench --only publishing``. Readers
identify what they got by the title each publish gives the article ("Urgente <n>"), so the same
measurement runs on releases that did not name versions in headers yet.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable

import aiohttp

from devstack.probes import metric
from devstack.stack import Stack

TITLE = re.compile(rb"Urgente (\d+)")


@dataclass(frozen=True)
class Publish:
    number: int
    start: float
    end: float
    status: int


def _article(title: str, section: str) -> dict[str, Any]:
    return {"title": title, "section": section, "body_html": "<p>Texto da matéria.</p>", "authors": ["Redação"]}


async def _put(session: aiohttp.ClientSession, api: str, token: str, slug: str, body: dict[str, Any]) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with session.put(f"{api}/api/articles/{slug}", data=json.dumps(body), headers=headers) as resp:
        await resp.read()
        return resp.status


async def read_titles(
    session: aiohttp.ClientSession,
    url: str,
    interval: float,
    offset: float,
    stop: asyncio.Event,
    record: Callable[[tuple[float, float, int | None]], None],
) -> None:
    """Read ``url`` every ``interval`` s, starting ``offset`` s from now, until ``stop``; ``record``
    each read's (start, end, the "Urgente <n>" it showed: None for none or no answer)."""
    next_at = time.monotonic() + offset
    while not stop.is_set():
        await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        next_at += interval
        start = time.monotonic()
        try:
            async with session.get(url) as resp:
                body = await resp.read()
            found = TITLE.search(body)
            record((start, time.monotonic(), int(found.group(1)) if found else None))
        except (TimeoutError, aiohttp.ClientError):
            record((start, time.monotonic(), None))


async def _breaking(stack: Stack, token: str, slug: str, seconds: float, rate: float) -> dict[str, Any]:
    publishes: list[Publish] = []
    reads: list[tuple[float, float, int | None]] = []  # start, end, the "Urgente <n>" seen
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=128)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        await _put(session, stack.renderer_url, token, slug, _article("Urgente 0", "politica"))

        async def editor() -> None:
            for number in range(1, int(seconds) + 1):
                start = time.monotonic()
                status = await _put(session, stack.renderer_url, token, slug, _article(f"Urgente {number}", "politica"))
                publishes.append(Publish(number, start, time.monotonic(), status))
                await asyncio.sleep(max(0.0, start + 1.0 - time.monotonic()))
            stop.set()

        async def reader(index: int, workers: int) -> None:
            url = f"{stack.site_url}/noticia/{slug}.ghtml"
            await read_titles(session, url, workers / rate, index / rate, stop, reads.append)

        reads_before = metric(stack.renderer_url, "pagecache_mongodb_reads_total")
        workers = 64
        await asyncio.gather(editor(), *(reader(i, workers) for i in range(workers)))
        mongodb_reads = metric(stack.renderer_url, "pagecache_mongodb_reads_total") - reads_before
    visible: list[float] = []
    older_after_ack = 0
    for publish in publishes:
        seen = [end for start, end, n in reads if start >= publish.start and n is not None and n >= publish.number]
        if seen:
            visible.append(min(seen) - publish.start)
        older_after_ack += sum(
            1 for start, _, n in reads if start > publish.end and n is not None and n < publish.number
        )
    latencies = sorted(end - start for start, end, _ in reads)
    duration = max(end for _, end, _ in reads) - min(start for start, _, _ in reads)

    def pct(values: list[float], q: float) -> float:
        return sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else float("nan")

    return {
        "publishes": len(publishes),
        "publish_statuses": dict(sorted(Counter(p.status for p in publishes).items())),
        "reads": len(reads),
        "read_rate": len(reads) / duration,
        "read_errors": sum(1 for _, _, n in reads if n is None),
        "visible_p50_s": pct(visible, 0.5),
        "visible_p99_s": pct(visible, 0.99),
        "never_visible": len(publishes) - len(visible),
        "older_reads_after_ack": older_after_ack,
        "mongodb_reads_per_publish": mongodb_reads / max(1, len(publishes)),
        "reader_p50_ms": 1000 * pct(latencies, 0.5),
        "reader_p99_ms": 1000 * pct(latencies, 0.99),
    }


def breaking_news(stack: Stack, token: str, seconds: float = 30.0, rate: float = 500.0) -> dict[str, Any]:
    """One article updated every second for ``seconds`` while readers read it through Varnish at
    ``rate`` requests/s: publish-to-visible at the edge, MongoDB reads per publish, reader latency."""
    slug = f"urgente-{random.randrange(10**9)}"
    return asyncio.run(_breaking(stack, token, slug, seconds, rate))


async def _disagreements(stack: Stack, token: str, quiet: float) -> dict[str, Any]:
    from pymongo import AsyncMongoClient

    run = random.randrange(10**9)
    edited = [f"editada-{run}-{n}" for n in range(40)]
    flipped = [f"alternada-{run}-{n}" for n in range(10)]
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=15)) as session:
        await asyncio.gather(
            *(_put(session, stack.renderer_url, token, s, _article("Versao 1", "politica")) for s in edited + flipped)
        )
        # 4 concurrent saves of each edited article; publish/unpublish flips of the others.
        await asyncio.gather(
            *(
                _put(session, stack.renderer_url, token, slug, _article(f"Versao {n + 2}", "politica"))
                for slug in edited
                for n in range(4)
            ),
            *(_flip(session, stack.renderer_url, token, slug) for slug in flipped),
        )
        await asyncio.sleep(quiet)
        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.env["MONGODB_URL"])
        try:
            truth = {
                doc["_id"]: (doc["title"] if doc.get("published") else None)
                async for doc in client[stack.env["MONGODB_DB"]]["articles"].find({"_id": {"$in": edited + flipped}})
            }
        finally:
            await client.close()
        disagree = 0
        checked = 0
        for slug in (edited + flipped)[:50]:
            for base in (stack.renderer_url, stack.site_url):
                async with session.get(f"{base}/noticia/{slug}.ghtml") as resp:
                    body = (await resp.read()).decode(errors="replace")
                shown = None
                if resp.status == 200:
                    found = re.search(r"<title>(Versao \d+)", body) or re.search(r"(Versao \d+)", body)
                    shown = found.group(1) if found else "?"
                checked += 1
                disagree += shown != truth[slug]
    return {"reads": checked, "disagreeing": disagree, "quiet_seconds": quiet}


async def _flip(session: aiohttp.ClientSession, api: str, token: str, slug: str) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    for n in range(4):
        async with session.delete(f"{api}/api/articles/{slug}", headers=headers) as resp:
            await resp.read()
        await _put(session, api, token, slug, _article(f"Versao {n + 10}", "politica"))


def disagreements_after_concurrent_edits(stack: Stack, token: str, quiet: float = 8.0) -> dict[str, Any]:
    """4 concurrent saves on each of 40 articles and unpublish/publish flips on 10 more, then
    ``quiet`` seconds: how many of 100 reads (renderer and Varnish) disagree with MongoDB."""
    return asyncio.run(_disagreements(stack, token, quiet))


def lines(results: dict[str, Any]) -> list[str]:
    """The bench table's lines for these measurements."""
    b, d = results["breaking_news"], results["concurrent_edits"]
    return [
        f"6. breaking news: 1 article saved every second for {b['publishes']} s, read through Varnish at "
        f"{b['read_rate']:.0f} req/s ({b['reads']} reads, {b['read_errors']} errors; "
        f"publishes {b['publish_statuses']})",
        f"   publish-to-visible at the edge p50 {b['visible_p50_s']:.2f} s, p99 {b['visible_p99_s']:.2f} s, "
        f"never visible {b['never_visible']}   (g1: within the TTL + 1 s = 11 s)",
        f"   older version read after the publish was acknowledged: {b['older_reads_after_ack']} times   (0)",
        f"   MongoDB reads per publish {b['mongodb_reads_per_publish']:.1f}; reader p50 {b['reader_p50_ms']:.1f} ms, "
        f"p99 {b['reader_p99_ms']:.1f} ms",
        f"7. after concurrent edits and {d['quiet_seconds']:.0f} s of quiet: {d['disagreeing']} of {d['reads']} reads "
        "(renderer and Varnish) disagree with MongoDB   (0)",
    ]
