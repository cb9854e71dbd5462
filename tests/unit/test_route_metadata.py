"""The route's facts as the answer's headers: the same as the body's router_metadata, safe to send."""

from __future__ import annotations

from common.route_metadata import DEFAULT_REASON, DEFAULT_STRATEGY, RouteMetadata, explain
from modelrouter.router.v1 import router_pb2

TARGET = router_pb2.Target(deployment_id="d-1", provider="anthropic", model="claude-sonnet-4-5")


def test_headers_say_what_the_body_says() -> None:
    explanation = router_pb2.RouteExplanation(strategy="latency", reason="Fastest.", prompt_class="complex")
    route = RouteMetadata.of(TARGET, explanation, 3, "auto")
    assert route.headers("0.5") == {
        "x-modelrouter-selected-provider": "anthropic",
        "x-modelrouter-selected-model": "claude-sonnet-4-5",
        "x-modelrouter-deployment-id": "d-1",
        "x-modelrouter-strategy": "latency",
        "x-modelrouter-reason": "Fastest.",
        "x-modelrouter-attempts": "3",
        "x-modelrouter-prompt-class": "complex",
        "x-modelrouter-estimated-cost": "0.5",
    }
    body = route.json(None)
    assert (body["selected_model"], body["prompt_class"], body["estimated_cost"]) == (
        "claude-sonnet-4-5",
        "complex",
        None,
    )


def test_a_router_that_explains_nothing_routed_by_priority_to_the_asked_model() -> None:
    explanation = router_pb2.RouteExplanation()
    explain(explanation, "demo")
    assert (explanation.strategy, explanation.requested_model) == (DEFAULT_STRATEGY, "demo")
    route = RouteMetadata.of(router_pb2.Target(deployment_id="d"), explanation, 1, "demo")
    assert (route.selected_model, route.reason, route.prompt_class) == ("demo", DEFAULT_REASON, None)
    # No class, no known price: those headers are left out rather than sent empty.
    headers = route.headers(None)
    assert "x-modelrouter-prompt-class" not in headers and "x-modelrouter-estimated-cost" not in headers


def test_header_values_cannot_split_a_header_or_leave_latin_1() -> None:
    explanation = router_pb2.RouteExplanation(strategy="cost", reason="Cheapest\r\nx-evil: 1 — ok ✓")
    headers = RouteMetadata.of(TARGET, explanation, 1, "m").headers(None)
    assert headers["x-modelrouter-reason"] == "Cheapest??x-evil: 1 ? ok ?"
