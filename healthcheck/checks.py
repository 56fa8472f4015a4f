"""A check (what to run, how long it may take, how much it matters) and its result."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Awaitable, Callable, Mapping

Checker = Callable[[], Awaitable[tuple[bool, str]]]


@dataclass(frozen=True)
class Check:
    """One dependency to check.

    ``critical``: a failure means this instance cannot serve, unless ``fallback(passed)`` says it
    can still serve without the dependency (say, from stale copies), which makes it ``degraded``
    instead. ``passed`` maps each component to whether its check passed in the same run.
    ``breaker``: the state of the circuit breaker guarding the dependency, if one does, and the
    wall-clock time it opened.
    """

    name: str
    component: str
    checker: Checker
    timeout: float
    critical: bool = False
    fallback: Callable[[Mapping[str, bool]], bool] | None = None
    breaker: Callable[[], tuple[str, float | None]] | None = None


@dataclass(frozen=True)
class CheckResult:
    """What one check found, when, and until when the result is reused."""

    checker: str
    component: str
    passed: bool
    output: str
    timestamp: float
    expires: float
    response_time_ms: float
    critical: bool
    breaker: str | None
    covered: bool  # a failed critical check whose fallback still lets the instance serve


def describe_error(exc: BaseException) -> str:
    """An exception in words an operator understands ("Connection refused", "Connection Timeout")."""
    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, ConnectionRefusedError) or "refused" in lowered:
        return "Connection refused"
    if isinstance(exc, TimeoutError) or "timed out" in lowered or "timeout" in lowered:
        return "Connection Timeout"
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text[:200]}"
