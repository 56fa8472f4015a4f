"""Publishing and invalidation across every tier and two real Varnish nodes."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from typing import Any, Callable

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from renderer import editor, sanitise
from tests.conftest import EDITOR_TOKEN, StackClients
from tests.helpers import (
    Response,
    expire_records,
    get,
    logged_tier,
    mongo_reads,
    request,
    stored_page,
    unique_slug,
    wait_until,
)

AUTH = {"Authorization": f"Bearer {EDITOR_TOKEN}", "Content-Type": "application/json"}


def article(title: str = "Manchete publicada", **extra: Any) -> dict[str, Any]:
    return {"title": title, "section": "rio", "body_html": "<p>Texto.</p>", "authors": ["Redação"], **extra}


def put(base: str, slug: str, body: Any, headers: dict[str, str] | None = None) -> Response:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return request(base, "PUT", f"/api/articles/{slug}", raw, {**AUTH, **(headers or {})})


def nodes(s: StackClients) -> list[str]:
    """Each Varnish node's public listener (readers)."""
    return s.stack.public_urls


def node_names(s: StackClients) -> list[str]:
    """Each Varnish node's name in the purge log (what publish reports name)."""
    return [name for name in s.stack.started if name.startswith("varnish")]


def title_on(node: str, slug: str) -> str:
    html = get(node, f"/noticia/{slug}.ghtml").text
    return html.split("<h1>", 1)[1].split("</h1>", 1)[0] if "<h1>" in html else ""


@pytest.fixture
def two_nodes(make_stack: Callable[..., StackClients]) -> StackClients:
    return make_stack(varnish_nodes=2)


def test_publish_reaches_both_varnish_nodes_from_redis_without_reading_mongodb(two_nodes: StackClients) -> None:
    s = two_nodes
    slug = unique_slug()
    created = put(s.renderer, slug, article("Primeira versão"))
    assert created.status == 201, created.text
    for node in nodes(s):
        assert title_on(node, slug) == "Primeira versão"
        assert get(node, f"/noticia/{slug}.ghtml").headers["X-Cache"] == "HIT"

    updated = put(s.renderer, slug, article("Segunda versão"), {"If-Match": created.headers["ETag"]})
    assert updated.status == 200, updated.text
    report = json.loads(updated.body)
    assert report["version"] == 2 and report["created"] is False
    assert report["steps"]["mongodb"] == "committed version 2"
    assert report["steps"]["redis"] == "ok" and report["steps"]["invalidate"] == "ok"
    assert report["steps"]["varnish"] == {node: "purged" for node in node_names(s)}
    assert report["pending"] == []
    # Where the publish spent its time, step by step, in order (what scripts/bench prints).
    timing = [part.split(";dur=") for part in updated.headers["Server-Timing"].split(", ")]
    assert [name for name, _ in timing] == [
        "sanitise", "mongodb", "render", "redis", "article purge", "listings", "invalidate", "log", "nodes"
    ]  # fmt: skip
    assert all(float(ms) >= 0 for _, ms in timing)

    reads_after_publish = mongo_reads(s.renderer)
    for node in nodes(s):
        # A hard purge: the next read refetches the new version, which Redis holds already (the
        # renderer's log says so; readers are not told).
        request_id = unique_slug("leitura")
        first = get(node, f"/noticia/{slug}.ghtml", {"X-Request-Id": request_id})
        assert first.headers["X-Cache"] == "MISS" and "<h1>Segunda versão</h1>" in first.text
        assert wait_until(lambda r=request_id: logged_tier(s.server("renderer").log_path, r)) == "redis"
    # The page itself came from Redis; the "latest news" box, which the publish expired, is read
    # once (one read for both nodes: coalesced).
    assert mongo_reads(s.renderer) <= reads_after_publish + 1
    stored = s.articles.find_one({"slug": slug})
    assert stored is not None and stored["version"] == 2 and stored["title"] == "Segunda versão"


