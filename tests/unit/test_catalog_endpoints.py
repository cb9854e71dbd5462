"""A target naming the model's endpoint (a catalogue's ``handle``): which path each call goes to
(``workers.providers._endpoints``), with the tails the adapters declare."""

from __future__ import annotations

import pytest

from common.config import ENDPOINT_OPTION, endpoint_option
from common.errors import InvalidRequestError
from common.providers.base import Operation, ProviderCall
from workers.providers._endpoints import Endpoints
from workers.providers.anthropic import AnthropicAdapter
from workers.providers.gemini import GeminiAdapter
from workers.providers.openai import OpenAIAdapter
from workers.providers.tgi import TGIAdapter

OPENAI, ANTHROPIC, TGI, GEMINI = (a.endpoints for a in (OpenAIAdapter, AnthropicAdapter, TGIAdapter, GeminiAdapter))


def call(operation: str, options: dict[str, str], *, stream: bool = False) -> ProviderCall:
    return ProviderCall(
        request_id="r1",
        operation=operation,
        body={},
        upstream_model="m",
        api_key="k",
        timeout_s=5,
        stream=stream,
        options=options,
    )


def handle(path: str, **paths: str) -> dict[str, str]:
    return {ENDPOINT_OPTION: path, **{endpoint_option(op.replace("_", ".")): p for op, p in paths.items()}}


def test_without_an_endpoint_the_adapters_own_path_is_kept() -> None:
    assert OPENAI.path(call(Operation.CHAT, {}), "/chat/completions") == "/chat/completions"
    assert (
        TGI.path(call(Operation.CHAT, {"auth_scheme": "OAuth"}, stream=True), "/generate_stream") == "/generate_stream"
    )


@pytest.mark.parametrize(
    ("endpoints", "operation", "native", "path"),
    [
        (OPENAI, Operation.CHAT, "/chat/completions", "/fireworks/chat/completions"),
        (OPENAI, Operation.IMAGES, "/images/generations", "/openai/v1/images/generations"),
        (ANTHROPIC, Operation.CHAT, "/v1/messages", "/anthropic/v1/messages"),
        (ANTHROPIC, Operation.COMPLETIONS, "/v1/messages", "/anthropic/v1/messages"),  # through chat
        (OPENAI, Operation.CHAT, "/chat/completions", "/gigachat/api/v1/chat/completions"),
        (OPENAI, Operation.CHAT, "/chat/completions", "/yandexgpt/v1/completion"),  # no known tail: chat
    ],
)
def test_the_operation_the_handle_names_goes_to_exactly_the_handle(
    endpoints: Endpoints, operation: str, native: str, path: str
) -> None:
    assert endpoints.path(call(operation, handle(path)), native) == path


def test_legacy_completions_are_not_chat_completions() -> None:
    assert OPENAI.path(call(Operation.COMPLETIONS, handle("/f/v1/completions")), "/completions") == "/f/v1/completions"
    with pytest.raises(InvalidRequestError, match="does not serve completions"):
        OPENAI.path(call(Operation.COMPLETIONS, handle("/f/v1/chat/completions")), "/completions")


def test_a_stream_on_an_endpoint_of_its_own_swaps_the_handles_tail() -> None:
    assert (
        TGI.path(call(Operation.CHAT, handle("/t/generate"), stream=True), "/generate_stream") == "/t/generate_stream"
    )
    gemini = handle("/g/v1beta/models/x:generateContent")
    native = "/v1beta/models/m:streamGenerateContent"
    assert GEMINI.path(call(Operation.CHAT, gemini, stream=True), native) == "/g/v1beta/models/x:streamGenerateContent"
    with pytest.raises(InvalidRequestError, match=r"does not serve streamed chat\.completions"):
        TGI.path(call(Operation.CHAT, handle("/t/llama"), stream=True), "/generate_stream")


def test_another_operation_is_refused_unless_the_entry_names_its_path() -> None:
    chat = "/fireworks/chat/completions"
    with pytest.raises(InvalidRequestError) as err:
        OPENAI.path(call(Operation.EMBEDDINGS, handle(chat)), "/embeddings")
    assert err.value.status == 400
    assert err.value.to_dict() == {
        "error": {
            "message": "This model does not serve embeddings: its endpoint is /fireworks/chat/completions, and "
            "its catalogue entry names no path for embeddings.",
            "type": "invalid_request_error",
            "param": None,
            "code": "unsupported_operation",
        }
    }
    options = handle(chat, embeddings="/fireworks/embeddings")
    assert OPENAI.path(call(Operation.EMBEDDINGS, options), "/embeddings") == "/fireworks/embeddings"
    assert OPENAI.path(call(Operation.CHAT, options), "/chat/completions") == chat
    # an entry's path for an operation is taken as that operation's, whatever its tail
    options = handle(chat, embeddings="/fireworks/vectors")
    assert OPENAI.path(call(Operation.EMBEDDINGS, options), "/embeddings") == "/fireworks/vectors"
