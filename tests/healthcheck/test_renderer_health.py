"""The renderer's /healthcheck against real Redis and FerretDB being stopped, frozen and restarted."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any, Callable

import aiohttp
import jsonschema

from tests.conftest import StackClients
from tests.helpers import get, metric, unique_slug, wait_until

CLIENT_TIMEOUT = 5.0

# The shape of draft-inadarei-api-health-check-06 responses.
IETF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["status"],
    "properties": {
        "status": {"enum": ["pass", "fail", "warn"]},
        "version": {"type": "string"},
        "releaseId": {"type": "string"},
        "notes": {"type": "array", "items": {"type": "string"}},
        "output": {"type": "string"},
        "serviceId": {"type": "string"},
        "description": {"type": "string"},
        "checks": {
            "type": "object",
            "propertyNames": {"pattern": "^[^:]+(:[^:]+)?$"},
            "additionalProperties": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "componentId": {"type": "string"},
                        "componentType": {"type": "string"},
                        "observedValue": {},
                        "observedUnit": {"type": "string"},
                        "status": {"enum": ["pass", "fail", "warn"]},
                        "affectedEndpoints": {"type": "array", "items": {"type": "string"}},
                        "time": {"type": "string", "format": "date-time"},
                        "output": {"type": "string"},
                        "links": {"type": "object"},
                    },
                },
            },
        },
        "links": {"type": "object"},
    },
}


def health(base: str, accept: str | None = None) -> tuple[int, dict[str, Any], str]:
    resp = get(base, "/healthcheck", {"Accept": accept} if accept else None, timeout=CLIENT_TIMEOUT)
    return resp.status, json.loads(resp.body), resp.headers["Content-Type"]


def result(body: dict[str, Any], checker: str) -> dict[str, Any]:
    return next(r for r in body["results"] if r["checker"] == checker)


def test_all_up_is_success_with_one_passing_result_per_dependency(stack: StackClients) -> None:
    status, body, content_type = health(stack.renderer)
    assert status == 200
    assert content_type.startswith("application/json")
    assert body["status"] == "success"
    assert [r["checker"] for r in body["results"]] == [
        "redis connection",
        "mongodb connection",
        "mongodb load",
        "purge log",
    ]
    assert all(r["passed"] for r in body["results"])
    assert result(body, "redis connection")["output"] == "redis ok"
    assert result(body, "mongodb connection")["critical"] is True
    assert all(r["breaker"] == "closed" for r in body["results"] if r["checker"].endswith("connection"))
    assert result(body, "mongodb load")["critical"] is False  # shedding is degraded, never failure
    assert result(body, "purge log")["critical"] is False  # stale edges are degraded, never failure
    assert get(stack.renderer, "/healthcheck/live").status == 200


def test_ietf_format_validates_against_the_draft(stack: StackClients) -> None:
    status, body, content_type = health(stack.renderer, "application/health+json")
    assert status == 200
    assert content_type == "application/health+json"
    jsonschema.validate(body, IETF_SCHEMA)
    assert body["status"] == "pass"
    assert set(body["checks"]) == {"redis:responseTime", "mongodb:responseTime", "purge-log:responseTime"}


def test_outages_move_status_between_success_degraded_and_failure(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False)
    wait_until(lambda: health(s.renderer)[1]["status"] == "success")

    s.server("redis").stop()

    def redis_refused() -> Any:
        h = health(s.renderer)
        return result(h[1], "redis connection")["output"].startswith("Connection refused") and h

    status, body, _ = wait_until(redis_refused)
    assert (status, body["status"]) == (200, "degraded")
    assert result(body, "redis connection")["passed"] is False
    ietf_status, ietf, _ = health(s.renderer, "application/health+json")
    assert (ietf_status, ietf["status"]) == (200, "warn")
    jsonschema.validate(ietf, IETF_SCHEMA)

    s.server("redis").start()
    wait_until(lambda: health(s.renderer)[1]["status"] == "success")

    # MongoDB down while Redis holds stale copies: still serving, so degraded.
    s.server("ferretdb").stop()
    status, body, _ = wait_until(lambda: (h := health(s.renderer))[1]["status"] != "success" and h)
    assert (status, body["status"]) == (200, "degraded")
    assert result(body, "mongodb connection")["passed"] is False

    # Both down and no page ever served by this process: nothing to serve, so failure.
    s.server("redis").stop()
    status, body, _ = wait_until(lambda: (h := health(s.renderer))[1]["status"] == "failure" and h)
    assert status == 503
    ietf_status, ietf, _ = health(s.renderer, "application/health+json")
    assert (ietf_status, ietf["status"]) == (503, "fail")

    s.server("redis").start()
    s.server("ferretdb").start()
    try:
        wait_until(lambda: health(s.renderer)[0] == 200 and health(s.renderer)[1]["status"] == "success", timeout=20)
    except AssertionError:
        print("last report:", json.dumps(health(s.renderer)[1], indent=1))  # which check stayed down
        raise


def test_mongodb_down_with_in_process_copies_is_degraded(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False)
    slug = unique_slug()
    s.add_article(slug)
    assert get(s.renderer, f"/noticia/{slug}.ghtml").status == 200
    s.server("redis").stop()
    s.server("ferretdb").stop()
    status, body, _ = wait_until(lambda: (h := health(s.renderer))[1]["status"] != "success" and h)
    assert (status, body["status"]) == (200, "degraded")


def test_frozen_redis_is_reported_as_timeout_within_the_check_budget(make_stack: Callable[..., StackClients]) -> None:
    s = make_stack(varnish=False)
    s.server("redis").freeze()
    try:
        # A hung check would make this request fail on the client's timeout instead.
        status, body, _ = wait_until(lambda: (h := health(s.renderer))[1]["status"] != "success" and h)
        assert (status, body["status"]) == (200, "degraded")
        assert result(body, "redis connection")["output"].startswith("Connection Timeout")
        assert result(body, "mongodb connection")["passed"] is True
    finally:
        s.server("redis").thaw()


def count_bare_pings(monitor: Any, found: list[str]) -> None:
    """Append every argument-less PING ``monitor`` sees to ``found``, until the SET of ``storm-over``."""
    while True:
        command = monitor.next_command()["command"]
        if command == "PING":
            found.append(command)
        if command.startswith("SET storm-over"):
            return


def test_a_storm_of_polls_is_one_call_per_dependency_per_cache_period(
    make_stack: Callable[..., StackClients],
) -> None:
    s = make_stack(varnish=False, HEALTH_CACHE_SECONDS="30")

    def runs(component: str) -> float:
        return metric(s.renderer, "pagecache_health_checks_total", component=component)

    async def storm() -> list[int]:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:

            async def poll() -> int:
                async with session.get(f"{s.renderer}/healthcheck") as resp:
                    await resp.read()
                    return resp.status

            return await asyncio.gather(*(poll() for _ in range(200)))

    # The health check's PINGs as Redis receives them (MONITOR), told apart from the invalidation
    # listener's heartbeat (a PING with an argument, every second, however long the storm takes).
    health_pings: list[str] = []
    with s.redis.monitor() as monitor:
        watching = threading.Thread(target=count_bare_pings, args=(monitor, health_pings), daemon=True)
        watching.start()
        redis_runs, mongo_runs = runs("redis"), runs("mongodb")
        statuses = asyncio.run(storm())
        s.redis.set("storm-over", 1)  # the monitor's last command
        watching.join(timeout=10)
    assert statuses == [200] * 200
    assert len(health_pings) <= 1, health_pings
    assert runs("redis") - redis_runs <= 1
    assert runs("mongodb") - mongo_runs <= 1
