"""Runs every check concurrently, each within its own timeout, and caches the report."""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Callable, Sequence

from healthcheck.checks import Check, CheckResult, describe_error
from healthcheck.single_flight import SingleFlight

SUCCESS = "success"
DEGRADED = "degraded"
FAILURE = "failure"


@dataclass(frozen=True)
class Report:
    """All results of one run and the instance's status: success, degraded or failure."""

    hostname: str
    status: str
    timestamp: float
    results: tuple[CheckResult, ...]


def _status(results: Sequence[CheckResult]) -> str:
    failed = [r for r in results if not r.passed]
    if any(r.critical and not r.covered for r in failed):
        return FAILURE
    return DEGRADED if failed else SUCCESS


def _breaker_words(state: str, opened_at: float | None) -> str:
    if opened_at is None or state == "closed":
        return f"breaker {state}"
    since = datetime.fromtimestamp(opened_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"breaker {state} since {since}"


class HealthCheck:
    """``await health.report()``: at most one run of the checks per ``cache_seconds``.

    Concurrent callers share the run in progress, so a storm of polls is one call per dependency.
    """

    def __init__(
        self,
        checks: Sequence[Check],
        cache_seconds: float,
        hostname: str | None = None,
        on_result: Callable[[CheckResult], None] | None = None,
    ) -> None:
        self.checks = tuple(checks)
        self.cache_seconds = cache_seconds
        self.hostname = hostname or socket.gethostname()
        self._on_result = on_result  # called once per check actually run (metrics)
        self._cached: Report | None = None
        self._cached_until = 0.0
        self._runs: SingleFlight[None, Report] = SingleFlight()

    async def report(self) -> Report:
        """The current report, from cache while it is fresh."""
        if self._cached is not None and time.monotonic() < self._cached_until:
            return self._cached
        return await self._runs.do(None, self._run_and_cache)

    async def _run_and_cache(self) -> Report:
        report = await self._run()
        self._cached, self._cached_until = report, time.monotonic() + self.cache_seconds
        return report

    async def _run(self) -> Report:
        results = await asyncio.gather(*(self._run_one(check) for check in self.checks))
        if self._on_result is not None:
            for result in results:
                self._on_result(result)
        passed = {r.component: r.passed for r in results}
        results = [
            replace(r, covered=True) if not r.passed and check.fallback and check.fallback(passed) else r
            for check, r in zip(self.checks, results, strict=True)
        ]
        return Report(self.hostname, _status(results), time.time(), tuple(results))

    async def _run_one(self, check: Check) -> CheckResult:
        started = time.perf_counter()
        task = asyncio.ensure_future(check.checker())
        # wait() never waits on the task past the timeout, even one that ignores cancellation.
        done, _ = await asyncio.wait({task}, timeout=check.timeout)
        if not done:
            task.cancel()
            passed, output = False, "Connection Timeout"
        elif task.exception() is not None:
            passed, output = False, describe_error(task.exception())  # type: ignore[arg-type]
        else:
            passed, output = task.result()
        elapsed_ms = (time.perf_counter() - started) * 1000
        breaker = None
        if check.breaker is not None:
            breaker, opened_at = check.breaker()
            if breaker != "closed":
                output = f"{output}; {_breaker_words(breaker, opened_at)}"
        now = time.time()
        return CheckResult(
            checker=check.name,
            component=check.component,
            passed=passed,
            output=output,
            timestamp=now,
            expires=now + self.cache_seconds,
            response_time_ms=round(elapsed_ms, 2),
            critical=check.critical,
            breaker=breaker,
            covered=False,
        )
