"""Every renderer process drops its in-process copies of a page that was just published."""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

import redis.asyncio as aioredis

from renderer import contract

log = logging.getLogger("pagecache.invalidation")

HEARTBEAT = b"pagecache-heartbeat"


class Deaf(ConnectionError):
    """The subscription's connection answers nothing: messages may be lost without an error."""


async def listen(
    client: aioredis.Redis,
    on_slug: Callable[[str], None],
    on_gap: Callable[[bool], None],
    heartbeat: float = 1.0,
) -> None:
    """Subscribe to the invalidation channel and call ``on_slug`` per message, until cancelled.

    ``on_gap(deaf)`` is called whenever messages may have been missed, so that the process stops
    trusting its in-process copies: as soon as the connection goes deaf (``deaf=True``: no answer
    to a PING sent every ``heartbeat`` seconds for three of them; a half-open connection loses
    messages without any error), and when it subscribes again after losing the subscription
    (``deaf=False``: what was published meanwhile reached nobody). A connection that fails with
    an error delivered every message before it (TCP keeps their order): its copies are good until
    Redis is back, and they are what serves readers while it is down. Reconnects for ever.
    """
    subscribed_before = False
    loop = asyncio.get_running_loop()
    while True:
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(contract.INVALIDATION_CHANNEL)
            if subscribed_before:
                on_gap(False)
            subscribed_before = True
            heard = pinged = loop.time()
            while True:
                if loop.time() - heard > 3 * heartbeat:
                    on_gap(True)
                    raise Deaf(f"no answer to PING for {3 * heartbeat:.0f}s")
                if loop.time() - pinged >= heartbeat:
                    pinged = loop.time()
                    async with asyncio.timeout(heartbeat):
                        await pubsub.ping(HEARTBEAT)
                message = await pubsub.get_message(timeout=heartbeat)
                if message is None:
                    continue
                heard = loop.time()  # a message or a PONG: the connection is alive
                if message.get("type") == "message":
                    data = message["data"]
                    on_slug(data.decode() if isinstance(data, bytes) else str(data))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("invalidation listener reconnects after %r", exc)
            await asyncio.sleep(heartbeat)
        finally:
            try:
                await pubsub.aclose()  # type: ignore[no-untyped-call]
            except Exception:
                pass
