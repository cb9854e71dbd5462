"""CoalescingWriter: one write in flight; what queues meanwhile goes out together next, in order."""

from __future__ import annotations

import asyncio

import pytest

from common.coalesce import CoalescingWriter


class Sink:
    """A write that takes until ``release`` (one at a time, as a gRPC call's), or fails when told."""

    def __init__(self) -> None:
        self.written: list[list[int]] = []
        self.failures: list[tuple[list[int], Exception]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.in_flight = 0
        self.fail_with: Exception | None = None

    async def write(self, items: list[int]) -> None:
        self.in_flight += 1
        assert self.in_flight == 1, "two writes in flight"
        try:
            await self.gate.wait()
            if self.fail_with is not None:
                raise self.fail_with
            self.written.append(items)
        finally:
            self.in_flight -= 1

    def failed(self, items: list[int], error: Exception) -> None:
        self.failures.append((items, error))


async def test_a_lone_item_is_written_at_once_on_its_own() -> None:
    sink = Sink()
    writer = CoalescingWriter(sink.write, sink.failed)
    writer.put(1)
    await writer.flushed()
    assert sink.written == [[1]]


async def test_items_queued_behind_a_write_in_flight_share_the_next_write_in_order() -> None:
    sink = Sink()
    sink.gate.clear()
    writer = CoalescingWriter(sink.write, sink.failed)
    writer.put(1)
    await asyncio.sleep(0)  # the first write is in flight, held
    for item in (2, 3, 4):
        writer.put(item)
    sink.gate.set()
    await writer.flushed()
    assert sink.written == [[1], [2, 3, 4]]
    writer.put(5)  # idle again: written at once
    await writer.flushed()
    assert sink.written[-1] == [5]


async def test_a_failed_write_reports_its_items_and_those_behind_it_then_fails_new_ones_at_once() -> None:
    sink = Sink()
    sink.gate.clear()
    sink.fail_with = ConnectionError("gone")
    writer = CoalescingWriter(sink.write, sink.failed)
    writer.put(1)
    await asyncio.sleep(0)
    writer.put(2)
    sink.gate.set()
    await writer.flushed()
    assert [items for items, _ in sink.failures] == [[1, 2]]
    writer.put(3)
    assert [items for items, _ in sink.failures] == [[1, 2], [3]]
    assert all(error is sink.fail_with for _, error in sink.failures)
    assert sink.written == []


async def test_cancelling_a_wait_for_flushed_leaves_the_writes_going() -> None:
    sink = Sink()
    sink.gate.clear()
    writer = CoalescingWriter(sink.write, sink.failed)
    writer.put(1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(writer.flushed(), 0.05)
    sink.gate.set()
    await writer.flushed()
    assert sink.written == [[1]]
