"""The per-request watch for a client that hangs up (``gateway.responses.HangUpWatch``): it cancels the
request's task on a disconnect, and once stopped it leaves nothing for the garbage collector."""

from __future__ import annotations

import asyncio
import gc
import weakref
from typing import Any

from gateway.responses import HangUpWatch


def _never_disconnects() -> Any:
    forever = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await forever.wait()
        return {"type": "http.disconnect"}

    return receive


async def test_a_disconnect_cancels_the_request_and_gone_says_so() -> None:
    left = asyncio.Event()

    async def receive() -> dict[str, Any]:
        await left.wait()
        return {"type": "http.disconnect"}

    async def request() -> str:
        watch = HangUpWatch(receive)
        try:
            await asyncio.sleep(10)
            return "answered"
        except asyncio.CancelledError:
            assert watch.gone
            watch.take_back()
            return "nobody listening"
        finally:
            watch.stop()

    task = asyncio.create_task(request())
    await asyncio.sleep(0)
    left.set()
    assert await asyncio.wait_for(task, 5) == "nobody listening"


async def test_a_stopped_watch_is_freed_without_the_garbage_collector() -> None:
    """Stopping cancels the watcher; its CancelledError's traceback holds the watch. If the watch still
    held the watcher, that cycle (with the request's task and spans in reach) would wait for the
    collector: about 40 objects a request and a tenth of the gateway's CPU, measured."""
    gc.collect()
    gc.disable()
    try:
        watch = HangUpWatch(_never_disconnects())
        watcher = weakref.ref(watch._watcher)  # type: ignore[arg-type]
        await asyncio.sleep(0)  # the watcher waits in receive()
        watch.stop()
        for _ in range(3):  # the cancellation runs through the watcher's coroutine
            await asyncio.sleep(0)
        del watch
        assert watcher() is None, "the stopped watcher is only reachable through a reference cycle"
    finally:
        gc.enable()
