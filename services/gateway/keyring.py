"""Every key this gateway accepts, in memory: who a request is, in one dictionary lookup.

Three sources, all held as SHA-256 digests of the secret (a lookup's time then depends on the
guess's digest, which an attacker cannot steer toward a real key's, so no prefix of a key leaks):

- the operator's own keys, from the environment (``API_KEYS``; seed 001's ``AUTH_KEY``,
  ``AUTH_KEY_01`` … ``AUTH_KEY_99`` and ``ALLOWED_API_KEYS``) and the config's ``keys``: ``ops`` keys,
  as every key is in seed 001;
- the master key (``MODELROUTER_MASTER_KEY``), which alone may use the admin API;
- the keys made with the admin API, which accounting publishes in a JetStream key-value bucket and
  ``gateway.keyring_watch`` applies here as they change (never read from Postgres on a request).

A revoked or expired key is still known, so that its 401 can say so; a rotated-out secret is
accepted until its grace period ends.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from common.config import KeyConfig, key_id
from common.errors import AuthenticationError
from common.settings import GatewaySettings
from modelrouter.keys.v1 import keys_pb2

log = logging.getLogger(__name__)

ROLES = ("client", "ops", "master")
ENV_KEY_VARIABLES = ("AUTH_KEY", *(f"AUTH_KEY_{n:02d}" for n in range(1, 100)))


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def redact(key: str) -> str:
    """What an error message may show of a key."""
    return f"{key[:3]}***{key[-4:]}" if len(key) > 10 else "***"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request is: its key's id, what it may do, and what limits it."""

    key_id: str
    role: str = "client"
    display: str = ""
    team_id: str = ""
    models: frozenset[str] = frozenset()  # empty: every model
    key_limits: keys_pb2.Limits | None = None
    team_limits: keys_pb2.Limits | None = None
    expires_at_ms: int = 0
    revoked_at_ms: int = 0
    valid_until_ms: int = 0  # a rotated-out secret's end of grace
    source: str = "env"  # env, config, master, admin, anonymous
    store_bodies: bool | None = None  # the key's own choice; None: the config's store_bodies

    @property
    def governed(self) -> bool:
        """Whether the router must admit its requests against limits of its own."""
        return self.key_limits is not None or self.team_limits is not None

    @property
    def can_operate(self) -> bool:
        return self.role in ("ops", "master")

    def refusal(self, now_ms: int) -> AuthenticationError | None:
        if self.revoked_at_ms and self.revoked_at_ms <= now_ms:
            return AuthenticationError(
                f"The API key {self.display or self.key_id} has been revoked.", code="key_revoked"
            )
        if self.expires_at_ms and self.expires_at_ms <= now_ms:
            return AuthenticationError(f"The API key {self.display or self.key_id} has expired.", code="key_expired")
        if self.valid_until_ms and self.valid_until_ms <= now_ms:
            return AuthenticationError(
                f"This secret of the API key {self.display or self.key_id} was rotated and its grace period has ended.",
                code="key_rotated",
            )
        return None


ANONYMOUS = Principal(key_id="anonymous", role="ops", source="anonymous")


def has_limits(limits: keys_pb2.Limits) -> bool:
    return any(
        limits.HasField(name) for name in ("rpm", "tpm", "max_parallel", "daily_budget_usd", "monthly_budget_usd")
    )


def with_default_budgets(
    limits: keys_pb2.Limits | None, daily: float | None, monthly: float | None
) -> keys_pb2.Limits | None:
    """``limits`` with ``DEFAULT_DAILY_BUDGET`` / ``DEFAULT_MONTHLY_BUDGET`` where it has none."""
    if daily is None and monthly is None:
        return limits
    merged = keys_pb2.Limits()
    if limits is not None:
        merged.CopyFrom(limits)
    if daily is not None and not merged.HasField("daily_budget_usd"):
        merged.daily_budget_usd = daily
    if monthly is not None and not merged.HasField("monthly_budget_usd"):
        merged.monthly_budget_usd = monthly
    return merged


def env_secrets(environ: Mapping[str, str], settings: GatewaySettings) -> list[str]:
    """The client keys the environment names, in every spelling our users' earlier tools used."""
    raw = [settings.api_keys, settings.allowed_api_keys]
    raw += [environ.get(name, "") for name in ENV_KEY_VARIABLES]
    return [key.strip() for value in raw for key in value.split(",") if key.strip()]


