"""What the "latest news" box costs at the CDN, measured (``scripts/bench`` phase 8, alone with
``scripts/bench --only box``).

Every article page carries the box, and the CDN keeps article pages for ``CDN_TTL`` (an hour): a
publish that changes the box purges those pages (soft, once per burst; hard when an article left
the box). The same Zipf read load goes through the emulated CDN twice, side by side: without
publishes, then with a new article every few seconds. Printed: the CDN's hit ratio in each, and
the refetches each publish costs our Varnish (requests from the CDN) and the renderer (Varnish's
backend fetches). Then one takedown: how many cached pages still show it when the DELETE answers.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp

from devstack.probes import varnish_counters
from devstack.stack import Ports, Stack, start_stack
from devstack.workload import insert_articles, progress, warm

ARTICLES = 300
RATE = 200.0  # reads per second through the CDN
PUBLISH_EVERY = 5.0  # seconds between new articles in the publishing half
ADDITION_CAP = 60.0  # seconds a new article is given to reach the box of every page at the CDN


def _article(title: str) -> dict[str, Any]:
    return {"title": title, "section": "economia", "body_html": "<p>Texto.</p>", "authors": ["Redação"]}


async def _send(session: aiohttp.ClientSession, method: str, url: str, token: str, body: Any = None) -> int:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    data = json.dumps(body) if body is not None else None
    async with session.request(method, url, data=data, headers=headers) as resp:
        await resp.read()
        return resp.status


async def _reads(session: aiohttp.ClientSession, site: str, slugs: list[str], seconds: float) -> Counter[str]:
    """Zipf-ish reads (rank weights 1/r) at ``RATE`` for ``seconds``: the CDN's answers counted."""
    rng = random.Random(5)
    weights = [1 / rank for rank in range(1, len(slugs) + 1)]
    seen: Counter[str] = Counter()

    async def one(slug: str) -> None:
        async with session.get(f"{site}/noticia/{slug}.ghtml") as resp:
            await resp.read()
            seen[resp.headers.get("X-CDN-Cache", "?") if resp.status == 200 else f"status {resp.status}"] += 1

    tasks = []
    start = time.monotonic()
    for n in range(int(seconds * RATE)):
        await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
        tasks.append(asyncio.ensure_future(one(rng.choices(slugs, weights)[0])))
    await asyncio.gather(*tasks)
    return seen


async def _half(stack: Stack, token: str, slugs: list[str], seconds: float, publish: bool) -> dict[str, Any]:
    edge, cdn = stack.started["varnish"], stack.started["cdn"]
    before_edge, before_cdn = varnish_counters(edge), varnish_counters(cdn)
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        published = 0

        async def editor() -> None:
            nonlocal published
            end = time.monotonic() + seconds
            while time.monotonic() + PUBLISH_EVERY <= end:
                await asyncio.sleep(PUBLISH_EVERY)
                slug = f"caixa-nova-{time.monotonic_ns()}"
                if (
                    await _send(session, "PUT", f"{stack.renderer_url}/api/articles/{slug}", token, _article(slug))
                    < 300
                ):
                    published += 1

        jobs = [_reads(session, stack.site_url, slugs, seconds)] + ([editor()] if publish else [])
        seen = (await asyncio.gather(*jobs))[0]
    after_edge, after_cdn = varnish_counters(edge), varnish_counters(cdn)
    return {
        "reads": sum(seen.values()),
        "answers": dict(seen),
        "cdn_hit_ratio": seen["HIT"] / max(1, sum(seen.values())),
        "publishes": published,
        "edge_requests": after_edge["MAIN.client_req"] - before_edge["MAIN.client_req"],
        "renderer_fetches": after_edge["MAIN.backend_req"] - before_edge["MAIN.backend_req"],
        "cdn_fetches": after_cdn["MAIN.backend_req"] - before_cdn["MAIN.backend_req"],
    }


async def _shows(session: aiohttp.ClientSession, base: str, page: str, title: str) -> bool:
    async with session.get(f"{base}/noticia/{page}.ghtml") as resp:
        return title.encode() in await resp.read()


