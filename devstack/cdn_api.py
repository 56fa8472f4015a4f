"""A stand-in for the CDN vendors' purge APIs (devstack only: neither vendor ships an emulator).

``python -m devstack.cdn_api --port P --cdn-admin URL …`` answers, like the real ones:

- Fastly: ``POST /service/<service id>/purge`` with ``Fastly-Key`` and ``Surrogate-Key: k1 k2``
  (up to 256 keys), ``Fastly-Soft-Purge: 1`` for a soft purge;
- Cloudflare: ``POST /client/v4/zones/<zone id>/purge_cache`` with ``Authorization: Bearer …`` and
  ``{"tags": [...]}`` (up to 100), rate-limited per the plan (token bucket, 429 + ``Retry-After``);

and turns each accepted purge into an xkey purge of the emulated CDN (a Varnish, ``--cdn-admin``).
Malformed or unauthorised calls are refused as the vendors document. For tests:
``POST /_stub/faults`` queues answers for the next calls (``{"status": 503}``, ``{"status": 429,
"retry_after": 2}``, ``{"delay": 5}``; ``"sticky": true`` answers every call so until ``DELETE
/_stub/faults``), ``GET /_stub/calls`` lists the calls received, with when.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import time
import uuid
from functools import partial
from typing import Any, Awaitable, Callable

import aiohttp
from aiohttp import web

# The vendors' documented caps, written here apart from the renderer's own on purpose: a client
# that batched wrongly must meet a stub that refuses it.
FASTLY_MAX_KEYS = 256
CLOUDFLARE_MAX_TAGS = 100

Handler = Callable[[web.Request], Awaitable[web.Response]]


class PlanLimit:
    """Cloudflare's documented purge limit: ``rate`` requests a second in bursts of ``burst``.
    Written here as a cell-rate meter (when the bucket would next be empty), not with the
    renderer's own limiter: a stub that shared that code could not catch its mistakes."""

    def __init__(self, rate: float, burst: int) -> None:
        self.interval = 1 / rate
        self.slack = (max(1, burst) - 1) * self.interval
        self.empty_at = 0.0  # monotonic

    def admit(self) -> float:
        """0.0 and the request counted, or the seconds until one would be admitted."""
        now = time.monotonic()
        start = max(self.empty_at, now)
        if start - now > self.slack:
            return start - now - self.slack
        self.empty_at = start + self.interval
        return 0.0


def _cloudflare_error(status: int, code: int, message: str, **headers: str) -> web.Response:
    body = {"success": False, "errors": [{"code": code, "message": message}], "messages": [], "result": None}
    return web.json_response(body, status=status, headers=headers)


