"""A fleet on one machine: Varnish hosts, each a network namespace running varnishd and its purge
agent (as a Varnish pod runs both), in front of the stack's renderer, Redis and FerretDB, which
stay on the machine itself and listen on its ``back`` address (see ``devstack.hosts``)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from devstack import servers
from devstack.hosts import Host, Network
from devstack.links import SlowLinks
from devstack.stack import Ports, Stack, start_stack


@dataclass
class Node:
    """One Varnish host: its name in the purge log, where readers and probes reach it."""

    name: str
    host: Host
    public_url: str
    agent_url: str


@dataclass
class Fleet:
    """The stack on the machine and the Varnish hosts in front of it."""

    stack: Stack
    network: Network
    nodes: list[Node] = field(default_factory=list)

    def stop(self) -> None:
        """Stop the hosts' servers, remove the hosts, then stop the stack."""
        try:
            for name in [n for n in self.stack.started if n.startswith(("agent", "varnish"))]:
                self.stack.started.pop(name).stop()
            self.network.close()
        finally:
            self.stack.stop()


def start_fleet(
    run_dir: Path,
    varnish_hosts: int = 3,
    environ: Mapping[str, str] | None = None,
    renderer_env: Mapping[str, str] | None = None,
    load_balancer: bool = False,
    redis_hosts: bool = False,
    slow_links: bool = False,
) -> Fleet:
    """The stack (no Varnish on the machine; ``environ`` and ``renderer_env`` as ``start_stack``
    takes them) and ``varnish_hosts`` Varnish hosts named ``edge-1``…, each reaching the renderer
    and Redis over its back link. ``load_balancer``: HAProxy in front of the hosts, sending readers
    to those whose agent says ready (the stack's ``site_url``). ``redis_hosts``: Redis is a primary
    on host ``redis-1`` and a replica on ``redis-2``, each with a sentinel, and a third sentinel on
    the machine, instead of one Redis on the machine. ``slow_links``: each Varnish host reaches the
    renderer and Redis through toxiproxy, so that its link can be slowed (``Stack.links``)."""
    if slow_links and redis_hosts:
        raise ValueError("slow links proxy one Redis, not a Sentinel group")
    network = Network()
    stack: Stack | None = None
    redis: dict[str, servers.Server] = {}
    try:
        ports = Ports.free()
        # Reached from the hosts over the back network (a private bridge: no password needed there).
        here = servers.Place(network.back_gateway)
        if redis_hosts:
            primary, replica = (network.add_host(name) for name in ("redis-1", "redis-2"))
            at = [servers.Place(host.back_ip, host.wrap) for host in (primary, replica)]
            redis, redis_url = servers.redis_sentinel_group(run_dir, at[0], at[1], (at[0], at[1], here))
        else:
            bind = ["--bind", "127.0.0.1", here.address, "--protected-mode", "no"]
            redis = {"redis": servers.redis_server(run_dir, ports.redis, extra=bind).start()}
            redis_url = f"redis://{here.address}:{ports.redis}/0"
        stack_environ = {**(os.environ if environ is None else environ), "REDIS_URL": redis_url}
        stack = start_stack(
            run_dir, ports, stack_environ, renderer_env={"ADDRESS": "0.0.0.0", **(renderer_env or {})}, varnish_nodes=0
        )
        stack.started.update(redis)
        fleet = Fleet(stack, network)
        stack.hosts = network.hosts
        if slow_links:
            port = servers.free_port()
            stack.started["toxiproxy"] = servers.toxiproxy(run_dir, port, here.address).start()
            stack.links = SlowLinks(f"http://{here.address}:{port}", here.address)
        for index in range(1, varnish_hosts + 1):
            fleet.nodes.append(_start_node(fleet, f"edge-{index}", renderer_env or {}))
        if load_balancer:
            port = servers.free_port()
            backends = [
                servers.Backend(n.name, n.host.front_ip, _port(n.public_url), _port(n.agent_url)) for n in fleet.nodes
            ]
            stack.started["haproxy"] = servers.haproxy(run_dir, port, "/ready", backends).start()
            stack.edge_url = f"http://127.0.0.1:{port}"
        return fleet
    except BaseException:
        if stack is not None:
            stack.stop()
        for server in redis.values() if stack is None else ():
            server.stop()
        network.close()
        raise


def _start_node(fleet: Fleet, name: str, renderer_env: Mapping[str, str]) -> Node:
    stack, network = fleet.stack, fleet.network
    host = network.add_host(name)
    public, admin, agent_port = servers.free_port(), servers.free_port(), servers.free_port()
    renderer_port, agent_env = stack.ports.renderer, {**stack.env, **renderer_env}
    if stack.links is not None:  # through proxies of its own
        renderer_port = stack.links.add(name, "renderer", f"127.0.0.1:{stack.ports.renderer}")
        redis_port = stack.links.add(name, "redis", f"127.0.0.1:{stack.ports.redis}")
        agent_env["REDIS_URL"] = f"redis://{network.back_gateway}:{redis_port}/0"
    varnish = servers.varnish(
        stack.run_dir, public, renderer_port, admin, backend_host=network.back_gateway, address="0.0.0.0"
    )
    varnish.argv, varnish.host = host.wrap(varnish.argv), host.front_ip
    stack.started[f"varnish-{name}"] = varnish.start()
    agent = servers.purge_agent(stack.run_dir, agent_port, name, admin, agent_env, host.front_ip)
    agent.argv = host.wrap(agent.argv)
    stack.started[f"agent-{name}"] = agent.start()
    return Node(name, host, f"http://{host.front_ip}:{public}", f"http://{host.front_ip}:{agent_port}")


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])
