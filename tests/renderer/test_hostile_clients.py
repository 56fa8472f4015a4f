"""Hostile clients (docs/architecture.rst, "Hostile clients"): no request a client can send makes
a page that other readers get, at our edge or at the CDN in front of it; and the renderer bounds
what a client that doesn't behave can hold (connections, bodies, errors).

The catalogue here is sent as raw bytes, the way an attacker on the public listener would; add a
vector to ``hostile_requests`` (and, where it tells something about the VCL alone, a ``.vtc`` under
``tests/varnish/``).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from typing import Callable

from renderer.settings import Settings
from tests.conftest import EDITOR_TOKEN, StackClients
from tests.helpers import get, request, section_of_its_own, unique_slug, wait_until
from tests.renderer.test_publish import AUTH, article, put

# Varnish's own default (varnishd -p backend_idle_timeout): it reuses an idle backend connection
# for this long, so the renderer must keep one open longer.
VARNISH_BACKEND_IDLE_TIMEOUT = 60.0


def exchange(port: int, data: bytes, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it (or says nothing
    for ``timeout``)."""
    received = []
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        try:
            while chunk := sock.recv(65536):
                received.append(chunk)
        except (TimeoutError, ConnectionResetError):
            pass
    return b"".join(received)


def status_of(answer: bytes) -> int:
    """The status code of a raw HTTP answer (0 for none)."""
    parts = answer.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def raw(start: bytes, *headers: bytes, body: bytes = b"") -> bytes:
    """A request as bytes: its start line, its header lines and ``Connection: close``, then ``body``."""
    return b"\r\n".join([start, *headers, b"Connection: close", b""]) + b"\r\n" + body


