"""A fleet across hosts (issue 33): Varnish hosts in network namespaces, each with its purge agent,
in front of the renderer and Redis on the machine; faults are what a data centre does to a host.
Production defaults throughout (a node turns unready 3 s after losing the log, publishes stop
waiting for it 10 s after its last heartbeat, a publish answers within 5 s)."""

from __future__ import annotations

import json
import random
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import redis
from pymongo import MongoClient

from devstack.fleet import Fleet, Node, start_fleet
from devstack.servers import SENTINEL_SERVICE
from renderer.purge_log import LOG_KEY, node_group
from renderer.settings import Settings
from tests.conftest import EDITOR_TOKEN
from tests.helpers import get, request, wait_until
from tests.history import Op, check, check_final
from tests.renderer.test_publish import AUTH, article, put


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    started = start_fleet(
        tmp_path / "fleet", varnish_hosts=3, environ={"EDITOR_TOKENS": EDITOR_TOKEN}, renderer_env={"PROCESSES": "1"}
    )
    try:
        yield started
    finally:
        started.stop()


def ready(node: Node) -> bool:
    try:
        return get(node.agent_url, "/ready", timeout=2).status == 200
    except OSError:
        return False


def read(node: Node, slug: str, client: int) -> Op | None:
    """Ask the node's readiness, then, if it is ready, read the article through it. The read counts
    from the moment readiness was asked: what a load balancer that just probed the node sends."""
    asked = time.monotonic()
    if not ready(node):
        return None
    try:
        resp = get(node.public_url, f"/noticia/{slug}.ghtml", timeout=5)
    except OSError:
        return None
    version = int(resp.headers.get("X-Page-Version", "0")) if resp.status == 200 else None
    return Op(client, "get", slug, asked, time.monotonic(), resp.status, version, where=node.name)


def publish(fleet: Fleet, slug: str, title: str) -> tuple[Op, list[str]]:
    """One save; the op and the nodes its answer names as not yet purged."""
    renderer = fleet.stack.renderer_url
    started = time.monotonic()
    resp = put(renderer, slug, article(title))
    body = json.loads(resp.body)
    op = Op(-1, "put", slug, started, time.monotonic(), resp.status, body.get("version"))
    return op, list(body.get("pending", []))


def as_seen_by(node: Node, writes: list[tuple[Op, list[str]]]) -> list[Op]:
    """The writes acknowledged for ``node``: a 202 that names it promised nothing about it yet."""
    return [
        op if node.name not in pending else Op(op.client, op.kind, op.slug, op.start, op.end, 0, None)
        for op, pending in writes
    ]


