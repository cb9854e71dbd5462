"""A key's or team's row as the admin API answers it (JSON) and as the gateways read it (the
``keys.v1`` records in the key-value bucket). The JSON never holds the digest; neither holds a secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from modelrouter.keys.v1 import keys_pb2

# A row as SQLAlchemy returns it (RowMapping), keyed by column name.
Row = Mapping[Any, Any]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
LIMIT_FIELDS = ("rpm", "tpm", "max_parallel")
BUDGET_FIELDS = ("daily_budget_usd", "monthly_budget_usd")

KEY_PREFIX = "key."
TEAM_PREFIX = "team."


def key_entry(key_id: str) -> str:
    return f"{KEY_PREFIX}{key_id}"


def team_entry(team_id: str) -> str:
    return f"{TEAM_PREFIX}{team_id}"


def iso(moment: datetime | None) -> str | None:
    """ISO 8601 in UTC with milliseconds and a ``Z``: ``2026-12-10T09:30:00.000Z``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def unix_ms(moment: datetime | None) -> int:
    """Unix ms, 0 for None (the records' "never")."""
    if moment is None:
        return 0
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def _money(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _limits_json(row: Row) -> dict[str, Any]:
    return {
        **{name: row[name] for name in LIMIT_FIELDS},
        **{name: _money(row[name]) for name in BUDGET_FIELDS},
    }


def key_json(row: Row) -> dict[str, Any]:
    return {
        "id": row["id"],
        "object": "api_key",
        "name": row["name"],
        "team_id": row["team_id"],
        "owner": row["owner"],
        "role": row["role"],
        "models": list(row["models"]),
        **_limits_json(row),
        "expires_at": iso(row["expires_at"]),
        "revoked_at": iso(row["revoked_at"]),
        "metadata": row["metadata"],
        "store_bodies": row["store_bodies"],
        "display": row["display"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }


def team_json(row: Row, members: list[Row] | None = None) -> dict[str, Any]:
    """``members`` (the team's keys not revoked) only in answers about this one team, not in lists."""
    body = {
        "id": row["id"],
        "object": "team",
        "name": row["name"],
        **_limits_json(row),
        "metadata": row["metadata"],
        "created_at": iso(row["created_at"]),
        "updated_at": iso(row["updated_at"]),
    }
    if members is not None:
        body["keys"] = [{"id": m["id"], "name": m["name"]} for m in members]
    return body


def _limits_proto(row: Row) -> keys_pb2.Limits:
    # proto3 optional: a field is present only when the limit exists (absent = no limit, 0 = zero).
    present: dict[str, Any] = {name: int(row[name]) for name in LIMIT_FIELDS if row[name] is not None}
    present.update({name: float(row[name]) for name in BUDGET_FIELDS if row[name] is not None})
    return keys_pb2.Limits(**present)


def key_record(row: Row) -> keys_pb2.KeyRecord:
    return keys_pb2.KeyRecord(
        id=row["id"],
        name=row["name"],
        team_id=row["team_id"] or "",
        owner=row["owner"] or "",
        digest=row["digest"],
        display=row["display"],
        role=row["role"],
        models=list(row["models"]),
        limits=_limits_proto(row),
        expires_at_ms=unix_ms(row["expires_at"]),
        revoked_at_ms=unix_ms(row["revoked_at"]),
        previous=[
            keys_pb2.PreviousSecret(digest=p["digest"], valid_until_ms=int(p["valid_until_ms"]))
            for p in row["previous_secrets"]
        ],
        updated_at_ms=unix_ms(row["updated_at"]),
        # proto3 optional: absent when the key follows the deployment's setting.
        **({"store_bodies": row["store_bodies"]} if row["store_bodies"] is not None else {}),
    )


def team_record(row: Row) -> keys_pb2.TeamRecord:
    return keys_pb2.TeamRecord(
        id=row["id"], name=row["name"], limits=_limits_proto(row), updated_at_ms=unix_ms(row["updated_at"])
    )


def encode(record: keys_pb2.KeyRecord | keys_pb2.TeamRecord) -> bytes:
    # Deterministic bytes, so the full sync can tell a stale entry by comparing values.
    return record.SerializeToString(deterministic=True)
