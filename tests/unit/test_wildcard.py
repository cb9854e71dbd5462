"""Wildcard deployments (router.wildcard): any name no other deployment serves, in priority order,
with the name sent upstream and the deployment's one id (its health and rate limit) kept."""

from __future__ import annotations

import pytest

from common.config import DeploymentConfig, parse_config
from common.errors import NotFoundError
from router.selection import LiveCatalog
from router.wildcard import MAX_CACHED_NAMES, WildcardTable, routing_table

CONFIG = """
providers:
  fake: {adapter: fake}
  second: {adapter: openai, base_url: "http://b.example/v1", api_key_env: B_KEY, discover: true}
  first: {adapter: openai, base_url: "http://a.example/v1", api_key_env: A_KEY, discover: true}
deployments:
  - {id: demo, model: demo, provider: fake}
  - {id: second/*, model: "*", provider: second, priority: 1, rpm: 50}
  - {id: first/*, model: "*", provider: first, priority: 0, rpm: 100}
"""


@pytest.fixture
def table() -> WildcardTable:
    built = routing_table(parse_config(CONFIG))
    assert isinstance(built, WildcardTable)
    return built


def test_a_config_without_wildcards_gets_the_plain_catalog() -> None:
    assert isinstance(routing_table(parse_config("providers: {fake: {adapter: fake}}")), LiveCatalog)


def test_an_unknown_name_goes_to_the_wildcards_in_priority_order(table: WildcardTable) -> None:
    candidates = table.candidates("llama3.1-8b")
    assert [(c.deployment_id, c.rpm, c.target.upstream_model, c.target.base_url) for c in candidates] == [
        ("first/*", 100, "llama3.1-8b", "http://a.example/v1"),
        ("second/*", 50, "llama3.1-8b", "http://b.example/v1"),
    ]
    assert candidates[0].target.api_key_env == "A_KEY"
    assert [c.deployment_id for c in table.candidates("llama3.1-8b", exclude={"first/*"})] == ["second/*"]
    # another name, the same deployments (one health and rate limit per backend), its own upstream model
    assert [c.target.upstream_model for c in table.candidates("gpt-4")] == ["gpt-4", "gpt-4"]
    assert table.candidates("llama3.1-8b")[0].target.upstream_model == "llama3.1-8b"


def test_a_named_model_is_the_catalogs_and_star_is_no_name(table: WildcardTable) -> None:
    assert [c.deployment_id for c in table.candidates("demo")] == ["demo"]
    with pytest.raises(NotFoundError):
        table.candidates("*")
    assert table.knows_deployment("first/*") and table.knows_deployment("demo")
    assert not table.knows_deployment("third/*")


def test_a_names_candidates_are_built_once_and_the_cache_is_bounded(table: WildcardTable) -> None:
    first = table.candidates("m")[0].target
    assert table.candidates("m")[0].target is first
    for i in range(MAX_CACHED_NAMES + 1):
        table.candidates(f"n{i}")
    assert len(table._by_name) <= MAX_CACHED_NAMES


def test_wildcard_providers_discoveries_are_listed_not_routed_apart(table: WildcardTable) -> None:
    config = parse_config(CONFIG)
    assert [m.id for m in table.models.models] == ["demo"]  # "*" is not a model
    listed = [
        (DeploymentConfig(id=f"second/{n}", model=n, provider="second"), config.providers["second"])
        for n in ("llama3.1-8b", "demo")
    ]
    table.replace("second", listed)
    table.replace(
        "first", [(DeploymentConfig(id="first/gpt-4", model="gpt-4", provider="first"), config.providers["first"])]
    )
    assert [(m.id, m.owned_by) for m in table.models.models] == [
        ("demo", "fake"),
        ("llama3.1-8b", "second"),  # providers in config order, whichever listing came first
        ("gpt-4", "first"),
    ]
    assert table.models is table.models  # built once per change
    # still served by every backend in priority order, not by the one that listed it
    assert [c.deployment_id for c in table.candidates("llama3.1-8b")] == ["first/*", "second/*"]


def test_other_providers_lists_reach_the_catalog(table: WildcardTable) -> None:
    config = parse_config(CONFIG)
    table.replace("fake", [(DeploymentConfig(id="fake/x", model="x", provider="fake"), config.providers["fake"])])
    assert [c.deployment_id for c in table.candidates("x")] == ["fake/x"]
    assert "x" in {m.id for m in table.models.models}


def test_a_wildcard_name_the_catalog_comes_to_serve_is_the_catalogs(table: WildcardTable) -> None:
    config = parse_config(CONFIG)
    assert [c.deployment_id for c in table.candidates("late")] == ["first/*", "second/*"]  # cached as a wildcard's
    table.replace("fake", [(DeploymentConfig(id="fake/late", model="late", provider="fake"), config.providers["fake"])])
    assert [c.deployment_id for c in table.candidates("late")] == ["fake/late"]