def test_a_varnish_host_cut_off_during_publishes_turns_unready_and_comes_back_exact(fleet: Fleet) -> None:
    settings = Settings()
    cut = fleet.nodes[2]
    # Articles edited throughout, and one per publish made during the partition (edited once: a
    # purge the cut node never applies would show in its copy, not be hidden by a later one).
    steady = [f"frota-{n}" for n in range(4)]
    once = [f"frota-parte-{n}" for n in range(24)]
    for slug in steady + once:
        assert put(fleet.stack.renderer_url, slug, article(f"{slug} v1")).status == 201
    for node in fleet.nodes:  # every node holds version 1 of everything
        for slug in steady + once:
            assert get(node.public_url, f"/noticia/{slug}.ghtml").status == 200

    writes: list[tuple[Op, list[str]]] = []
    reads: list[Op] = []
    stop = threading.Event()

    def reader(index: int, node: Node) -> None:
        rng = random.Random(index)
        while not stop.is_set():
            op = read(node, rng.choice(steady + once), index)
            if op is None:
                time.sleep(0.05)
            else:
                reads.append(op)

    threads = [threading.Thread(target=reader, args=(i, node), daemon=True) for i, node in enumerate(fleet.nodes)]
    for thread in threads:
        thread.start()
    try:
        version = 2
        for n in range(20):
            writes.append(publish(fleet, steady[n % len(steady)], f"v{version}"))
            version += 1
        cut.host.cut()
        cut_at = time.monotonic()
        parted = iter(once)
        # Long enough for publishes to stop waiting for the node (its heartbeat older than the bound).
        while time.monotonic() - cut_at < settings.purge_node_dead_after + 3 or len(writes) < 60:
            slug = next(parted, None) or steady[len(writes) % len(steady)]
            writes.append(publish(fleet, slug, f"{slug} parte"))
        cut.host.mend()
        mended_at = time.monotonic()
        while len(writes) < 100:
            writes.append(publish(fleet, steady[len(writes) % len(steady)], "depois"))
        wait_until(lambda: ready(cut), timeout=30)
        time.sleep(1)  # reads from the node back in the fleet
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)

    # Every publish answered within its deadline: 200 (every live node applied it) or 202 naming
    # the cut node, which stops being waited for once its heartbeat is older than the bound.
    for op, pending in writes:
        assert op.status in (200, 202) and pending in ([], [cut.name]), (op, pending)
        assert op.end - op.start < settings.publish_deadline + 2, op
    during = [(op, pending) for op, pending in writes if cut_at < op.start < mended_at]
    assert any(pending for _, pending in during), "the cut node was never waited for"
    assert during[-1][1] == [], "publishes still wait for a node that stopped answering"
    # The bounds nest: the cut node's last "ready" came before the first publish that no longer
    # waited for it.
    first_skip = min(op.end for op, pending in during if op.status == 200)
    last_ready = max(op.start for op in reads if op.where == cut.name and op.start < mended_at)
    print(f"cut node: ready {last_ready - cut_at:.1f} s after the cut, skipped after {first_skip - cut_at:.1f} s")
    assert last_ready < first_skip

    # No node that said ready served a version older than one acknowledged for it before.
    for node in fleet.nodes:
        history = as_seen_by(node, writes) + [op for op in reads if op.where == node.name]
        assert not check(history, settle=0.0), check(history, settle=0.0)[:5]
    assert len([op for op in reads if op.where == cut.name and op.start > mended_at]) > 0

    # Back and caught up: every node shows what MongoDB holds, the partition's saves included.
    articles = MongoClient(fleet.stack.env["MONGODB_URL"])[fleet.stack.env["MONGODB_DB"]]["articles"]
    truth = {doc["slug"]: (doc["version"], True) for doc in articles.find({"slug": {"$in": steady + once}})}
    final = [op for node in fleet.nodes for slug in truth if (op := read(node, slug, 0)) is not None]
    assert len(final) == len(truth) * len(fleet.nodes) and not check_final(final, truth), check_final(final, truth)
    # Nothing handed to the cut node is left unapplied (an event Redis sent into the partition,
    # never received, stays pending in its group until the agent reads its pending entries again).
    log = redis.Redis.from_url(fleet.stack.env["REDIS_URL"])
    for node in fleet.nodes:
        assert log.xpending(LOG_KEY, node_group(node.name))["pending"] == 0, node.name


