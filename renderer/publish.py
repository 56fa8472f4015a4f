"""The write path: validate, sanitise, commit to MongoDB, render the page and the listings that
show it into Redis (version-fenced), tell every renderer process, append the purge to the log and
wait until every live Varnish node (and the CDN's reader) has applied it (docs/architecture.rst,
"Publishing exactly", "The purge log").

MongoDB is the commit point: a failure before it changes nothing (503, the CMS retries); after
it, every step is reported. The log keeps what a node has not applied yet, never lost; a log that
cannot take the purge is a failed step (503: the same request, sent again, finishes it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

from healthcheck import SingleFlight, describe_error
from renderer import contract
from renderer.articles import ArticleInput, Refused
from renderer.backends.mongo_articles import MongoArticles, VersionConflict
from renderer.backends.redis_pages import RedisPages
from renderer.last_good import LastGood
from renderer.listings import Listings
from renderer.purge import PURGED, Purge
from renderer.purge_log import PurgeEvent, PurgeLog
from renderer.render import PageRenderer
from renderer.resilience import Deadline
from renderer.sanitise import SANITISED_BY, SANITISED_BY_FIELD, sanitise_html

log = logging.getLogger("pagecache.publish")
OK = "ok"
NOT_APPLIED = "pending (not applied within the deadline; the log keeps it)"
# The second purge waits for a quiet spell of ``settle_seconds``, but never longer than this many
# of them after the first change of a burst: an article saved every second still gets it.
SETTLE_MAX_WAITS = 5


@dataclass(frozen=True)
class PublishReport:
    """What a publish, unpublish or purge did, step by step and node by node."""

    status: int
    body: dict[str, Any]
    etag: str | None = None
    laps: dict[str, float] | None = None  # ms per step (``Server-Timing``)


class Laps:
    """How long each step of one change took, in order: ``lap(name)`` ends the step ``name``."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._at = time.perf_counter()

    def lap(self, name: str) -> None:
        """The time since the previous lap (or the start) was spent on ``name``."""
        now = time.perf_counter()
        self.ms[name] = self.ms.get(name, 0.0) + 1000 * (now - self._at)
        self._at = now


def listing_keys(sections: set[str]) -> list[str]:
    """The surrogate keys of the listings an article of ``sections`` shows up in (the box's key,
    which every article page carries too, is purged only when the box changed)."""
    return [contract.HOME_SURROGATE_KEY, *sorted(contract.section_surrogate_key(section) for section in sections)]


def listing_cache_ids(sections: set[str]) -> list[str]:
    """The same listings' ids in the tiers (``page:<id>`` in Redis): the pages, the box, and the
    feeds and sitemaps (readers beyond browsers see a change when readers of the pages do)."""
    ids = [contract.HOME_CACHE_ID, contract.LATEST_BOX_CACHE_ID, contract.HOME_FEED_CACHE_ID]
    ids += [contract.NEWS_SITEMAP_CACHE_ID, contract.SITEMAP_CACHE_ID]
    for section in sorted(sections):
        ids += [contract.section_cache_id(section), contract.section_feed_cache_id(section)]
    return ids


def _report(
    status: int,
    body: dict[str, Any],
    steps: dict[str, Any],
    pending: list[str],
    etag: str | None = None,
    laps: Laps | None = None,
) -> PublishReport:
    """The answer to a committed change: ``status`` when every step is done; 202 when only purges
    that the log holds remain (a node applies them when it can); 503 when a step failed (the same
    request, sent again, finishes it: publishing is idempotent)."""
    body = {**body, "committed": True, "steps": steps, "pending": pending}
    failed = sorted(
        name for name, outcome in steps.items() if isinstance(outcome, str) and outcome.startswith("failed")
    )
    ms = laps.ms if laps is not None else None
    if failed:
        body["error"] = f"committed, but not fully applied ({', '.join(failed)} failed); send the same request again"
        return PublishReport(503, body, etag, ms)
    return PublishReport(202 if pending else status, body, etag, ms)


