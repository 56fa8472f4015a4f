"""Real servers for the suite: Redis, FerretDB, the renderer and Varnish on free ports.

``stack`` is shared by tests that do not hurt servers; each such test uses its own slugs.
``make_stack`` builds a private stack for a test that kills, freezes or restarts processes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import redis
from pymongo import MongoClient

from devstack.samples import article_document, load_samples
from devstack.stack import Ports, Stack, start_stack

EDITOR_TOKEN = "editor-secret-token-for-the-test-suite-0123456789"

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
        return doc

    def close(self) -> None:
        self.redis.close()
        self.mongo.close()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackClients]:
    """The shared stack with production settings and the sample articles."""
    started = start_stack(
        tmp_path_factory.mktemp("stack"),
        Ports.free(),
        environ={"EDITOR_TOKENS": EDITOR_TOKEN},
        renderer_env={"PROCESSES": "1"},
    )
    try:
        load_samples(started.env["MONGODB_URL"], started.env["MONGODB_DB"], started.env["REDIS_URL"])
        clients = StackClients(started)
        yield clients
        clients.close()
    finally:
        started.stop()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[Callable[..., StackClients]]:
    """Start a private stack (fast fault settings plus ``overrides``) that the test may hurt."""
    made: list[StackClients] = []

    def make(
        varnish: bool = True, varnish_nodes: int = 1, production_defaults: bool = False, **overrides: str
    ) -> StackClients:
        """``production_defaults``: the settings users get (breakers, timeouts), not the fast ones."""
        environ: dict[str, str] = {"EDITOR_TOKENS": EDITOR_TOKEN}
        if not varnish:
            environ["VARNISH_URLS"] = "http://127.0.0.1:9"
        started = start_stack(
            tmp_path / f"stack{len(made)}",
            Ports.free(),
            environ=environ,
            renderer_env={**({} if production_defaults else FAULT_SETTINGS), **overrides},
            varnish_nodes=varnish_nodes,
        )
        clients = StackClients(started)
        made.append(clients)
        return clients

    yield make
    for clients in made:
        clients.close()
        clients.stack.refresh_from_state()  # servers that scripts/chaos restarted have new pids
        clients.stack.stop()