def test_the_log_down_for_everyone_takes_no_node_out_not_even_the_last_alive_and_a_takedown_waits(
    fleet: Fleet,
) -> None:
    settings = Settings()
    slugs = [f"sem-log-{n}" for n in range(6)]
    for slug in slugs:
        assert put(fleet.stack.renderer_url, slug, article(f"{slug} v1")).status == 201
    probes: list[tuple[str, float, int]] = []  # (node, asked at, status)
    failed_reads: list[tuple[str, str, int | str]] = []
    stop = threading.Event()

    def reader(node: Node) -> None:
        rng = random.Random(node.name)
        while not stop.is_set():
            asked = time.monotonic()
            try:
                probes.append((node.name, asked, get(node.agent_url, "/ready", timeout=2).status))
                slug = rng.choice(slugs)
                resp = get(node.public_url, f"/noticia/{slug}.ghtml", timeout=5)
                if resp.status != 200:
                    failed_reads.append((node.name, slug, resp.status))
            except OSError as exc:
                failed_reads.append((node.name, "?", str(exc)))
            time.sleep(0.02)

    threads = [threading.Thread(target=reader, args=(node,), daemon=True) for node in fleet.nodes]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(probes) > 30)
        fleet.stack.started["redis"].kill()
        killed_at = time.monotonic()
        # A takedown while the log is down: refused (it cannot put its purge in the log), not
        # acknowledged with readers still shown the article by some node.
        resp = request(fleet.stack.renderer_url, "DELETE", f"/api/articles/{slugs[0]}", None, AUTH)
        assert resp.status == 503 and json.loads(resp.body)["committed"] is True, resp.body
        # Past the bound after which a node cut off alone turns unready, and a few heartbeats more.
        wait_until(lambda: time.monotonic() - killed_at > settings.purge_node_unready_after * 2 + 2, timeout=30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)
    after = [(name, at - killed_at, status) for name, at, status in probes if at > killed_at]
    assert len({name for name, _, _ in after}) == 3
    assert [p for p in after if p[2] != 200] == [], "a node left the load balancer while Redis was down"
    assert failed_reads == []

    # The log back (empty: a restart without persistence): every node bans what it holds before
    # it is ready again, and the takedown's retry is acknowledged and gone from every node.
    fleet.stack.started["redis"].start()

    # Retried as the CMS does, until the renderer's breaker lets a call through to Redis again.
    def retried() -> bool:
        return request(fleet.stack.renderer_url, "DELETE", f"/api/articles/{slugs[0]}", None, AUTH).status == 200

    wait_until(retried, timeout=settings.breaker_reset_timeout * 3, interval=1)
    for node in fleet.nodes:
        wait_until(lambda node=node: ready(node), timeout=15)
        assert get(node.public_url, f"/noticia/{slugs[0]}.ghtml").status == 404

    # Two of the three hosts lose power (their agents never leave the fleet); once publishes stop
    # waiting for them, Redis dies again. The last node must not count the dead as peers that
    # could have told it the log is up: it is the whole fleet now, and it keeps serving.
    survivor = fleet.nodes[0]
    for node in fleet.nodes[1:]:
        node.host.kill()

    def publishes_skip_the_dead() -> bool:
        resp = put(fleet.stack.renderer_url, f"sem-pares-{time.monotonic_ns()}", article("Sem pares"))
        return resp.status == 201 and json.loads(resp.body)["pending"] == []

    wait_until(publishes_skip_the_dead, timeout=30, interval=1)
    time.sleep(2)  # a heartbeat or two: the survivor has read the fleet since
    fleet.stack.started["redis"].kill()
    killed_at = time.monotonic()
    answers = []
    while time.monotonic() - killed_at < settings.purge_node_unready_after * 2 + 2:
        answers.append(get(survivor.agent_url, "/ready", timeout=3).status)
        time.sleep(0.2)
    assert set(answers) == {200}, answers


@pytest.fixture
def fleet_with_redis_hosts(tmp_path: Path) -> Iterator[Fleet]:
    started = start_fleet(
        tmp_path / "fleet",
        varnish_hosts=2,
        environ={"EDITOR_TOKENS": EDITOR_TOKEN},
        renderer_env={"PROCESSES": "1"},
        redis_hosts=True,
    )
    try:
        yield started
    finally:
        started.stop()


def take_down(renderer: str, slug: str) -> tuple[Op, dict[str, Any]]:
    """One takedown: the op and the answer's body."""
    started = time.monotonic()
    try:
        resp = request(renderer, "DELETE", f"/api/articles/{slug}", None, AUTH, timeout=15)
    except OSError as exc:
        return Op(-1, "delete", slug, started, time.monotonic(), 0, None), {"error": str(exc)}
    body = json.loads(resp.body)
    return Op(-1, "delete", slug, started, time.monotonic(), resp.status, body.get("version")), body


def failed_over(fleet: Fleet) -> bool:
    """Every sentinel still running names the replica as the primary. (An empty primary back
    sooner is a master again for the sentinels that have not switched yet, and for the clients
    that ask them: a split brain. Production's answer is persistence or a restart delay.)"""
    replica = fleet.stack.started["redis-replica"]
    sentinels = [s for name, s in fleet.stack.started.items() if name.startswith("sentinel")]
    for sentinel in sentinels:
        try:
            with redis.Redis(host=sentinel.host, port=sentinel.port, socket_timeout=1, socket_connect_timeout=1) as c:
                host, port = c.execute_command("SENTINEL GET-MASTER-ADDR-BY-NAME", SENTINEL_SERVICE)
        except (redis.ConnectionError, redis.TimeoutError):
            continue  # on the dead host
        if (host.decode(), int(port)) != (replica.host, replica.port):
            return False
    return True


