"""Hosts on one machine: each a Linux network namespace with its own loopback and addresses,
joined to this machine by two bridges, as a cache host is to a data centre's two networks:

- ``front``: where readers and the load balancer reach a host (its public listener, its probes);
- ``back``: where it reaches the renderers and Redis (its fetches, the purge log).

The machine itself (the root namespace) holds an address on both and plays everything that is not
a host here: the renderers, Redis, FerretDB, the readers. Faults are what a data centre does to a
host: ``cut()`` takes its back link down (a partition: readers still reach it, it reaches nothing
behind it), ``kill()`` is a power loss (every process ends at once and the host goes silent), and
``boot()`` brings it back with nothing running. Needs root and ``iproute2``; names are
per run, so two runs on one machine do not collide.
"""

from __future__ import annotations

import ipaddress
import os
import random
import secrets
import signal
import subprocess
from dataclasses import dataclass, field


class HostError(RuntimeError):
    """A namespace, bridge or link could not be made (no root, no iproute2)."""


def _ip(*args: str) -> str:
    try:
        done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    except FileNotFoundError as exc:
        raise HostError("iproute2's ip is not installed: run scripts/provision") from exc
    if done.returncode != 0:
        raise HostError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


@dataclass
class Host:
    """One host: a network namespace with an address on each network."""

    name: str
    netns: str
    front_ip: str
    back_ip: str
    back_link: str  # the machine's end of its back link: down is a partition
    front_link: str

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run inside this host."""
        return ["ip", "netns", "exec", self.netns, *argv]

    def cut(self) -> None:
        """Take its back link down: it reaches neither renderers nor Redis; readers still reach it."""
        _ip("link", "set", self.back_link, "down")

    def mend(self) -> None:
        """Its back link up again."""
        _ip("link", "set", self.back_link, "up")

    def pids(self) -> list[int]:
        """Every process running in this host."""
        return [int(pid) for pid in _ip("netns", "pids", self.netns).split()]

    def kill(self) -> None:
        """A power loss: SIGKILL every process in the host at once, and both links down. Killing
        the processes alone would leave its kernel answering for them: refusing connections at
        once, and still sending what they had written (a primary's replication stream reaching a
        replica after they died), which a host without power does not do."""
        self.end_processes()
        for link in (self.front_link, self.back_link):
            _ip("link", "set", link, "down")

    def boot(self) -> None:
        """Back after a power loss, with nothing running yet: both links up."""
        for link in (self.front_link, self.back_link):
            _ip("link", "set", link, "up")

    def end_processes(self) -> None:
        """SIGKILL every process running in the host."""
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@dataclass
class Network:
    """The two bridges and the hosts on them. ``close()`` removes all of it."""

    tag: str = field(default_factory=lambda: secrets.token_hex(2))
    hosts: dict[str, Host] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.front_bridge, self.back_bridge = f"pcf{self.tag}", f"pcb{self.tag}"
        self.front, self.back = _free_subnets()
        self.front_gateway, self.back_gateway = str(self.front[1]), str(self.back[1])
        try:
            for bridge, subnet in ((self.front_bridge, self.front), (self.back_bridge, self.back)):
                # An address of its own: otherwise a bridge takes the lowest of its ports' and
                # changes it as hosts join, and hosts that cached the old one lose the gateway
                # until their ARP entry goes stale (seconds of connect timeouts, found by chance).
                mac = "02:" + ":".join(f"{random.randrange(256):02x}" for _ in range(5))
                _ip("link", "add", bridge, "address", mac, "type", "bridge")
                _ip("addr", "add", f"{subnet[1]}/{subnet.prefixlen}", "dev", bridge)
                _ip("link", "set", bridge, "up")
        except BaseException:
            self.close()
            raise

    def add_host(self, name: str) -> Host:
        """A new host named ``name``, on both networks."""
        index = len(self.hosts) + 2
        netns = f"pc{self.tag}-{name}"
        host = Host(
            name, netns, str(self.front[index]), str(self.back[index]), f"pc{self.tag}b{index}", f"pc{self.tag}f{index}"
        )
        self.hosts[name] = host
        _ip("netns", "add", netns)
        _ip("-n", netns, "link", "set", "lo", "up")
        for net, bridge, subnet, address in (
            ("f", self.front_bridge, self.front, host.front_ip),
            ("b", self.back_bridge, self.back, host.back_ip),
        ):
            outside, inside = f"pc{self.tag}{net}{index}", f"eth{net}"
            _ip("link", "add", outside, "type", "veth", "peer", "name", inside, "netns", netns)
            _ip("link", "set", outside, "master", bridge)
            _ip("link", "set", outside, "up")
            _ip("-n", netns, "addr", "add", f"{address}/{subnet.prefixlen}", "dev", inside)
            _ip("-n", netns, "link", "set", inside, "up")
        return host

    def close(self) -> None:
        """Kill what runs in the hosts, remove them and the bridges."""
        for host in self.hosts.values():
            try:
                host.end_processes()
                _ip("netns", "del", host.netns)  # its ends of the veth pairs go with it
            except HostError:
                pass
        for bridge in (self.front_bridge, self.back_bridge):
            try:
                _ip("link", "del", bridge)
            except HostError:
                pass


def _free_subnets() -> tuple[ipaddress.IPv4Network, ipaddress.IPv4Network]:
    """Two /24s in 10.200.0.0/13 that no interface on this machine uses."""
    used = {ipaddress.ip_interface(word).network for word in _ip("-o", "-4", "addr").split() if "/" in word}
    for _ in range(200):
        third = random.randrange(0, 2**11, 2)
        pair = tuple(ipaddress.ip_network(f"10.{200 + (third + n) // 256}.{(third + n) % 256}.0/24") for n in (0, 1))
        if not any(net.overlaps(other) for net in pair for other in used):
            return pair  # type: ignore[return-value]
    raise HostError("no free pair of /24s in 10.200.0.0/13")
