"""The whole local stack: Redis, FerretDB, the renderer and Varnish, wired by environment."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from devstack import servers
from devstack.hosts import Host
from devstack.links import SlowLinks
from devstack.servers import Server
from renderer import contract

COLLECTIONS = (contract.ARTICLES_COLLECTION, contract.LISTINGS_COLLECTION)

# The purge API stub's account for each vendor: (the setting naming it, its id, its token).
STUB_ACCOUNTS = {
    "fastly": ("FASTLY_SERVICE_ID", "devstack-service", "devstack-fastly-token"),
    "cloudflare": ("CLOUDFLARE_ZONE_ID", "devstack-zone", "devstack-cloudflare-token"),
}
STUB_CREDENTIALS = (
    "--fastly-service", STUB_ACCOUNTS["fastly"][1], "--fastly-token", STUB_ACCOUNTS["fastly"][2],
    "--cloudflare-zone", STUB_ACCOUNTS["cloudflare"][1], "--cloudflare-token", STUB_ACCOUNTS["cloudflare"][2],
)  # fmt: skip


def emulated_cdn_settings(vendor: str, api_url: str) -> dict[str, str]:
    """The renderer's settings for purging the emulated CDN through the stub's ``vendor`` API."""
    if vendor not in STUB_ACCOUNTS:
        raise ValueError(f"no emulated CDN speaks {vendor!r}: fastly or cloudflare")
    account_setting, account, token = STUB_ACCOUNTS[vendor]
    prefix = vendor.upper()
    return {
        "CDN_PURGER": vendor,
        f"{prefix}_API_URL": api_url,
        account_setting: account,
        f"{prefix}_API_TOKEN": token,
    }


# Where scripts/run records the state file of the stack it runs; scripts/chaos reads it.
CURRENT_STACK = Path.home() / ".cache" / "pagecache" / "current-stack"


@dataclass(frozen=True)
class Ports:
    """Where each server listens."""

    redis: int
    mongodb: int
    renderer: int
    varnish: int  # the public listener (readers)
    varnish_admin: int  # the admin listener (purges and bans from renderers)

    @classmethod
    def defaults(cls) -> Ports:
        """The well-known ports ``scripts/run`` uses."""
        return cls(redis=6379, mongodb=27017, renderer=8888, varnish=6081, varnish_admin=6082)

    @classmethod
    def free(cls) -> Ports:
        """Free ports, so that runs never collide."""
        return cls(*(servers.free_port() for _ in range(5)))


@dataclass
class Stack:
    """Servers started for this run (external ones are only named in ``env``)."""

    run_dir: Path
    ports: Ports
    env: dict[str, str]
    # Each Varnish node's public listener, where readers go.
    public_urls: list[str] = field(default_factory=list)
    # Each node's purge agent (readiness, metrics) and admin listener (PURGE, BAN), in the same order.
    agent_urls: list[str] = field(default_factory=list)
    admin_urls: list[str] = field(default_factory=list)
    started: dict[str, Server] = field(default_factory=dict)
    cdn_url: str | None = None  # the emulated CDN in front of the Varnish nodes, when there is one
    cdn_api_url: str | None = None  # its purge API stub
    # A load balancer in front of the Varnish nodes (readers' way in, without a CDN), if any.
    edge_url: str | None = None
    # The hosts (network namespaces) some of its servers run in, by name (``devstack.fleet``).
    hosts: dict[str, Host] = field(default_factory=dict)
    links: SlowLinks | None = None  # the hosts' slow links, when they have them

    @property
    def site_url(self) -> str:
        """Where readers go: the emulated CDN if there is one, else the load balancer in front of
        the Varnish nodes, else the first node's public listener (without Varnish, the renderer)."""
        if front := self.cdn_url or self.edge_url:
            return front
        return self.public_urls[0] if self.public_urls else self.env.get("SITE_URL", self.renderer_url)

    @property
    def renderer_url(self) -> str:
        """The renderer behind Varnish."""
        return f"http://127.0.0.1:{self.ports.renderer}"

    @property
    def state_path(self) -> Path:
        """Where ``save_state`` writes this run's servers (read by scripts/chaos)."""
        return self.run_dir / "stack.json"

    def save_state(self) -> Path:
        """Record ports, environment and server processes, so other tools can find and hurt them."""
        state = {
            "run_dir": str(self.run_dir),
            "ports": self.ports.__dict__,
            "env": self.env,
            "public_urls": self.public_urls,
            "agent_urls": self.agent_urls,
            "admin_urls": self.admin_urls,
            "cdn_url": self.cdn_url,
            "cdn_api_url": self.cdn_api_url,
            "servers": {name: server.to_state() for name, server in self.started.items()},
        }
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=1))
        tmp.replace(self.state_path)
        return self.state_path

    @classmethod
    def load_state(cls, path: Path) -> Stack:
        """A stack described by ``save_state``, its servers adopted by pid."""
        state = json.loads(path.read_text())
        stack = cls(Path(state["run_dir"]), Ports(**state["ports"]), dict(state["env"]), list(state["public_urls"]))
        stack.cdn_url, stack.cdn_api_url = state.get("cdn_url"), state.get("cdn_api_url")
        stack.agent_urls = list(state.get("agent_urls", []))
        stack.admin_urls = list(state.get("admin_urls", []))
        stack.started = {name: Server.from_state(s) for name, s in state["servers"].items()}
        return stack

    def refresh_from_state(self) -> None:
        """Adopt the pids another tool (scripts/chaos) recorded after restarting a server."""
        if not self.state_path.exists():
            return
        recorded = Stack.load_state(self.state_path).started
        for name, server in self.started.items():
            newer = recorded.get(name)
            if newer is not None and newer.pid != server.pid:
                self.started[name] = newer

    def stop(self) -> None:
        """Stop every server this run started, the front first."""
        front_first = sorted(
            self.started,
            key=lambda n: (
                "cdn",
                "haproxy",
                "agent",
                "varnish",
                "toxiproxy",
                "renderer",
                "ferretdb",
                "sentinel",
                "redis",
            ).index(n.split("-")[0]),
        )
        for name in front_first:
            self.started[name].stop()