async def _addition(stack: Stack, token: str, pages: list[str]) -> float | None:
    """Seconds from a new article's publish until every one of ``pages`` (cached at the CDN)
    shows it in the box; None if not within ``ADDITION_CAP`` seconds."""
    slug = f"caixa-adicionada-{time.monotonic_ns()}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        started = time.monotonic()
        await _send(session, "PUT", f"{stack.renderer_url}/api/articles/{slug}", token, _article(slug))
        while time.monotonic() - started < ADDITION_CAP:
            if all(await asyncio.gather(*(_shows(session, stack.site_url, page, slug) for page in pages))):
                return time.monotonic() - started
            await asyncio.sleep(0.5)
    return None


async def _takedown(stack: Stack, token: str, pages: list[str]) -> dict[str, Any]:
    """Publish one article; once the renderer's box shows it, read ``pages`` (never read before)
    through the CDN, which keeps them with it; take it down; count the pages that still show it."""
    slug = f"caixa-retirada-{time.monotonic_ns()}"
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        await _send(session, "PUT", f"{stack.renderer_url}/api/articles/{slug}", token, _article(slug))
        for _ in range(20):  # every renderer process
            while not await _shows(session, stack.renderer_url, pages[0], slug):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        held = sum(await asyncio.gather(*(_shows(session, stack.site_url, page, slug) for page in pages)))
        started = time.monotonic()
        status = await _send(session, "DELETE", f"{stack.renderer_url}/api/articles/{slug}", token)
        answered = time.monotonic() - started
        still = sum(await asyncio.gather(*(_shows(session, stack.site_url, page, slug) for page in pages)))
    return {"pages": len(pages), "showing_before": held, "status": status, "delete_s": answered, "showing_after": still}


def box_at_cdn(run_dir: Path, token: str, seconds: float) -> dict[str, Any]:
    """Phase 8 on a stack of its own: two renderer processes and an emulated CDN (Fastly's API)."""
    progress(
        f"8. the box at the CDN: {seconds:.0f} s of reads without publishes, then with one every {PUBLISH_EVERY:.0f} s"
    )
    stack = start_stack(
        run_dir, Ports.free(), environ={"EDITOR_TOKENS": token}, renderer_env={"PROCESSES": "2"}, cdn="fastly"
    )
    try:
        slugs = insert_articles(stack, "caixa", ARTICLES + 100)
        slugs, unread = slugs[:ARTICLES], slugs[ARTICLES:]
        asyncio.run(warm(stack.site_url, slugs, 8))
        time.sleep(2)  # Varnish adds up its workers' counters now and then: the warm-up's first
        quiet = asyncio.run(_half(stack, token, slugs, seconds, publish=False))
        publishing = asyncio.run(_half(stack, token, slugs, seconds, publish=True))
        addition = asyncio.run(_addition(stack, token, slugs[:100]))
        takedown = asyncio.run(_takedown(stack, token, unread))
        return {"box_at_cdn": {"quiet": quiet, "publishing": publishing, "addition_s": addition, "takedown": takedown}}
    finally:
        stack.stop()


def lines(results: dict[str, Any]) -> list[str]:
    """Phase 8's lines of the bench table."""
    box = results["box_at_cdn"]
    quiet, busy, down = box["quiet"], box["publishing"], box["takedown"]
    per = max(1, busy["publishes"])
    extra_edge = (busy["edge_requests"] - quiet["edge_requests"]) / per
    extra_renderer = (busy["renderer_fetches"] - quiet["renderer_fetches"]) / per
    return [
        f"8. box at the CDN ({ARTICLES} article pages, {RATE:.0f} reads/s): CDN hit ratio "
        f"{100 * busy['cdn_hit_ratio']:.1f} % with a publish every {PUBLISH_EVERY:.0f} s "
        f"({busy['publishes']}) / {100 * quiet['cdn_hit_ratio']:.1f} % without",
        f"   per publish: {extra_edge:.0f} more requests from the CDN to Varnish, {extra_renderer:.0f} more "
        f"renderer fetches (quiet: {quiet['edge_requests']} and {quiet['renderer_fetches']} in all)",
        "   a new article in the box of 100 pages the CDN holds after "
        + (f"{box['addition_s']:.1f} s" if box["addition_s"] is not None else f"more than {ADDITION_CAP:.0f} s")
        + "   <= 20 s",
        f"   takedown of an article the box showed on {down['showing_before']} of {down['pages']} pages at the "
        f"CDN: DELETE {down['status']} in {1000 * down['delete_s']:.0f} ms, then {down['showing_after']} pages "
        "show it   0",
    ]
