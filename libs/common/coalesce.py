"""Writes that coalesce: one write in flight at a time, and whatever was queued meanwhile goes out
together in the next one.

Made for a gRPC stream, where grpc.aio allows one write in flight per call and every message costs a
C-core batch, a syscall and a poller wake-up on both sides whatever it carries: under load N small
items become a few messages, while a lone item still leaves at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class CoalescingWriter(Generic[T]):
    """``write(items)`` sends one batch; ``failed(items, error)`` hears of every item a write could
    not send. After a failed write the writer is broken: later items fail at once with that error."""

    __slots__ = ("_error", "_failed", "_queued", "_write", "_writer")

    def __init__(
        self, write: Callable[[list[T]], Awaitable[object]], failed: Callable[[list[T], Exception], None]
    ) -> None:
        self._write = write
        self._failed = failed
        self._queued: list[T] = []
        self._writer: asyncio.Task[None] | None = None
        self._error: Exception | None = None

    def put(self, item: T) -> None:
        """Queue ``item`` for the next write, started now unless one is in flight."""
        if self._error is not None:
            self._failed([item], self._error)
            return
        self._queued.append(item)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_queued())

    async def flushed(self) -> None:
        """Return once everything queued so far is written (or failed). Cancelling the wait leaves
        the writes going."""
        while self._writer is not None:
            await asyncio.wait({self._writer})

    async def _write_queued(self) -> None:
        try:
            while self._queued:
                batch, self._queued = self._queued, []
                try:
                    await self._write(batch)
                except Exception as exc:
                    self._error = exc
                    rest, self._queued = self._queued, []
                    self._failed(batch + rest, exc)
                    return
        finally:
            self._writer = None