@dataclass
class Keyring:
    settings: GatewaySettings
    config_keys: list[KeyConfig] = field(default_factory=list)
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    _static: dict[bytes, Principal] = field(default_factory=dict)
    _managed: dict[bytes, Principal] = field(default_factory=dict)
    _records: dict[str, keys_pb2.KeyRecord] = field(default_factory=dict)
    _teams: dict[str, keys_pb2.TeamRecord] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reload_static()

    # --- the operator's keys ------------------------------------------------------------------

    def reload_static(self) -> None:
        """(Re-)read the environment's and the config's keys and the master key."""
        static: dict[bytes, Principal] = {}
        for secret in env_secrets(self.environ, self.settings):
            static[digest(secret)] = self._operator(key_id(secret), "env", secret)
        for entry in self.config_keys:
            static[digest(entry.key)] = self._operator(entry.id or key_id(entry.key), "config", entry.key)
        master = self.master_key
        if master:
            static[digest(master)] = Principal(
                key_id="master", role="master", display=_display(master), source="master"
            )
        self._static = static

    @property
    def master_key(self) -> str:
        secret = self.settings.modelrouter_master_key
        return secret.get_secret_value() if secret is not None else ""

    def _operator(self, kid: str, source: str, secret: str) -> Principal:
        limits = with_default_budgets(None, self.settings.default_daily_budget, self.settings.default_monthly_budget)
        return Principal(key_id=kid, role="ops", display=_display(secret), key_limits=limits, source=source)

    # --- the admin API's keys (from the key-value bucket) ---------------------------------------

    def replace_all(self, keys: Iterable[keys_pb2.KeyRecord], teams: Iterable[keys_pb2.TeamRecord]) -> None:
        """A whole snapshot of the bucket: what it no longer holds is forgotten."""
        self._records = {record.id: record for record in keys}
        self._teams = {team.id: team for team in teams}
        self._managed = {}
        for record in self._records.values():
            self._index(record)

    def put_key(self, record: keys_pb2.KeyRecord) -> None:
        self.delete_key(record.id)
        self._records[record.id] = record
        self._index(record)

    def delete_key(self, kid: str) -> None:
        old = self._records.pop(kid, None)
        if old is not None:
            for secret_digest in (old.digest, *(p.digest for p in old.previous)):
                self._managed.pop(bytes.fromhex(secret_digest), None)

    def put_team(self, team: keys_pb2.TeamRecord) -> None:
        self._teams[team.id] = team
        self._reindex_team(team.id)

    def delete_team(self, team_id: str) -> None:
        if self._teams.pop(team_id, None) is not None:
            self._reindex_team(team_id)

    def _reindex_team(self, team_id: str) -> None:
        for record in [r for r in self._records.values() if r.team_id == team_id]:
            self.put_key(record)

    def _index(self, record: keys_pb2.KeyRecord) -> None:
        team = self._teams.get(record.team_id) if record.team_id else None
        key_limits = record.limits if record.HasField("limits") and has_limits(record.limits) else None
        key_limits = with_default_budgets(
            key_limits, self.settings.default_daily_budget, self.settings.default_monthly_budget
        )
        principal = Principal(
            key_id=record.id,
            role=record.role or "client",
            display=record.display,
            team_id=record.team_id,
            models=frozenset(record.models),
            key_limits=key_limits,
            team_limits=team.limits if team is not None and has_limits(team.limits) else None,
            expires_at_ms=record.expires_at_ms,
            revoked_at_ms=record.revoked_at_ms,
            source="admin",
            store_bodies=record.store_bodies if record.HasField("store_bodies") else None,
        )
        try:
            self._managed[bytes.fromhex(record.digest)] = principal
            for previous in record.previous:
                self._managed[bytes.fromhex(previous.digest)] = replace(
                    principal, valid_until_ms=previous.valid_until_ms
                )
        except ValueError:
            log.error("key %s has a malformed digest in the bucket; it cannot authenticate", record.id)

    # --- a request ----------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._static) + sum(1 for p in self._managed.values() if not p.valid_until_ms)

    def displays(self) -> dict[str, str]:
        """key id -> its masked form, for every key this gateway knows."""
        known = {p.key_id: p.display for p in self._static.values()}
        known.update({r.id: r.display for r in self._records.values()})
        return known

    def rate_limits(self) -> dict[str, tuple[str, int, int]]:
        """key id -> (its masked form, rpm, tpm; 0 for none), for every key with a rate limit: the
        router counts a key's windows but knows its limits only from a request's Admission."""
        limited: dict[str, tuple[str, int, int]] = {}
        for principal in (*self._static.values(), *self._managed.values()):
            limits = principal.key_limits
            if limits is not None and (limits.HasField("rpm") or limits.HasField("tpm")):
                limited[principal.key_id] = (principal.display, limits.rpm, limits.tpm)
        return limited

    def version_of(self, kind: str, record_id: str) -> int:
        """``updated_at_ms`` of the record this keyring holds (0: none), for a writer waiting to see
        its change arrive."""
        record = (self._records if kind == "key" else self._teams).get(record_id)
        return record.updated_at_ms if record is not None else 0

    @property
    def managed_keys(self) -> int:
        return len(self._records)

    @property
    def teams(self) -> int:
        return len(self._teams)

    def authenticate(self, authorization: str | None, x_api_key: str | None) -> Principal:
        """The principal of the presented key, from ``Authorization: Bearer`` or ``X-Api-Key``."""
        if not self.settings.enable_auth:
            return ANONYMOUS
        key = x_api_key
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                key = value.strip()
        if not key:
            raise AuthenticationError(
                "You didn't provide an API key. Provide it in the Authorization header "
                "(Authorization: Bearer YOUR_KEY) or in X-Api-Key.",
                code="missing_api_key",
            )
        secret_digest = digest(key)
        found = self._static.get(secret_digest) or self._managed.get(secret_digest)
        if found is None:
            raise AuthenticationError(f"Incorrect API key provided: {redact(key)}.")
        if found.source == "admin" and (refusal := found.refusal(time.time_ns() // 1_000_000)) is not None:
            raise refusal
        return found


def _display(secret: str) -> str:
    return f"{secret[:6]}…{secret[-4:]}" if len(secret) > 12 else "…"
