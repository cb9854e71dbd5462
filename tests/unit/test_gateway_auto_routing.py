"""gateway.auto_routing: which model a parsed body asks for, and when the classifier runs (only for
``auto``: a named model costs no classification)."""

from __future__ import annotations

from typing import Any

import pytest

from common.config import parse_config
from common.errors import InvalidRequestError
from common.settings import GatewaySettings
from gateway.auto_routing import AutoRouting
from gateway.schemas import ChatCompletionRequest


class CountingClassifier:
    name = "counting"

    def __init__(self) -> None:
        self.calls = 0

    def classify(self, body: Any) -> str:
        self.calls += 1
        return "complex"


def _body(**fields: Any) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate({"messages": [{"role": "user", "content": "hi"}], **fields})


def test_a_named_model_is_kept_and_never_classified() -> None:
    counting = CountingClassifier()
    auto = AutoRouting(default_model="auto", classifier=counting)
    body = _body(model="gpt-4o")
    model = auto.model_of(body)
    assert (model, auto.prompt_class_of(body, model)) == ("gpt-4o", "")
    assert counting.calls == 0


def test_auto_is_classified_once() -> None:
    counting = CountingClassifier()
    auto = AutoRouting(classifier=counting)
    body = _body(model="auto")
    assert auto.prompt_class_of(body, auto.model_of(body)) == "complex"
    assert counting.calls == 1


def test_a_missing_model_takes_the_default_or_is_refused_naming_the_parameter() -> None:
    assert AutoRouting(default_model="auto").model_of(_body()) == "auto"
    assert AutoRouting(default_model="gpt-3.5-turbo").model_of(_body()) == "gpt-3.5-turbo"
    with pytest.raises(InvalidRequestError) as refused:
        AutoRouting().model_of(_body())
    assert refused.value.param == "model" and refused.value.message == "Missing required parameter: 'model'."


def test_default_model_from_the_environment_wins_over_the_config() -> None:
    config = parse_config("default_model: auto\n")
    assert AutoRouting.configured(GatewaySettings(), config).default_model == "auto"
    assert AutoRouting.configured(GatewaySettings(default_model="gpt-3.5-turbo"), config).default_model == (
        "gpt-3.5-turbo"
    )
    assert AutoRouting.configured(GatewaySettings(), parse_config("")).default_model == ""


def test_the_classifier_is_the_one_the_setting_names() -> None:
    assert AutoRouting.configured(GatewaySettings(), parse_config("")).classifier.name == "heuristic"
    with pytest.raises(ValueError, match="unknown prompt classifier"):
        AutoRouting.configured(GatewaySettings(prompt_classifier="nope"), parse_config(""))
