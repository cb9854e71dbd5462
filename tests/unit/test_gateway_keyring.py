"""The gateway's keyring: every spelling of an operator key our users' earlier tools used, the master
key, keys from the bucket (revoked, expired, rotated with a grace period, in a team), default
budgets, and auth turned off. No secret is ever what a principal or an error shows."""

from __future__ import annotations

import time

import pytest

from common.config import KeyConfig
from common.errors import AuthenticationError
from common.settings import GatewaySettings
from gateway.keyring import ANONYMOUS, Keyring, digest
from modelrouter.keys.v1 import keys_pb2

SECRET = "sk-mr-managed-secret-0123456789abcdef"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def record(**fields: object) -> keys_pb2.KeyRecord:
    base: dict[str, object] = {
        "id": "key_managed",
        "name": "ci-bot",
        "digest": digest(SECRET).hex(),
        "display": "sk-mr-…cdef",
        "role": "client",
    }
    return keys_pb2.KeyRecord(**(base | fields))  # type: ignore[arg-type]


def bearer(secret: str) -> str:
    return f"Bearer {secret}"


def test_every_operator_key_spelling_is_an_ops_key() -> None:
    environ = {
        "AUTH_KEY": "sk-single-0123456789",
        "AUTH_KEY_01": "sk-user1-0123456789",
        "AUTH_KEY_99": "sk-user99-0123456789",
    }
    settings = GatewaySettings(api_keys="sk-api-0123456789", allowed_api_keys="sk-allowed-a-0123, sk-allowed-b-0123")
    keys = Keyring(settings, [KeyConfig(key="sk-config-0123456789", id="team-a")], environ=environ)
    for secret in [*environ.values(), "sk-api-0123456789", "sk-allowed-a-0123", "sk-allowed-b-0123"]:
        principal = keys.authenticate(bearer(secret), None)
        assert principal.role == "ops" and principal.key_id.startswith("key_") and secret not in principal.key_id
        assert not principal.governed
    assert keys.authenticate(None, "sk-config-0123456789").key_id == "team-a"
    assert len(keys) == 7


def test_the_master_key_is_the_only_master() -> None:
    keys = Keyring(GatewaySettings(modelrouter_master_key="sk-master-0123456789"), [], environ={})
    master = keys.authenticate(bearer("sk-master-0123456789"), None)
    assert master.role == "master" and master.key_id == "master" and master.can_operate
    with pytest.raises(AuthenticationError):
        Keyring(GatewaySettings(), [], environ={}).authenticate(bearer("sk-master-0123456789"), None)


def test_a_bucket_key_carries_its_limits_team_and_allow_list() -> None:
    keys = Keyring(GatewaySettings(), [], environ={})
    team = keys_pb2.TeamRecord(id="team_1", name="search", limits=keys_pb2.Limits(rpm=50))
    keys.replace_all([record(team_id="team_1", models=["gpt-4o-mini"], limits=keys_pb2.Limits(tpm=1000))], [team])
    principal = keys.authenticate(bearer(SECRET), None)
    assert principal.key_id == "key_managed" and principal.role == "client" and not principal.can_operate
    assert principal.models == {"gpt-4o-mini"} and principal.team_id == "team_1"
    assert principal.key_limits is not None and principal.key_limits.tpm == 1000
    assert not principal.key_limits.HasField("rpm")
    assert principal.team_limits is not None and principal.team_limits.rpm == 50
    # A team's change reaches its keys.
    keys.put_team(keys_pb2.TeamRecord(id="team_1", name="search", limits=keys_pb2.Limits(rpm=7)))
    assert keys.authenticate(bearer(SECRET), None).team_limits.rpm == 7  # type: ignore[union-attr]
    keys.delete_team("team_1")
    assert keys.authenticate(bearer(SECRET), None).team_limits is None


def test_a_key_without_limits_is_not_governed_unless_a_default_budget_applies() -> None:
    keys = Keyring(GatewaySettings(), [], environ={})
    keys.put_key(record())
    assert not keys.authenticate(bearer(SECRET), None).governed
    budgeted = Keyring(GatewaySettings(default_daily_budget=5, default_monthly_budget=50), [], environ={})
    budgeted.put_key(record(limits=keys_pb2.Limits(daily_budget_usd=1)))
    limits = budgeted.authenticate(bearer(SECRET), None).key_limits
    assert limits is not None and limits.daily_budget_usd == 1 and limits.monthly_budget_usd == 50


@pytest.mark.parametrize(
    ("fields", "code", "says"),
    [
        ({"revoked_at_ms": 1}, "key_revoked", "revoked"),
        ({"expires_at_ms": 1}, "key_expired", "expired"),
    ],
)
def test_a_revoked_or_expired_key_is_refused_saying_so_without_the_secret(
    fields: dict[str, int], code: str, says: str
) -> None:
    keys = Keyring(GatewaySettings(), [], environ={})
    keys.put_key(record(**fields))
    with pytest.raises(AuthenticationError) as refused:
        keys.authenticate(bearer(SECRET), None)
    assert refused.value.code == code and says in refused.value.message
    assert SECRET not in refused.value.message and SECRET[-12:] not in refused.value.message


def test_a_future_expiry_still_lets_the_key_in() -> None:
    keys = Keyring(GatewaySettings(), [], environ={})
    keys.put_key(record(expires_at_ms=now_ms() + 60_000))
    assert keys.authenticate(bearer(SECRET), None).key_id == "key_managed"


def test_a_rotated_secret_works_until_its_grace_period_ends() -> None:
    new_secret = "sk-mr-the-new-secret-0123456789"
    keys = Keyring(GatewaySettings(), [], environ={})
    in_grace = keys_pb2.PreviousSecret(digest=digest(SECRET).hex(), valid_until_ms=now_ms() + 60_000)
    keys.put_key(record(digest=digest(new_secret).hex(), previous=[in_grace]))
    assert keys.authenticate(bearer(new_secret), None).key_id == "key_managed"
    assert keys.authenticate(bearer(SECRET), None).key_id == "key_managed"
    over = keys_pb2.PreviousSecret(digest=digest(SECRET).hex(), valid_until_ms=now_ms() - 1)
    keys.put_key(record(digest=digest(new_secret).hex(), previous=[over]))
    with pytest.raises(AuthenticationError) as refused:
        keys.authenticate(bearer(SECRET), None)
    assert refused.value.code == "key_rotated"


def test_a_snapshot_forgets_what_the_bucket_no_longer_holds() -> None:
    keys = Keyring(GatewaySettings(), [], environ={})
    keys.put_key(record())
    keys.replace_all([], [])
    with pytest.raises(AuthenticationError):
        keys.authenticate(bearer(SECRET), None)
    assert keys.version_of("key", "key_managed") == 0


def test_reload_reads_the_environment_again() -> None:
    environ: dict[str, str] = {}
    keys = Keyring(GatewaySettings(), [], environ=environ)
    with pytest.raises(AuthenticationError):
        keys.authenticate(bearer("sk-later-0123456789"), None)
    environ["AUTH_KEY_07"] = "sk-later-0123456789"
    keys.reload_static()
    assert keys.authenticate(bearer("sk-later-0123456789"), None).role == "ops"


def test_with_auth_off_anyone_is_the_anonymous_ops_caller() -> None:
    keys = Keyring(GatewaySettings(enable_auth=False), [], environ={})
    assert keys.authenticate(None, None) is ANONYMOUS
    assert keys.authenticate("Bearer whatever", None) is ANONYMOUS
