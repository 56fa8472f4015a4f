"""Reusable async healthcheck: checkers, a caching runner, two output formats, Tornado handlers.

Checkers are plain ``async def`` functions returning ``(passed, output)``; the runner owns timing,
timeouts, concurrency, caching and the status (the py-healthcheck model, async).
"""

from healthcheck.checks import Check, CheckResult, describe_error
from healthcheck.runner import HealthCheck, Report
from healthcheck.single_flight import SingleFlight

__all__ = ["Check", "CheckResult", "HealthCheck", "Report", "SingleFlight", "describe_error"]
