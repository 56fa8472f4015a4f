"""The editors' API: publish, unpublish, purge, the pending-purge queue, the OpenAPI document."""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import asdict
from typing import Any

import tornado.web

from healthcheck import describe_error
from renderer import logs, openapi
from renderer.articles import Refused, parse_article, parse_purge
from renderer.contract import is_valid_slug
from renderer.handlers.allow import AllowOn405
from renderer.publish import PublishReport
from renderer.resilience import Deadline
from renderer.services import Services


def parse_if_match(header: str | None) -> int | None:
    """The version an ``If-Match`` ETag names (``"3-ab12…"`` or ``"3"``); None without the header."""
    if header is None or header.strip() == "*":
        return None
    tag = header.strip().removeprefix("W/").strip('"')
    try:
        return int(tag.split("-", 1)[0])
    except ValueError:
        raise Refused(400, "If-Match must be an ETag returned by this API") from None


# A refused body is read to its end and thrown away, up to this many times the cap, so that the
# client reads our answer instead of a reset connection; past that Tornado closes the connection.
DRAIN_FACTOR = 4


@tornado.web.stream_request_body
class ApiHandler(AllowOn405):
    """JSON in and out, bearer tokens from EDITOR_TOKENS compared in constant time.

    Bodies are streamed: at most ``PUBLISH_MAX_BYTES`` are kept, and a request over it gets a 413
    with a JSON reason once its body has arrived, whatever its size or framing.
    """

    def initialize(self, services: Services) -> None:
        self.services = services
        self.refusal: Refused | None = None
        self.chunks: list[bytes] = []
        self.received = 0

    def compute_etag(self) -> None:
        return None

    def prepare(self) -> None:
        self.refusal = self._authorise()
        if self.refusal is not None:
            # Nothing of an unauthorised request's body is read: the answer, then the connection
            # is closed (a client that sent ``Expect: 100-continue`` never sends the body at all).
            self.set_header("Connection", "close")
            self.answer_refusal()
            return
        cap = self.services.settings.publish_max_bytes
        length = self.request.headers.get("Content-Length", "")
        declared = int(length) if length.isdigit() else 0
        if declared > cap:
            self.refusal = Refused(413, f"body is larger than {cap} bytes")
        too_much = declared > cap * DRAIN_FACTOR
        # Past the cap, Tornado would answer a bare 400 after ours: let it read (we keep nothing).
        self.request.connection.set_max_body_size(declared if too_much else cap * DRAIN_FACTOR)  # type: ignore[union-attr]
        if self.refusal is not None and (self.request.method in ("GET", "HEAD", "DELETE") or too_much):
            self.answer_refusal()  # nothing to drain, or too much: answer now and close

    def _authorise(self) -> Refused | None:
        scheme, _, credentials = self.request.headers.get("Authorization", "").partition(" ")
        # The scheme is case-insensitive (RFC 9110 §11.1), and one or more spaces may follow it.
        given = credentials.lstrip(" ").encode()
        if scheme.lower() != "bearer" or not given:
            self.set_header("WWW-Authenticate", 'Bearer realm="pagecache"')
            return Refused(401, "an editor token is required (Authorization: Bearer <token>)")
        valid = False
        for token in self.services.editor_tokens:
            # No short-circuit: every configured token is compared, each in constant time.
            valid |= hmac.compare_digest(given, token.encode())
        return None if valid else Refused(403, "this token may not publish")

    def data_received(self, chunk: bytes) -> None:
        self.received += len(chunk)
        cap = self.services.settings.publish_max_bytes
        if self.received > cap and self.refusal is None:
            self.refusal = Refused(413, f"body is larger than {cap} bytes")
        if self.refusal is None:
            self.chunks.append(chunk)
        else:
            self.chunks.clear()

    @property
    def body(self) -> bytes:
        """The request body (within the cap)."""
        return b"".join(self.chunks)

    def answer_refusal(self) -> bool:
        """Answer with the refusal decided in ``prepare``/``data_received``, if any; True if answered."""
        if self.refusal is None:
            return False
        self.write_json(self.refusal.status, {"error": self.refusal.message})
        return True

    def write_json(self, status: int, body: dict[str, Any]) -> None:
        """Finish with ``body`` as JSON."""
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(body, default=str))

    def write_error_body(self, status_code: int, **kwargs: Any) -> None:
        self.write_json(status_code, {"error": self._reason})

    def request_id(self) -> str:
        """Carried into the purge calls this request makes."""
        return logs.request_id.get()

    async def respond(self, action: str, work: Any) -> None:
        """Await ``work`` (a PublishReport) and answer with it, or with why nothing changed."""
        try:
            report: PublishReport = await work
        except Refused as exc:
            self.refuse(exc, action)
            return
        self.services.metrics.publishes.labels(action, report.status).inc()
        if report.status == 503:
            self.set_header("Retry-After", "5")
        if report.etag:
            self.set_header("ETag", report.etag)
        if report.laps:
            self.set_header("Server-Timing", ", ".join(f"{name};dur={ms:.1f}" for name, ms in report.laps.items()))
        self.write_json(report.status, report.body)

    def refuse(self, exc: Refused, action: str) -> None:
        """Answer why nothing changed (a 503 says when to come back)."""
        if exc.status == 503:
            self.set_header("Retry-After", "5")
        self.services.metrics.publishes.labels(action, exc.status).inc()
        self.write_json(exc.status, {"error": exc.message})