def test_the_redis_primarys_host_killed_during_takedowns_loses_none_that_was_acknowledged(
    fleet_with_redis_hosts: Fleet,
) -> None:
    # Redis replicates asynchronously: a takedown acknowledged while only the primary held its
    # record (and its purge event) would be undone by a failover to a replica without it: the
    # promoted replica holds the article's page again, and every node refetches it from there.
    fleet = fleet_with_redis_hosts
    renderer = fleet.stack.renderer_url
    primary, replica = fleet.network.hosts["redis-1"], fleet.network.hosts["redis-2"]
    slugs = [f"troca-{n}" for n in range(12)]
    for slug in slugs:
        assert put(renderer, slug, article(f"{slug} v1")).status == 201
    for node in fleet.nodes:  # every node holds each article
        for slug in slugs:
            assert get(node.public_url, f"/noticia/{slug}.ghtml").status == 200

    answers: list[tuple[Op, dict[str, Any]]] = []
    reads: list[Op] = []
    stop = threading.Event()

    def reader(index: int, node: Node) -> None:
        rng = random.Random(index)
        while not stop.is_set():
            op = read(node, rng.choice(slugs), index)
            if op is None:
                time.sleep(0.05)
            else:
                reads.append(op)

    def editor(slugs: list[str]) -> None:
        # One takedown after another, each sent again until acknowledged, as the CMS does.
        for slug in slugs:
            while not stop.is_set():
                answers.append(answer := take_down(renderer, slug))
                if answer[0].acknowledged:
                    break
                time.sleep(0.2)

    threads = [threading.Thread(target=reader, args=(i, node), daemon=True) for i, node in enumerate(fleet.nodes)]
    for thread in threads:
        thread.start()
    try:
        editor(slugs[:3])
        # The replica falls behind (its host cut off), and a takedown is sent while it is...
        replica.cut()
        cut_at = time.monotonic()
        threads.append(threading.Thread(target=editor, args=(slugs[3:],), daemon=True))
        threads[-1].start()
        wait_until(lambda: any(op.start > cut_at for op, _ in answers), timeout=30)
        # ...then the primary's host loses power, and the replica's link is back before Sentinel
        # declares the primary down: the replica is promoted without what it missed.
        primary.kill()
        replica.mend()
        wait_until(lambda: failed_over(fleet), timeout=30)
        # The host is back after a while (a reboot). Until then no takedown can be acknowledged:
        # none could be told apart from one that the next failover would lose. Its Redis starts
        # empty, as a replica of the primary the sentinels name (what a Redis pod's start script
        # does; left to Sentinel, the conversion takes some 10 s more).
        primary.boot()
        rebooted, promoted = fleet.stack.started["redis"], fleet.stack.started["redis-replica"]
        rebooted.argv += ["--replicaof", promoted.host, str(promoted.port)]
        rebooted.start()
        threads[-1].join(timeout=60)
        assert not threads[-1].is_alive(), ("takedowns still not acknowledged", answers[-3:])
        time.sleep(1)  # reads after the last takedown
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)

    writes = [op for op, _ in answers]
    print("takedowns:", [(op.slug, op.status, round(op.end - cut_at, 1)) for op in writes if op.end > cut_at])
    # No node that said ready served an article after its takedown was acknowledged...
    for node in fleet.nodes:
        history = writes + [op for op in reads if op.where == node.name]
        assert not check(history, settle=0.0), "\n".join(check(history, settle=0.0)[:5])
        assert not [op for op in reads if op.where == node.name and op.status not in (200, 404)]
    # ...and after the failover, every one is gone everywhere: each node, the renderer (Redis).
    for slug in slugs:
        for base in [node.public_url for node in fleet.nodes] + [renderer]:
            assert get(base, f"/noticia/{slug}.ghtml").status == 404, (base, slug)
    # The one answered while no replica could take it was not acknowledged, and said why.
    op, body = next(answer for answer in answers if answer[0].start > cut_at)
    assert not op.acknowledged and "replica" in body.get("steps", {}).get("redis replica", ""), (op, body)