def test_a_varnish_node_frozen_during_publish_applies_the_purge_from_the_log_when_back(
    two_nodes: StackClients,
) -> None:
    s = two_nodes
    first, second = nodes(s)
    first_name, second_name = node_names(s)
    slug = unique_slug()
    assert put(s.renderer, slug, article("Antes da pane")).status == 201
    for node in (first, second):
        title_on(node, slug)
    s.server("varnish-2").freeze()
    try:
        resp = put(s.renderer, slug, article("Depois da pane"))
        assert resp.status == 202  # committed; node 2 has not applied the purge yet
        report = json.loads(resp.body)
        assert report["pending"] == [second_name]
        assert report["steps"]["varnish"][first_name] == "purged"
        assert "the log keeps it" in report["steps"]["varnish"][second_name]
        fleet = json.loads(request(s.renderer, "GET", "/api/purge/pending", None, AUTH).body)
        assert fleet["pending"] == [second_name] and fleet["nodes"][second_name]["lag_events"] >= 1
        wait_until(lambda: title_on(first, slug) == "Depois da pane", timeout=2)
    finally:
        s.server("varnish-2").thaw()
    wait_until(lambda: title_on(second, slug) == "Depois da pane", timeout=10)
    wait_until(lambda: json.loads(request(s.renderer, "GET", "/api/purge/pending", None, AUTH).body)["length"] == 0)


@pytest.mark.slow
def test_two_hundred_concurrent_publishes_under_reads_are_all_visible(two_nodes: StackClients) -> None:
    s = two_nodes
    slugs = [unique_slug("lote") for _ in range(200)]
    readers = [f"/noticia/{slug}.ghtml" for slug in slugs[:20]]

    async def run() -> list[int]:
        # Twenty in flight at once, a newsroom's worth of editors saving together, all on the
        # same listings. (At fifty, on two cores shared with other tests' stacks, the stand-in's
        # serialised writes queued the last publishes past their deadline: 503, "retry".)
        async with (
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=20)) as editors,
            aiohttp.ClientSession() as readers_session,
        ):
            done = asyncio.Event()

            async def publish(slug: str) -> int:
                payload = article(f"Lote {slug}")
                async with editors.put(f"{s.renderer}/api/articles/{slug}", json=payload, headers=AUTH) as resp:
                    await resp.read()
                    return resp.status

            async def read_meanwhile() -> None:
                while not done.is_set():
                    for node in nodes(s):
                        for path in readers:
                            async with readers_session.get(node + path) as resp:
                                await resp.read()

            reading = asyncio.ensure_future(read_meanwhile())
            statuses = await asyncio.gather(*(publish(slug) for slug in slugs))
            done.set()
            await reading
            return list(statuses)

    # 202 is committed and applied with a node yet to apply the purge (the log keeps it).
    statuses = asyncio.run(run())
    assert set(statuses) <= {201, 202}, statuses
    assert s.articles.count_documents({"slug": {"$in": slugs}, "version": 1}) == 200
    for slug in slugs:
        for node in nodes(s):
            wait_until(lambda node=node, slug=slug: title_on(node, slug) == f"Lote {slug}", timeout=2, interval=0.05)


def test_unpublish_removes_the_article_from_every_tier(two_nodes: StackClients) -> None:
    s = two_nodes
    slug = unique_slug()
    assert put(s.renderer, slug, article("Vai sair do ar")).status == 201
    for node in nodes(s):
        assert get(node, f"/noticia/{slug}.ghtml").status == 200
    listings = ["/", "/rio/", "/_fragment/latest"]  # each with its record in Redis now
    for path in listings:
        assert "Vai sair do ar" in get(s.renderer, path).text, path

    resp = request(s.renderer, "DELETE", f"/api/articles/{slug}", None, AUTH)
    assert resp.status == 200, resp.text
    assert json.loads(resp.body)["pending"] == []
    for node in nodes(s):
        assert get(node, f"/noticia/{slug}.ghtml").status == 404
        assert "Vai sair do ar" not in get(node, "/").text
    assert stored_page(s.redis, slug).status == 404
    # Even with MongoDB gone, no last good copy brings it back: not the page's, not a listing's
    # (their records past their freshness, so the last good copies are what a reader would get).
    s.server("ferretdb").kill()
    expire_records(s.redis, slug, "@home", "@section:rio", "@fragment:latest")
    assert get(s.renderer, f"/noticia/{slug}.ghtml", timeout=5).status == 404
    for path in listings:
        resp = get(s.renderer, path, timeout=5)
        # The last good copies the publisher stored: the front left without articles is a 404.
        assert resp.status in (200, 404) and "Vai sair do ar" not in resp.text, (path, resp.status)
    assert request(s.renderer, "DELETE", f"/api/articles/{unique_slug()}", None, AUTH).status == 503


