"""What the bench and the chaos scenarios both put on a stack: articles of their own, read with a
Zipf law, warmed the way a site in steady state is."""

from __future__ import annotations

import asyncio
import bisect
import random
import sys
import time
from collections import Counter
from datetime import UTC, datetime

import aiohttp
from pymongo import MongoClient

from devstack.samples import outdate_listings, published_document
from devstack.stack import Stack
from renderer import contract


def progress(message: str) -> None:
    """A line on stderr saying where a long run is."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def insert_articles(stack: Stack, prefix: str, count: int) -> list[str]:
    """``count`` published articles ``<prefix>-<n>`` across ``SECTIONS``, written to MongoDB directly."""
    slugs = [f"{prefix}-{i}" for i in range(count)]
    now = datetime.now(UTC).isoformat()
    docs = [
        published_document(
            {
                "slug": slug,
                "title": f"Notícia de teste número {i}",
                "subtitle": "Linha fina da notícia de teste",
                "section": SECTIONS[i % len(SECTIONS)],
                "body_html": "<p>" + "Texto da notícia. " * 120 + "</p>",
                "authors": ["Redação"],
                "published_at": now,
            }
        )
        for i, slug in enumerate(slugs)
    ]
    with MongoClient(stack.env["MONGODB_URL"]) as client:
        client[stack.env["MONGODB_DB"]][contract.ARTICLES_COLLECTION].insert_many(docs)
        outdate_listings(client[stack.env["MONGODB_DB"]])
    return slugs


class Zipf:
    """Article ranks drawn with probability proportional to 1 / rank**s."""

    def __init__(self, n: int, s: float, seed: int = 7) -> None:
        weights = [1 / (i**s) for i in range(1, n + 1)]
        total = sum(weights)
        self.cdf = []
        acc = 0.0
        for w in weights:
            acc += w / total
            self.cdf.append(acc)
        self.random = random.Random(seed)

    def draw(self) -> int:
        """A rank (0: the most read)."""
        return min(bisect.bisect_left(self.cdf, self.random.random()), len(self.cdf) - 1)


async def warm(site: str, slugs: list[str], concurrency: int, listings: bool = False) -> tuple[float, Counter[int]]:
    """Read every article once, a few at a time: a site in steady state, not a cold start. With
    ``listings``, the home and every section front too (readers ask for those as well).

    An empty cache asking a slow database for every article at once is a different test (the
    renderer sheds it with 503s once MongoDB's breaker opens); the seed's table is steady state.
    """
    statuses: Counter[int] = Counter()
    queue = [f"/noticia/{slug}.ghtml" for slug in slugs]
    if listings:
        queue += ["/", *(f"/{section}/" for section in SECTIONS), *FEED_PATHS]
    started = time.monotonic()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:

        async def worker() -> None:
            while queue:
                path = queue.pop()
                async with session.get(site + path) as resp:
                    await resp.read()
                    statuses[resp.status] += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.monotonic() - started, statuses


TRACKING = ("utm_source=facebook", "utm_medium=social", "fbclid=", "gclid=", "utm_campaign=", "_ga=2.")


def tracked(path: str, rng: random.Random) -> str:
    """``path`` with one or two random tracking parameters, as links from social and search carry."""
    params = [p + (str(rng.randrange(10**9)) if p.endswith(("=", ".")) else "") for p in rng.sample(TRACKING, 2)]
    return path + "?" + "&".join(params[: rng.randint(1, 2)])


SECTIONS = ("rio", "economia", "politica", "futebol")
FRONT_SHARE = 0.1  # of the Zipf mix's requests go to section fronts
# ... and to feeds and the news sitemap: aggregators and crawlers poll each every few minutes,
# thousands of them, so a few per second against hundreds of readers (2 % at 400 req/s is 8 polls/s,
# 2,400 pollers each reading one feed every 5 min).
FEED_SHARE = 0.02
FEED_PATHS = ("/rss.xml", "/sitemap-news.xml", *(f"/{section}/rss.xml" for section in SECTIONS))
