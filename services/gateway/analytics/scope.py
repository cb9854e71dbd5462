"""Whose rows a caller may read: a key its own; the master key everyone's, narrowed by its own
``key_id`` / ``team_id`` filters. Decided here, from the authenticated caller, never from the
client's word alone."""

from __future__ import annotations

from common.analytics import Scope
from common.errors import PermissionDeniedError
from gateway.keyring import Principal


def scope_of(caller: Principal, key_id: str | None = None, team_id: str | None = None) -> Scope:
    if caller.role == "master":
        return Scope(key_id=key_id, team_id=team_id)
    # Naming itself is harmless; naming anyone else is what only the master key may do.
    if key_id is not None and key_id != caller.key_id:
        raise PermissionDeniedError(
            "Only the master key may read another key's usage.", param="key_id", code="master_key_required"
        )
    if team_id is not None and team_id != caller.team_id:
        raise PermissionDeniedError(
            "Only the master key may read another team's usage.", param="team_id", code="master_key_required"
        )
    return Scope(key_id=caller.key_id, team_id=team_id)
