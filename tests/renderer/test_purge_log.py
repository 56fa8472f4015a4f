"""The purge log (issue 33): a publish appends one event and waits for every live Varnish node's
agent; nodes join by starting and leave by stopping; the log survives the cache's memory policy;
a node that lost its place bans everything before it is ready."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from devstack import servers
from devstack.probes import metric
from renderer.purge import MAX_HEADER_BYTES, Purge
from renderer.purge_log import CDN_GROUP, HORIZON_KEY, LOG_KEY, id_key, node_group
from tests.conftest import StackClients
from tests.helpers import get, request, unique_slug, wait_until
from tests.holding_proxy import HoldingProxy
from tests.renderer.test_publish import AUTH, article, node_names, nodes, put, title_on

FULL_BANS = "pagecache_purge_node_full_bans_total"


def report_of(resp: object) -> dict[str, object]:
    return dict(json.loads(resp.body))  # type: ignore[attr-defined]


def test_key_lists_are_split_to_fit_varnish_header_limit() -> None:
    keys = tuple(f"article-{'x' * 200}-{n}" for n in range(100))
    parts = Purge(hard=keys[:10], soft=keys[10:]).split()
    assert len(parts) > 1
    assert [k for p in parts for k in p.hard] == list(keys[:10])
    assert [k for p in parts for k in p.soft] == list(keys[10:])
    assert all(len(value) <= MAX_HEADER_BYTES for p in parts for value in p.headers().values())
    assert Purge(soft=("home",)).split() == [Purge(soft=("home",))]


def test_a_purge_of_a_hundred_long_keys_reaches_varnish(stack: StackClients) -> None:
    keys = [f"k{n}-{'y' * 240}" for n in range(100)]  # 24 KB of keys: three times the header limit
    resp = request(stack.renderer, "POST", "/api/purge", json.dumps({"keys": keys}).encode(), AUTH)
    assert resp.status == 200, resp.text
    assert json.loads(resp.body)["varnish"] == {"varnish": "purged"}


def test_a_frozen_node_is_named_in_a_202_within_the_publish_deadline(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish_nodes=2, PUBLISH_DEADLINE="2")
    first, second = node_names(s)
    s.server("varnish-2").freeze()
    try:
        resp = put(s.renderer, unique_slug("prazo"), article())
    finally:
        s.server("varnish-2").thaw()
    report = json.loads(resp.body)
    assert resp.status == 202 and report["pending"] == [second], resp.text
    assert report["steps"]["varnish"] == {first: "purged", second: report["steps"]["varnish"][second]}
    assert "the log keeps it" in report["steps"]["varnish"][second]


def test_a_node_that_leaves_or_dies_is_no_longer_waited_for(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish_nodes=2, PUBLISH_DEADLINE="1", PURGE_NODE_DEAD_AFTER="4")
    first, second = node_names(s)
    # A node that stops leaves the fleet: the next publish does not wait for it.
    s.server("agent-2").stop()
    resp = put(s.renderer, unique_slug("saiu"), article())
    assert resp.status == 201 and json.loads(resp.body)["steps"]["varnish"] == {first: "purged"}, resp.text
    # One that dies is waited for (named in a 202) until it has been silent PURGE_NODE_DEAD_AFTER.
    agent = s.server("agent-2").start()
    wait_until(lambda: put(s.renderer, unique_slug("voltou"), article()).status == 201)
    agent.kill()
    resp = put(s.renderer, unique_slug("morreu"), article())
    assert resp.status == 202 and json.loads(resp.body)["pending"] == [second], resp.text
    later = wait_until(lambda: (r := put(s.renderer, unique_slug("esquecido"), article())).status == 201 and r)
    assert json.loads(later.body)["steps"]["varnish"] == {first: "purged"}


def test_a_node_added_while_publishing_is_purged_from_its_first_ready_moment(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(varnish_nodes=1, SHARED_MAX_AGE="3600")
    slug = unique_slug("no-novo")
    assert put(s.renderer, slug, article("Versão 1")).status == 201
    # A new node and its agent, with nothing configured anywhere else.
    public, admin, agent_port = servers.free_port(), servers.free_port(), servers.free_port()
    run_dir = s.stack.run_dir
    s.stack.started["varnish-9"] = servers.varnish(run_dir, public, s.stack.ports.renderer, admin).start()
    agent_env = {"REDIS_URL": s.stack.env["REDIS_URL"]}
    s.stack.started["agent-9"] = servers.purge_agent(run_dir, agent_port, "varnish-9", admin, agent_env).start()
    new_node = f"http://127.0.0.1:{public}"
    assert title_on(new_node, slug) == "Versão 1"
    resp = put(s.renderer, slug, article("Versão 2"))
    assert json.loads(resp.body)["steps"]["varnish"] == {"varnish": "purged", "varnish-9": "purged"}, resp.text
    assert title_on(new_node, slug) == "Versão 2"


def test_shutdown_waits_for_a_publish_in_flight(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish_nodes=2)  # the publish will wait for node 2 until its deadline
    renderer = s.server("renderer")
    s.server("varnish-2").freeze()
    try:
        with ThreadPoolExecutor(1) as pool:
            publishing = pool.submit(put, s.renderer, unique_slug("desligando"), article())
            time.sleep(0.5)
            os.kill(renderer.pid, signal.SIGTERM)
            resp = publishing.result(timeout=30)
    finally:
        s.server("varnish-2").thaw()
    assert resp.status == 202, resp.text  # finished and reported, not cut off
    assert renderer.proc.wait(timeout=30) == 0


def test_the_log_and_its_groups_survive_redis_filling_up_with_pages(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish_nodes=1)
    assert put(s.renderer, unique_slug("antes-da-enchente"), article()).status == 201
    s.redis.config_set("maxmemory", "8mb")
    for n in range(400):  # 20 MB of page records, each with its TTL as the renderer writes them
        s.redis.set(f"page:enchimento-{n}", b"x" * 50_000, ex=300)
    assert int(s.redis.info("stats")["evicted_keys"]) > 0
    assert s.redis.xlen(LOG_KEY) >= 1
    assert {group["name"] for group in s.redis.xinfo_groups(LOG_KEY)} == {b"node:varnish"}
    resp = put(s.renderer, unique_slug("depois-da-enchente"), article())
    assert resp.status == 201 and json.loads(resp.body)["steps"]["varnish"] == {"varnish": "purged"}, resp.text


def test_a_lost_log_makes_a_node_ban_everything_before_it_is_ready(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish_nodes=1, SHARED_MAX_AGE="3600")
    node, agent = nodes(s)[0], s.stack.agent_urls[0]
    slug = unique_slug("log-perdido")
    assert put(s.renderer, slug, article()).status == 201
    path = f"/noticia/{slug}.ghtml"
    get(node, path)
    assert get(node, path).headers["X-Cache"] == "HIT"
    bans = metric(agent, FULL_BANS)  # its first join
    # Redis restarted empty (no persistence): the stream and the node's cursor are gone.
    s.server("redis").kill()
    s.server("redis").start()
    wait_until(lambda: metric(agent, FULL_BANS) == bans + 1, timeout=15)
    assert get(node, path).headers["X-Cache"] == "MISS"


def test_a_node_away_longer_than_the_log_keeps_bans_everything_and_one_back_sooner_catches_up(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(varnish_nodes=2, SHARED_MAX_AGE="3600", PURGE_MAX_AGE="3")
    second, agent = nodes(s)[1], s.stack.agent_urls[1]
    slug = unique_slug("ausente")
    assert put(s.renderer, slug, article("Versão 1")).status == 201
    assert title_on(second, slug) == "Versão 1"

    # Away for less than the log keeps: back, it applies what it missed, no ban.
    s.server("agent-2").stop()
    assert put(s.renderer, slug, article("Versão 2")).status == 200
    assert title_on(second, slug) == "Versão 1"  # nobody purged node 2
    s.server("agent-2").start()  # returns once it says ready
    assert title_on(second, slug) == "Versão 2"
    assert metric(agent, FULL_BANS) == 0

    # Away for longer: the event it would need is trimmed (appends trim what is older than 3 s).
    s.server("agent-2").stop()
    assert put(s.renderer, slug, article("Versão 3")).status == 200
    [(missed, _)] = s.redis.xrevrange(LOG_KEY, count=1)

    def trimmed() -> bool:
        put(s.renderer, unique_slug("outro"), article())
        horizon = s.redis.get(HORIZON_KEY)
        return horizon is not None and id_key(horizon) >= id_key(missed)

    wait_until(trimmed, timeout=20, interval=0.5)
    assert title_on(second, slug) == "Versão 2"
    s.server("agent-2").start()
    assert metric(agent, FULL_BANS) == 1
    assert title_on(second, slug) == "Versão 3"
    # Its cursor behind what the log keeps, or its group already forgotten (the log prunes the
    # groups of nodes gone longer than it keeps): a full ban either way, its second (the first
    # when it was new, none on the short absence).
    assert s.server("agent-2").log_path.read_text().count("bans everything before turning ready") == 2


def test_a_log_that_cannot_take_the_purge_is_a_failed_step_not_pending(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(varnish=False)
    s.redis.set(LOG_KEY, "not a stream")  # every append is refused (WRONGTYPE)
    slug = unique_slug("sem-log")
    resp = put(s.renderer, slug, article("Sem log"))
    report = json.loads(resp.body)
    assert resp.status == 503 and report["committed"] is True, resp.text
    assert report["steps"]["purge log"].startswith("failed"), report
    purge = request(s.renderer, "POST", "/api/purge", json.dumps({"slug": slug}).encode(), AUTH)
    assert purge.status == 503 and "could not take the purge" in json.loads(purge.body)["error"], purge.text


def test_an_article_saved_every_few_hundred_ms_still_gets_its_second_purge(
    make_stack: Callable[..., StackClients],
) -> None:
    # A live blog autosaves more often than the second purge's quiet spell (a request deadline,
    # here 1 s): its debounce must not postpone it for as long as the saving goes on.
    s = make_stack(REQUEST_DEADLINE="1")
    slug = unique_slug("ao-vivo")
    before, saves, started = s.redis.xlen(LOG_KEY), 0, time.monotonic()
    while time.monotonic() - started < 7:  # past the bound, five quiet spells
        assert put(s.renderer, slug, article(f"Ao vivo, atualização {saves}")).status in (200, 201)
        saves += 1
        time.sleep(0.3)
    # One event per save, plus at least one second purge made while the saves went on.
    assert s.redis.xlen(LOG_KEY) - before >= saves + 1, (saves, s.redis.xlen(LOG_KEY) - before)


def ready(agent: str) -> tuple[int, str]:
    resp = get(agent, "/ready")
    return resp.status, str(json.loads(resp.body)["why"])


def test_a_starting_node_is_not_ready_before_it_has_read_the_log(
    make_stack: Callable[..., StackClients], proxy: HoldingProxy
) -> None:
    # Its log out of reach from the first moment (a link that is cut): a node that has not read
    # the log yet may hold pages older than what it missed, and knows no peer to ask.
    s = make_stack(varnish_nodes=1)
    proxy.connect_to("127.0.0.1", int(s.stack.env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0]))
    proxy.cut()
    public, admin, agent_port = servers.free_port(), servers.free_port(), servers.free_port()
    s.stack.started["varnish-9"] = servers.varnish(s.stack.run_dir, public, s.stack.ports.renderer, admin).start()
    # A wide bound, so that a slow start on a loaded machine is still inside it when we ask.
    bounds = {"PURGE_NODE_UNREADY_AFTER": "10", "PURGE_NODE_DEAD_AFTER": "20"}
    agent = servers.purge_agent(
        s.stack.run_dir, agent_port, "varnish-9", admin, {"REDIS_URL": f"redis://127.0.0.1:{proxy.port}/0", **bounds}
    )
    agent.ready_path = None  # started: listening, whatever it answers
    s.stack.started["agent-9"] = agent.start()
    status, why = ready(f"http://127.0.0.1:{agent_port}")
    assert status == 503 and "has not read the purge log yet" in why, why
    proxy.mend()
    wait_until(lambda: ready(f"http://127.0.0.1:{agent_port}")[0] == 200, timeout=10)


def test_the_log_forgets_who_left_longer_ago_than_it_keeps(make_stack: Callable[..., StackClients]) -> None:
    # Under an autoscaler every new pod is a new name, a new consumer group: the groups of nodes
    # gone for longer than the log keeps (they would ban on return anyway) and the CDN group's idle
    # consumers (renderer processes that ended) must not pile up.
    s = make_stack(varnish_nodes=2, PURGE_MAX_AGE="3")
    s.redis.xgroup_create(LOG_KEY, CDN_GROUP, "$", mkstream=True)
    s.redis.xgroup_createconsumer(LOG_KEY, CDN_GROUP, "renderer-that-ended")
    assert put(s.renderer, unique_slug("antes"), article()).status == 201
    s.server("agent-2").stop()

    def groups() -> set[str]:
        return {g["name"].decode() for g in s.redis.xinfo_groups(LOG_KEY)}

    assert groups() == {node_group("varnish"), node_group("varnish-2"), CDN_GROUP}
    wait_until(lambda: groups() == {node_group("varnish"), CDN_GROUP}, timeout=15)
    assert [c["name"] for c in s.redis.xinfo_consumers(LOG_KEY, CDN_GROUP)] == []
    # The node that stays keeps its place: it still applies what comes.
    slug = unique_slug("depois")
    assert (
        put(s.renderer, slug, article()).status == 201
        and s.redis.xpending(LOG_KEY, node_group("varnish"))["pending"] == 0
    )