def test_renderer_processes_drop_in_process_copies_of_a_published_article(
    make_stack: Callable[..., StackClients],
) -> None:

    s = make_stack(varnish=False)
    other = s.editors_renderer().start()
    try:
        other_url = f"http://127.0.0.1:{other.port}"
        slug = unique_slug()
        assert put(s.renderer, slug, article("Versão antiga")).status == 201  # no Varnish node to wait for
        # Now in its last-good copies: the page, and the listings that show its title.
        listings = ["/", "/rio/", "/_fragment/latest"]
        for path in [f"/noticia/{slug}.ghtml", *listings]:
            assert "Versão antiga" in get(other_url, path).text, path
        assert put(s.renderer, slug, article("Versão nova")).status == 200
        s.server("redis").kill()
        s.server("ferretdb").kill()
        # The other process must not bring the old version back from its in-process copies, not
        # even as a title in a listing (Redis unreachable: a young copy would be served as is).
        for path in [f"/noticia/{slug}.ghtml", *listings]:
            resp = get(other_url, path, timeout=10)
            assert "Versão antiga" not in resp.text, path
            # Nothing, or what the process read since the publish: the box it read again on the
            # announcement shows the new title.
            assert resp.status == 503 or (resp.status == 200 and "Versão nova" in resp.text), path
    finally:
        other.stop()


def test_stale_if_match_is_refused_with_412_and_changes_nothing(stack: StackClients) -> None:
    slug = unique_slug()
    first = put(stack.renderer, slug, article("Versão 1"))
    put(stack.renderer, slug, article("Versão 2"), {"If-Match": first.headers["ETag"]})
    conflict = put(stack.renderer, slug, article("Versão concorrente"), {"If-Match": first.headers["ETag"]})
    assert conflict.status == 412
    assert "version conflict" in json.loads(conflict.body)["error"]
    assert stack.articles.find_one({"slug": slug})["title"] == "Versão 2"


@pytest.mark.parametrize(
    ("headers", "status"),
    [({}, 401), ({"Authorization": "Bearer wrong-token"}, 403), ({"Authorization": "Basic abc"}, 401)],
)
def test_publishing_needs_a_valid_token_and_changes_nothing_without_one(
    stack: StackClients, headers: dict[str, str], status: int
) -> None:
    slug = unique_slug()
    body = json.dumps(article()).encode()
    for method, path in (("PUT", f"/api/articles/{slug}"), ("DELETE", f"/api/articles/{slug}"), ("POST", "/api/purge")):
        resp = request(stack.renderer, method, path, body, {"Content-Type": "application/json", **headers})
        assert resp.status == status
        assert "error" in json.loads(resp.body)
    assert stack.articles.count_documents({"slug": slug}) == 0
    # The public edge does not offer the API at all.
    assert request(stack.site, "PUT", f"/api/articles/{slug}", body, headers).status == 405


def test_request_errors_are_clear(stack: StackClients) -> None:
    slug = unique_slug()
    cases = [
        (b"{not json", {}, 400, "not valid JSON"),
        (json.dumps([1, 2]).encode(), {}, 400, "JSON object"),
        (json.dumps({"section": "rio", "body_html": "x"}).encode(), {}, 400, "title is required"),
        (json.dumps(article(color="red")).encode(), {}, 400, "unknown fields: color"),
        (json.dumps(article(published_at="ontem")).encode(), {}, 400, "published_at"),
        (json.dumps(article(image_url="javascript:alert(1)")).encode(), {}, 400, "image_url"),
        (json.dumps(article()).encode(), {"Content-Type": "text/plain"}, 415, "JSON"),
        (json.dumps(article(body_html="x" * 9_000_000)).encode(), {}, 413, "larger than"),
    ]
    for body, headers, status, words in cases:
        resp = put(stack.renderer, slug, body, headers)
        assert resp.status == status, (words, resp.text)
        assert words in json.loads(resp.body)["error"]
    assert put(stack.renderer, "Not-A-Slug", article()).status == 400
    assert stack.articles.count_documents({"slug": slug}) == 0


def test_script_handlers_and_javascript_urls_are_stored_and_rendered_inert(stack: StackClients) -> None:
    slug = unique_slug()
    body_html = (
        '<p>Ok</p><script>alert("x")</script><img src="https://example.org/a.jpg" onerror="alert(1)">'
        '<a href="javascript:alert(2)">link</a><a href="https://example.org/">fonte</a>'
    )
    assert put(stack.renderer, slug, article(body_html=body_html)).status == 201
    stored = stack.articles.find_one({"slug": slug})["body_html"]
    page = get(stack.site, f"/noticia/{slug}.ghtml").text
    for text in (stored, page.split('<div class="body">', 1)[1]):
        assert "<script" not in text and "onerror" not in text and "javascript:" not in text
    assert '<a href="https://example.org/" rel="noopener noreferrer">fonte</a>' in stored
    # Marked with the allow-list it was cleaned under: renders use it as it is.
    assert stack.articles.find_one({"slug": slug})[sanitise.SANITISED_BY_FIELD] == sanitise.SANITISED_BY


