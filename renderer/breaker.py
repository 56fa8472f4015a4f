"""An asyncio circuit breaker on top of pybreaker's state machine.

pybreaker's ``call_async`` (its Tornado path) has a bug: once the reset timeout has elapsed, the
open state calls the coroutine function without awaiting it, so the half-open trial "succeeds"
and closes the breaker while the backend is still down. This adapter awaits the real call itself,
moves the breaker to half-open itself (public ``half_open()``, open time tracked by a listener),
lets exactly one trial through at a time, and then replays the outcome into pybreaker's
synchronous ``call()`` so pybreaker still does all the counting and transitions.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import pybreaker

T = TypeVar("T")
log = logging.getLogger("pagecache.breaker")

CircuitOpen = pybreaker.CircuitBreakerError


class _Transitions(pybreaker.CircuitBreakerListener):
    """Records when the breaker opened (monotonic and wall clock) and logs every transition."""

    def __init__(self, on_change: Callable[[str, str, str], None] | None) -> None:
        self.opened_monotonic = 0.0
        self.opened_wall = 0.0
        self._on_change = on_change

    def state_change(self, cb: pybreaker.CircuitBreaker, old: Any, new: Any) -> None:
        if new.name == pybreaker.STATE_OPEN:
            self.opened_monotonic = time.monotonic()
            self.opened_wall = time.time()
        old_name = old.name if old is not None else "none"
        log.warning(
            "breaker %s: %s -> %s",
            cb.name,
            old_name,
            new.name,
            extra={"breaker": cb.name, "from_state": old_name, "to_state": new.name},
        )
        if self._on_change is not None:
            self._on_change(str(cb.name), old_name, new.name)


def _replay(outcome: Any) -> Any:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


class AsyncCircuitBreaker:
    """One breaker per backend. ``await breaker.call(fn, *args)`` runs ``fn`` under its rules."""

    def __init__(
        self,
        name: str,
        fail_max: int,
        reset_timeout: float,
        exclude: Iterable[type[BaseException]] = (),
        on_change: Callable[[str, str, str], None] | None = None,
        neutral: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._transitions = _Transitions(on_change)
        self._breaker = pybreaker.CircuitBreaker(
            fail_max=fail_max,
            reset_timeout=reset_timeout,
            exclude=list(exclude),
            listeners=[self._transitions],
            name=name,
            # Callers want the backend's own error on the call that trips the breaker.
            throw_new_error_on_trip=False,
        )
        self._trial_in_flight = False
        # Outcomes that say nothing about the backend (the request's own deadline ran out): passed
        # through without counting as a failure or as a success.
        self._neutral = neutral

    @property
    def name(self) -> str:
        """The backend this breaker guards."""
        return str(self._breaker.name)

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open``."""
        return str(self._breaker.current_state)

    @property
    def opened_at(self) -> float | None:
        """Wall-clock time the breaker last opened, while it is not closed."""
        if self.state == pybreaker.STATE_CLOSED:
            return None
        return self._transitions.opened_wall

    def _admit(self) -> bool:
        """Decide whether a call may run now; True when it is the half-open trial."""
        state = self.state
        if state == pybreaker.STATE_CLOSED:
            return False
        if self._trial_in_flight:
            raise CircuitOpen(f"{self.name} breaker {state}: trial call in flight")
        if state == pybreaker.STATE_OPEN:
            waited = time.monotonic() - self._transitions.opened_monotonic
            if waited < self._breaker.reset_timeout:
                raise CircuitOpen(f"{self.name} breaker open")
            self._breaker.half_open()
        return True

    async def call(self, func: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Await ``func(*args)`` if the breaker admits it, and record the outcome.

        Raises ``CircuitOpen`` at once, without calling ``func``, while the breaker is open.
        """
        trial = self._admit()
        self._trial_in_flight = trial
        try:
            try:
                outcome: Any = await func(*args)
            except self._neutral:
                raise
            except Exception as exc:  # recorded by pybreaker below, then re-raised
                outcome = exc
            if not trial and self.state == pybreaker.STATE_OPEN:
                # Other calls opened the breaker while this one was in flight: pybreaker's open
                # state would refuse the replay and lose a real outcome (say, a committed write).
                return _replay(outcome)  # type: ignore[no-any-return]
            return self._breaker.call(_replay, outcome)  # type: ignore[no-any-return]
        finally:
            if trial:
                self._trial_in_flight = False
