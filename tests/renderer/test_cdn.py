"""The CDN tier, against the emulated CDN (a second Varnish in front of ours) and the stubs of
Fastly's and Cloudflare's purge APIs: every publish purges the CDN after our Varnish nodes hold
the new version, so no reader through the CDN sees an older version once the publish answered."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from typing import Any, Callable

import pytest

from devstack.stack import emulated_cdn_settings
from tests.conftest import StackClients
from tests.helpers import get, request, unique_slug, wait_until
from tests.renderer.test_publish import AUTH, article, put


def calls(s: StackClients) -> list[dict[str, Any]]:
    """What the purge API stub received."""
    assert s.stack.cdn_api_url is not None
    with urllib.request.urlopen(s.stack.cdn_api_url + "/_stub/calls", timeout=5) as resp:
        return list(json.loads(resp.read()))


def inject(s: StackClients, *faults: dict[str, Any]) -> None:
    """Answers for the stub's next calls, in order."""
    assert s.stack.cdn_api_url is not None
    body = json.dumps(list(faults)).encode()
    req = urllib.request.Request(s.stack.cdn_api_url + "/_stub/faults", body, {"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).close()


def stub_status(s: StackClients, path: str, headers: dict[str, str], body: bytes = b"") -> int:
    """The status the purge API stub answers a hand-made call with."""
    assert s.stack.cdn_api_url is not None
    return request(s.stack.cdn_api_url, "POST", path, body, headers).status


def version_at_cdn(s: StackClients, path: str) -> tuple[int, int]:
    """(status, X-Page-Version) of ``path`` as a reader gets it through the CDN."""
    resp = get(s.site, path)
    return resp.status, int(resp.headers.get("X-Page-Version", "0"))


def held_at_cdn(s: StackClients, slug: str, version: int) -> None:
    """Wait until the CDN holds ``version`` of the article (a hit): only a purge replaces it."""
    path = f"/noticia/{slug}.ghtml"
    wait_until(lambda: version_at_cdn(s, path) == (200, version), timeout=30)
    assert get(s.site, path).headers["X-CDN-Cache"] == "HIT"


def purged_tags(s: StackClients, since: int) -> set[str]:
    """The tags the CDN's API purged (answered 200) since its ``since``-th call."""
    return {tag for c in calls(s)[since:] if c["status"] == 200 for tag in json.loads(c["body"]).get("tags", [])}


def test_a_publish_is_at_the_cdn_when_it_answers_and_a_takedown_is_gone(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(production_defaults=True, cdn="fastly", PROCESSES="1")
    slug = unique_slug("cdn")
    path = f"/noticia/{slug}.ghtml"
    assert get(s.site, path).status == 404  # cached at the CDN as the article that doesn't exist yet
    assert put(s.renderer, slug, article("Primeira versão")).status == 201
    assert version_at_cdn(s, path) == (200, 1)
    # The CDN keeps it now (Surrogate-Control: max-age=CDN_TTL, far longer than Varnish's 10 s).
    hit = get(s.site, path)
    assert hit.headers["X-CDN-Cache"] == "HIT" and "Surrogate-Control" not in hit.headers
    front = get(s.site, "/rio/")
    assert front.status == 200 and "Primeira versão" in front.text

    started = time.monotonic()
    assert put(s.renderer, slug, article("Segunda versão")).status == 200
    answered = time.monotonic() - started
    # The very first read after the answer: the new version (its key was purged hard).
    assert version_at_cdn(s, path) == (200, 2)
    assert answered < 5.0  # the publish deadline, purges of both tiers included
    # The front was soft-purged (no herd): the CDN may serve its old copy once, while it
    # refetches, and what it refetches from our edge is the new one, which it then keeps.
    wait_until(lambda: "Segunda versão" in get(s.site, "/rio/").text, timeout=5)
    for _ in range(3):
        front = get(s.site, "/rio/")
        assert "Segunda versão" in front.text and "Primeira versão" not in front.text

    fastly = [c for c in calls(s) if c["vendor"] == "fastly"]
    assert all(c["headers"]["Fastly-Key"] == "devstack-fastly-token" and c["status"] == 200 for c in fastly)
    keys = {
        (k, c["headers"].get("Fastly-Soft-Purge") == "1") for c in fastly for k in c["headers"]["Surrogate-Key"].split()
    }
    # The article's own key is hard (no older version once acknowledged); the listings soft.
    assert (f"article-{slug}", False) in keys and ("section-rio", True) in keys and ("home", True) in keys

    assert request(s.renderer, "DELETE", f"/api/articles/{slug}", None, AUTH).status == 200
    assert get(s.site, path).status == 404
    assert slug not in get(s.site, "/rio/").text

    # The stub refuses what Fastly refuses: a wrong token, another service, no keys.
    good = {"Fastly-Key": "devstack-fastly-token", "Surrogate-Key": "home"}
    assert stub_status(s, "/service/devstack-service/purge", {**good, "Fastly-Key": "x"}) == 401
    assert stub_status(s, "/service/other/purge", good) == 404
    assert stub_status(s, "/service/devstack-service/purge", {**good, "Surrogate-Key": ""}) == 400


def test_no_reader_through_the_cdn_sees_an_older_version_after_a_publish_answered(
    make_stack: Callable[..., StackClients],
) -> None:
    """A history: readers hammer the article and the front through the CDN while an editor
    publishes ten versions; every read that began after version v was acknowledged names v or
    newer (the front: shows its title). Before the ordering (CDN purged before Varnish held the
    new copy) the CDN refetched the old front from Varnish's soft-purged copy and kept it."""
    s = make_stack(production_defaults=True, cdn="fastly", PROCESSES="2")
    slug = unique_slug("historia")
    path = f"/noticia/{slug}.ghtml"
    assert put(s.renderer, slug, article("Versão 1")).status == 201
    acknowledged: list[tuple[float, int]] = []
    reads: list[tuple[float, str, int]] = []
    stop = threading.Event()

    def reader(page: str) -> None:
        while not stop.is_set():
            began = time.monotonic()
            resp = get(s.site, page)
            if page == path:
                reads.append((began, page, int(resp.headers.get("X-Page-Version", "0"))))
            else:
                shown = [n for n in range(1, 12) if f"Versão {n}<" in resp.text]
                reads.append((began, page, max(shown, default=0)))

    threads = [threading.Thread(target=reader, args=(page,)) for page in (path, path, "/rio/", "/rio/")]
    for thread in threads:
        thread.start()
    try:
        for version in range(2, 12):
            resp = put(s.renderer, slug, article(f"Versão {version}"))
            assert resp.status == 200, resp.text
            acknowledged.append((time.monotonic(), version))
            time.sleep(0.3)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    # The article's key is purged hard: every read after the answer. The front is soft-purged at
    # the CDN (it serves its old copy while it refetches, which takes a few ms under these
    # readers): every read from half a second after the answer, when the CDN holds what it
    # refetched. A CDN that refetched the old front from our edge would keep it for a second.
    older = [
        (page, got, version, round(began - at, 3))
        for began, page, got in reads
        for at, version in acknowledged
        if began > at + (0 if page == path else 0.5) and got < version
    ]
    assert len(reads) > 100 and not older, older[:5]


def test_a_cdn_api_outage_keeps_the_purges_in_the_log_and_delivers_them_later(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(production_defaults=True, cdn="fastly", PURGE_RETRY_INTERVAL="0.5")
    slug = unique_slug("fora-do-ar")
    path = f"/noticia/{slug}.ghtml"
    assert put(s.renderer, slug, article("Antes da pane")).status == 201
    assert version_at_cdn(s, path) == (200, 1)
    inject(s, {"status": 503, "sticky": True})  # the API is down until told otherwise
    resp = put(s.renderer, slug, article("Durante a pane"))
    report = json.loads(resp.body)
    assert resp.status == 202, report
    assert report["pending"] == ["cdn:fastly"] and "the log keeps it" in report["steps"]["varnish"]["cdn:fastly"]
    assert get(s.stack.public_urls[0], path).headers["X-Page-Version"] == "2"  # our edge has it
    assert version_at_cdn(s, path) == (200, 1)  # the CDN does not, yet

    def health() -> dict[str, Any]:
        return dict(json.loads(get(s.renderer, "/healthcheck").body))

    # The backlog is visible to the load balancer as degraded (still serving), never failure.
    degraded = wait_until(lambda: (h := health())["status"] == "degraded" and h)
    backlog = next(r for r in degraded["results"] if r["checker"] == "purge log")
    assert backlog["passed"] is False and "not yet taken by the CDN" in backlog["output"]
    assert version_at_cdn(s, path) == (200, 1)
    assert s.stack.cdn_api_url is not None
    urllib.request.urlopen(urllib.request.Request(s.stack.cdn_api_url + "/_stub/faults", method="DELETE")).close()
    # The log's CDN reader delivers it once the API answers again: the CDN shows the new version.
    wait_until(lambda: version_at_cdn(s, path) == (200, 2), timeout=30)
    wait_until(lambda: health()["status"] == "success")


@pytest.mark.parametrize("vendor", ["cloudflare"])
def test_cloudflare_purges_keep_to_the_plans_rate_and_honour_retry_after(
    make_stack: Callable[..., StackClients], vendor: str
) -> None:
    s = make_stack(
        production_defaults=True,
        cdn=vendor,
        cdn_api_options=("--cloudflare-rate", "1", "--cloudflare-burst", "2"),
        # A little under the plan's (1/s, bursts of 2), as one configures it: the two buckets
        # are timed apart by the network.
        CLOUDFLARE_PURGE_RATE="0.8",
        CLOUDFLARE_PURGE_BURST="1",
        PROCESSES="2",  # a 429's Retry-After holds back both, not only the process that got it
        PURGE_RETRY_INTERVAL="0.5",
    )
    # The stub refuses what Cloudflare refuses: a wrong token, more than 100 tags, no tags.
    route, auth = "/client/v4/zones/devstack-zone/purge_cache", {"Authorization": "Bearer devstack-cloudflare-token"}
    assert stub_status(s, route, {"Authorization": "Bearer x"}, b'{"tags": ["home"]}') == 403
    assert stub_status(s, route, auth, json.dumps({"tags": [f"t{n}" for n in range(101)]}).encode()) == 400
    assert stub_status(s, route, auth, b'{"files": []}') == 400
    slugs = [unique_slug("taxa") for _ in range(5)]
    for slug in slugs:
        assert put(s.renderer, slug, article(f"Taxa {slug}")).status in (201, 202)
    for slug in slugs:
        held_at_cdn(s, slug, 1)
    before = len(calls(s))
    for slug in slugs:
        assert put(s.renderer, slug, article(f"Taxa {slug}, corrigida")).status in (200, 202)
    # Every purge reaches the CDN (it holds version 1 for an hour: only a purge brings version
    # 2, its own or the box's), none refused for its rate: the renderer kept to the plan's.
    for slug in slugs:
        wait_until(lambda slug=slug: version_at_cdn(s, f"/noticia/{slug}.ghtml") == (200, 2), timeout=20)
    wait_until(lambda: {f"article-{slug}" for slug in slugs} <= purged_tags(s, before), timeout=30)
    cloudflare = [c for c in calls(s)[before:] if c["headers"].get("Authorization") == auth["Authorization"]]
    assert cloudflare and all(c["status"] == 200 for c in cloudflare), [c["status"] for c in cloudflare]
    # A 429 with Retry-After holds every call back for that long.
    inject(s, {"status": 429, "retry_after": 3})
    before = len(calls(s))
    refused_at = time.time()
    # Within the publish's deadline the CDN's reader waits the 3 s out and purges (200); a longer
    # Retry-After leaves it pending in the log (202), tried again.
    assert put(s.renderer, slugs[0], article("Depois do 429")).status in (200, 202)
    # Version 3 (the third save): a wait for the version before it passed as long as the purge
    # had not happened yet, and failed once it had.
    wait_until(lambda: version_at_cdn(s, f"/noticia/{slugs[0]}.ghtml") == (200, 3), timeout=20)
    after = calls(s)[before:]
    assert after[0]["status"] == 429
    assert all(c["at"] >= refused_at + 3 - 0.1 for c in after[1:]), [c["at"] - refused_at for c in after]


def test_renderers_that_share_a_redis_share_the_plans_purge_rate(make_stack: Callable[..., StackClients]) -> None:
    # Cloudflare's rate limit is the account's, whatever the number of renderers: two instances
    # (two pods), each configured with the plan's rate, must keep to it together, not each.
    plan = {"CLOUDFLARE_PURGE_RATE": "0.8", "CLOUDFLARE_PURGE_BURST": "1", "PROCESSES": "1"}
    plans_limit = ("--cloudflare-rate", "1", "--cloudflare-burst", "2")
    s = make_stack(production_defaults=True, cdn="cloudflare", cdn_api_options=plans_limit, **plan)
    assert s.stack.cdn_api_url is not None
    second = s.editors_renderer(**emulated_cdn_settings("cloudflare", s.stack.cdn_api_url), **plan).start()
    try:
        renderers = (s.renderer, f"http://127.0.0.1:{second.port}")
        slugs = [unique_slug("conta") for _ in range(6)]
        for slug in slugs:
            assert put(s.renderer, slug, article(f"Conta {slug}")).status in (201, 202)
        for slug in slugs:
            held_at_cdn(s, slug, 1)
        before = len(calls(s))
        threads = [
            threading.Thread(target=put, args=(renderers[n % 2], slug, article(f"Conta {slug}, corrigida")))
            for n, slug in enumerate(slugs)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Each at the CDN, which held version 1 for an hour: through a purge at its turn or the queue's.
        for slug in slugs:
            wait_until(lambda slug=slug: version_at_cdn(s, f"/noticia/{slug}.ghtml") == (200, 2), timeout=30)
        wait_until(lambda: {f"article-{slug}" for slug in slugs} <= purged_tags(s, before), timeout=30)
    finally:
        second.stop()
    statuses = [c["status"] for c in calls(s)[before:] if c["vendor"] == "cloudflare"]
    assert statuses and set(statuses) == {200}, statuses  # none refused for the rate (429)


def test_a_takedown_leaves_the_box_of_every_page_at_every_tier_and_an_addition_reaches_the_cdn(
    make_stack: Callable[..., StackClients],
) -> None:
    """The "latest news" box inside a page the CDN keeps for an hour: a takedown is gone from it
    at Varnish and at the CDN when the DELETE answers, and a new article shows in it within the
    promised 20 s (before: the taken-down title stayed for CDN_TTL, an addition took as long)."""
    s = make_stack(production_defaults=True, cdn="fastly", PROCESSES="2")
    page, taken, added = unique_slug("caixa-pagina"), unique_slug("caixa-retirada"), unique_slug("caixa-nova")
    path = f"/noticia/{page}.ghtml"
    assert put(s.renderer, page, article("Página que mostra a caixa")).status == 201
    assert put(s.renderer, taken, article(f"Retirada {taken}", section="economia")).status == 201
    # Every renderer process holds the new box before the page is first read through the tiers.
    for _ in range(6):
        wait_until(lambda: f"Retirada {taken}" in get(s.renderer, path).text, timeout=10)
    wait_until(lambda: f"Retirada {taken}" in get(s.site, path).text, timeout=25)
    held = get(s.site, path)
    assert held.headers["X-CDN-Cache"] == "HIT" and f"Retirada {taken}" in held.text

    assert request(s.renderer, "DELETE", f"/api/articles/{taken}", None, AUTH).status == 200
    for base in (s.site, *s.stack.public_urls):  # the CDN, then our Varnish node itself
        for _ in range(3):
            resp = get(base, path)
            assert resp.status == 200 and f"Retirada {taken}" not in resp.text, (base, resp.headers)

    wait_until(lambda: get(s.site, path).headers["X-CDN-Cache"] == "HIT", timeout=5)
    assert put(s.renderer, added, article(f"Nova {added}", section="economia")).status == 201
    wait_until(lambda: f"Nova {added}" in get(s.site, path).text, timeout=20)
