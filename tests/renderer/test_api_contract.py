"""The editors' API answers every bad input with a clear 4xx, and its OpenAPI document says exactly
what the server enforces: a schema-driven client finds no disagreement in either direction."""

from __future__ import annotations

import http.client
import json
import socket
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from renderer import openapi, security
from renderer.articles import Refused, parse_article
from tests.conftest import EDITOR_TOKEN, StackClients
from tests.helpers import get, request, unique_slug
from tests.renderer.test_publish import AUTH, article, put

MAX_BYTES = 8 * 1024 * 1024


def deep(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


@pytest.mark.parametrize("levels", [9, 990, 100_000])
def test_deeply_nested_json_is_a_400_on_every_body(stack: StackClients, levels: int) -> None:
    body = b'{"title": ' + deep(levels) + b', "section": "rio", "body_html": "x"}'
    resp = put(stack.renderer, unique_slug(), body)
    assert resp.status == 400 and "nested deeper" in json.loads(resp.body)["error"], resp.text
    resp = request(stack.renderer, "POST", "/api/purge", b'{"keys": ' + deep(levels) + b"}", AUTH)
    assert resp.status == 400 and "nested deeper" in json.loads(resp.body)["error"], resp.text


@pytest.mark.parametrize("field", ["title", "body_html", "authors", "subtitle"])
def test_lone_surrogates_are_a_400_not_a_retry(stack: StackClients, field: str) -> None:
    slug = unique_slug()
    text = r'"abc \ud800 def"'
    value = f"[{text}]" if field == "authors" else text
    others = json.dumps({k: v for k, v in article().items() if k != field}).encode()
    payload = others[:-1] + f', "{field}": {value}}}'.encode()
    resp = put(stack.renderer, slug, payload)
    assert resp.status == 400 and "surrogate" in json.loads(resp.body)["error"], resp.text
    assert stack.articles.count_documents({"slug": slug}) == 0


def test_the_largest_article_the_schema_allows_is_accepted(stack: StackClients) -> None:
    # 500,000 astral characters, each sent as a \u-escaped surrogate pair: 6 MB of JSON.
    slug = unique_slug()
    body = json.dumps(article(body_html="\U0001f4f0" * 500_000), ensure_ascii=True).encode()
    assert len(body) > 6_000_000
    resp = put(stack.renderer, slug, body)
    assert resp.status == 201, resp.text[:300]
    assert get(stack.renderer, f"/noticia/{slug}.ghtml").status == 200


def raw_exchange(base: str, head: bytes, body: bytes = b"") -> tuple[int, dict[str, Any]]:
    """Send ``head`` (and ``body``), then read the answer: status and JSON."""
    parts = urlsplit(base)
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head + body)
        data = b""
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    status = int(data.split(b" ", 2)[1])
    return status, json.loads(data.split(b"\r\n\r\n", 1)[1][: _length(data)])


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 1 << 30


def test_any_oversized_body_gets_a_413_with_json(stack: StackClients) -> None:
    slug = unique_slug()
    auth = f"Authorization: Bearer {EDITOR_TOKEN}\r\nContent-Type: application/json\r\n"
    # Over the cap, sent whole: read to its end, then answered.
    over = b'{"title": "' + b"x" * (MAX_BYTES + 10) + b'"}'
    head = f"PUT /api/articles/{slug} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {len(over)}\r\n\r\n".encode()
    status, body = raw_exchange(stack.renderer, head, over)
    assert status == 413 and "larger than" in body["error"]
    # A gigabyte announced: answered at once, before any of it is sent.
    head = f"PUT /api/articles/{slug} HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: {1 << 30}\r\n\r\n".encode()
    status, body = raw_exchange(stack.renderer, head)
    assert status == 413 and "larger than" in body["error"]
    # Chunked, no length announced: counted as it arrives.
    parts = urlsplit(stack.renderer)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    chunks = (b"x" * 65536 for _ in range(MAX_BYTES // 65536 + 2))
    conn.request("POST", "/api/purge", body=chunks, headers=AUTH, encode_chunked=True)
    resp = conn.getresponse()
    assert resp.status == 413 and "larger than" in json.loads(resp.read())["error"]
    conn.close()
    assert stack.articles.count_documents({"slug": slug}) == 0


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/api/articles/algo", "DELETE, PUT"),
        ("GET", "/api/purge", "POST"),
        ("PATCH", "/noticia/algo.ghtml", "GET, HEAD"),
        ("POST", "/healthcheck", "GET, HEAD"),
    ],
)
def test_every_405_names_what_is_allowed(stack: StackClients, method: str, path: str, allow: str) -> None:
    resp = request(stack.renderer, method, path, b"{}", AUTH)
    assert resp.status == 405
    assert set(resp.headers["Allow"].split(", ")) == set(allow.split(", "))


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/",
        "http://[::1]/a.jpg",
        "http://localhost/a.jpg",
        "http://redis.internal/a.jpg",
        "https://Ï/a.jpg",
        "https://imagens.example.org/a b.jpg",
        "http://10.0.0.8/a.jpg",
    ],
)
def test_image_url_must_name_a_public_host(stack: StackClients, url: str) -> None:
    resp = put(stack.renderer, unique_slug(), article(image_url=url))
    assert resp.status == 400 and "image_url" in json.loads(resp.body)["error"], resp.text