class PurgeApiStub:
    """Both vendors' purge endpoints, in front of one emulated CDN."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.limit = PlanLimit(args.cloudflare_rate, args.cloudflare_burst)
        self.calls: list[dict[str, Any]] = []
        self.faults: list[dict[str, Any]] = []
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        """The client to the emulated CDN, made inside the running loop on first use."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        return self._session

    async def _purge_cdn(self, keys: list[str], soft: bool) -> None:
        header = "xkey-softpurge" if soft else "xkey-purge"
        async with self.session().request("PURGE", self.args.cdn_admin + "/", headers={header: " ".join(keys)}) as resp:
            await resp.read()
            if resp.status != 200:
                raise web.HTTPBadGateway(text=f"the CDN refused the purge: {resp.status}")

    def _record(self, request: web.Request, vendor: str, body: bytes) -> dict[str, Any]:
        call = {
            "vendor": vendor,
            "at": time.time(),
            "path": request.path,
            "headers": {k: v for k, v in request.headers.items() if k.lower() not in ("host", "content-length")},
            "body": body.decode(errors="replace"),
            "status": None,
        }
        self.calls.append(call)
        return call

    async def _fault(self) -> web.Response | None:
        """The next queued fault, if any: a delay (then the call goes on) or an answer."""
        if not self.faults:
            return None
        fault = self.faults[0] if self.faults[0].get("sticky") else self.faults.pop(0)
        if fault.get("delay"):
            await asyncio.sleep(float(fault["delay"]))
        if not fault.get("status"):
            return None
        headers = {"Retry-After": str(fault["retry_after"])} if fault.get("retry_after") is not None else {}
        return web.json_response({"msg": "injected fault"}, status=int(fault["status"]), headers=headers)

    async def _answer(self, request: web.Request, vendor: str, handler: Handler) -> web.Response:
        """Record the call, answer it (a queued fault, else the vendor's ``handler``), note the status."""
        call = self._record(request, vendor, await request.read())
        answer = await self._fault() or await handler(request)
        call["status"] = answer.status
        return answer

    async def _fastly(self, request: web.Request) -> web.Response:
        if request.headers.get("Fastly-Key") != self.args.fastly_token:
            return web.json_response({"msg": "Provided credentials are missing or invalid"}, status=401)
        if request.match_info["service"] != self.args.fastly_service:
            return web.json_response({"msg": "Record not found"}, status=404)
        keys = request.headers.get("Surrogate-Key", "").split()
        if not keys or len(keys) > FASTLY_MAX_KEYS:
            return web.json_response({"msg": f"Surrogate-Key: 1 to {FASTLY_MAX_KEYS} keys"}, status=400)
        soft = request.headers.get("Fastly-Soft-Purge") == "1"
        await self._purge_cdn(keys, soft)
        return web.json_response({key: uuid.uuid4().hex for key in keys})

    async def _cloudflare(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.args.cloudflare_token}":
            return _cloudflare_error(403, 10000, "Authentication error")
        if request.match_info["zone"] != self.args.cloudflare_zone:
            return _cloudflare_error(404, 7003, "Could not route to /zones/…: zone not found")
        try:
            body = json.loads(await request.read())
        except ValueError:
            return _cloudflare_error(400, 1012, "Request must contain JSON")
        tags = body.get("tags") if isinstance(body, dict) else None
        if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
            return _cloudflare_error(400, 1012, "tags: a non-empty list of strings")
        if len(tags) > CLOUDFLARE_MAX_TAGS:
            return _cloudflare_error(400, 1012, f"at most {CLOUDFLARE_MAX_TAGS} tags per request")
        if (wait := self.limit.admit()) > 0:
            return _cloudflare_error(429, 10429, "rate limited", **{"Retry-After": str(math.ceil(wait))})
        await self._purge_cdn(tags, soft=False)  # Cloudflare has no soft purge
        return web.json_response({"success": True, "errors": [], "messages": [], "result": {"id": uuid.uuid4().hex}})

    async def add_faults(self, request: web.Request) -> web.Response:
        faults = await request.json()
        self.faults.extend(faults if isinstance(faults, list) else [faults])
        return web.json_response({"queued": len(self.faults)})

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return web.json_response({"queued": 0})

    async def list_calls(self, request: web.Request) -> web.Response:
        return web.json_response(self.calls)

    async def health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/service/{service}/purge", partial(self._answer, vendor="fastly", handler=self._fastly))
        cloudflare = partial(self._answer, vendor="cloudflare", handler=self._cloudflare)
        app.router.add_post("/client/v4/zones/{zone}/purge_cache", cloudflare)
        app.router.add_post("/_stub/faults", self.add_faults)
        app.router.add_delete("/_stub/faults", self.clear_faults)
        app.router.add_get("/_stub/calls", self.list_calls)
        app.router.add_get("/healthcheck/live", self.health)
        return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cdn-admin", required=True, help="the emulated CDN's admin listener")
    parser.add_argument("--fastly-service", default="devstack-service")
    parser.add_argument("--fastly-token", default="devstack-fastly-token")
    parser.add_argument("--cloudflare-zone", default="devstack-zone")
    parser.add_argument("--cloudflare-token", default="devstack-cloudflare-token")
    parser.add_argument("--cloudflare-rate", type=float, default=5.0, help="purge requests per second (Pro)")
    parser.add_argument("--cloudflare-burst", type=int, default=25)
    args = parser.parse_args(argv)
    web.run_app(PurgeApiStub(args).app(), host="127.0.0.1", port=args.port, print=None)


if __name__ == "__main__":
    main()
