"""OpenAI-format request bodies as Text Generation Inference native ``/generate`` bodies:
``{"inputs": <prompt>, "parameters": {...}}`` (``GenerateRequest`` / ``GenerateParameters`` in TGI's
``docs/openapi.json``).

TGI's native API completes a prompt string. Legacy completions map onto it one to one. Chat messages
are rendered into a prompt with a simple, fixed template, chosen per deployment with the option
``prompt_template``:

- ``plain`` (default): system text, then ``User: ...`` / ``Assistant: ...`` turns separated by blank
  lines, ending with ``Assistant:``; ``\\nUser:`` is a stop sequence so the model does not write the
  user's next turn.
- ``chatml``: ``<|im_start|>{role}\\n{content}<|im_end|>\\n`` turns, ending with
  ``<|im_start|>assistant\\n`` (Qwen, Hermes and other ChatML models).

A model's own chat template is only applied by TGI's ``/v1/chat/completions``, which the ``openai``
adapter serves with the base URL ``<tgi>/v1``: prefer that for chat with instruction-tuned models.
Images (vision models) go into the prompt as markdown images, ``![](<url or data URL>)``, as TGI's
``visual_language_models`` guide describes. TGI's native API has no tools or logprobs here: those
parameters are refused with a 400 naming them.

Parameter mapping: ``max_tokens`` -> ``max_new_tokens``; ``temperature`` 0 -> greedy (``do_sample``
false; TGI refuses a temperature of 0), otherwise sampling (OpenAI always samples); ``top_p`` 1 ->
omitted (TGI refuses 1, which means no filtering); ``stop``, ``seed``, ``frequency_penalty`` as they are;
``response_format`` -> ``grammar`` ``{"type": "json", "value": <schema>}``. TGI returns the stop
sequence in the text; ``StopTrimmer`` takes it out, as OpenAI does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.errors import InvalidRequestError, ModelRouterError
from common.providers.base import Operation, ProviderCall
from workers.openai_format import CALLER_FIELDS, json_schema_of

PROVIDER = "tgi"
# TGI's default --max-stop-sequences: a template's own stops are added only while there is room.
MAX_STOP_SEQUENCES = 4

_NO_EFFECT = CALLER_FIELDS | {"parallel_tool_calls"}  # parallel_tool_calls: means nothing without tools
_SAMPLING = frozenset({"temperature", "top_p", "max_tokens", "stop", "seed", "frequency_penalty", "presence_penalty"})
_CHAT_FIELDS = _NO_EFFECT | _SAMPLING | {"messages", "max_completion_tokens", "n", "response_format"}
_COMPLETION_FIELDS = _NO_EFFECT | _SAMPLING | {"prompt", "n", "best_of", "echo"}
# Tool parameters, allowed only when they ask for no tool use.
_NO_TOOLS: Mapping[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "functions": (None, []),
    "tool_choice": (None, "none", "auto"),
    "function_call": (None, "none", "auto"),
}


@dataclass(frozen=True, slots=True)
class PromptTemplate:
    turns: Mapping[str, tuple[str, str]]  # role -> (before, after) its content
    generation_prefix: str
    stops: tuple[str, ...] = ()


TEMPLATES: Mapping[str, PromptTemplate] = {
    "plain": PromptTemplate(
        turns={"system": ("", "\n\n"), "user": ("User: ", "\n\n"), "assistant": ("Assistant: ", "\n\n")},
        generation_prefix="Assistant:",
        stops=("\nUser:",),
    ),
    "chatml": PromptTemplate(
        turns={role: (f"<|im_start|>{role}\n", "<|im_end|>\n") for role in ("system", "user", "assistant")},
        generation_prefix="<|im_start|>assistant\n",
    ),
}
_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True, slots=True)
class TgiRequest:
    body: dict[str, Any]  # what goes upstream
    stops: list[str]  # every stop sequence sent, to take out of the answer
    echo: str = ""  # the prompt, when the client asked for it back in front of the completion


def tgi_request(call: ProviderCall, *, stream: bool) -> TgiRequest:
    body = call.body
    if call.operation == Operation.CHAT:
        _refuse(body, _CHAT_FIELDS)
        template = _template(call.options)
        prompt, template_stops = render_chat(body.get("messages"), template), template.stops
    else:
        _refuse(body, _COMPLETION_FIELDS)
        prompt, template_stops = completion_prompt(body), ()
    parameters = _parameters(body)
    stops = _stops(body.get("stop"), template_stops)
    if stops:
        parameters["stop"] = stops
    # details: finish reason and token counts; decoder_input_details: the prompt's tokens (``prefill``),
    # whose count is the prompt usage. A stream reports the prompt length in its last event instead,
    # and TGI refuses decoder_input_details when streaming.
    parameters["details"] = True
    if not stream:
        parameters["decoder_input_details"] = True
    echo = prompt if call.operation == Operation.COMPLETIONS and body.get("echo") else ""
    return TgiRequest(body={"inputs": prompt, "parameters": parameters}, stops=stops, echo=echo)


def render_chat(messages: Any, template: PromptTemplate) -> str:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequestError("'messages' must be a non-empty list of messages.", param="messages")
    parts = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise InvalidRequestError(f"{where} must be an object.", param=where)
        role = _ROLES.get(str(message.get("role")))
        if role is None:
            raise InvalidRequestError(
                f"{where}.role {message.get('role')!r} is not supported by TGI's native API (it has no tools).",
                param=f"{where}.role",
            )
        for unsupported in ("tool_calls", "function_call", "audio"):
            if message.get(unsupported):
                raise InvalidRequestError(
                    f"{where}.{unsupported} is not supported by TGI's native API.", param=f"{where}.{unsupported}"
                )
        before, after = template.turns[role]
        parts.append(f"{before}{_text(message.get('content'), where)}{after}")
    return "".join(parts) + template.generation_prefix


def completion_prompt(body: Mapping[str, Any]) -> str:
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1:
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise InvalidRequestError(
            "TGI completes one text at a time: 'prompt' must be a string (or a list of one string).", param="prompt"
        )
    return prompt


def _text(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        raise InvalidRequestError(f"{where}.content must be a string or a list of parts.", param=f"{where}.content")
    texts = []
    for j, part in enumerate(content):
        part = part if isinstance(part, dict) else {}
        kind = part.get("type")
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, dict) else image
        if kind in ("text", "refusal") and isinstance(part.get(kind), str):
            texts.append(part[kind])
        elif kind == "image_url" and isinstance(url, str):
            texts.append(f"![]({url})")
        else:
            param = f"{where}.content[{j}]"
            raise InvalidRequestError(f"{param}: a {kind!r} part is not supported by TGI.", param=param)
    return "\n".join(texts)


def _parameters(body: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    temperature = body.get("temperature")
    if temperature == 0:
        out["do_sample"] = False
    else:
        out["do_sample"] = True
        if temperature is not None:
            out["temperature"] = temperature
    if (top_p := body.get("top_p")) is not None and top_p < 1:
        out["top_p"] = top_p
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    if limit is not None:
        out["max_new_tokens"] = limit
    for name in ("seed", "frequency_penalty"):
        if body.get(name) is not None:
            out[name] = body[name]
    if (best_of := body.get("best_of")) not in (None, 1):
        out["best_of"] = best_of
    if (grammar := _grammar(body.get("response_format"))) is not None:
        out["grammar"] = grammar
    return out


def _grammar(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    kind = value.get("type") if isinstance(value, dict) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json", "value": {"type": "object"}}
    if kind == "json_schema":
        return {"type": "json", "value": json_schema_of(value)}
    raise InvalidRequestError(f"response_format type {kind!r} is not supported by TGI.", param="response_format")


def _stops(stop: Any, template_stops: tuple[str, ...]) -> list[str]:
    if stop is None:
        stops: list[str] = []
    elif isinstance(stop, str):
        stops = [stop]
    elif isinstance(stop, list) and all(isinstance(s, str) for s in stop):
        stops = list(stop)
    else:
        raise InvalidRequestError("'stop' must be a string or a list of strings.", param="stop")
    for extra in template_stops:
        if len(stops) < MAX_STOP_SEQUENCES and extra not in stops:
            stops.append(extra)
    return stops


def _template(options: Mapping[str, str]) -> PromptTemplate:
    name = options.get("prompt_template") or "plain"
    template = TEMPLATES.get(name)
    if template is None:
        raise ModelRouterError(
            f"The tgi deployment option prompt_template is {name!r}; known: {', '.join(TEMPLATES)}.",
            code="invalid_provider_option",
        )
    return template


def _refuse(body: Mapping[str, Any], known: frozenset[str]) -> None:
    for name, allowed in _NO_TOOLS.items():
        if body.get(name) not in allowed:
            raise InvalidRequestError(
                f"'{name}': TGI's native API has no tool calling (its /v1/chat/completions does: serve it with "
                "the openai adapter).",
                param=name,
            )
    checks: dict[str, tuple[Callable[[Any], bool], str]] = {
        "n": (lambda v: v in (None, 1), "TGI returns one choice: 'n' must be 1."),
        "presence_penalty": (lambda v: v in (None, 0), "TGI has no presence penalty: 'presence_penalty' must be 0."),
        "logprobs": (lambda v: v in (None, False), "TGI's native API returns no logprobs here."),
        "top_logprobs": (lambda v: v in (None, 0), "TGI's native API returns no logprobs here."),
    }
    for name, (ok, message) in checks.items():
        if not ok(body.get(name)):
            raise InvalidRequestError(message, param=name)
    for name in body:
        if name not in known and name not in _NO_TOOLS:
            raise InvalidRequestError(f"'{name}' is not supported by provider {PROVIDER!r}.", param=name)


@dataclass
class StopTrimmer:
    """Takes the stop sequence TGI leaves at the end of its text out, as OpenAI's answers do. Streaming,
    it holds back any tail that could be the start of a stop sequence until the next token settles it."""

    stops: list[str]
    _held: str = field(default="", init=False)

    def push(self, text: str) -> str:
        if not self.stops:
            return text
        pending = self._held + text
        keep = max((n for stop in self.stops for n in range(len(stop), 0, -1) if pending.endswith(stop[:n])), default=0)
        self._held = pending[len(pending) - keep :]
        return pending[: len(pending) - keep]

    def end(self, stopped_by_sequence: bool) -> str:
        held, self._held = self._held, ""
        return self.trim(held) if stopped_by_sequence else held

    def trim(self, text: str) -> str:
        for stop in sorted(self.stops, key=len, reverse=True):
            if stop and text.endswith(stop):
                return text[: -len(stop)]
        return text