# ---- the OpenAPI document against the validator, both ways, with no server needed ----

DOCUMENT = openapi.document(MAX_BYTES)
ARTICLE = DOCUMENT["components"]["schemas"]["Article"]
VALIDATOR = jsonschema.Draft202012Validator(ARTICLE, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)

tricky_text = st.one_of(
    st.sampled_from(["", " ", "\t\n", "x", " manchete ", "Á" * 300, "Á" * 301, "x" * 600, "x" * 601]),
    st.text(max_size=20),
)
tricky_values: dict[str, Any] = {
    "title": tricky_text,
    "subtitle": tricky_text,
    "body_html": tricky_text,
    "section": st.sampled_from(
        ["rio", "pop-arte", "Rio", "rio-", "a" * 60, "a" * 61, "", "r io", "economia2", "politca", "api"]
    ),
    "authors": st.one_of(st.lists(tricky_text, max_size=3), st.just(["x"] * 21), st.just("Redação")),
    "published_at": st.sampled_from(
        [
            "2026-11-23T10:00:00Z",
            "2026-11-23T10:00:00.5-03:00",
            "2026-11-23T10:00Z",
            "2026-11-23",
            "2026-11-23T10:00:00",
            "2026-13-01T10:00:00Z",
            "2026-02-30T10:00:00Z",
            "2026-11-23t10:00:00z",
        ]
    ),
    "image_url": st.sampled_from(
        [
            "https://s2.glbimg.com/a.jpg",
            "http://imagens.example.org:8080/x/y.png?w=300#f",
            "https://Ï/a.jpg",
            "http://127.0.0.1/a.jpg",
            "http://localhost/a.jpg",
            "http://cdn.local/a.jpg",
            "ftp://example.org/a.jpg",
            "https://example.org/a b.jpg",
            "https://example/a.jpg",
            "https://xn--mnchen-3ya.de/a.jpg",
        ]
    ),
    "image_width": st.sampled_from([1, 1200, 20_000, 0, -1, 20_001, 1.5, 1200.0, "1200", True]),
    "image_height": st.sampled_from([1, 675, 20_000, 0, 20_001, 675.5, "675", False]),
    "image_alt": tricky_text,
}


@st.composite
def candidate_articles(draw: st.DrawFn) -> dict[str, Any]:
    payload = {"title": "Manchete", "section": "rio", "body_html": "<p>x</p>"}
    for name in draw(st.lists(st.sampled_from(sorted(tricky_values)), max_size=3, unique=True)):
        payload[name] = draw(tricky_values[name])
    if draw(st.integers(0, 3)) == 0:  # a whole lead image, then maybe one of its parts spoiled
        payload.update(image_url="https://s2.glbimg.com/a.jpg", image_width=1200, image_height=675, image_alt="Rua")
    if draw(st.booleans()):
        payload.pop(
            draw(st.sampled_from(["title", "section", "body_html", "image_url", "image_width", "image_alt"])), None
        )
    if draw(st.integers(0, 9)) == 0:
        payload[draw(st.sampled_from(["extra", "image_url"]))] = None
    return payload


@settings(max_examples=400, deadline=None)
@given(payload=candidate_articles())
def test_openapi_schema_and_validation_agree(payload: dict[str, Any]) -> None:
    schema_says = VALIDATOR.is_valid(payload)
    try:
        parse_article("uma-noticia", json.dumps(payload).encode(), "application/json")
        server_says = True
    except Refused:
        server_says = False
    assert schema_says == server_says, (payload, list(VALIDATOR.iter_errors(payload))[:1])


def test_openapi_lists_every_status_each_operation_can_answer() -> None:
    paths = DOCUMENT["paths"]
    assert DOCUMENT["x-max-body-bytes"] == MAX_BYTES
    for operation in (paths["/api/articles/{slug}"]["put"], paths["/api/purge"]["post"]):
        assert {"400", "401", "403", "405", "413", "415", "202"} <= set(operation["responses"])
    assert {"200", "202", "404", "412", "503"} <= set(paths["/api/articles/{slug}"]["delete"]["responses"])
    assert {"401", "403", "405", "503"} <= set(paths["/api/purge/pending"]["get"]["responses"])


def test_an_http_image_is_refused_because_pages_load_images_over_https_only() -> None:
    body = json.dumps(
        {"title": "T", "section": "rio", "body_html": "<p>x</p>", "image_url": "http://example.org/a.jpg"}
        | {"image_width": 1200, "image_height": 675, "image_alt": "Rua alagada"}
    )
    with pytest.raises(Refused) as refused:
        parse_article("imagem-http", body.encode(), "application/json")
    assert refused.value.status == 400 and "https" in refused.value.message
    assert "img-src 'self' https: data:" in security.page_headers("<style></style>", 0)["Content-Security-Policy"]
