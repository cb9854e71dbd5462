"""The JetStream key-value bucket of keys and teams that every gateway watches.

``key.<id>`` holds a ``keys.v1.KeyRecord``, ``team.<id>`` a ``keys.v1.TeamRecord`` (never a secret).
Accounting is its only writer: after each admin write (``publish``) and in the periodic full sync
(``accounting.admin.sync``). Several accounting replicas may write at once, so every write is
conditional on the revision it read: an admin write never replaces a record with a newer
``updated_at_ms`` (another replica's later change), and the sync only replaces what it saw.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, StorageType
from nats.js.errors import (
    APIError,
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NotFoundError,
)
from nats.js.kv import KV_DEL, KV_PURGE, KeyValue

from common.kv_contents import current_entries
from modelrouter.keys.v1 import keys_pb2

log = logging.getLogger(__name__)
_ATTEMPTS = 5
# JetStream's "wrong last sequence" error codes (nats-py translates them for update, not for delete).
_WRONG_LAST_SEQUENCE = (10071, 10164)
# How long reading the bucket's current contents may take before the sync gives up this round.
_SNAPSHOT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Seen:
    """An entry as the bucket held it: what a conditional write must still find there."""

    revision: int
    value: bytes


async def open_bucket(js: JetStreamContext, name: str) -> KeyValue:
    """The bucket ``name``, created if missing (file storage, history 1: only the current record)."""
    try:
        return await js.key_value(name)
    except (BucketNotFoundError, NotFoundError):
        return await js.create_key_value(KeyValueConfig(bucket=name, history=1, storage=StorageType.FILE))


def _updated_at_ms(entry: str, value: bytes) -> int:
    record = keys_pb2.KeyRecord() if entry.startswith("key.") else keys_pb2.TeamRecord()
    try:
        record.ParseFromString(value)
    except Exception:
        return 0  # unreadable: anything valid replaces it
    return int(record.updated_at_ms)


class KeyBucket:
    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def publish(self, entry: str, value: bytes, updated_at_ms: int) -> None:
        """Put ``value`` at ``entry`` unless the bucket already holds a later version of it."""
        for _ in range(_ATTEMPTS):
            try:
                current = await self.kv.get(entry)
            except KeyNotFoundError:  # also a deleted entry
                current = None
            try:
                if current is None or current.value is None:
                    await self.kv.create(entry, value)
                    return
                if current.value == value or _updated_at_ms(entry, current.value) > updated_at_ms:
                    return
                await self.kv.update(entry, value, last=current.revision)
                return
            except KeyWrongLastSequenceError:
                continue  # another writer got in between: look again
        log.warning("bucket entry %s kept changing under us; the next full sync settles it", entry)

    async def remove(self, entry: str) -> None:
        await self.kv.delete(entry)

    async def replace(self, entry: str, value: bytes, seen: Seen | None, deleted_at: int = 0) -> bool:
        """Write ``value`` only if the entry is still as the sync saw it; False if it moved on.
        ``seen`` None: the entry was absent, never written (``deleted_at`` 0) or deleted at revision
        ``deleted_at``. Not ``kv.create``, which also writes over a delete made after the snapshot:
        a round that read Postgres before a team's deletion would bring the team back."""
        try:
            await self.kv.update(entry, value, last=seen.revision if seen is not None else deleted_at)
        except KeyWrongLastSequenceError:
            return False
        return True

    async def remove_seen(self, entry: str, seen: Seen) -> None:
        # Conditional on the revision: a record written since the snapshot survives.
        try:
            await self.kv.delete(entry, last=seen.revision)
        except APIError as exc:
            if exc.err_code not in _WRONG_LAST_SEQUENCE:
                raise

    async def snapshot(self, deleted: dict[str, int] | None = None) -> dict[str, Seen]:
        """Every live entry with its revision, read through one watcher (not one get per entry);
        the revisions of deleted entries' markers go into ``deleted``."""
        watcher = await self.kv.watchall()
        try:
            entries = await current_entries(self.kv, watcher, _SNAPSHOT_TIMEOUT_S)
        finally:
            await watcher.stop()
        found: dict[str, Seen] = {}
        for entry in entries:
            if entry.operation in (KV_DEL, KV_PURGE) or entry.value is None:
                found.pop(entry.key, None)
                if deleted is not None:
                    deleted[entry.key] = entry.revision or 0
            else:
                found[entry.key] = Seen(entry.revision or 0, entry.value)
                if deleted is not None:
                    deleted.pop(entry.key, None)
        return found
