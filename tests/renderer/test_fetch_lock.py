"""The fetch lock (``lock:page:<id>``, one reader of MongoDB per cold page across processes) costs
no round trip of its own: it is taken with the page's second read and given back by the page's
write. It is compare-and-delete: a holder whose lock expired and was taken by another process
never removes the other's."""

from __future__ import annotations

import itertools

import redis.asyncio as aioredis
from redis.backoff import NoBackoff
from redis.retry import Retry

from renderer import contract
from renderer.backends import redis_pages
from renderer.backends.redis_pages import RedisPages
from renderer.rendered_page import RenderedPage
from renderer.resilience import AsyncCircuitBreaker, Deadline, Guard, RetryPolicy
from tests.conftest import StackClients

_ids = itertools.count()


async def test_the_fetch_lock_rides_on_the_pages_reads_and_write_and_never_frees_anothers(stack: StackClients) -> None:
    client = aioredis.Redis.from_url(stack.stack.env["REDIS_URL"], socket_timeout=5, retry=Retry(NoBackoff(), 0))
    guard = Guard(AsyncCircuitBreaker("lock-test", fail_max=1000, reset_timeout=1), 5.0, RetryPolicy(1, 0, 0),
                  redis_pages.is_transient)  # fmt: skip
    pages = RedisPages(client, guard, page_ttl=300, stale_ttl=600, lock_ttl=5, not_found_ttl=10,
                       not_found_body=b"")  # fmt: skip
    cache_id = f"trava-{next(_ids)}-{id(client)}"
    lock_key = contract.lock_key(cache_id)
    page = RenderedPage(200, b"<p>pagina</p>", '"v7"', 0.0, "", version=7)
    d = Deadline.after(10)
    try:
        first, record = await pages.try_lock_and_get(d, cache_id)
        assert first is not None and record is None
        assert await pages.try_lock(d, cache_id) is None  # held: another process would wait
        stored, _ = await pages.put(d, cache_id, page, release=first)
        assert stored and first.released and not await client.exists(lock_key)
        # Taken again: the page is read in the same round trip.
        again, record = await pages.try_lock_and_get(d, cache_id)
        assert again is not None and record is not None and record.version == 7
        # It expires (the holder stalled past lock_ttl: its key goes, as here); another process
        # takes it; the first holder's write and its unlock leave the other's lock alone.
        await client.delete(lock_key)
        other = await pages.try_lock(d, cache_id)
        assert other is not None
        stored, _ = await pages.put(d, cache_id, page, release=again)
        await pages.unlock(d, again)
        assert stored and await client.get(lock_key) == other.token.encode()
        await pages.unlock(d, other)
        assert other.released and not await client.exists(lock_key)
    finally:
        await client.delete(contract.page_key(cache_id), lock_key)
        await client.aclose()