def start_stack(
    run_dir: Path,
    ports: Ports,
    environ: Mapping[str, str] | None = None,
    renderer_env: Mapping[str, str] | None = None,
    varnish_nodes: int = 1,
    redis_sentinel: bool = False,
    cdn: str | None = None,
    cdn_port: int | None = None,
    cdn_api_options: tuple[str, ...] = (),
) -> Stack:
    """Start what ``environ`` does not already point at: a server named by REDIS_URL or MONGODB_URL
    is used as it is. ``varnish_nodes`` Varnish instances share the renderer (the first on
    ``ports.varnish`` and ``ports.varnish_admin``, named ``varnish``, ``varnish-2``, …; 0: none),
    each with its purge agent (``agent``, ``agent-2``, …) that reads the purge log and purges its
    node through the admin listener, named in the log as its Varnish is. Readers use the public ones.
    ``redis_sentinel``: Redis is ``servers.redis_sentinel_group``, named by a ``redis+sentinel://`` URL.
    ``cdn`` (``fastly`` or ``cloudflare``): an emulated CDN in front of the first Varnish node (on
    ``cdn_port``), purged by the renderer through the purge API stub speaking that vendor's API.
    Stops whatever started if a later step fails."""
    environ = dict(os.environ if environ is None else environ)
    run_dir.mkdir(parents=True, exist_ok=True)
    varnish_ports = [(ports.varnish, ports.varnish_admin)] + [
        (servers.free_port(), servers.free_port()) for _ in range(varnish_nodes - 1)
    ]
    public_urls = [f"http://127.0.0.1:{public}" for public, _ in varnish_ports]
    env = {
        "REDIS_URL": environ.get("REDIS_URL", f"redis://127.0.0.1:{ports.redis}/0"),
        "MONGODB_URL": environ.get("MONGODB_URL", f"mongodb://127.0.0.1:{ports.mongodb}/"),
        "MONGODB_DB": environ.get("MONGODB_DB", "pagecache"),
    }
    for name in ("EDITOR_TOKENS", "SITE_SECTIONS"):  # who may publish, and to which sections
        if name in environ:
            env[name] = environ[name]
    if not varnish_nodes:
        varnish_ports, public_urls = [], []
    stack = Stack(run_dir, ports, env, public_urls)
    cdn_env: dict[str, str] = {}
    if cdn:
        cdn_public, cdn_admin, cdn_api = cdn_port or servers.free_port(), servers.free_port(), servers.free_port()
        stack.cdn_url, stack.cdn_api_url = f"http://127.0.0.1:{cdn_public}", f"http://127.0.0.1:{cdn_api}"
        cdn_env = emulated_cdn_settings(cdn, stack.cdn_api_url)
    env["SITE_URL"] = environ.get("SITE_URL", stack.site_url)  # the CDN's, when there is one
    try:
        if cdn:
            stub = servers.cdn_api(run_dir, cdn_api, cdn_admin, *STUB_CREDENTIALS, *cdn_api_options)
            stack.started["cdn-api"] = stub.start()
        if "REDIS_URL" not in environ and redis_sentinel:
            group, env["REDIS_URL"] = servers.redis_sentinel_group(run_dir)
            stack.started.update(group)
        elif "REDIS_URL" not in environ:
            stack.started["redis"] = servers.redis_server(run_dir, ports.redis).start()
        if "MONGODB_URL" not in environ:
            stack.started["ferretdb"] = servers.ferretdb(run_dir, ports.mongodb).start()
            servers.index_ferretdb_ids(
                run_dir, ports.mongodb, env["MONGODB_DB"], (contract.ARTICLES_COLLECTION, contract.LISTINGS_COLLECTION)
            )
        renderer_env = {**env, **cdn_env, **(renderer_env or {})}
        stack.started["renderer"] = servers.renderer(run_dir, ports.renderer, renderer_env).start()
        agent_env = {**env, **(renderer_env or {})}
        for index, (public, admin) in enumerate(varnish_ports):
            suffix = "" if index == 0 else f"-{index + 1}"
            stack.started[f"varnish{suffix}"] = servers.varnish(run_dir, public, ports.renderer, admin).start()
            agent_port = servers.free_port()
            agent = servers.purge_agent(run_dir, agent_port, f"varnish{suffix}", admin, agent_env)
            stack.started[f"agent{suffix}"] = agent.start()
            stack.agent_urls.append(f"http://127.0.0.1:{agent_port}")
            stack.admin_urls.append(f"http://127.0.0.1:{admin}")
        if cdn:
            edge = int(public_urls[0].rsplit(":", 1)[1])
            stack.started["cdn"] = servers.cdn_varnish(run_dir, cdn_public, cdn_admin, edge).start()
    except BaseException:
        stack.stop()
        raise
    return stack
