"""Slow links: latency between a host and what it reaches, added by a TCP proxy on the machine.

This kernel has no ``netem``, so ``tc`` cannot delay a host's packets. Toxiproxy (Shopify's, built
from the Go module proxy by ``scripts/provision``) sits between a host and each server it talks to
over its back link: the host connects to a proxy on the machine's back address, the proxy to the
server. ``slow(host, ms)`` adds ``ms`` to every round trip through that host's proxies (half each
way), ``restore(host)`` takes it away; connections stay open throughout, as on a slow network.
"""

from __future__ import annotations

import json
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from devstack.servers import free_port

TOXICS = ("upstream", "downstream")


@dataclass
class SlowLinks:
    """The proxies of one toxiproxy server (its API at ``api_url``), by host."""

    api_url: str
    listen_host: str
    proxies: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.api_url + path, data, method=method)
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=5) as resp:
            answer = resp.read()
        return json.loads(answer) if answer else None

    def add(self, host: str, name: str, upstream: str) -> int:
        """A proxy for ``host`` to ``upstream`` (``address:port``): the port it listens on."""
        listen_port = free_port()
        proxy = f"{host}-{name}"
        listen = f"{self.listen_host}:{listen_port}"
        self._call("POST", "/proxies", {"name": proxy, "listen": listen, "upstream": upstream, "enabled": True})
        self.proxies[host].append(proxy)
        return listen_port

    def slow(self, host: str, ms: int) -> None:
        """Every round trip through ``host``'s proxies takes ``ms`` longer."""
        for proxy in self.proxies[host]:
            for stream in TOXICS:
                toxic = {"name": f"slow-{stream}", "type": "latency", "stream": stream, "toxicity": 1.0}
                self._call("POST", f"/proxies/{proxy}/toxics", {**toxic, "attributes": {"latency": ms // 2}})

    def restore(self, host: str) -> None:
        """``host``'s links at full speed again."""
        for proxy in self.proxies[host]:
            for stream in TOXICS:
                self._call("DELETE", f"/proxies/{proxy}/toxics/slow-{stream}")
