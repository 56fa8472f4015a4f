"""Every renderer process drops its in-process copies of a page that was just published."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import redis.asyncio as aioredis

from renderer import contract

log = logging.getLogger("pagecache.invalidation")


async def listen(client: aioredis.Redis, on_slug: Callable[[str], None], idle: float = 1.0) -> None:
    """Subscribe to the invalidation channel and call ``on_slug`` per message, until cancelled.

    Reconnects after any error: a Redis outage delays invalidations, it never ends them.
    """
    while True:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(contract.INVALIDATION_CHANNEL)
            while True:
                message = await pubsub.get_message(timeout=idle)
                if message is not None and message.get("type") == "message":
                    data = message["data"]
                    on_slug(data.decode() if isinstance(data, bytes) else str(data))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("invalidation listener reconnects after %r", exc)
            await asyncio.sleep(idle)
        finally:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            except Exception:
                pass
