"""The worker's additions to every answer: router_metadata and the cost in usage, in the body of a
whole answer and in the last chunk of a stream (and only there)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import orjson
import pytest

from common.pricing import request_cost
from common.providers.base import ProviderCall, ProviderResponse, StreamChunk, Usage
from common.route_metadata import DEFAULT_REASON
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2
from workers.answer_extras import AnswerExtras, StreamTail
from workers.openai_format import ChatChunks, chat_completion, embeddings_response

PRICE = router_pb2.Price(prompt_per_1k=0.0025, completion_per_1k=0.01, cached_prompt_per_1k=0.00125)


def _job(operation: int = events_pb2.OPERATION_CHAT_COMPLETIONS, **target: Any) -> events_pb2.Job:
    fields: dict[str, Any] = {"deployment_id": "d-1", "provider": "openai", "upstream_model": "gpt-4o", "price": PRICE}
    fields.update(target)
    return events_pb2.Job(
        request_id="r-1",
        operation=operation,  # type: ignore[arg-type]
        attempt=1,
        target=router_pb2.Target(**fields),
        explanation=router_pb2.RouteExplanation(
            strategy="cost", reason="Cheapest healthy deployment.", prompt_class="code", requested_model="auto"
        ),
    )


def _call(operation: str = "chat.completions") -> ProviderCall:
    return ProviderCall("r-1", operation, {"input": ["a"]}, "gpt-4o", None, 10.0)


def _exact(data: bytes) -> dict[str, Any]:
    import json

    loaded: dict[str, Any] = json.loads(data, parse_float=Decimal)
    return loaded


def test_a_whole_answer_gets_router_metadata_and_the_cost_the_ledger_computes() -> None:
    usage = Usage(prompt_tokens=1000, completion_tokens=200, cached_tokens=400)
    response = chat_completion(_call(), response_id="c-1", content="hi", finish_reason="stop", usage=usage)
    extras = AnswerExtras.for_job(_job(model="gpt-4o"))
    assert extras is not None
    body = _exact(extras.whole(response))

    cost = request_cost(1000, 200, 400, PRICE)
    assert cost is not None
    # 600 * 0.0025 / 1000 + 400 * 0.00125 / 1000 = 0.002; 200 * 0.01 / 1000 = 0.002
    assert body["usage"]["input_cost_usd"] == cost.input == Decimal("0.002")
    assert body["usage"]["output_cost_usd"] == cost.output == Decimal("0.002")
    assert body["usage"]["total_cost_usd"] == cost.total == Decimal("0.004")
    assert body["router_metadata"] == {
        "selected_provider": "openai",
        "selected_model": "gpt-4o",
        "deployment_id": "d-1",
        "strategy": "cost",
        "prompt_class": "code",
        "reason": "Cheapest healthy deployment.",
        "estimated_cost": Decimal("0.004"),
        "attempts": 2,
    }
    assert body["choices"][0]["message"]["content"] == "hi"  # the rest as it was


def test_an_unknown_price_is_null_never_zero() -> None:
    response = chat_completion(
        _call(), response_id="c-1", content="hi", finish_reason="stop", usage=Usage(prompt_tokens=5)
    )
    extras = AnswerExtras(_job(price=router_pb2.Price(unknown=True)))
    body = orjson.loads(extras.whole(response))
    assert [body["usage"][k] for k in ("input_cost_usd", "output_cost_usd", "total_cost_usd")] == [None] * 3
    assert body["router_metadata"]["estimated_cost"] is None


def test_without_an_explanation_the_route_is_priority_for_the_asked_model() -> None:
    job = _job()
    job.ClearField("explanation")
    job.explanation.requested_model = "demo"  # what the gateway always fills in
    response = chat_completion(_call(), response_id="c-1", content="x", finish_reason="stop", usage=Usage())
    meta = orjson.loads(AnswerExtras(job).whole(response))["router_metadata"]
    assert (meta["strategy"], meta["selected_model"], meta["reason"], meta["prompt_class"]) == (
        "priority",
        "demo",
        DEFAULT_REASON,
        None,
    )


def test_an_answer_given_as_bytes_only_is_read_once_and_written_with_the_extras() -> None:
    raw = b'{"object":"list","data":[],"model":"m","usage":{"prompt_tokens":8,"total_tokens":8}}'
    extras = AnswerExtras.for_job(_job(events_pb2.OPERATION_EMBEDDINGS))
    assert extras is not None
    body = _exact(extras.whole(ProviderResponse(raw, Usage(prompt_tokens=8))))
    assert body["usage"]["total_cost_usd"] == Decimal("0.00002")
    assert body["router_metadata"]["deployment_id"] == "d-1"


def test_embeddings_built_by_the_shared_builder_carry_the_extras() -> None:
    response = embeddings_response(_call("embeddings"), [[0.5, 0.25]], Usage(prompt_tokens=4))
    body = _exact(AnswerExtras(_job(events_pb2.OPERATION_EMBEDDINGS)).whole(response))
    assert body["data"][0]["embedding"] == [Decimal("0.5"), Decimal("0.25")]
    assert body["usage"]["input_cost_usd"] == Decimal("0.00001")


def test_images_are_left_as_the_provider_shaped_them() -> None:
    assert AnswerExtras.for_job(_job(events_pb2.OPERATION_IMAGES)) is None


def _stream(include_usage: bool) -> list[StreamChunk]:
    chunks = ChatChunks(_call(), "c-1")
    usage = Usage(prompt_tokens=10, completion_tokens=2)
    out = [*chunks.text("Hel"), *chunks.text("lo"), *chunks.finish("stop")]
    if include_usage:
        out.append(chunks.usage(usage))
    return out


@pytest.mark.parametrize("include_usage", [True, False])
def test_only_the_last_chunk_of_a_stream_carries_the_extras(include_usage: bool) -> None:
    tail = StreamTail(AnswerExtras(_job()))
    sent: list[StreamChunk] = []
    for chunk in _stream(include_usage):
        sent += tail.push(chunk)
    last = tail.end(Usage(prompt_tokens=10, completion_tokens=2))
    assert last is not None
    sent.append(last)

    bodies = [_exact(c.data) for c in sent]
    assert len(bodies) == len(_stream(include_usage))
    assert all("router_metadata" not in b for b in bodies[:-1])
    final = bodies[-1]
    assert final["router_metadata"]["estimated_cost"] == Decimal("0.000045")  # 10 * 0.0025 + 2 * 0.01, /1000
    if include_usage:  # the usage chunk: its usage gains the costs
        assert final["choices"] == [] and final["usage"]["total_cost_usd"] == Decimal("0.000045")
    else:  # the finish chunk: no usage object appears
        assert final["choices"][0]["finish_reason"] == "stop" and "usage" not in final


def test_text_chunks_are_never_held_back() -> None:
    tail = StreamTail(AnswerExtras(_job()))
    chunks = ChatChunks(_call(), "c-1")
    [role, text] = chunks.text("Hi")
    assert tail.push(role) == [role]
    assert tail.push(text) == [text]
    [finish] = chunks.finish("stop")
    assert tail.push(finish) == []  # may be the last: held until the next chunk or the end
    [text2] = chunks.text("more", choice=1)[1:]
    assert tail.push(text2) == [finish, text2]


def test_a_failed_stream_releases_its_held_chunk_unchanged() -> None:
    tail = StreamTail(AnswerExtras(_job()))
    [finish] = ChatChunks(_call(), "c-1", role_in_first_delta=True).finish("stop")
    assert tail.push(finish) == []
    assert tail.release() is finish
    assert tail.end(Usage()) is None


def test_a_stream_without_extras_passes_every_chunk_through() -> None:
    tail = StreamTail(None)
    for chunk in _stream(True):
        assert tail.push(chunk) == [chunk]
    assert tail.end(Usage()) is None
