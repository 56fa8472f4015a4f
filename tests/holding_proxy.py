"""A TCP proxy on loopback that can hold back one answer: the network path of a slow MongoDB read.

SIGSTOP on FerretDB would stop every client of it, the writer we race against too; holding only
the reply that carries a given document delays exactly one reader, after the server has answered.
"""

from __future__ import annotations

import asyncio
import socket
import threading

# A BSON string element named "find": the command of a MongoDB find (a lookup or a listing).
_FIND = b"\x02find\x00"


class HoldingProxy:
    """Forwards 127.0.0.1:``port`` to the target set with ``connect_to``; ``hold(marker)`` keeps any
    server-to-client chunk containing ``marker`` until ``release()``; ``cut()`` is a partition
    (every connection closed, new ones refused at once) until ``mend()``; ``lose_reply_to(marker)``
    lets the next request containing ``marker`` reach the server and drops the connection when the
    answer comes back: the write happened, the client never hears of it. ``finds_in_flight`` is
    how many MongoDB ``find`` commands are at the server now (sent, not answered): the concurrency
    the server sees, counted where a client can't misreport it."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port: int = self._sock.getsockname()[1]
        self._target: tuple[str, int] | None = None
        self._target_set = threading.Event()
        self._marker: bytes | None = None
        self.holding = threading.Event()
        self._released = threading.Event()
        self._cut = False
        self._lose_marker: bytes | None = None
        self.reply_lost = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self.finds_in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def connect_to(self, host: str, port: int) -> None:
        """Where connections go (clients that connected before wait for this)."""
        self._target = (host, port)
        self._target_set.set()

    def hold(self, marker: bytes) -> None:
        """Hold back the next answers that contain ``marker``."""
        self.holding.clear()
        self._released.clear()
        self._marker = marker

    def release(self) -> None:
        """Let held answers go, and hold nothing more."""
        self._marker = None
        self._released.set()

    def cut(self) -> None:
        """Close every connection and refuse new ones, until ``mend()``."""
        self._cut = True

        def close_all() -> None:
            for writer in list(self._writers):
                writer.close()

        self._loop.call_soon_threadsafe(close_all)

    def lose_reply_to(self, marker: bytes) -> None:
        """Drop the connection that carries the next request containing ``marker`` when its answer
        arrives (once)."""
        self.reply_lost.clear()
        self._lose_marker = marker

    def mend(self) -> None:
        """Forward again."""
        self._cut = False

    def close(self) -> None:
        """Stop the proxy."""
        self.release()
        asyncio.run_coroutine_threadsafe(self._cancel_all(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _cancel_all(self) -> None:
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(asyncio.start_server(self._serve, sock=self._sock))
        self._loop.run_forever()

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._target_set.wait)
        assert self._target is not None
        if self._cut:
            client_writer.close()
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self._target)
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, server_writer))
        losing: dict[str, bool] = {"next reply": False, "find sent": False}
        await asyncio.gather(
            self._pipe(client_reader, server_writer, held=False, losing=losing),
            self._pipe(server_reader, client_writer, held=True, losing=losing),
            return_exceptions=True,
        )
        if losing["find sent"]:
            self.finds_in_flight -= 1  # the connection closed before the answer

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, held: bool, losing: dict[str, bool]
    ) -> None:
        try:
            while chunk := await reader.read(65536):
                if not held and self._lose_marker is not None and self._lose_marker in chunk:
                    self._lose_marker = None
                    losing["next reply"] = True
                if not held and _FIND in chunk and not losing["find sent"]:
                    losing["find sent"] = True  # one request at a time per connection (no pipelining)
                    self.finds_in_flight += 1
                elif held and losing["find sent"]:
                    losing["find sent"] = False
                    self.finds_in_flight -= 1
                if held and losing["next reply"]:
                    self.reply_lost.set()
                    return  # the answer is dropped with the connection (closed below)
                if held and self._marker is not None and self._marker in chunk:
                    self.holding.set()
                    await asyncio.get_running_loop().run_in_executor(None, self._released.wait)
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()
            self._writers.discard(writer)
