"""Real servers for the suite: Redis, FerretDB, the renderer and Varnish on free ports.

``stack`` is shared by tests that do not hurt servers; each such test uses its own slugs.
``make_stack`` builds a private stack for a test that kills, freezes or restarts processes.
A test that fails shows the end of the log of every server it used.
Under pytest-xdist each worker has its own shared stack and its own slice of ports.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import pytest
import redis
from pymongo import AsyncMongoClient, MongoClient

from devstack import servers
from devstack.samples import article_document, load_samples, outdate_listings
from devstack.stack import Ports, Stack, start_stack
from tests.helpers import TEST_SECTIONS
from tests.holding_proxy import HoldingProxy


def _worker_ports() -> None:
    """Give each pytest-xdist worker its own slice of ports, so that two never pick the same one."""
    worker, count = os.environ.get("PYTEST_XDIST_WORKER", ""), os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if worker.startswith("gw") and count and "PAGECACHE_PORTS" not in os.environ:
        span = len(servers.PORTS) // int(count)
        low = servers.PORTS.start + int(worker[2:]) * span
        os.environ["PAGECACHE_PORTS"] = f"{low}-{low + span}"


_worker_ports()

EDITOR_TOKEN = "editor-secret-token-for-the-test-suite-0123456789"
# What every test stack is given: the editors' token and the sections tests publish to.
TEST_SITE = {"EDITOR_TOKENS": EDITOR_TOKEN, "SITE_SECTIONS": TEST_SECTIONS}

# Fast breakers and short waits so that fault tests finish quickly; production defaults stay.
FAULT_SETTINGS = {
    "PROCESSES": "1",  # tests that need more processes say so
    "BREAKER_FAIL_MAX": "3",
    "BREAKER_RESET_TIMEOUT": "2",
    "REQUEST_DEADLINE": "1.5",
    "REDIS_TIMEOUT": "0.2",
    "MONGODB_TIMEOUT": "0.5",
    "HEALTH_CACHE_SECONDS": "0.5",
    "HEALTH_CHECK_TIMEOUT": "0.5",
}


class StackClients:
    """A started stack with sync clients for arranging data and counting backend work."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.redis = redis.Redis.from_url(stack.env["REDIS_URL"])
        self.mongo: MongoClient[dict[str, Any]] = MongoClient(stack.env["MONGODB_URL"], serverSelectionTimeoutMS=3000)
        self.articles = self.mongo[stack.env["MONGODB_DB"]]["articles"]

    @property
    def site(self) -> str:
        return self.stack.site_url

    @property
    def renderer(self) -> str:
        return self.stack.renderer_url

    def server(self, name: str) -> Any:
        return self.stack.started[name]

    def add_article(self, slug: str, **fields: Any) -> dict[str, Any]:
        """Store a published article directly in MongoDB (the source of truth)."""
        payload = {
            "slug": slug,
            "title": fields.pop("title", f"Manchete de teste {slug}"),
            "subtitle": "Linha fina de teste",
            "section": "rio",
            "body_html": "<p>Texto da matéria.</p>",
            "authors": ["Redação"],
            "published_at": datetime.now(UTC).isoformat(),
            **fields,
        }
        doc = article_document(payload)
        self.articles.replace_one({"_id": slug}, doc, upsert=True)
        outdate_listings(self.articles.database)
        return doc

    def editors_renderer(self, **settings: str) -> servers.Server:
        """Another renderer (one process, the editors' token, ``settings``) that reaches this
        stack's servers directly, not through any proxy the stack's renderer is given; not started."""
        env = {**self.stack.env, "EDITOR_TOKENS": EDITOR_TOKEN, "PROCESSES": "1", **settings}
        return servers.renderer(self.stack.run_dir, servers.free_port(), env)

    def close(self) -> None:
        self.redis.close()
        self.mongo.close()


# Where each test's servers begin in ``servers.STARTED``, for the logs shown when it fails.
FIRST_STARTED = pytest.StashKey[int]()
_shared: list[Stack] = []


def pytest_runtest_setup(item: pytest.Item) -> None:
    item.stash[FIRST_STARTED] = len(servers.STARTED)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed test (a condition never met, an assertion) shows what its servers logged: those
    it started, and the shared stack's if it used that."""
    report = yield
    if report.failed:
        used = servers.STARTED[item.stash.get(FIRST_STARTED, len(servers.STARTED)) :]
        if "stack" in getattr(item, "fixturenames", ()):
            used = [*(server for shared in _shared for server in shared.started.values()), *used]
        for server in dict.fromkeys(used):
            report.sections.append((f"{server.name} log {server.log_path} (last 40 lines)", server.log_tail(40)))
    return report


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests marked ``slow`` first, so that parallel workers never wait at the end on one long test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackClients]:
    """The shared stack with production settings and the sample articles."""
    started = start_stack(
        tmp_path_factory.mktemp("stack"),
        Ports.free(),
        environ=TEST_SITE,
        renderer_env={"PROCESSES": "1"},
    )
    try:
        load_samples(started.env["MONGODB_URL"], started.env["MONGODB_DB"], started.env["REDIS_URL"])
        clients = StackClients(started)
        _shared.append(started)
        yield clients
        clients.close()
    finally:
        started.stop()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., StackClients]]:
    """Start a private stack (fast fault settings plus ``overrides``) that the test may hurt."""
    made: list[StackClients] = []

    def make(
        varnish: bool = True,
        varnish_nodes: int = 1,
        production_defaults: bool = False,
        cdn: str | None = None,
        cdn_api_options: tuple[str, ...] = (),
        **overrides: str,
    ) -> StackClients:
        """``production_defaults``: the settings users get (breakers, timeouts), not the fast ones.
        ``cdn``: an emulated CDN in front, purged through that vendor's API stub."""
        started = start_stack(
            tmp_path / f"stack{len(made)}",
            Ports.free(),
            environ=TEST_SITE,
            renderer_env={**({} if production_defaults else FAULT_SETTINGS), **overrides},
            varnish_nodes=varnish_nodes if varnish else 0,
            cdn=cdn,
            cdn_api_options=cdn_api_options,
        )
        clients = StackClients(started)
        made.append(clients)
        return clients

    yield make
    for clients in made:
        clients.close()
        clients.stack.refresh_from_state()  # servers that scripts/chaos restarted have new pids
        clients.stack.stop()


@pytest.fixture
def proxy() -> Iterator[HoldingProxy]:
    """A TCP proxy on loopback that can hold back, drop or cut a server's answers."""
    held = HoldingProxy()
    yield held
    held.close()


@pytest.fixture
async def primary_mongo(stack: StackClients) -> AsyncIterator[Any]:
    """The write path's ``MongoArticles`` on the shared stack's stand-in, one attempt per call."""
    from renderer.backends import mongo_articles
    from renderer.resilience import AsyncCircuitBreaker, Guard, RetryPolicy

    client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(stack.stack.env["MONGODB_URL"], tz_aware=True)
    breaker = AsyncCircuitBreaker("test-writes", fail_max=1000, reset_timeout=1)
    guard = Guard(breaker, 10.0, RetryPolicy(1, 0, 0), mongo_articles.is_transient)
    yield mongo_articles.MongoArticles(client, stack.stack.env["MONGODB_DB"], guard, primary=True)
    await client.close()
