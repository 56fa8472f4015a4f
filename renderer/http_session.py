"""One aiohttp session per purger, made on first use: a session must be made inside the running
event loop, which a service built at import or start-up time does not have yet."""

from __future__ import annotations

import aiohttp


class LazySession:
    """An ``aiohttp.ClientSession`` with a total ``timeout`` per request, made when first asked for."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        """Close the connection pool, if one was made."""
        if self._session is not None:
            await self._session.close()
