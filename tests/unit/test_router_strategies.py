"""The routing brain's config and routing table: strategies' orders and flags, fallbacks, auto's
routes per class, and the fields a bad config names."""

from __future__ import annotations

import pytest

from common.config import ConfigError, load_config, parse_config
from router import strategies
from router.selection import AUTO_MODEL, Catalog

CONFIG = """
providers: {p: {adapter: fake}}
deployments:
  - {id: dear, model: m, provider: p, price: {prompt_per_1k: 0.01, completion_per_1k: 0.03}}
  - {id: cheap, model: m, provider: p, priority: 5, price: {prompt_per_1k: 0.001, completion_per_1k: 0.002}}
  - {id: free, model: m, provider: p, priority: 9}
  - {id: slow, model: lb, provider: p, context_window: 4096}
  - {id: fast, model: lb, provider: p, priority: 1}
  - {id: w1, model: w, provider: p, weight: 3}
  - {id: w2, model: w, provider: p, weight: 1}
models: {m: {strategy: cost}, lb: {strategy: least-busy}, w: {strategy: weighted}}
fallbacks: {w: [m, nowhere]}
auto: {classes: {code: [m], general: [w, lb]}, strategy: latency}
"""


@pytest.fixture
def catalog() -> Catalog:
    return Catalog.from_config(parse_config(CONFIG))


def ids(catalog: Catalog, model: str, prompt_class: str = "") -> list[str]:
    return [c.deployment_id for c in catalog.route_of(model, prompt_class).candidates]


def test_cost_orders_by_price_then_priority_and_others_keep_priority(catalog: Catalog) -> None:
    assert ids(catalog, "m") == ["free", "cheap", "dear"]
    assert ids(catalog, "lb") == ["slow", "fast"]


def test_only_strategies_that_need_outcomes_ask_for_them(catalog: Catalog) -> None:
    assert not any(c.target.report_outcome for c in catalog.route_of("m").candidates)
    assert not any(c.target.report_outcome for c in catalog.route_of("w").candidates)
    assert all(c.target.report_outcome for c in catalog.route_of("lb").candidates)
    # The pick's arguments: nothing for the pure orders (the hot path sends what it always sent).
    route = catalog.route_of("w")
    assert route.strategy_args(route.candidates) == ["w", 3.0, 1.0]
    assert catalog.route_of("m").strategy_args(catalog.route_of("m").candidates) == []
    assert strategies.lua_args("least-busy", []) == ["b"]


def test_targets_name_their_model_and_context_window(catalog: Catalog) -> None:
    slow = catalog.route_of("lb").candidates[0]
    assert (slow.target.model, slow.target.context_window, slow.fits(4096), slow.fits(4097)) == (
        "lb",
        4096,
        True,
        False,
    )
    assert catalog.route_of("lb").sized and not catalog.route_of("m").sized
    assert [c.deployment_id for c in catalog.route_of("lb").usable((), 5000)] == ["fast"]
    assert [c.deployment_id for c in catalog.route_of("lb").usable(("fast",), 10)] == ["slow"]


def test_fallbacks_and_auto_routes(catalog: Catalog) -> None:
    assert catalog.route_of("w").fallbacks == ("m", "nowhere")
    code = catalog.route_of(AUTO_MODEL, "code")
    assert (code.strategy, code.prompt_class, ids(catalog, AUTO_MODEL, "code")) == (
        "latency",
        "code",
        ["dear", "cheap", "free"],
    )
    assert [c.target.model for c in catalog.route_of(AUTO_MODEL, "general").candidates] == ["w", "w", "lb", "lb"]
    assert catalog.route_of(AUTO_MODEL, "simple").prompt_class == "general"  # unmapped: general's
    # auto's latency strategy counts its deployments in flight, whatever their own model's strategy
    assert catalog.health_group("dear") == (("free", "cheap"), True)
    assert catalog.health_group("w1") == (("w2",), True)
    assert "auto" in {m.id for m in catalog.models.models}


def test_the_shipped_config_routes_auto_offline_to_the_demo_model() -> None:
    config = load_config()
    catalog = Catalog.from_config(config)
    assert config.default_model == AUTO_MODEL
    for prompt_class in ("code", "complex", "simple", "general"):
        assert catalog.route_of(AUTO_MODEL, prompt_class).fallbacks == ("demo",)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("models: {m: {strategy: fastest}}", "models.m.strategy"),
        (
            "providers: {p: {adapter: fake}}\ndeployments: [{id: a, model: m, provider: p, weight: 0}]",
            "deployments.0.weight",
        ),
        (
            "providers: {p: {adapter: fake}}\ndeployments: [{id: a, model: m, provider: p, context_window: 0}]",
            "deployments.0.context_window",
        ),
        ("fallbacks: {m: [n, m]}", "fallbacks.m"),
        ("fallbacks: {m: ['']}", "fallbacks.m.0"),
        ("health: {max_ejection_share: 1.5}", "health.max_ejection_share"),
        ("health: {quota_cooldown_s: 0}", "health.quota_cooldown_s"),
        ("auto: {classes: {poetry: [m]}}", "auto.classes.poetry"),
        ("auto: {classes: {code: [m]}, strategy: cheapest}", "auto.strategy"),
        (
            "providers: {p: {adapter: fake}}\ndeployments: [{id: a, model: auto, provider: p}]\nauto: {classes: {code: [m]}}",
            "auto",
        ),
    ],
)
def test_a_bad_routing_config_names_the_field(text: str, names: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(text, "bad.yaml")
    assert names in str(err.value)
