"""One call per key at a time: whoever wants the same key meanwhile shares that call's result.

In the spirit of cashews' ``locked`` decorator, in one process. The call runs as a task of its
own, in the context of the caller that started it: a caller that gives up (its deadline, a client
gone) leaves it to the others, and its exception is always retrieved, so none is reported as
never retrieved when every caller gave up. ``run_here`` runs it in the first caller's task
instead, for paths where a task per call costs too much. The renderer shares Redis lookups, background
refreshes, MongoDB listing queries and listing renders this way; the healthcheck its runs.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Generic, Hashable, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """The calls in flight, by key, with when each began."""

    def __init__(self, keep_results: bool = False) -> None:
        # ``keep_results``: a call that succeeded stays shared after it ends, until a newer call of
        # its key replaces it (for ``since``: a result begun after a change still shows it).
        self.keep_results = keep_results
        self._running: dict[K, tuple[float, asyncio.Future[V]]] = {}

    def __contains__(self, key: K) -> bool:
        return key in self._running

    def start(
        self, key: K, call: Callable[[], Awaitable[V]], since: float | None = None
    ) -> tuple[asyncio.Future[V], bool]:
        """The call in flight for ``key`` (only one that began at or after ``since``, a
        ``time.monotonic()`` instant, when given), else ``call()`` started now: (the call,
        whether it was shared)."""
        held = self._running.get(key)
        if held is not None and (since is None or held[0] >= since):
            return held[1], True
        began = time.monotonic()
        running = asyncio.ensure_future(call())
        self._running[key] = (began, running)
        running.add_done_callback(lambda done: self._finished(key, done))
        return running, False

    async def do(self, key: K, call: Callable[[], Awaitable[V]], since: float | None = None) -> V:
        """``call()``'s result, shared with every caller of ``key`` meanwhile (see ``start``)."""
        running, _ = self.start(key, call, since)
        return await asyncio.shield(running)

    async def run_here(self, key: K, call: Callable[[], Awaitable[V]]) -> tuple[V, bool]:
        """Like ``do``, but the first caller runs ``call()`` in its own task (no task per call, for
        hot paths; if that caller is cancelled, so is every caller sharing it): (the result,
        whether it was shared)."""
        held = self._running.get(key)
        if held is not None:
            return await asyncio.shield(held[1]), True
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._running[key] = (time.monotonic(), future)
        try:
            result = await call()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result, False
        finally:
            self._finished(key, future)

    def _finished(self, key: K, done: asyncio.Future[V]) -> None:
        failed = done.cancelled() or done.exception() is not None  # retrieved: never "unretrieved"
        held = self._running.get(key)
        if held is not None and held[1] is done and (failed or not self.keep_results):
            del self._running[key]  # unless a newer call has taken the key since