def hostile_requests(path: str) -> list[tuple[str, bytes]]:
    """What an attacker sends for ``path``: every vector found so far (2026-12-02), named."""
    target = path.encode()
    get11 = b"GET " + target + b" HTTP/1.1"
    host = b"Host: g1.example"

    def fillers(count: int) -> list[bytes]:
        return [b"X-Filler-%02d: %s" % (i, b"x" * 24) for i in range(count)]

    hosts = (b'a"b', b"a b", b"a,b", b"a/b", b"a@b", b"<x>", b"a\\b", b"a{b}", b"a\xc3\xa9b", b"a\xffb")
    vectors = [(f"Host {bad!r}", raw(get11, b"Host: " + bad)) for bad in hosts]
    vectors += [
        ("absolute-form target", raw(b'GET http://a"b' + target + b" HTTP/1.1", b"Host: x")),
        ("HTTP/1.1 without Host", raw(get11)),
        ("HTTP/1.0, no Host, 55 headers", raw(b"GET " + target + b" HTTP/1.0", *fillers(55))),
        ("Host and 60 headers", raw(get11, host, *fillers(60))),
        ("a header over Varnish's limit", raw(get11, host, b"Cookie: " + b"c" * 9000)),
        ("a bare CR in a header", raw(get11, host, b"X-A: a\rb")),
        ("a body on a GET", raw(get11, host, b"Content-Length: 5", body=b"hello")),
        ("chunked GET", raw(get11, host, b"Transfer-Encoding: chunked", body=b"5\r\nhello\r\n0\r\n\r\n")),
        ("CL and TE", raw(get11, host, b"Content-Length: 4", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n")),
        (
            "forwarding and rewriting headers",
            raw(
                get11,
                host,
                b'X-Forwarded-Host: a"b',
                b"X-Forwarded-Proto: gopher",
                b"X-Original-URL: /api/purge",
                b"X-Rewrite-URL: /metrics",
                b"X-HTTP-Method-Override: DELETE",
            ),
        ),
        ("odd Accept-Encoding", raw(get11, host, b"Accept-Encoding: gzip;q=0, br, x\xff")),
        ("a range", raw(get11, host, b"Range: bytes=0-9")),
        ("conditionals", raw(get11, host, b"If-None-Match: *", b"If-Modified-Since: Fri, 31 Dec 9999 23:59:59 GMT")),
        ("no protocol (HTTP/0.9)", b"GET " + target + b"\r\n\r\n"),
        ("HTTP/2.0 on HTTP/1 framing", raw(b"GET " + target + b" HTTP/2.0", host)),
        ("an unknown method", raw(b"BREW " + target + b" HTTP/1.1", host)),
    ]
    return vectors


def test_no_hostile_request_becomes_the_page_at_our_edge_or_the_cdn(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(production_defaults=True, cdn="fastly")
    section = section_of_its_own()
    slug = unique_slug("alvo")
    # Straight into MongoDB: no publish, so every page is cold at Varnish and at the CDN, and
    # the hostile request is the one that would fill it.
    s.add_article(slug, title="A página de verdade", section=section)
    pages = ["/", f"/{section}/", f"/noticia/{slug}.ghtml"]
    edge = s.stack.public_urls[0]
    ports = {"edge": int(edge.rsplit(":", 1)[1]), "cdn": int(s.site.rsplit(":", 1)[1])}
    answered: Counter[tuple[str, int]] = Counter()
    for page in pages:
        for name, data in hostile_requests(page):
            for port in ports.values():
                status = status_of(exchange(port, data))
                # Every vector is answered at once: a slow one would let a stored answer expire
                # before the reader below comes (one did, and hid the poisoning it found).
                assert status, (name, port)
                answered[(name, status)] += 1
        own = get(s.renderer, page)
        assert own.status == 200, page
        for base in (edge, s.site):
            # Twice: the first may be the fetch, the second what the caches keep.
            for _ in range(2):
                resp = get(base, page)
                assert (resp.status, resp.headers["X-Page-Version"]) == (200, own.headers["X-Page-Version"]), (
                    base,
                    page,
                    resp.status,
                    dict(resp.headers),
                    sorted(answered.items()),
                )
                assert resp.body == own.body, (base, page)
    # The catalogue reached the servers: the bad hosts were refused at our edge.
    assert answered[("Host b'a\"b'", 400)] == 2 * len(pages)


def test_an_attacker_with_a_bad_host_never_takes_the_page_from_readers(
    make_stack: Callable[..., StackClients],
) -> None:
    """The live shape of the attack (measured 2026-12-02 on the old edge: the reader got 400 on
    every request once the fresh copy had expired): about 20 bad requests a second, half at our
    edge and half through the CDN, while a reader polls the home through both for 30 s: past
    the TTL, the grace window and a refetch or two."""
    s = make_stack(production_defaults=True, cdn="fastly")
    edge = s.stack.public_urls[0]
    ports = [int(edge.rsplit(":", 1)[1]), int(s.site.rsplit(":", 1)[1])]
    attack = b'GET / HTTP/1.1\r\nHost: a"b\r\nConnection: close\r\n\r\n'
    stop = threading.Event()
    sent: Counter[int] = Counter()

    def attacker() -> None:
        while not stop.is_set():
            for port in ports:
                sent[status_of(exchange(port, attack))] += 1
            stop.wait(0.1)

    thread = threading.Thread(target=attacker, daemon=True)
    thread.start()
    seen: Counter[tuple[str, int]] = Counter()
    try:
        until = time.monotonic() + 30
        while time.monotonic() < until:
            for base in (edge, s.site):
                seen[(base, get(base, "/").status)] += 1
            time.sleep(0.25)
    finally:
        stop.set()
        thread.join(timeout=10)
    print("reader's answers:", dict(seen), "attacker's answers:", dict(sent))
    assert sum(sent.values()) >= 300, sent  # the attack ran the whole time
    assert {status for _, status in seen} == {200}, (seen, sent)


# The renderer with clients that don't behave.


def test_no_answer_names_its_software(stack: StackClients) -> None:
    slug = unique_slug()
    for method, path, headers in (
        ("GET", "/", {}),
        ("GET", "/noticia/tiroteio-deixa-um-morto-e-feridos.ghtml", {}),
        ("GET", f"/noticia/{slug}.ghtml", {}),
        ("GET", "/robots.txt", {}),
        ("GET", "/healthcheck", {}),
        ("GET", "/healthcheck/live", {}),
        ("GET", "/metrics", {}),
        ("GET", "/api/openapi.json", {}),
        ("PUT", f"/api/articles/{slug}", {}),
        ("DELETE", f"/api/articles/{slug}", {"Authorization": "Bearer wrong"}),
        ("POST", "/", {}),
        ("GET", "/api/purge/pending", AUTH),
    ):
        for base in (stack.renderer, stack.site):
            resp = request(base, method, path, None, headers)
            assert "Server" not in resp.headers, (base, method, path, resp.status, resp.headers["Server"])


def test_small_files_are_served_at_their_exact_paths(stack: StackClients) -> None:
    assert get(stack.renderer, "/robots.txt").status == 200
    assert get(stack.renderer, "/favicon.ico").status == 200
    for path in ("/robotsXtxt", "/faviconXico", "/api/openapiXjson"):
        resp = get(stack.renderer, path)
        assert resp.status == 404, path
        assert not resp.body.startswith(b"User-agent"), path


def test_the_bearer_scheme_is_case_insensitive(stack: StackClients) -> None:
    for scheme in ("bearer", "BEARER", "Bearer  "):
        slug = unique_slug("esquema")
        headers = {**AUTH, "Authorization": f"{scheme} {EDITOR_TOKEN}"}
        resp = request(stack.renderer, "PUT", f"/api/articles/{slug}", json.dumps(article()).encode(), headers)
        assert resp.status in (201, 202), (scheme, resp.status, resp.text)
    for header in ("Bearer", "Bearer ", f"Basic {EDITOR_TOKEN}", f"Bearer{EDITOR_TOKEN}"):
        assert (
            request(stack.renderer, "DELETE", f"/api/articles/{unique_slug()}", None, {"Authorization": header}).status
            == 401
        )


def test_a_date_out_of_range_is_a_clear_400(stack: StackClients) -> None:
    for value in ("0001-01-01T00:00:00+00:01", "9999-12-31T23:59:59-23:59"):
        slug = unique_slug("data")
        resp = put(stack.renderer, slug, article(published_at=value))
        assert resp.status == 400, (value, resp.status, resp.text)
        assert "published_at" in json.loads(resp.body)["error"] and "9999-12-31" in json.loads(resp.body)["error"]
        assert stack.articles.count_documents({"slug": slug}) == 0


def test_an_unauthorised_body_is_never_read(stack: StackClients) -> None:
    """The answer comes before a byte of the body is sent, and the connection is closed: before,
    the renderer waited for (and read) up to four times PUBLISH_MAX_BYTES first."""
    port = int(stack.renderer.rsplit(":", 1)[1])
    for authorization in (b"", b"Authorization: Bearer wrong-token\r\n"):
        head = (
            b"PUT /api/articles/"
            + unique_slug().encode()
            + b" HTTP/1.1\r\nHost: renderer\r\n"
            + authorization
            + b"Content-Type: application/json\r\nContent-Length: 33554432\r\n\r\n"
        )
        answer = exchange(port, head, timeout=10)  # returns once the renderer closes the connection
        assert status_of(answer) == (403 if authorization else 401), answer[:200]
        assert b"\r\nConnection: close\r\n" in answer


def test_idle_slow_and_silent_clients_are_disconnected(stack: StackClients) -> None:
    """HTTP_IDLE_TIMEOUT and HTTP_BODY_TIMEOUT (short here; the defaults are checked below)."""
    renderer = stack.editors_renderer(HTTP_IDLE_TIMEOUT="1", HTTP_BODY_TIMEOUT="1").start()
    try:
        port = renderer.port

        def closed_within(sock: socket.socket, drip: bytes = b"") -> bool:
            """True when the renderer closes ``sock`` (sending ``drip`` every 0.2 s meanwhile)."""
            sock.settimeout(0.2)
            until = time.monotonic() + 15
            while time.monotonic() < until:
                try:
                    if drip:
                        sock.sendall(drip)
                    if sock.recv(65536) == b"":
                        return True
                except TimeoutError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    return True
            return False

        with socket.create_connection(("127.0.0.1", port)) as idle:
            assert closed_within(idle)
        with socket.create_connection(("127.0.0.1", port)) as slow_headers:
            slow_headers.sendall(b"GET / HTTP/1.1\r\nHost: renderer\r\n")
            assert closed_within(slow_headers, drip=b"X-A: b\r\n")
        with socket.create_connection(("127.0.0.1", port)) as slow_body:
            slow_body.sendall(
                b"PUT /api/articles/corpo-lento HTTP/1.1\r\nHost: renderer\r\nAuthorization: Bearer "
                + EDITOR_TOKEN.encode()
                + b"\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"
            )
            assert closed_within(slow_body, drip=b" ")
        # A client that behaves keeps its connection between requests, within the idle timeout.
        with socket.create_connection(("127.0.0.1", port), timeout=5) as polite:
            for _ in range(2):
                polite.sendall(b"GET /healthcheck/live HTTP/1.1\r\nHost: renderer\r\n\r\n")
                assert wait_until(lambda: polite.recv(65536), timeout=5).startswith(b"HTTP/1.1 200")
    finally:
        renderer.stop()


def test_the_connection_timeouts_default_to_bounds_varnish_can_live_with() -> None:
    defaults = Settings()
    # Longer than Varnish keeps an idle backend connection, so Varnish never reuses one the
    # renderer has just closed; bounded, so that idle and slow clients go in about a minute.
    assert VARNISH_BACKEND_IDLE_TIMEOUT < defaults.http_idle_timeout <= 2 * VARNISH_BACKEND_IDLE_TIMEOUT
    assert 0 < defaults.http_body_timeout <= 60
