"""POST /v1/messages: Anthropic's Messages API, served by whichever deployment routing picks.

Every failure here, authentication included, answers in Anthropic's error shape, which is why the
key is checked in the handler rather than by the shared (OpenAI-shaped) dependency.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from common.errors import ModelRouterError
from gateway.admission import admission_for
from gateway.analytics.bodies import BodyCapture
from gateway.anthropic.errors import error_response
from gateway.anthropic.request import to_openai_json
from gateway.anthropic.response import to_anthropic_message
from gateway.anthropic.schemas import parse_request
from gateway.anthropic.stream import AnthropicStreamEncoder
from gateway.call import Call
from gateway.deps import gateway_of, read_body
from gateway.prompt_estimate import BYTES_PER_TOKEN
from gateway.responses import EventStreamResponse, RawJSONResponse
from gateway.routes.answer import (
    bodies_cap,
    check_model_allowed,
    headers_of,
    new_request_id,
    nobody_listening,
    unless_disconnected,
)
from modelrouter.events.v1 import events_pb2

ENDPOINT = "/v1/messages"


async def create_message(request: Request) -> Response:
    gateway = gateway_of(request)
    request_id = new_request_id("msg")  # also the message id, so a client can quote either
    try:
        principal = gateway.keys.authenticate(request.headers.get("authorization"), request.headers.get("x-api-key"))
    except ModelRouterError as exc:
        return error_response(exc, request_id)
    try:
        raw = await read_body(request, gateway.settings.max_body_bytes)
        parsed = parse_request(raw)
        check_model_allowed(principal, parsed.model)
        body = to_openai_json(parsed)
    except ModelRouterError as exc:  # an authenticated request that never reached a model still counts
        refused = Call(
            request_id,
            principal.key_id,
            ENDPOINT,
            events_pb2.OPERATION_CHAT_COMPLETIONS,
            model="",
            body=b"",
            team_id=principal.team_id,
        )
        gateway.dispatcher.reject(refused, exc)
        return error_response(exc, request_id)
    call = Call(
        request_id=request_id,
        key_id=principal.key_id,
        team_id=principal.team_id,
        admission=admission_for(principal, request_id, parsed.max_tokens),
        max_tokens=parsed.max_tokens or 0,
        endpoint=ENDPOINT,
        operation=events_pb2.OPERATION_CHAT_COMPLETIONS,
        model=parsed.model,  # the client's name: routing picks the deployment, of any provider
        prompt_class=gateway.auto.prompt_class_of(parsed, parsed.model),
        body=body,
        stream=parsed.stream,
        include_usage=parsed.stream,  # message_delta reports the usage of a streamed message
        estimated_tokens=len(raw) // BYTES_PER_TOKEN,
    )
    if (cap := bodies_cap(gateway, principal)) is not None:
        call.bodies = BodyCapture(parsed, cap)
    try:  # from here on, the dispatcher accounts for the request
        if call.stream:
            encoder = AnthropicStreamEncoder(message_id=request_id, model=parsed.model)
            frames = await unless_disconnected(request, gateway.dispatcher.open_stream(call, encoder))
            return nobody_listening() if frames is None else EventStreamResponse(frames, _headers(call))
        completion = await unless_disconnected(request, gateway.dispatcher.complete(call))
        if completion is None:
            return nobody_listening()
        message = to_anthropic_message(completion, message_id=request_id, model=parsed.model)
        return RawJSONResponse(message, headers=_headers(call))
    except ModelRouterError as exc:
        return error_response(exc, request_id)


def _headers(call: Call) -> dict[str, str]:
    # ``request-id`` is where Anthropic's SDKs read a response's id from.
    return {"request-id": call.request_id, **headers_of(call)}


# A plain Starlette route served by the fast lane, like the OpenAI generating endpoints (routes/generate.py).
routes = [Route(ENDPOINT, create_message, methods=["POST"])]
