"""Reading a key-value bucket's current contents through a watcher: all of it (deletion markers
included), nothing when empty, and changes made afterwards left for the watch to deliver. The last
test replays the order nats-py can deliver under load (its end marker before the entries)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import KeyValueConfig
from nats.js.kv import KV_DEL, KeyValue

from common.kv_contents import current_entries, current_keys

pytestmark = pytest.mark.integration


@pytest.fixture
async def kv(nc: NATS, unique: str) -> AsyncIterator[KeyValue]:
    js = nc.jetstream()
    bucket = await js.create_key_value(KeyValueConfig(bucket=f"MR_KV_CONTENTS_{unique}", history=1))
    try:
        yield bucket
    finally:
        await js.delete_key_value(f"MR_KV_CONTENTS_{unique}")


async def test_an_empty_bucket_has_no_entries_and_later_ones_stay_in_the_watch(kv: KeyValue) -> None:
    watcher = await kv.watchall()
    try:
        assert await current_entries(kv, watcher, 5) == []
        await kv.put("k.late", b"1")
        update = await watcher.updates(timeout=5)
        while update is None:  # nats-py's own marker may still be queued
            update = await watcher.updates(timeout=5)
        assert update.key == "k.late"
    finally:
        await watcher.stop()


async def test_every_entry_of_a_large_bucket_is_read_with_deletions(kv: KeyValue) -> None:
    await asyncio.gather(*(kv.put(f"k.{i}", str(i).encode()) for i in range(500)))
    await kv.delete("k.7")
    for _ in range(5):  # each read is complete, however the deliveries interleave
        watcher = await kv.watchall()
        try:
            entries = await current_entries(kv, watcher, 10)
        finally:
            await watcher.stop()
        assert len(entries) == 500
        live = {e.key: e.value for e in entries if e.operation != KV_DEL}
        assert len(live) == 499 and "k.7" not in live and live["k.499"] == b"499"
        assert [e.key for e in entries if e.operation == KV_DEL] == ["k.7"]


async def test_current_keys_are_the_live_names_and_an_empty_set_for_an_empty_bucket(kv: KeyValue) -> None:
    assert await current_keys(kv, 5) == set()  # nats-py's kv.keys() raises NoKeysError here
    await asyncio.gather(*(kv.put(f"k.{i}", b"v") for i in range(300)))
    await kv.delete("k.3")
    await kv.purge("k.4")
    assert await current_keys(kv, 10) == {f"k.{i}" for i in range(300)} - {"k.3", "k.4"}
    await kv.delete("k.5")
    await kv.put("k.3", b"back")
    assert await current_keys(kv, 10) == {f"k.{i}" for i in range(300)} - {"k.4", "k.5"}


class _EarlyMarkerWatcher:
    """nats-py's watcher as it behaves when its end marker is decided while entries are in flight."""

    def __init__(self, entries: list[KeyValue.Entry]) -> None:
        self._queue: list[KeyValue.Entry | None] = [None, *entries]

    async def updates(self, timeout: float = 5.0) -> KeyValue.Entry | None:
        await asyncio.sleep(0)
        return self._queue.pop(0)


async def test_an_early_end_marker_does_not_cut_the_contents_short(kv: KeyValue) -> None:
    for i in range(3):
        await kv.put(f"k.{i}", b"v")
    delivered = [
        KeyValue.Entry(bucket="b", key=f"k.{i}", value=b"v", revision=i + 1, delta=2 - i, created=None, operation=None)
        for i in range(3)
    ]
    entries = await current_entries(kv, _EarlyMarkerWatcher(delivered), 5)  # type: ignore[arg-type]
    assert [e.key for e in entries] == ["k.0", "k.1", "k.2"]
