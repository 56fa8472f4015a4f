"""The load balancer's view of /healthcheck, for real: HAProxy (Debian's) in front of two renderers
takes out the one that fails and keeps the degraded one; the Kubernetes probes name what the
renderer serves."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from devstack import servers
from devstack.servers import REPO
from tests.conftest import StackClients
from tests.helpers import get, request, wait_until


def show_servers_state(stats: Path) -> dict[str, str]:
    """Server name -> UP/DOWN, from HAProxy's stats socket (``show stat``)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(stats))
        sock.sendall(b"show stat\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    rows = [line.split(",") for line in data.decode().splitlines() if line and not line.startswith("#")]
    return {row[1]: row[17] for row in rows if row[0] == "servers" and row[1] not in ("FRONTEND", "BACKEND")}


@pytest.fixture
def two_renderers(make_stack: Callable[..., StackClients]) -> Iterator[tuple[StackClients, dict[str, servers.Server]]]:
    s = make_stack(varnish=False)
    dead = f"127.0.0.1:{servers.free_port()}"  # nothing listens there
    common = {**s.stack.env, "PROCESSES": "1", "HEALTH_CACHE_SECONDS": "0.2"}
    started = {
        # MongoDB and Redis both unreachable, nothing stale: the healthcheck says failure (503).
        "failing": servers.renderer(
            s.stack.run_dir,
            servers.free_port(),
            {**common, "MONGODB_URL": f"mongodb://{dead}/", "REDIS_URL": f"redis://{dead}/0"},
        ).start(),
        # Redis unreachable only: degraded (200), pages come from MongoDB.
        "degraded": servers.renderer(
            s.stack.run_dir, servers.free_port(), {**common, "REDIS_URL": f"redis://{dead}/0"}
        ).start(),
    }
    try:
        yield s, started
    finally:
        for server in started.values():
            server.stop()


def test_haproxy_takes_out_the_failing_renderer_and_keeps_the_degraded_one(
    two_renderers: tuple[StackClients, dict[str, servers.Server]], tmp_path: Path
) -> None:
    s, started = two_renderers
    assert get(f"http://127.0.0.1:{started['failing'].port}", "/healthcheck").status == 503
    degraded = get(f"http://127.0.0.1:{started['degraded'].port}", "/healthcheck")
    assert degraded.status == 200 and json.loads(degraded.body)["status"] == "degraded"

    binary = shutil.which("haproxy") or "/usr/sbin/haproxy"
    if not Path(binary).exists():
        pytest.fail("haproxy is not installed: scripts/provision installs it")
    port, stats = servers.free_port(), tmp_path / "haproxy.sock"
    config = tmp_path / "haproxy.cfg"
    backends = [servers.Backend(name, "127.0.0.1", server.port, server.port) for name, server in started.items()]
    config.write_text(servers.haproxy_config(port, stats, "/healthcheck", backends))
    checked = subprocess.run([binary, "-c", "-f", str(config)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    proc = subprocess.Popen([binary, "-db", "-f", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: stats.exists(), timeout=10)
        wait_until(lambda: show_servers_state(stats) == {"failing": "DOWN", "degraded": "UP"}, timeout=15)
        # Every reader goes to the degraded renderer, which serves pages from MongoDB.
        pids = set()
        for _ in range(10):
            live = get(f"http://127.0.0.1:{port}", "/healthcheck/live")
            assert live.status == 200
            pids.add(json.loads(live.body)["pid"])
        assert pids == {started["degraded"].pid}
        s.add_article("pelo-balanceador")
        page = get(f"http://127.0.0.1:{port}", "/noticia/pelo-balanceador.ghtml")
        assert page.status == 200 and page.headers["X-Tier"] == "mongo"
        time.sleep(1)
        assert show_servers_state(stats) == {"failing": "DOWN", "degraded": "UP"}
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_kubernetes_probes_name_what_the_renderer_serves(stack: StackClients) -> None:
    docs = list(yaml.safe_load_all((REPO / "deploy" / "kubernetes" / "renderer.yaml").read_text()))
    deployment = next(d for d in docs if d and d["kind"] == "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    probes = [container[k] for k in ("readinessProbe", "livenessProbe", "startupProbe") if k in container]
    assert probes
    for probe in probes:
        action = probe["httpGet"]
        port = action["port"] if isinstance(action["port"], int) else ports[action["port"]]
        assert port == 8888  # the renderer's PORT in the ConfigMap/default
        assert get(stack.renderer, action["path"]).status == 200, action["path"]


@pytest.mark.parametrize(
    "path", ["/", "/rio/", "/noticia/tiroteio-deixa-um-morto-e-feridos.ghtml", "/healthcheck", "/healthcheck/live"]
)
def test_head_works_on_every_get_route(stack: StackClients, path: str) -> None:
    got, head = get(stack.renderer, path), request(stack.renderer, "HEAD", path)
    assert head.status == got.status and head.body == b""
    assert head.headers["Content-Type"] == got.headers["Content-Type"]


def test_pages_honour_if_modified_since(stack: StackClients) -> None:
    article = "/noticia/tiroteio-deixa-um-morto-e-feridos.ghtml"
    modified = get(stack.renderer, article).headers["Last-Modified"]
    assert get(stack.renderer, article, {"If-Modified-Since": modified}).status == 304
    assert get(stack.renderer, article, {"If-Modified-Since": "Mon, 01 Jan 2001 00:00:00 GMT"}).status == 200
    # Through Varnish, on pages it doesn't assemble (assembled ones carry no validators at all).
    page = get(stack.site, "/rio/")
    front = page.headers["Last-Modified"]
    assert page.status == 200 and front, (page.status, dict(page.headers))
    assert get(stack.site, "/rio/", {"If-Modified-Since": front}).status == 304
