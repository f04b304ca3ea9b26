"""Lookups of one kind joined into one API call: every node of a site that asks "what is
my server's state?" within a short window gets its answer from one describe of them all.

(The dataloader pattern; the maintained Python ports are tied to GraphQL stacks or
unmaintained, and this is the whole of it.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class Batcher(Generic[K, V]):
    """Callers `get` one key each; one `fetch` of all keys asked within `window` seconds
    (and while a fetch is under way) answers them all. Belongs to one event loop."""

    def __init__(
        self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]], window: float = 0.2
    ) -> None:
        self._fetch = fetch
        self._window = window
        self._asked: dict[K, list[asyncio.Future[V]]] = {}
        self._running: asyncio.Task[None] | None = None
        self.fetches = 0  # how many calls answered the gets (for figures)

    async def get(self, key: K) -> V:
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._asked.setdefault(key, []).append(future)
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._answer())
        return await future

    async def _answer(self) -> None:
        while self._asked:
            await asyncio.sleep(self._window)  # others asking now join this fetch
            asked, self._asked = self._asked, {}
            self.fetches += 1
            try:
                got = await self._fetch(list(asked))
            except Exception as err:  # each caller gets the error, as its own call would
                for futures in asked.values():
                    for f in futures:
                        if not f.done():
                            f.set_exception(err)
                continue
            for key, futures in asked.items():
                for f in futures:
                    if f.done():
                        continue
                    if key in got:
                        f.set_result(got[key])
                    else:
                        f.set_exception(KeyError(key))
