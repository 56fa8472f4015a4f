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


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def describe_error(exc: BaseException) -> str:
    """An exception in words an operator understands ("Connection refused", "Connection Timeout")."""
    chain = _chain(exc)
    text = " ".join(str(e) for e in chain).lower()
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "refused" in text or "error 111 " in text:
        return "Connection refused"
    if any(isinstance(e, TimeoutError) for e in chain) or "timed out" in text or "timeout" in text:
        return "Connection Timeout"
    if "closed" in text or "reset by peer" in text:
        return "Connection closed by server"
    message = str(exc)
    return f"{type(exc).__name__}: {message[:200]}" if message else type(exc).__name__
