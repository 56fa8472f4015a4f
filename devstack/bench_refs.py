"""Reference servers for scripts/bench: the floor and the ceiling of the renderer's Redis-hit path.

python -m devstack.bench_refs bare PORT FILE          # a Tornado handler returning FILE's bytes
python -m devstack.bench_refs redis-get PORT URL KEY  # a Tornado handler doing one Redis GET
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import redis.asyncio as aioredis
import tornado.web
from tornado.httpserver import HTTPServer


class Bare(tornado.web.RequestHandler):
    def initialize(self, body: bytes) -> None:
        self.body = body

    def compute_etag(self) -> None:
        return None

    def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(self.body)


class RedisGet(tornado.web.RequestHandler):
    def initialize(self, client: aioredis.Redis, key: str) -> None:
        self.client = client
        self.key = key

    def compute_etag(self) -> None:
        return None

    async def get(self) -> None:
        self.set_header("Content-Type", "text/html; charset=UTF-8")
        self.finish(await self.client.get(self.key))


async def serve(kind: str, port: int, args: list[str], body: bytes) -> None:
    if kind == "bare":
        route = (r"/.*", Bare, {"body": body})
    else:
        route = (r"/.*", RedisGet, {"client": aioredis.Redis.from_url(args[0]), "key": args[1]})
    server = HTTPServer(tornado.web.Application([route], log_function=lambda handler: None))
    server.listen(port, "127.0.0.1")
    await asyncio.Event().wait()


if __name__ == "__main__":
    kind, rest = sys.argv[1], sys.argv[3:]
    asyncio.run(serve(kind, int(sys.argv[2]), rest, Path(rest[0]).read_bytes() if kind == "bare" else b""))
