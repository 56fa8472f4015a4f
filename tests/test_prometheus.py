"""The operators' kit against real tools: promtool on the rules and a real /metrics scrape, and a
real Prometheus that scrapes a real renderer, fires an alert when MongoDB dies, resolves it when
MongoDB is back, and answers every query of the Grafana dashboard."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from devstack import servers
from devstack.servers import REPO
from tests.conftest import StackClients
from tests.helpers import expire_records, get, unique_slug, wait_until

RULES = REPO / "deploy" / "prometheus" / "pagecache-rules.yml"
RULE_TESTS = REPO / "tests" / "prometheus" / "pagecache-rules.test.yml"
sys.path.insert(0, str(REPO / "deploy" / "grafana"))
import dashboard  # noqa: E402


def promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is not installed: scripts/provision installs Debian's prometheus")
    return subprocess.run([binary, *args], input=stdin, capture_output=True, text=True, timeout=120)


def test_every_alert_rule_passes_its_unit_tests() -> None:
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    alerts = {line.split(":", 1)[1].strip() for line in RULES.read_text().splitlines() if "- alert:" in line}
    assert alerts <= set(RULE_TESTS.read_text().split()), "every alert has a unit test"


def test_a_real_scrape_passes_promtool_check_metrics(stack: StackClients) -> None:
    get(stack.renderer, "/noticia/tiroteio-deixa-um-morto-e-feridos.ghtml")
    with urllib.request.urlopen(stack.renderer + "/metrics", timeout=10) as resp:
        scrape = resp.read().decode()
    checked = promtool("check", "metrics", stdin=scrape)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_committed_dashboard_is_what_its_builder_makes() -> None:
    assert (REPO / "deploy" / "grafana" / "pagecache.json").read_text() == dashboard.render()


@pytest.fixture
def prometheus(make_stack: Callable[..., StackClients], tmp_path: Path) -> Iterator[tuple[StackClients, str]]:
    """A real Prometheus (Debian's) scraping a devstack renderer and a Varnish node's purge agent
    every second, with our rules."""
    s = make_stack(PROCESSES="2")
    port = servers.free_port()
    renderer = s.renderer.removeprefix("http://")
    agent = s.stack.agent_urls[0].removeprefix("http://")
    # Our rules as they are, but without their ``for`` waits (minutes; promtool's unit tests
    # cover those): what this shows is that each expression fires and resolves on real scrapes.
    rules = tmp_path / "rules.yml"
    rules.write_text(re.sub(r"(?m)^\s+for: .*\n", "", RULES.read_text()))
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: [{json.dumps(str(rules))}]\n"
        "scrape_configs:\n"
        f"  - {{job_name: pagecache-renderer, static_configs: [{{targets: [{json.dumps(renderer)}]}}]}}\n"
        f"  - {{job_name: pagecache-purge-agent, static_configs: [{{targets: [{json.dumps(agent)}]}}]}}\n"
    )
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: scripts/provision installs it")
    server = servers.Server(
        "prometheus",
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        port,
        tmp_path / "prometheus.log",
        ready_path="/-/ready",
    ).start()
    try:
        yield s, f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def api(base: str, path: str, **params: str) -> Any:
    url = f"{base}/api/v1/{path}" + ("?" + urllib.parse.urlencode(params) if params else "")
    with urllib.request.urlopen(url, timeout=10) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]


def alert_state(base: str, name: str) -> str | None:
    for alert in api(base, "alerts")["alerts"]:
        if alert["labels"]["alertname"] == name:
            return str(alert["state"])
    return None


STALE_ALERTS = ("PagecacheServingStalePages", "PagecacheStalePagesOld")


@pytest.mark.slow
def test_prometheus_fires_the_stale_alerts_when_mongodb_dies_and_resolves_them(
    prometheus: tuple[StackClients, str],
) -> None:
    s, base = prometheus
    slugs = [unique_slug("alerta") for _ in range(5)]
    for slug in slugs:
        s.add_article(slug)
        assert get(s.renderer, f"/noticia/{slug}.ghtml").status == 200
    wait_until(lambda: api(base, "query", query="up")["result"], timeout=30)
    assert all(alert_state(base, name) is None for name in STALE_ALERTS)

    s.server("ferretdb").kill()
    expire_records(s.redis, *slugs[1:])  # only the last good copies are left
    expire_records(s.redis, slugs[0], rendered_ago=2 * 3600)  # one of them rendered two hours ago
    deadline = time.monotonic() + 60
    while {alert_state(base, name) for name in STALE_ALERTS} != {"firing"}:
        assert time.monotonic() < deadline, {name: alert_state(base, name) for name in STALE_ALERTS}
        for slug in slugs:
            assert get(s.renderer, f"/noticia/{slug}.ghtml").headers["X-Tier"] == "stale"
        time.sleep(0.5)

    # Every panel of the dashboard parses and has data, on the real series of this outage.
    for expr in dashboard.queries():
        result = api(base, "query", query=expr)["result"]
        assert result, f"no data for {expr}"

    s.server("ferretdb").start()
    wait_until(lambda: get(s.renderer, f"/noticia/{slugs[0]}.ghtml").headers["X-Tier"] != "stale", timeout=30)
    # Both resolve about a minute (their rate window) after stale pages stop.
    wait_until(lambda: all(alert_state(base, name) is None for name in STALE_ALERTS), timeout=120, interval=1)
