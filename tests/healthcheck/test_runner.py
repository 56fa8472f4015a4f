"""The healthcheck package on its own: concurrency, timeouts, caching, status, formats."""

from __future__ import annotations

import asyncio
from typing import Mapping

import pytest

from healthcheck import Check, HealthCheck, describe_error
from healthcheck.formats import http_status, ietf_format, seed_format


class Counting:
    def __init__(self, passed: bool = True, output: str = "ok") -> None:
        self.calls = 0
        self.passed = passed
        self.output = output

    async def __call__(self) -> tuple[bool, str]:
        self.calls += 1
        await asyncio.sleep(0.01)
        return self.passed, self.output


async def test_concurrent_polls_share_one_run_per_cache_period() -> None:
    a, b = Counting(), Counting()
    health = HealthCheck([Check("a", "a", a, 1.0), Check("b", "b", b, 1.0)], cache_seconds=60)
    reports = await asyncio.gather(*(health.report() for _ in range(200)))
    assert {r.status for r in reports} == {"success"}
    assert (a.calls, b.calls) == (1, 1)
    await health.report()
    assert (a.calls, b.calls) == (1, 1)


async def test_a_result_expires_after_the_cache_period() -> None:
    a = Counting()
    health = HealthCheck([Check("a", "a", a, 1.0)], cache_seconds=0)
    await health.report()
    await health.report()
    assert a.calls == 2


async def test_a_hanging_check_fails_as_timeout_even_if_it_ignores_cancellation() -> None:
    async def stubborn() -> tuple[bool, str]:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.5)  # misbehaves: swallows the cancellation and lingers
        return True, "late"

    health = HealthCheck([Check("slow", "slow", stubborn, 0.05, critical=True)], cache_seconds=0)
    report = await health.report()
    assert report.status == "failure"
    assert report.results[0].output == "Connection Timeout"


async def test_a_check_that_raises_is_a_failed_check_with_its_error() -> None:
    async def broken() -> tuple[bool, str]:
        raise ConnectionRefusedError(111, "Connection refused")

    health = HealthCheck([Check("db", "db", broken, 1.0)], cache_seconds=0)
    result = (await health.report()).results[0]
    assert not result.passed
    assert result.output == "Connection refused"


@pytest.mark.parametrize(
    ("failing", "critical", "covered", "status", "http"),
    [
        (False, True, False, "success", 200),
        (True, False, False, "degraded", 200),
        (True, True, False, "failure", 503),
        (True, True, True, "degraded", 200),
    ],
)
async def test_status_follows_criticality_and_fallbacks(
    failing: bool, critical: bool, covered: bool, status: str, http: int
) -> None:
    def fallback(passed: Mapping[str, bool]) -> bool:
        return covered and passed["cache"]

    checks = [
        Check("cache", "cache", Counting(), 1.0),
        Check("db", "db", Counting(passed=not failing, output="down"), 1.0, critical=critical, fallback=fallback),
    ]
    report = await HealthCheck(checks, cache_seconds=0).report()
    assert report.status == status
    assert http_status(report) == http


async def test_breaker_state_is_reported_in_words() -> None:
    check = Check("db", "db", Counting(False, "Connection refused"), 1.0, breaker=lambda: ("open", 1795000000.0))
    report = await HealthCheck([check], cache_seconds=0).report()
    item = seed_format(report)["results"][0]
    assert item["breaker"] == "open"
    assert item["output"] == "Connection refused; breaker open since 2026-11-18T11:06:40Z"


async def test_seed_format_has_the_fields_the_balancer_reads() -> None:
    report = await HealthCheck([Check("redis connection", "redis", Counting(), 1.0)], cache_seconds=5).report()
    body = seed_format(report)
    assert set(body) == {"hostname", "status", "timestamp", "results"}
    item = body["results"][0]
    assert {"checker", "passed", "output", "timestamp", "expires", "response_time_ms", "critical"} <= set(item)
    assert item["expires"] == pytest.approx(item["timestamp"] + 5)


async def test_ietf_format_maps_statuses() -> None:
    checks = [Check("redis connection", "redis", Counting(False, "Connection refused"), 1.0)]
    body = ietf_format(await HealthCheck(checks, cache_seconds=0).report())
    assert body["status"] == "warn"
    assert body["checks"]["redis:responseTime"][0]["status"] == "warn"
    assert body["checks"]["redis:responseTime"][0]["output"] == "Connection refused"


def test_errors_are_described_for_operators() -> None:
    assert describe_error(TimeoutError()) == "Connection Timeout"
    assert describe_error(OSError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")) == (
        "Connection refused"
    )
    assert describe_error(ValueError("odd reply")) == "ValueError: odd reply"