# Invalid payloads: a valid article with exactly one thing wrong, or not an article at all.
wrong_value = st.one_of(
    st.integers(), st.floats(allow_nan=False), st.booleans(), st.lists(st.integers(), min_size=1, max_size=3)
)
field_names = st.sampled_from(["title", "section", "body_html", "subtitle", "authors", "published_at", "image_url"])


BAD_STRINGS = {
    "title": ["", "   ", "x" * 301],
    "body_html": ["", "  "],
    "section": ["", "Seção Inválida", "RIO", "rio de janeiro", "-rio"],
    "published_at": ["2026-13-45", "not a date", "2026-11-23T10:00:00", ""],
    "image_url": ["ftp://example.org/a.jpg", "javascript:alert(1)", "example.org/a.jpg", ""],
}


@st.composite
def invalid_payloads(draw: st.DrawFn) -> bytes:
    base = article(subtitle="Linha fina", published_at="2026-11-23T10:00:00Z")
    kind = draw(st.sampled_from(["drop", "wrong-type", "unknown", "bad-string", "junk"]))
    if kind == "drop":
        base.pop(draw(st.sampled_from(["title", "section", "body_html"])))
    elif kind == "wrong-type":
        base[draw(field_names)] = draw(wrong_value)
    elif kind == "unknown":
        name = draw(st.text(min_size=1, max_size=12).filter(lambda n: n not in base and n not in {"image_url"}))
        base[name] = draw(st.text(max_size=5))
    elif kind == "bad-string":
        name = draw(st.sampled_from(sorted(BAD_STRINGS)))
        base[name] = draw(st.sampled_from(BAD_STRINGS[name]))
    else:
        return draw(st.binary(max_size=64).filter(lambda b: not b.strip().startswith(b"{")))
    return json.dumps(base).encode()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=invalid_payloads())
def test_invalid_payloads_are_4xx_never_5xx_and_write_nothing(stack: StackClients, body: bytes) -> None:
    slug = "propriedade-invalida"
    resp = put(stack.renderer, slug, body)
    assert 400 <= resp.status < 500, (body, resp.status, resp.text)
    assert stack.articles.count_documents({"slug": slug}) == 0
    assert stack.redis.exists(f"page:{slug}") == 0


def test_openapi_document_describes_the_api(stack: StackClients) -> None:
    doc = json.loads(get(stack.renderer, "/api/openapi.json").body)
    assert doc["openapi"].startswith("3.")
    article_schema = doc["components"]["schemas"]["Article"]
    assert article_schema["required"] == ["title", "section", "body_html"]
    assert article_schema["additionalProperties"] is False
    assert {"put", "delete"} <= set(doc["paths"]["/api/articles/{slug}"])


def test_varnish_purges_and_bans_only_on_its_admin_listener_from_its_acl(stack: StackClients) -> None:
    from urllib.parse import urlsplit

    admin = stack.stack.admin_urls[0]
    assert request(admin, "PURGE", "/", None, {"xkey-softpurge": "home"}).status == 200
    assert request(admin, "BAN", "/", None, {"X-Ban-Url": "^/nada$"}).status == 200
    assert request(admin, "BAN", "/", None, {}).status == 400
    assert request(admin, "FOO", "/", None, {}).status == 405
    # The public listener refuses them all, whoever asks.
    for method in ("PURGE", "BAN"):
        refused = request(stack.site, method, "/", None, {"xkey-purge": "home", "X-Ban-Url": "."})
        assert refused.status == 405 and refused.headers["Allow"] == "GET, HEAD"

    def from_other_address(method: str) -> int:
        # 127.0.0.2 is loopback, but not in the purgers ACL.
        port = urlsplit(admin).port
        sock = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=("127.0.0.2", 0))
        with sock:
            sock.sendall(f"{method} / HTTP/1.1\r\nHost: x\r\nxkey-purge: home\r\nConnection: close\r\n\r\n".encode())
            return int(sock.recv(100).split()[1])

    assert from_other_address("PURGE") == 403
    assert from_other_address("BAN") == 403


