"""Scaling out under a running Varnish: a renderer started later gets its share of the misses,
because renderers close client connections past CONNECTION_MAX_AGE and Varnish reconnects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from devstack import servers
from tests.conftest import StackClients
from tests.helpers import get, unique_slug, wait_until


def answered(log: Path, prefix: str) -> int:
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    return sum(1 for line in lines if line.get("message") == "request" and line.get("path", "").startswith(prefix))


@pytest.mark.slow
def test_a_renderer_added_later_receives_a_share_of_varnish_misses(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(PROCESSES="1", CONNECTION_MAX_AGE="0.5")
    first = s.server("renderer")
    missed: list[str] = []

    def miss() -> None:
        """One more Varnish miss: a new article's page."""
        missed.append(unique_slug("escala"))
        s.add_article(missed[-1])
        assert get(s.site, f"/noticia/{missed[-1]}.ghtml").status == 200

    for _ in range(10):  # Varnish's connections to the first renderer are open and busy
        miss()
    # A second renderer on the same port (SO_REUSEPORT), as a new pod behind a Service would be.
    second = servers.renderer(s.stack.run_dir, s.stack.ports.renderer, {**s.stack.env, "PROCESSES": "1"})
    second.log_path = s.stack.run_dir / "renderer-added.log"
    second.start(shares_port=True)
    prefix = "/noticia/escala-"
    try:
        wait_until(lambda: second.log_path.exists() and "serving on port" in second.log_path.read_text(), timeout=15)

        def the_new_one_answers() -> bool:
            # Each connection Varnish opens again (every CONNECTION_MAX_AGE) goes to either one
            # (the kernel hashes it): within a few, the new one answers (logs flushed every second).
            miss()
            return answered(second.log_path, prefix) > 0

        wait_until(the_new_one_answers, timeout=30, interval=0.05)
        # Every miss was answered, by one or the other.
        wait_until(
            lambda: answered(first.log_path, prefix) + answered(second.log_path, prefix) >= len(missed), timeout=5
        )
    finally:
        second.stop()
