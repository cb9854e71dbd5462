"""store_bodies at the gateway: which requests keep their texts, and how the texts are taken and cut."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from common.config import parse_config
from gateway.analytics.bodies import BodyCapture, answer_text, cut, prompt_text
from gateway.keyring import Principal
from gateway.routes.answer import bodies_cap
from gateway.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from modelrouter.events.v1 import events_pb2


def _gateway(config_yaml: str) -> Any:
    return SimpleNamespace(config=parse_config(config_yaml))


@pytest.mark.parametrize(
    ("config_yaml", "key_choice", "cap"),
    [
        ("{}", None, None),  # off unless configured
        ("{}", True, 32 * 1024),  # a key may turn it on for itself
        ("store_bodies: true\nstore_bodies_max_bytes: 100", None, 100),
        ("store_bodies: true\nstore_bodies_max_bytes: 100", False, None),  # ... or off
    ],
)
def test_the_keys_choice_overrides_the_config(config_yaml: str, key_choice: bool | None, cap: int | None) -> None:
    assert bodies_cap(_gateway(config_yaml), Principal("key_x", store_bodies=key_choice)) == cap


def test_the_shipped_development_config_keeps_bodies() -> None:
    from common.config import load_config

    config = load_config()
    assert config.store_bodies is True and config.store_bodies_max_bytes > 0


def test_cap_is_bounded_by_what_a_usage_batch_can_carry() -> None:
    with pytest.raises(Exception, match="store_bodies_max_bytes"):
        parse_config("store_bodies_max_bytes: 1000000")


def test_cut_marks_the_cut_and_never_splits_a_character() -> None:
    assert cut("short", 10) == ("short", False)
    assert cut("abcdef", 3) == ("abc… [truncated: 6 bytes]", True)
    assert cut("ééé", 3) == ("é… [truncated: 6 bytes]", True)  # 2-byte characters: the half one is dropped


def test_prompt_text_of_each_kind_of_request() -> None:
    chat = ChatCompletionRequest.model_validate(
        {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url", "image_url": {}}]},
            ],
        }
    )
    assert prompt_text(chat) == "Be brief.\n\nHi"
    assert prompt_text(CompletionRequest.model_validate({"model": "m", "prompt": ["a", "b"]})) == "a\n\nb"
    assert prompt_text(EmbeddingRequest.model_validate({"model": "m", "input": [1, 2, 3]})) == ""  # tokens, not text


def test_answer_text_of_answers_and_chunks() -> None:
    answer = {"choices": [{"message": {"content": "Paris."}}, {"message": {"content": "Lyon."}}]}
    assert answer_text(orjson.dumps(answer), delta=False) == "Paris.\nLyon."
    assert answer_text(orjson.dumps({"choices": [{"text": "done"}]}), delta=False) == "done"
    assert answer_text(orjson.dumps({"choices": [{"delta": {"content": "Pa"}}]}), delta=True) == "Pa"
    assert answer_text(orjson.dumps({"data": [{"embedding": [0.1]}]}), delta=False) == ""
    assert answer_text(b"not json", delta=False) == ""


def test_a_stream_past_the_cap_stops_being_kept_and_is_marked() -> None:
    capture = BodyCapture(
        ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "q"}]}), cap=4
    )
    for piece in ("ab", "cd", "ef", "gh"):
        data = orjson.dumps({"choices": [{"delta": {"content": piece}}]})
        capture.chunk(events_pb2.Chunk(data=data, text_chars=len(piece)))
    event = events_pb2.UsageEvent(request_id="r")
    capture.fill(event)
    assert event.bodies_stored and event.prompt_text == "q" and not event.prompt_truncated
    assert event.response_truncated and event.response_text == "abcd… [truncated]"
    assert len(capture.chunks) == 3  # nothing kept once past the cap


def test_an_event_without_a_capture_says_no_texts_were_kept() -> None:
    assert not events_pb2.UsageEvent(request_id="r").bodies_stored


def test_prompt_text_of_an_anthropic_request_has_its_system_prompt_first() -> None:
    from gateway.anthropic.schemas import parse_request

    parsed = parse_request(
        orjson.dumps(
            {
                "model": "m",
                "max_tokens": 10,
                "system": "Be brief.",
                "messages": [{"role": "user", "content": [{"type": "text", "text": "Hi"}]}],
            }
        )
    )
    assert prompt_text(parsed) == "Be brief.\n\nHi"
