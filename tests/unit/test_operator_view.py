"""The operator endpoints' JSON, shaped from an Overview answer (gateway.operator_view)."""

from __future__ import annotations

from gateway import operator_view
from modelrouter.router.v1 import router_pb2

NOW = 1_796_601_600.0  # 2026-12-07T00:00:00Z


def _dep(deployment_id: str, provider: str, model: str, **fields: object) -> router_pb2.DeploymentOverview:
    return router_pb2.DeploymentOverview(deployment_id=deployment_id, provider=provider, model=model, **fields)  # type: ignore[arg-type]


OVERVIEW = router_pb2.OverviewResponse(
    deployments=[
        _dep(
            "openai-4o",
            "openai",
            "gpt-4o",
            upstream_model="gpt-4o-2024-08-06",
            strategy="latency",
            priority=0,
            requests=30,
            successes=27,
            failures=3,
            avg_latency_ms=812.3456,
            avg_ttft_ms=190.5,
            in_flight=2,
            traffic_share=0.75,
            healthy=True,
            requests_limit=router_pb2.LimitState(limit=100, remaining=70, reset_ms=37_500),
        ),
        _dep(
            "azure-4o",
            "azure",
            "gpt-4o",
            strategy="latency",
            priority=1,
            requests=10,
            successes=4,
            failures=6,
            avg_latency_ms=2000,
            traffic_share=0.25,
            healthy=False,
            ejected_until=NOW + 90,
            consecutive_failures=5,
            times_ejected=2,
            tokens_limit=router_pb2.LimitState(limit=50_000, remaining=50_000, reset_ms=0),
        ),
        _dep("fake-demo", "fake", "demo", strategy="priority", healthy=True, cooling_down_until=NOW + 12),
    ],
    keys=[
        # The router counts a key's use; its limits are the keyring's.
        router_pb2.KeyOverview(key_id="key_a", requests=router_pb2.LimitState(used=1, reset_ms=97_505)),
        router_pb2.KeyOverview(key_id="key_unlimited"),
    ],
)


def test_stats_per_deployment_and_totals() -> None:
    stats = operator_view.stats(OVERVIEW)
    first, _, idle = stats["deployments"]
    assert first == {
        "deployment_id": "openai-4o",
        "model": "gpt-4o",
        "provider": "openai",
        "strategy": "latency",
        "requests": 30,
        "successes": 27,
        "failures": 3,
        "avg_latency_ms": 812.346,
        "avg_ttft_ms": 190.5,
        "in_flight": 2,
        "traffic_share": 0.75,
    }
    # no requests yet: no average, not a 0 ms one
    assert idle["avg_latency_ms"] is None and idle["avg_ttft_ms"] is None
    assert stats["totals"] == {"requests": 40, "successes": 31, "failures": 9, "in_flight": 2}


def test_health_says_until_when_in_iso_8601_and_only_while_it_lasts() -> None:
    health = operator_view.health(OVERVIEW, NOW)
    by_id = {d["deployment_id"]: d for d in health["deployments"]}
    assert by_id["azure-4o"]["healthy"] is False
    assert by_id["azure-4o"]["ejected_until"] == "2026-12-07T00:01:30Z"
    assert (by_id["azure-4o"]["consecutive_failures"], by_id["azure-4o"]["times_ejected"]) == (5, 2)
    assert by_id["fake-demo"]["cooling_down"] is True
    assert by_id["fake-demo"]["cooling_down_until"] == "2026-12-07T00:00:12Z"
    assert by_id["openai-4o"]["ejected_until"] is None and by_id["openai-4o"]["cooling_down"] is False
    assert (health["status"], health["healthy"], health["unhealthy"]) == ("degraded", 2, 1)
    # once the time has passed, it is over, whatever the router last wrote
    later = {d["deployment_id"]: d for d in operator_view.health(OVERVIEW, NOW + 100)["deployments"]}
    assert later["azure-4o"]["ejected_until"] is None and later["fake-demo"]["cooling_down"] is False


def test_rate_limits_per_deployment_and_per_key() -> None:
    limits = operator_view.rate_limits(OVERVIEW, {"key_a": ("sk-mr-…1Xzg", 10, 0)}, NOW)
    by_id = {d["deployment_id"]: d for d in limits["deployments"]}
    assert by_id["openai-4o"]["requests"] == {
        "limit": 100,
        "used": 30,
        "remaining": 70,
        "reset": "37.5s",
        "reset_at": "2026-12-07T00:00:37.500000Z",
    }
    assert by_id["openai-4o"]["tokens"] is None  # no tpm limit
    assert by_id["azure-4o"]["tokens"]["used"] == 0 and by_id["azure-4o"]["requests"] is None
    # a key without rate limits has no window to show
    assert limits["keys"] == [
        {
            "key_id": "key_a",
            "key": "sk-mr-…1Xzg",
            "requests": {
                "limit": 10,
                "used": 1,
                "remaining": 9,
                "reset": "1m37.505s",
                "reset_at": "2026-12-07T00:01:37.505000Z",
            },
            "tokens": None,
        }
    ]


def test_providers_group_models_and_availability() -> None:
    catalog = router_pb2.CatalogStatus(provider="cloud", url="https://models.example.com/x", models=0)
    providers = operator_view.providers(OVERVIEW, [catalog])["providers"]
    assert providers == [
        {"name": "azure", "available": False, "models": ["gpt-4o"], "deployments": 1, "healthy_deployments": 0},
        {"name": "cloud", "available": False, "models": [], "deployments": 0, "healthy_deployments": 0},
        {"name": "fake", "available": True, "models": ["demo"], "deployments": 1, "healthy_deployments": 1},
        {"name": "openai", "available": True, "models": ["gpt-4o"], "deployments": 1, "healthy_deployments": 1},
    ]
    assert operator_view.providers(router_pb2.OverviewResponse(), None) == {"object": "list", "providers": []}


def test_root_and_backend_info_in_seed_001s_words() -> None:
    root = operator_view.root("1.2.3", OVERVIEW)
    assert (root["name"], root["version"]) == ("ModelRouter", "1.2.3")
    assert root["backends"] == {"total": 3, "healthy": 2, "unhealthy": 1, "providers": 3, "models": 2}
    info = operator_view.backend_info("1.2.3", OVERVIEW)
    assert info["summary"] == root["backends"]
    assert info["backends"][0] == {
        "name": "openai-4o",
        "backend_type": "openai",
        "model": "gpt-4o",
        "upstream_model": "gpt-4o-2024-08-06",
        "priority": 0,
        "healthy": True,
        "rate_limit_requests": 100,
        "rate_limit_window": 60,
    }
    assert info["backends"][1]["rate_limit_requests"] is None and info["backends"][1]["rate_limit_window"] is None
