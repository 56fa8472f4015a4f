"""Purging the CDN in front of Varnish through its API: Fastly's or Cloudflare's
(docs/architecture.rst, "The CDN tier").

The CDN is one more reader of the purge log beside the Varnish nodes' agents, purging after them
(``renderer.cdn_feed``). Each vendor's API is a small class that turns a ``Purge`` into
the calls it takes (batched to the vendor's cap); ``CdnPurger`` sends them within the publish's
deadline behind its own guard (timeout, retries, breaker) and the plan's rate limit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from renderer import contract
from renderer.http_session import LazySession
from renderer.purge import Purge
from renderer.rate_limit import RateLimit, SharedRateLimit, TokenBucket
from renderer.resilience import Deadline, Guard, HoldOff


class CdnRefused(Exception):
    """The CDN's API answered something other than success."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {detail}"[:300])
        self.status = status
        self.retry_after = retry_after


class Throttled(HoldOff):
    """This request must wait ``wait`` seconds for the rate limit (or a 429's Retry-After)."""


class RateLimited(Exception):
    """No purge request may be sent before the plan's rate limit (or a 429's Retry-After) allows
    one, and that is later than the deadline: the purge is queued instead."""


def is_transient(exc: BaseException) -> bool:
    """Worth another try within the deadline: the network, a 5xx (a 429 waits its turn instead)."""
    if isinstance(exc, CdnRefused):
        return exc.status >= 500
    return isinstance(exc, (aiohttp.ClientError, OSError))


@dataclass(frozen=True)
class Call:
    """One HTTP request to a purge API."""

    url: str
    headers: dict[str, str]
    body: bytes | None = None


class PurgeApi(Protocol):
    """A CDN vendor's purge API."""

    name: str

    def calls(self, purge: Purge) -> list[Call]:
        """The requests that carry out ``purge`` (each within the vendor's caps)."""

    def check(self, status: int, body: bytes, headers: Any) -> None:
        """Raise ``CdnRefused`` unless the answer says the purge was taken."""


def _batches(keys: tuple[str, ...], size: int) -> list[list[str]]:
    return [list(keys[i : i + size]) for i in range(0, len(keys), size)]


def _retry_after(headers: Any) -> float | None:
    try:
        return max(0.0, float(headers.get("Retry-After", "")))
    except ValueError:
        return None


class FastlyApi:
    """``POST {api}/service/{id}/purge`` with the keys in ``Surrogate-Key`` (space-separated, up to
    256 a request); soft keys carry ``Fastly-Soft-Purge: 1`` (marked stale, refetched on the next
    request), hard keys don't (gone at once: pages no reader may see in their older version)."""

    name = "fastly"
    MAX_KEYS = 256

    def __init__(self, api_url: str, service_id: str, token: str) -> None:
        self.url = f"{api_url.rstrip('/')}/service/{service_id}/purge"
        self.token = token

    def calls(self, purge: Purge) -> list[Call]:
        made = []
        for keys, soft in ((purge.hard, False), (purge.soft, True)):
            for batch in _batches(keys, self.MAX_KEYS):
                headers = {"Fastly-Key": self.token, "Surrogate-Key": " ".join(batch), "Accept": "application/json"}
                if soft:
                    headers["Fastly-Soft-Purge"] = "1"
                made.append(Call(self.url, headers))
        return made

    def check(self, status: int, body: bytes, headers: Any) -> None:
        if status != 200:
            raise CdnRefused(status, body.decode(errors="replace"), _retry_after(headers))


class CloudflareApi:
    """``POST {api}/client/v4/zones/{zone}/purge_cache`` with ``{"tags": [...]}`` (up to 100 a
    request, every plan's cap). Cloudflare has no soft purge: soft keys are purged like hard ones."""

    name = "cloudflare"
    MAX_TAGS = 100

    def __init__(self, api_url: str, zone_id: str, token: str) -> None:
        self.url = f"{api_url.rstrip('/')}/client/v4/zones/{zone_id}/purge_cache"
        self.token = token

    def calls(self, purge: Purge) -> list[Call]:
        headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"}
        tags = tuple(dict.fromkeys((*purge.hard, *purge.soft)))
        batches = _batches(tags, self.MAX_TAGS)
        return [Call(self.url, headers, json.dumps({"tags": batch}).encode()) for batch in batches]

    def check(self, status: int, body: bytes, headers: Any) -> None:
        try:
            answer = json.loads(body)
        except ValueError:
            answer = {}
        if status != 200 or not (isinstance(answer, dict) and answer.get("success") is True):
            errors = answer.get("errors") if isinstance(answer, dict) else None
            detail = json.dumps(errors) if errors else body.decode(errors="replace")
            raise CdnRefused(status, detail, _retry_after(headers))


