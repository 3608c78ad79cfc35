"""A TCP relay in front of a real database server, which a test can take down and bring back:
the database becomes unreachable exactly as when its server stops (connections cut, new ones
refused), without touching the server other tests use."""

from __future__ import annotations

import asyncio
import contextlib


class DatabaseRelay:
    """Relays loopback connections to `host:port` while up; when down, the port refuses."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()

    async def start(self) -> DatabaseRelay:
        """Listen on a free loopback port (kept across down and up)."""
        await self.up()
        return self

    async def up(self) -> None:
        """Accept and relay connections again."""
        if self._server is not None:
            return
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        """Cut every relayed connection and refuse new ones, like a stopped server."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()
        if server is not None:
            await server.wait_closed()

    async def close(self) -> None:
        """Stop relaying for good."""
        await self.down()

    async def _relay(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        try:
            server_reader, server = await asyncio.open_connection(*self.target)
        except OSError:
            client.transport.abort()
            return
        self._links.update((client, server))

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while chunk := await reader.read(65536):
                    writer.write(chunk)
                    await writer.drain()
            writer.transport.abort()

        await asyncio.gather(pipe(client_reader, server), pipe(server_reader, client))
        self._links.discard(client)
        self._links.discard(server)
