"""What a new watcher of a JetStream key-value bucket delivers first: the bucket's current contents.

nats-py marks the end of those with a ``None`` update, decided from the consumer's pending count
taken just after subscribing. Entries the server has already pushed but the client has not yet read
count as neither pending nor delivered, so under load the marker can come before some of them, and
a reader that stops at it gets part of the bucket. The server's own count travels with each entry
instead (``Entry.delta``: how many follow it), so the contents end at the first entry that says none
follow; an empty bucket is known from its status, since then no entry will come to say so.
"""

from __future__ import annotations

import asyncio

from nats.js.kv import KV_DEL, KV_PURGE, KeyValue


async def current_entries(kv: KeyValue, watcher: KeyValue.KeyWatcher, timeout_s: float) -> list[KeyValue.Entry]:
    """The entries ``watcher`` (just made by ``kv.watchall()``) delivers for what ``kv`` holds now,
    deletion markers included, in order; ``TimeoutError`` if they take longer than ``timeout_s``.
    Later changes stay in the watcher for its next ``updates()``."""
    entries: list[KeyValue.Entry] = []
    async with asyncio.timeout(timeout_s):
        if (await kv.status()).values == 0:
            return entries
        while True:
            entry = await watcher.updates(timeout=timeout_s)
            if entry is None:  # nats-py's marker, possibly early: the entries' own count decides
                continue
            entries.append(entry)
            if entry.delta == 0:
                return entries


async def current_keys(kv: KeyValue, timeout_s: float) -> set[str]:
    """The names of the live entries ``kv`` holds now. (nats-py's own ``kv.keys()`` stops at its
    marker, so it can miss entries, and raises instead of answering an empty set.)"""
    watcher = await kv.watchall(meta_only=True)
    try:
        entries = await current_entries(kv, watcher, timeout_s)
    finally:
        await watcher.stop()
    # A watcher delivers each key's latest entry once: a deletion marker means the key is gone.
    return {entry.key for entry in entries if entry.operation not in (KV_DEL, KV_PURGE)}