class CdnPurger:
    """Purges one CDN through its API: each call behind ``guard`` and the plan's ``rate_limit``; a
    429 holds every further call back for its ``Retry-After``."""

    def __init__(self, api: PurgeApi, guard: Guard, rate_limit: RateLimit, timeout: float) -> None:
        self.api = api
        self.target = f"cdn:{api.name}"  # its name among the purge targets (queue, metrics, reports)
        self.guard = guard
        self.rate_limit = rate_limit
        self._client = LazySession(timeout)

    async def close(self) -> None:
        """Close the connection pool."""
        await self._client.close()

    async def _send(self, call: Call) -> None:
        if (wait := await self.rate_limit.try_take()) > 0:
            raise Throttled(wait)
        async with self._client().post(call.url, headers=call.headers, data=call.body) as resp:
            body = await resp.read()
            try:
                self.api.check(resp.status, body, resp.headers)
            except CdnRefused as refused:
                if refused.status == 429:
                    retry_after = refused.retry_after if refused.retry_after is not None else 1.0
                    raise Throttled(await self.rate_limit.hold_off(retry_after)) from refused
                raise

    async def purge(self, deadline: Deadline, purge: Purge) -> None:
        """Every call ``purge`` takes, one after another (the plan's rate is per request). A call
        the rate limit or a 429 holds back waits for its turn if that comes within ``deadline``
        (outside any attempt's timeout), else ``RateLimited``: the purge is queued."""
        for call in self.api.calls(purge):
            try:
                await self.guard.run(deadline, self._send, call)  # a Throttled call waits its turn there
            except Throttled as throttled:
                raise RateLimited(f"no purge request allowed for {throttled.wait:.1f}s") from throttled


def make_api(name: str, settings: Any) -> PurgeApi | None:
    """The API ``CDN_PURGER`` names, from its settings; None for ``none``. A missing setting is an
    error at start, not a publish that silently purges nothing."""
    if name == "none":
        return None
    if name == "fastly":
        required = {"FASTLY_SERVICE_ID": settings.fastly_service_id, "FASTLY_API_TOKEN": settings.fastly_api_token}
        api: PurgeApi = FastlyApi(settings.fastly_api_url, settings.fastly_service_id, settings.fastly_api_token)
    elif name == "cloudflare":
        required = {
            "CLOUDFLARE_ZONE_ID": settings.cloudflare_zone_id,
            "CLOUDFLARE_API_TOKEN": settings.cloudflare_api_token,
        }
        api = CloudflareApi(settings.cloudflare_api_url, settings.cloudflare_zone_id, settings.cloudflare_api_token)
    else:
        raise ValueError(f"CDN_PURGER must be none, fastly or cloudflare, not {name!r}")
    missing = sorted(variable for variable, value in required.items() if not value)
    if missing:
        raise ValueError(f"CDN_PURGER={name} needs {', '.join(missing)}")
    return api


def purge_rate_limit(api: PurgeApi, settings: Any, redis_client: Any) -> RateLimit:
    """The plan's purge rate limit, kept by every renderer that shares ``redis_client`` together
    (``contract.cdn_purge_rate_key``); while Redis can't answer, each process keeps to its share of
    one instance's. Only Cloudflare publishes a purge rate limit per plan; Fastly's purges are not
    rate limited (a 429 would still hold them back for its Retry-After)."""
    rate, burst = (1000.0, 1000)
    if api.name == "cloudflare":
        rate, burst = settings.cloudflare_purge_rate, settings.cloudflare_purge_burst
    share = settings.process_count()
    fallback = TokenBucket(rate / share, max(1, burst // share))
    return SharedRateLimit(redis_client, contract.cdn_purge_rate_key(api.name), rate, burst, fallback)
