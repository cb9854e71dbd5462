"""Whose rows an analytics question reads, decided from the authenticated caller."""

from __future__ import annotations

import pytest

from common.analytics import RequestsQuery, Scope, UsageQuery, parse
from common.errors import InvalidRequestError, PermissionDeniedError
from gateway.analytics.scope import scope_of
from gateway.keyring import Principal

KEY = Principal("key_a", team_id="team_t")
MASTER = Principal("master", role="master")


def test_a_key_reads_only_its_own_rows_whatever_it_asks() -> None:
    assert scope_of(KEY) == Scope(key_id="key_a")
    assert scope_of(KEY, key_id="key_a", team_id="team_t") == Scope(key_id="key_a", team_id="team_t")
    with pytest.raises(PermissionDeniedError) as refused:
        scope_of(KEY, key_id="key_b")
    assert refused.value.param == "key_id"
    with pytest.raises(PermissionDeniedError) as refused:
        scope_of(KEY, team_id="team_other")
    assert refused.value.param == "team_id"
    # An ops key is a key like any other here.
    with pytest.raises(PermissionDeniedError):
        scope_of(Principal("key_ops", role="ops"), key_id="key_a")


def test_the_master_key_reads_everyone_or_its_filter() -> None:
    assert scope_of(MASTER) == Scope()
    assert scope_of(MASTER, key_id="key_b") == Scope(key_id="key_b")
    assert scope_of(MASTER, team_id="team_t") == Scope(team_id="team_t")


def test_query_strings_parse_or_name_the_parameter() -> None:
    assert parse(UsageQuery, {}).days == 30
    got = parse(RequestsQuery, {"start_date": "2026-12-01", "end_date": "2026-12-02T10:00:00Z", "page": "3"})
    assert got.start_date is not None and got.start_date.tzinfo is not None and got.offset == 40
    for query, param in [({"days": "x"}, "days"), ({"per_page": "0"}, "per_page"), ({"nope": "1"}, "nope")]:
        model = UsageQuery if "days" in query else RequestsQuery
        with pytest.raises(InvalidRequestError) as bad:
            parse(model, query)
        assert bad.value.param == param