def _first_failure(*outcomes: str) -> str:
    return next((outcome for outcome in outcomes if outcome != OK), OK)


def _failed(exc: BaseException) -> str:
    return f"failed: {describe_error(exc)}"


class Publisher:
    """Carries out editors' requests against every tier."""

    def __init__(
        self,
        mongo: MongoArticles,
        redis: RedisPages,
        renderer: PageRenderer,
        listings: Listings,
        last_good: LastGood,
        purge_log: PurgeLog,
        cdn_target: str | None,
        deadline_seconds: float,
        settle_seconds: float,
    ) -> None:
        self.mongo = mongo
        self.redis = redis
        self.renderer = renderer
        self.listings = listings  # rendered from the primary, with the write path's patience
        self.last_good = last_good  # this process's copies, which a publish replaces at once
        self.log = purge_log
        self.cdn_target = cdn_target  # the CDN's reader of the log, when there is a CDN to purge
        self.deadline_seconds = deadline_seconds
        self.settle_seconds = settle_seconds
        self._unsettled: set[str] = set()  # soft keys
        self._unsettled_hard: set[str] = set()
        self._unsettled_box = 0  # the newest box version a settle pass must name
        self._restore: set[str] = set()  # slugs whose Redis step failed: stored again when settled
        # The newest render of each listing, in flight or done, shared by publishes whose change
        # came before it began: a burst of publishes costs a few renders, not one each.
        self._listing_renders: SingleFlight[Any, Any] = SingleFlight(keep_results=True)
        self._first_change = 0.0  # of the burst not settled yet
        self._last_change = 0.0
        self._settling: asyncio.Task[None] | None = None

    async def publish(
        self, article: ArticleInput, expected_version: int | None, request_id: str | None
    ) -> PublishReport:
        """Create or update an article; 201 when created, 200 when updated."""
        deadline, laps = Deadline.after(self.deadline_seconds, "editor"), Laps()
        fields = {
            **article.fields,
            "body_html": sanitise_html(article.fields["body_html"]),
            SANITISED_BY_FIELD: SANITISED_BY,
        }
        laps.lap("sanitise")
        saved = await self._commit(self.mongo.save(deadline, article.slug, fields, expected_version))
        laps.lap("mongodb")
        doc, created = saved.doc, saved.created
        page = self.renderer.article(doc)
        laps.lap("render")
        # The objects that show this article: its page, the home, the box, its section (old and new).
        sections = {doc["section"]} | ({saved.previous["section"]} if saved.previous else set())
        committed = f"committed version {saved.version}"
        if saved.version != doc["version"]:  # a retry found it under a later save: that one is current
            committed += f", since replaced by version {doc['version']}"
        steps: dict[str, Any] = {"validate": OK, "sanitise": OK, "mongodb": committed}
        article_key = contract.article_surrogate_key(article.slug)
        steps["redis"] = await self._store_page(deadline, article.slug, page)
        laps.lap("redis")
        box = 0
        if steps["redis"] == OK:
            # The way to the reader's first fresh read: the article's page goes from every node as
            # soon as Redis holds it, without waiting for the listings (the nodes apply events in
            # order, so waiting for the second event below waits for this one too).
            steps["invalidate"] = await self._announce(deadline, article.slug)
            early = Purge(hard=(article_key,))
            await self._purge(deadline, early, request_id, steps, article.slug, saved.version, wait=False, cdn=False)
            laps.lap("article purge")
            steps["redis"], box = await self._store_listings(deadline, sections)
            laps.lap("listings")
        # Once the listings are stored too, every process drops its in-process copies again.
        steps["invalidate"] = _first_failure(steps.get("invalidate", OK), await self._announce(deadline, article.slug))
        laps.lap("invalidate")
        listings = listing_keys(sections)
        # The article's page is hard-purged, new or updated: once the publish is acknowledged no
        # node may serve an older version, and a soft purge would serve it once more per node
        # while refetching. Readers wait on Varnish's waiting list for one fetch per node, which
        # Redis answers (it holds the new version already). So is a cached 404 of its section
        # front when it is the section's first article. The listings are soft: one refetch each.
        hard = (article_key, contract.missing_section_key(doc["section"]))
        purge = Purge(hard=hard, soft=tuple(listings))
        steps["varnish"], pending = await self._purge(
            deadline, purge, request_id, steps, article.slug, saved.version, laps=laps
        )
        # A box that changed (a new article in it, a title edited) reaches every page that shows
        # it with the second purge: one refetch of each page per node and CDN point of presence
        # per burst of publishes, soft, at most a few seconds after the burst ends.
        box_key = [contract.LATEST_SURROGATE_KEY] if box else []
        self._settle_later([article_key], listings + box_key, article.slug, steps["redis"] == OK, box)
        body = {"slug": article.slug, "version": saved.version, "etag": page.etag, "created": created}
        return _report(201 if created else 200, body, steps, pending, page.etag, laps)

    async def unpublish(self, slug: str, expected_version: int | None, request_id: str | None) -> PublishReport:
        """Remove an article from every tier: afterwards it is a 404 everywhere."""
        deadline = Deadline.after(self.deadline_seconds, "editor")
        doc = await self._commit(self.mongo.unpublish(deadline, slug, expected_version))
        if doc is None:
            raise Refused(404, f"no article {slug!r}")
        steps: dict[str, Any] = {"mongodb": f"unpublished as version {doc['version']}"}
        sections = {doc["section"]}
        # The takedown is just a newer version of the page, that is a 404: it replaces the article
        # in every copy, the last good one included, and no older read can put it back.
        takedown = self.renderer.not_found(slug, version=int(doc["version"]))
        steps["redis"], box = await self._store(deadline, slug, takedown, sections)
        steps["invalidate"] = await self._announce(deadline, slug)
        listings = listing_keys(sections)
        keys = [contract.article_surrogate_key(slug), *listings]
        if box or steps["redis"] != OK:
            # The box showed it: every page that shows the box goes too, at every tier, before the
            # answer; Varnish keeps none that shows an older box than ``box`` from now on.
            keys.append(contract.LATEST_SURROGATE_KEY)
        # A hard purge: a soft one would still show the taken-down article (or its title in a
        # listing) once more while refetching.
        purge = Purge(hard=tuple(keys), box_version=box)
        steps["varnish"], pending = await self._purge(
            deadline, purge, request_id, steps, slug, int(doc["version"]), replicated=steps["redis"] == OK
        )
        hard_again = [key for key in keys if key not in listings]
        self._settle_later(hard_again, listings, slug, steps["redis"] == OK, box)
        return _report(200, {"slug": slug, "version": doc["version"]}, steps, pending)

    async def purge(self, keys: list[str], request_id: str | None) -> PublishReport:
        """Soft-purge surrogate keys on every node."""
        deadline = Deadline.after(self.deadline_seconds, "editor")
        steps: dict[str, Any] = {}
        nodes, pending = await self._purge(deadline, Purge(soft=tuple(keys)), request_id, steps)
        body: dict[str, Any] = {"keys": keys, "varnish": nodes, "pending": pending}
        if steps:  # the log could not take it: nothing would deliver it
            body["error"] = (
                f"the purge log could not take the purge ({steps['purge log']}); send the same request again"
            )
            return PublishReport(503, body)
        return PublishReport(202 if pending else 200, body)

    async def _replicated(self, deadline: Deadline) -> str:
        """A takedown is acknowledged only once a replica holds it, where Redis has replicas:
        replication is asynchronous, and a replica promoted without it would serve the article
        again (its record's fence lost with the old primary)."""
        try:
            held = await self.redis.replicated(deadline)
        except Exception as exc:
            return _failed(exc)
        if held is False:
            return "failed: no replica confirmed the takedown within the deadline"
        return "no replica" if held is None else OK

    async def _commit(self, write: Any) -> Any:
        try:
            return await write
        except VersionConflict as exc:
            raise Refused(412, f"version conflict: {exc}; fetch the article again and retry") from exc
        except Exception as exc:
            log.warning("MongoDB refused a write: %r", exc)
            raise Refused(503, f"MongoDB could not take the change ({type(exc).__name__}); retry") from exc

    async def _store(self, deadline: Deadline, slug: str, page: Any, sections: set[str]) -> tuple[str, int]:
        """Store the article's page, then the listings that show it (``_store_listings``)."""
        stored = await self._store_page(deadline, slug, page)
        if stored != OK:
            return stored, 0
        return await self._store_listings(deadline, sections)

    async def _store_page(self, deadline: Deadline, slug: str, page: Any) -> str:
        """Store the article's page (fenced: a concurrent publish's newer copy is never replaced)."""
        self.last_good.put(slug, page)
        try:
            await self.redis.put(deadline, slug, page)
        except Exception as exc:
            return _failed(exc)
        return OK

    async def _store_listings(self, deadline: Deadline, sections: set[str]) -> tuple[str, int]:
        """Render the listings that show an article of ``sections`` (the home, the box, its
        sections) from the primary under a new generation and store them: readers never re-read a
        listing from a lagging secondary because a publish changed it. Every write is fenced, so a
        concurrent publish's newer copies are never replaced. The outcome, and the new box's
        version when the box changed (else 0)."""
        try:
            before = await self.redis.get(deadline, contract.LATEST_BOX_CACHE_ID)
            await self.listings.bump_generation(deadline)
            changed_at = time.monotonic()
            groups = self.listings.loaders(listing_cache_ids(sections))
            stored: dict[str, Any] = {}
            for pages in await asyncio.gather(
                *(self._store_group(deadline, source, load, changed_at) for source, load in groups.items())
            ):
                stored.update(pages)
        except Exception as exc:
            return _failed(exc), 0
        box = stored[contract.LATEST_BOX_CACHE_ID]
        return OK, (box.version if before is None or before.html != box.html else 0)

    async def _store_group(self, deadline: Deadline, source: Any, load: Any, changed_at: float) -> dict[str, Any]:
        """Store the listings made from one stored listing (``source``: one read for all of them)
        as rendered from the primary by a render that began after ``changed_at`` (this change's
        generation bump), so they show the change. Concurrent publishes share such a render: a
        burst of them costs a few renders, not one each."""
        pages: dict[str, Any] = await self._listing_renders.do(source, lambda: load(deadline), since=changed_at)
        for cache_id, page in pages.items():
            self.last_good.put(cache_id, page)
        await self.redis.put_all(deadline, pages)
        return pages

    def _settle_later(self, hard: list[str], soft: list[str], slug: str, stored: bool, box: int = 0) -> None:
        """Purge Varnish once more when no reader that started before this change can still be running.

        Redis is fenced by version, but Varnish is not: a reader whose MongoDB read began before the
        commit may hand Varnish the old page after our purge. Every such reader ends within its
        deadline, so one more purge ``settle_seconds`` after the last change closes the window; one
        pending pass per process covers a whole burst of publishes, and a burst that never goes
        quiet still gets it ``SETTLE_MAX_WAITS`` times that after its first change. A slug whose
        Redis step failed (``stored`` false) is rendered from the primary and stored again then:
        the page and its listings heal without waiting for the editor's retry.
        """
        if not stored:
            self._restore.add(slug)
        now = time.monotonic()
        if not self._unsettled and not self._unsettled_hard:
            self._first_change = now
        self._unsettled.update(soft)
        self._unsettled_hard.update(hard)
        self._unsettled_box = max(self._unsettled_box, box)
        self._last_change = now
        if self._settling is None or self._settling.done():
            self._settling = asyncio.ensure_future(self._settle())

    def _settle_at(self) -> float:
        return min(self._last_change + self.settle_seconds, self._first_change + SETTLE_MAX_WAITS * self.settle_seconds)

    async def _settle(self) -> None:
        while self._unsettled or self._unsettled_hard:
            # A bounded debounce: each change moves the end of the wait, up to the burst's limit.
            while (wait := self._settle_at() - time.monotonic()) > 0:  # noqa: ASYNC110
                await asyncio.sleep(wait)
            restore, self._restore = self._restore, set()
            deadline = Deadline.after(self.deadline_seconds, "editor")
            for slug in restore:
                await self._store_current(deadline, slug)
            hard, self._unsettled_hard = tuple(sorted(self._unsettled_hard)), set()
            soft, self._unsettled = tuple(sorted(self._unsettled - set(hard))), set()
            box, self._unsettled_box = self._unsettled_box, 0
            await self._purge(deadline, Purge(hard=hard, soft=soft, box_version=box), request_id=None, wait=False)

    async def _store_current(self, deadline: Deadline, slug: str) -> None:
        """Render what MongoDB's primary holds for ``slug`` now and store it with its listings."""
        try:
            doc = await self.mongo.article(deadline, slug)
        except Exception as exc:
            log.warning("second store of %s failed: %r", slug, exc)
            return
        if doc is None:
            return
        page = self.renderer.article(doc) if doc.get("published") else self.renderer.not_found(slug, doc["version"])
        outcome, box = await self._store(deadline, slug, page, {doc["section"]})
        if box:
            self._unsettled.add(contract.LATEST_SURROGATE_KEY)  # the calling pass purges it
            self._unsettled_box = max(self._unsettled_box, box)
        if outcome != OK:
            log.warning("second store of %s: %s", slug, outcome)

    async def close(self) -> None:
        """Finish a pending second invalidation (called at shutdown)."""
        if self._settling is not None and not self._settling.done():
            self._last_change = self._first_change = float("-inf")
            await asyncio.gather(self._settling, return_exceptions=True)

    async def _announce(self, deadline: Deadline, slug: str) -> str:
        try:
            await self.redis.announce(deadline, slug)
        except Exception as exc:
            return _failed(exc)
        return OK

    async def _purge(
        self,
        deadline: Deadline,
        purge: Purge,
        request_id: str | None,
        steps: dict[str, Any] | None = None,
        slug: str = "",
        version: int = 0,
        replicated: bool = False,
        wait: bool = True,
        laps: Laps | None = None,
        cdn: bool = True,
    ) -> tuple[dict[str, str], list[str]]:
        """Append the purge to the log and wait, within ``deadline``, until every live node (and the
        CDN's reader) has applied it: target -> "purged" or why not yet, and the targets pending.
        When the log can't take it, ``steps`` gets a failed ``purge log`` step. ``replicated``: the
        answer also waits until a Redis replica holds the event and every write before it (a
        takedown's record), so a failover loses neither."""
        event = PurgeEvent(purge, slug, version, request_id or "", cdn=cdn and self.cdn_target is not None)
        try:
            event_id, after_ack = await self.log.append(deadline, event)
            if laps is not None:
                laps.lap("log")
        except Exception as exc:
            log.error("the purge log could not take %s: %r", purge.describe(), exc)
            if steps is not None:
                steps["purge log"] = _failed(exc)
            return {}, []
        if replicated and steps is not None:
            steps["redis replica"] = await self._replicated(deadline)
        if not wait:
            return {}, []
        try:
            applied = await self.log.wait_applied(deadline, event_id, after_ack, self.cdn_target)
        except Exception as exc:
            # In the log, not confirmed applied: every node will apply it when it reads on.
            log.warning("could not follow purge %s: %r", event_id, exc, exc_info=True)
            return {"*": f"pending (could not follow the log: {type(exc).__name__})"}, ["*"]
        if laps is not None:
            laps.lap("nodes")
        results = {target: PURGED if done else NOT_APPLIED for target, done in applied.items()}
        return results, sorted(target for target, done in applied.items() if not done)
