"""Keeps this gateway's ``Keyring`` equal to the keys bucket accounting writes: a whole snapshot at
start, then every change as it lands (well within a second), and a fresh snapshot whenever the watch
may have missed something (a NATS reconnect, or every ``KEYS_RESYNC_S``), so a lost update heals by
itself. Postgres is never asked: with it down, the bucket, and so every known key, still serves."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from nats.aio.client import Client as NATS
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.kv import KeyValue

from common.kv_contents import current_entries
from common.messaging import ensure_keys_bucket
from gateway.keyring import Keyring
from modelrouter.keys.v1 import keys_pb2

log = logging.getLogger(__name__)

_KEY, _TEAM = "key.", "team."
_DELETED = ("DEL", "PURGE")
# How often the live watch looks up from its updates to check for a reconnect.
_POLL_S = 1.0
# How long reading the bucket's whole contents may take before the watch starts over.
_SNAPSHOT_TIMEOUT_S = 30.0


class KeyringWatch:
    def __init__(self, nc: NATS, keyring: Keyring, bucket: str, *, resync_s: float) -> None:
        self._nc, self._keyring, self._bucket, self._resync_s = nc, keyring, bucket, resync_s
        self._task: asyncio.Task[None] | None = None
        self._loaded = asyncio.Event()
        self._resync = asyncio.Event()
        self._snapshot_taken = asyncio.Event()
        self.snapshots = 0

    async def start(self, timeout_s: float = 5.0) -> None:
        """Watch in the background; wait (up to ``timeout_s``) for the first snapshot, so a gateway
        that reports ready knows every key. Without NATS's bucket it still starts, on the operator's
        keys, and keeps trying."""
        self._task = asyncio.create_task(self._run(), name="keyring watch")
        try:
            await asyncio.wait_for(self._loaded.wait(), timeout_s)
        except TimeoutError:
            log.error(
                "keys bucket %s not read within %gs; serving the operator's keys until it is", self._bucket, timeout_s
            )

    async def resync_now(self, timeout_s: float = 5.0) -> None:
        """Take a fresh snapshot now and wait for it (``POST /auth/reload-keys``)."""
        self._snapshot_taken.clear()
        self._resync.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._snapshot_taken.wait(), timeout_s)

    async def stop(self, timeout_s: float = 1.0) -> None:
        """Cancel the watch. nats-py may take seconds to let go of a watcher that is being fed (its
        unsubscribe waits on the delivery); a stopping gateway does not wait for that."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=timeout_s)

    async def _run(self) -> None:
        while True:
            try:
                kv = await ensure_keys_bucket(self._nc, self._bucket)
                await self._watch(kv)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("keys bucket watch failed; retrying", exc_info=True)
                await asyncio.sleep(_POLL_S)

    async def _watch(self, kv: KeyValue) -> None:
        """One watcher: its snapshot, then its updates until a resync is due."""
        reconnects = self._nc.stats["reconnects"]
        loop = asyncio.get_running_loop()
        resync_at = loop.time() + self._resync_s
        self._resync.clear()
        watcher = await kv.watchall()
        try:
            keys: list[keys_pb2.KeyRecord] = []
            teams: list[keys_pb2.TeamRecord] = []
            for entry in await current_entries(kv, watcher, _SNAPSHOT_TIMEOUT_S):
                if entry.operation not in _DELETED and entry.value:
                    _collect(entry.key, entry.value, keys, teams)
            self._keyring.replace_all(keys, teams)
            self.snapshots += 1
            self._loaded.set()
            self._snapshot_taken.set()
            log.info("keys bucket read: %d keys, %d teams", len(keys), len(teams))
            while not self._resync.is_set() and loop.time() < resync_at:
                if self._nc.stats["reconnects"] != reconnects:
                    return  # the connection dropped: what happened meanwhile is in a new snapshot
                try:
                    entry = await watcher.updates(timeout=_POLL_S)
                except NatsTimeoutError:
                    continue
                if entry is not None:
                    self._apply(entry.key, entry.value, deleted=entry.operation in _DELETED)
        finally:
            await watcher.stop()

    def _apply(self, name: str, value: bytes, *, deleted: bool) -> None:
        try:
            if name.startswith(_KEY):
                if deleted:
                    self._keyring.delete_key(name[len(_KEY) :])
                else:
                    self._keyring.put_key(keys_pb2.KeyRecord.FromString(value))
            elif name.startswith(_TEAM):
                if deleted:
                    self._keyring.delete_team(name[len(_TEAM) :])
                else:
                    self._keyring.put_team(keys_pb2.TeamRecord.FromString(value))
        except Exception:  # one bad record must not stop the watch
            log.exception("dropping a malformed entry %s of the keys bucket", name)


def _collect(name: str, value: bytes, keys: list[keys_pb2.KeyRecord], teams: list[keys_pb2.TeamRecord]) -> None:
    try:
        if name.startswith(_KEY):
            keys.append(keys_pb2.KeyRecord.FromString(value))
        elif name.startswith(_TEAM):
            teams.append(keys_pb2.TeamRecord.FromString(value))
    except Exception:
        log.exception("dropping a malformed entry %s of the keys bucket", name)
