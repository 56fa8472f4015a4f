"""A replica set as the driver sees it, made of single MongoDB-protocol servers (FerretDB is one
node): a TCP proxy per member that forwards everything, and answers every ``hello`` with that
member's role in set ``rs0``. The driver then discovers a primary and a secondary, applies read
preferences, and sends each command to one member, which command monitoring names
(``event.connection_id``). A member may front a server of its own: a secondary with older data
is a lagging replica.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from typing import Any

import bson

OP_REPLY, OP_QUERY, OP_MSG = 1, 2004, 2013
SET_NAME = "rs0"
_HEADER = struct.Struct("<iiii")  # messageLength, requestID, responseTo, opCode


def _command_name(op_code: int, body: bytes) -> str:
    """The first key of a request's command document ('' when it is not one)."""
    try:
        if op_code == OP_MSG and body[4] == 0:
            return next(iter(bson.decode(body[5:], codec_options=bson.CodecOptions())), "")
        if op_code == OP_QUERY:
            name_end = body.index(b"\x00", 4)
            doc = bson.decode(body[name_end + 9 :])
            doc = doc.get("$query", doc)
            return next(iter(doc), "")
    except Exception:  # noqa: BLE001  (anything else is forwarded untouched)
        return ""
    return ""


class Member:
    """One member: listens on 127.0.0.1:``port`` and forwards to ``upstream``."""

    def __init__(self, replica_set: FakeReplicaSet, role: str, upstream: int) -> None:
        self.replica_set = replica_set
        self.role = role
        self.upstream = upstream
        self.port = 0

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def rewrite_hello(self, reply: dict[str, Any]) -> dict[str, Any]:
        """The server's own hello reply, as this member of ``rs0`` would give it."""
        primary = self.role == "primary"
        return {
            **reply,
            "setName": SET_NAME,
            "setVersion": 1,
            "hosts": [member.address for member in self.replica_set.members],
            "me": self.address,
            "primary": self.replica_set.members[0].address,
            "isWritablePrimary": primary,
            "ismaster": primary,
            "secondary": not primary,
            **({"electionId": bson.ObjectId("7fffffff0000000000000001")} if primary else {}),
        }

    def rewrite_reply(self, op_code: int, header: bytes, body: bytes) -> bytes:
        _, request_id, response_to, _ = _HEADER.unpack(header)
        if op_code == OP_MSG:
            flags = struct.unpack("<I", body[:4])[0] & ~1  # a checksum would no longer match
            doc = self.rewrite_hello(bson.decode(body[5 : 5 + struct.unpack("<i", body[5:9])[0]]))
            new_body = struct.pack("<I", flags) + b"\x00" + bson.encode(doc)
        else:  # OP_REPLY to the handshake's OP_QUERY
            doc = self.rewrite_hello(bson.decode(body[20 : 20 + struct.unpack("<i", body[20:24])[0]]))
            new_body = body[:16] + struct.pack("<i", 1) + bson.encode(doc)
        return _HEADER.pack(16 + len(new_body), request_id, response_to, op_code) + new_body

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream)
        except OSError:
            writer.close()
            return
        hellos: set[int] = set()

        async def requests() -> None:
            while header := await reader.readexactly(16):
                length, request_id, _, op_code = _HEADER.unpack(header)
                body = await reader.readexactly(length - 16)
                if _command_name(op_code, body).lower() in ("hello", "ismaster"):
                    hellos.add(request_id)
                up_writer.write(header + body)
                await up_writer.drain()

        async def replies() -> None:
            while header := await up_reader.readexactly(16):
                length, _, response_to, op_code = _HEADER.unpack(header)
                body = await up_reader.readexactly(length - 16)
                if response_to in hellos:
                    hellos.discard(response_to)
                    writer.write(self.rewrite_reply(op_code, header, body))
                else:
                    writer.write(header + body)
                await writer.drain()

        try:
            await asyncio.gather(requests(), replies())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            for each in (writer, up_writer):
                each.close()


class FakeReplicaSet:
    """``FakeReplicaSet(primary_port, secondary_port)``: members 0 (primary) and 1 (secondary) in
    front of those servers; ``url(...)`` is a connection string naming both."""

    def __init__(self, *upstreams: int) -> None:
        self.members = [Member(self, "primary" if n == 0 else "secondary", port) for n, port in enumerate(upstreams)]
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.Server] = []
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        for member in self.members:
            server = self._loop.run_until_complete(asyncio.start_server(member.serve, "127.0.0.1", 0))
            member.port = server.sockets[0].getsockname()[1]
            self._servers.append(server)
        started.set()
        self._loop.run_forever()

    def url(self, options: str = "") -> str:
        """A replica-set connection string (``options``: more URL options, ``&``-joined)."""
        hosts = ",".join(member.address for member in self.members)
        return f"mongodb://{hosts}/?replicaSet={SET_NAME}" + (f"&{options}" if options else "")

    def member_of(self, connection_id: tuple[str, int]) -> str:
        """Which member (``primary``/``secondary``) a command monitoring event's connection is to."""
        return next(member.role for member in self.members if member.port == connection_id[1])

    def close(self) -> None:
        def stop() -> None:
            for server in self._servers:
                server.close()
            self._loop.stop()

        self._loop.call_soon_threadsafe(stop)
        self._thread.join(timeout=5)
