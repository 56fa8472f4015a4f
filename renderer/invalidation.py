"""Every renderer process drops its in-process copies of a page that was just published."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable

import redis.asyncio as aioredis

from renderer import contract
from renderer.last_good import LastGood

log = logging.getLogger("pagecache.invalidation")

HEARTBEAT = b"pagecache-heartbeat"


@dataclass(frozen=True)
class InProcessCopies:
    """What this process forgets when it hears of a publish, or that it may have missed some."""

    last_good: LastGood
    distrust: Callable[[bool], None]  # drop every copy: at once (True), or once Redis answers again
    box_changed: Callable[[], None]  # read the "latest news" box again soon
    on_gap: Callable[[], None] = lambda: None  # counts each gap

    def published(self, slug: str) -> None:
        """``slug`` was published or taken down: its copy goes, and every listing's (any of them
        may show the article: its section's front, the home, the box)."""
        self.last_good.drop(slug)
        self.last_good.drop_listings()
        self.box_changed()

    def missed(self, deaf: bool) -> None:
        """Invalidations may have been missed: no copy can be trusted any more. Deaf, at once;
        back after an outage, once Redis answers a read (until then they are what readers get, as
        during the outage itself: say, while a Sentinel failover completes)."""
        log.warning("invalidations may have been missed: in-process copies dropped%s", "" if deaf else " soon")
        self.on_gap()
        self.distrust(deaf)
        self.box_changed()


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