class ArticleApiHandler(ApiHandler):
    """``PUT`` (create or update) and ``DELETE`` (unpublish) ``/api/articles/<slug>``."""

    async def put(self, slug: str) -> None:
        if self.answer_refusal():
            return
        try:
            article = parse_article(
                slug,
                self.body,
                self.request.headers.get("Content-Type", ""),
                self.services.article_rules,
            )
            expected = parse_if_match(self.request.headers.get("If-Match"))
        except Refused as exc:
            self.refuse(exc, "publish")
            return
        await self.respond("publish", self.services.publisher.publish(article, expected, self.request_id()))

    async def delete(self, slug: str) -> None:
        if self.answer_refusal():
            return
        try:
            if not is_valid_slug(slug):
                raise Refused(400, "not a valid article slug")
            expected = parse_if_match(self.request.headers.get("If-Match"))
        except Refused as exc:
            self.refuse(exc, "unpublish")
            return
        await self.respond("unpublish", self.services.publisher.unpublish(slug, expected, self.request_id()))


class PurgeApiHandler(ApiHandler):
    """``POST /api/purge``: ``{"slug": ...}`` and/or ``{"keys": [...]}``."""

    async def post(self) -> None:
        if self.answer_refusal():
            return
        try:
            keys = parse_purge(self.body, self.request.headers.get("Content-Type", ""))
        except Refused as exc:
            self.refuse(exc, "purge")
            return
        await self.respond("purge", self.services.publisher.purge(keys, self.request_id()))


class PendingPurgesHandler(ApiHandler):
    """``GET /api/purge/pending``: the Varnish nodes reading the purge log, and how far behind each is."""

    async def get(self) -> None:
        if self.answer_refusal():
            return
        purge_log = self.services.purge_log
        try:
            states = await purge_log.nodes(Deadline.after(self.services.settings.request_deadline))
        except Exception as exc:
            self.set_header("Retry-After", "5")
            self.write_json(503, {"error": f"the purge log (Redis) is unreachable: {describe_error(exc)}"})
            return
        now = time.time()
        nodes = {
            name: {
                **asdict(state),
                "live": state.live(now, purge_log.dead_after),
                "seen_seconds_ago": round(now - state.seen, 1),
            }
            for name, state in sorted(states.items())
        }
        pending = [name for name, node in nodes.items() if node["live"] and node["lag_events"]]
        self.write_json(
            200, {"length": sum(nodes[name]["lag_events"] for name in pending), "pending": pending, "nodes": nodes}
        )


class OpenApiHandler(AllowOn405):
    """``GET /api/openapi.json`` (no token needed to read the contract)."""

    def initialize(self, services: Services) -> None:
        self.services = services

    def get(self) -> None:
        settings = self.services.settings
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(openapi.document(settings.publish_max_bytes, self.services.article_rules)))