def test_editor_command_line_publishes_purges_and_unpublishes(
    stack: StackClients, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    slug = unique_slug()
    file = tmp_path / "article.json"
    file.write_text(json.dumps({"slug": slug, **article("Pela linha de comando")}))
    base = ["--url", stack.renderer, "--token", EDITOR_TOKEN]
    assert editor.main([*base, "publish", str(file)]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    assert "Pela linha de comando" in get(stack.site, f"/noticia/{slug}.ghtml").text
    assert editor.main([*base, "purge", "--slug", slug, "--key", "home"]) == 0
    assert json.loads(capsys.readouterr().out)["keys"] == [f"article-{slug}", "home"]

    def queue_length() -> int:
        assert editor.main([*base, "queue"]) == 0
        return int(json.loads(capsys.readouterr().out)["length"])

    # Drained once every node has applied, refreshed and acknowledged what is in the log (the
    # publish's second purge may still be in it).
    wait_until(lambda: queue_length() == 0, timeout=15)
    assert editor.main([*base, "unpublish", slug]) == 0
    capsys.readouterr()
    assert get(stack.site, f"/noticia/{slug}.ghtml").status == 404
    assert editor.main(["--url", stack.renderer, "--token", "wrong", "unpublish", slug]) == 1


def test_a_new_article_is_visible_to_the_very_next_reader_after_a_cached_404(two_nodes: StackClients) -> None:
    s = two_nodes
    slug = unique_slug("urgente")
    for node in nodes(s):
        assert get(node, f"/noticia/{slug}.ghtml").status == 404
        assert get(node, f"/noticia/{slug}.ghtml").headers["X-Cache"] == "HIT"  # the 404 is cached
    assert put(s.renderer, slug, article("Urgente: acaba de sair")).status == 201
    for node in nodes(s):
        # Not even one stale 404 while the page is refetched: the publish hard-purged it.
        resp = get(node, f"/noticia/{slug}.ghtml")
        assert resp.status == 200, resp.headers["X-Cache"]
        assert "Urgente: acaba de sair" in resp.text


def test_publishing_an_article_leaves_its_section_siblings_cached(two_nodes: StackClients) -> None:
    s = two_nodes
    a, b = unique_slug("irma-a"), unique_slug("irma-b")
    assert put(s.renderer, a, article("Irmã A")).status == 201
    assert put(s.renderer, b, article("Irmã B")).status == 201

    def age_of_b(node: str) -> int:
        """How long the object answering B has been in the node (a refetch restarts it; 0: a miss)."""
        resp = get(node, f"/noticia/{b}.ghtml")
        return int(resp.headers["Age"]) if resp.headers["X-Cache"] == "HIT" else 0

    for node in nodes(s):
        for slug in (a, b):
            get(node, f"/noticia/{slug}.ghtml")
    # Old enough that a copy fetched after the publish could not be as old when read just after
    # (the second purge of the first publishes, their settle pass, may refetch it meanwhile).
    ages = [wait_until(lambda node=node: (age := age_of_b(node)) >= 2 and age, timeout=15) for node in nodes(s)]
    published = time.monotonic()
    assert put(s.renderer, a, article("Irmã A, versão 2")).status == 200
    for node in nodes(s):
        wait_until(lambda node=node: title_on(node, a) == "Irmã A, versão 2", timeout=2, interval=0.05)
    # Each node refetched A (and refreshed the listings the publish soft-purged), never B: the
    # object answering B is the one from before, older than the time since the publish.
    since = time.monotonic() - published
    for node, age in zip(nodes(s), ages, strict=True):
        assert age_of_b(node) >= max(age, int(since) + 1)


def test_unconditional_puts_racing_each_other_are_last_writer_wins(stack: StackClients) -> None:
    slug = unique_slug("corrida")
    assert put(stack.renderer, slug, article("Versão 0")).status == 201

    async def race() -> list[int]:
        async with aiohttp.ClientSession() as session:

            async def one(i: int) -> int:
                url = f"{stack.renderer}/api/articles/{slug}"
                async with session.put(url, json=article(f"Versão {i}"), headers=AUTH) as resp:
                    await resp.read()
                    return resp.status

            return list(await asyncio.gather(*(one(i) for i in range(1, 9))))

    assert asyncio.run(race()) == [200] * 8
    stored = stack.articles.find_one({"_id": slug})
    # One of the writers is last. (FerretDB's conditional replace is not atomic across connections,
    # so versions may repeat under this race; MongoDB's single-document writes are.)
    assert stored is not None and stored["version"] >= 2 and stored["title"] in {f"Versão {i}" for i in range(1, 9)}
    # If-Match still refuses a stale version.
    assert put(stack.renderer, slug, article("Tarde demais"), {"If-Match": '"1-0000"'}).status == 412
