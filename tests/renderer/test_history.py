"""Exact by construction, checked over a recorded history (``tests/history.py``): concurrent
editors and readers on a few articles, two renderer processes, two Varnish nodes and the
emulated CDN, the defaults users get. Readers read the articles' pages (and the box in them), the
home and the section front, at every tier. Bounded here (a few seconds);
``PAGECACHE_HISTORY_OPERATIONS`` makes it longer."""

from __future__ import annotations

import json
import os
import random
import re
import threading
import time
from typing import Callable

from tests.conftest import StackClients
from tests.helpers import Response, get, request, unique_slug
from tests.history import Op, check, check_final, check_takedowns
from tests.renderer.test_publish import AUTH, article, put

# PAGECACHE_HISTORY_OPERATIONS=20000 scripts/test -k history: the same check, longer.
OPERATIONS = int(os.environ.get("PAGECACHE_HISTORY_OPERATIONS", "1200"))
CLIENTS = 6
ARTICLES = 3
PUBLISH_DEADLINE = 5.0  # the default PUBLISH_DEADLINE
SECTION = "historia"
# Every kind of listing: pages, and what feed readers and crawlers read.
LISTINGS = ("/", f"/{SECTION}/", f"/{SECTION}/rss.xml", "/rss.xml", "/sitemap-news.xml")
ARTICLE_LINK = re.compile(r'/noticia/([a-z0-9-]+)\.ghtml["<]')


def shown(resp: Response, box_only: bool) -> frozenset[str]:
    """The articles a listing shows, or (``box_only``) the "latest news" box in an article page."""
    html = resp.text
    if box_only:
        html = html.partition('<aside class="latest"')[2].partition("</aside>")[0]
    return frozenset(ARTICLE_LINK.findall(html))


def named_version(resp: Response) -> int | None:
    """The version an answer names: a page's X-Page-Version (else its ETag, ``"<version>-<hash>"``),
    or a write's report."""
    if resp.headers.get("X-Page-Version") is not None:
        return int(resp.headers["X-Page-Version"])
    if resp.headers.get("ETag"):
        return int(resp.headers["ETag"].removeprefix("W/").strip('"').split("-")[0])
    try:
        return int(json.loads(resp.body)["version"])
    except (ValueError, KeyError, TypeError):
        return None


def run_client(
    client: int, s: StackClients, slugs: list[str], budget: list[int], history: list[Op], lock: threading.Lock
) -> None:
    rng = random.Random(client)
    readers = {
        "renderer": s.renderer,
        "cdn": s.site,
        **{f"varnish-{n}": url for n, url in enumerate(s.stack.public_urls, 1)},
    }
    seen: dict[str, int] = {}
    while True:
        with lock:
            if budget[0] <= 0:
                return
            budget[0] -= 1
        slug = rng.choice(slugs)
        kind = rng.choices(["get", "list", "put", "put-if-match", "delete"], weights=[50, 20, 15, 10, 5])[0]
        where = ""
        listed: frozenset[str] = frozenset()
        start = time.monotonic()
        try:
            if kind in ("get", "list"):
                where = rng.choice(sorted(readers))
                path = rng.choice(LISTINGS) if kind == "list" else f"/noticia/{slug}.ghtml"
                resp = get(readers[where], path)
                listed = shown(resp, box_only=kind == "get")
            elif kind == "delete":
                resp = request(s.renderer, "DELETE", f"/api/articles/{slug}", None, AUTH)
            else:
                headers = {"If-Match": f'"{seen.get(slug, 1)}"'} if kind == "put-if-match" else {}
                resp = put(
                    s.renderer, slug, article(f"Versão do cliente {client} às {start:.3f}", section="historia"), headers
                )
            status, version = resp.status, named_version(resp)
            if kind == "list":  # its version is the listings' generation: not an article's
                kind, slug, version = "get", f"listing {path}", None
        except OSError:
            status, version = 0, None
        end = time.monotonic()
        if version is not None:
            seen[slug] = max(seen.get(slug, 0), version)
        with lock:
            history.append(Op(client, kind, slug, start, end, status, version, where, listed))


def test_no_tier_serves_an_older_version_once_a_write_is_acknowledged(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(varnish_nodes=2, production_defaults=True, cdn="fastly", PROCESSES="2")
    slugs = [unique_slug("historia") for _ in range(ARTICLES)]
    for slug in slugs:
        assert put(s.renderer, slug, article("Versão inicial", section=SECTION)).status in (200, 201)
    history: list[Op] = []
    lock = threading.Lock()
    budget = [OPERATIONS]
    threads = [threading.Thread(target=run_client, args=(n, s, slugs, budget, history, lock)) for n in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert len(history) == OPERATIONS
    writes = [op for op in history if op.acknowledged]
    reads = [op for op in history if op.kind == "get" and op.version is not None]
    listing_reads = [op for op in history if op.slug.startswith("listing")]
    assert sum(bool(op.shown) for op in listing_reads) > 50 and sum(bool(op.shown) for op in reads) > 100
    assert len(writes) > 100 and len(reads) > 500, (len(writes), len(reads))

    refused = sum(op.status == 412 for op in history)
    print(f"{len(history)} operations: {len(writes)} acknowledged writes, {refused} refused (412), {len(reads)} reads")
    # The contract starts at the acknowledgement: no grace after it.
    violations = check(history, settle=0.0) + check_takedowns(history)
    assert violations == [], "\n".join(violations[:20])

    # (c) after quiescence (the second purges done), every tier shows MongoDB's state.
    truth = {doc["_id"]: (doc["version"], doc["published"]) for doc in s.articles.find({"_id": {"$in": slugs}})}

    def final_reads() -> list[Op]:
        ops = []
        for slug in slugs:
            for where, url in [
                ("renderer", s.renderer),
                ("cdn", s.site),
                *zip(("varnish-1", "varnish-2"), s.stack.public_urls, strict=True),
            ]:
                resp = get(url, f"/noticia/{slug}.ghtml")
                ops.append(Op(-1, "get", slug, 0.0, 0.0, resp.status, named_version(resp), where))
        return ops

    give_up = time.monotonic() + PUBLISH_DEADLINE * 3
    while (disagreements := check_final(final_reads(), truth)) and time.monotonic() < give_up:
        time.sleep(0.2)
    assert disagreements == [], "\n".join(disagreements)
