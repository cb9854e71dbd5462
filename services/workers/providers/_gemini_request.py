"""An OpenAI chat-completions body as a Gemini ``GenerateContentRequest``.

Shapes from the Gemini API reference (ai.google.dev/api/generate-content: ``contents``,
``systemInstruction``, ``tools[].functionDeclarations``, ``toolConfig.functionCallingConfig``,
``generationConfig``) and the google-genai SDK's types (``Content``, ``Part``, ``Blob``, ``FileData``,
``FunctionCall``/``FunctionResponse`` with their optional ``id``, ``GenerationConfig``,
``ThinkingConfig``), which the unit tests validate every request against.

Every field of the body is translated, ignored because it cannot change the answer (``user``,
``metadata``, ...), or rejected with a 400 naming it: nothing that changes the answer is dropped.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from common.errors import InvalidRequestError
from workers.openai_format import CALLER_FIELDS
from workers.providers._gemini_schema import gemini_schema

# Gemini 3 answers 400 when a model turn's first function call comes back without the thought
# signature it was sent with. Signatures ride in our tool-call ids (clients echo ids verbatim); for
# calls without one (another model's, or a client that rebuilt the id) Google documents this value
# as the way to skip the check (ai.google.dev/gemini-api/docs/thought-signatures, FAQ).
SIGNATURE_IN_ID = "_ts_"
FOREIGN_THOUGHT_SIGNATURE = "skip_thought_signature_validator"

# Fields that cannot change what Gemini generates: routing and bookkeeping, and our own stream switches.
_IGNORED = CALLER_FIELDS
# OpenAI sampling field -> generationConfig field, same meaning and units.
_GENERATION = {
    "temperature": "temperature",
    "top_p": "topP",
    "top_k": "topK",  # not OpenAI's, but vLLM-style clients send it and Gemini has it
    "seed": "seed",
    "presence_penalty": "presencePenalty",
    "frequency_penalty": "frequencyPenalty",
    "n": "candidateCount",
    "max_tokens": "maxOutputTokens",
    "max_completion_tokens": "maxOutputTokens",
}
# Values that ask for nothing beyond the default, so a provider without the feature can honour them.
_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "logprobs": (False,),
    "logit_bias": ({},),
    "parallel_tool_calls": (True,),
    "modalities": (["text"],),
}
# reasoning_effort -> thinkingBudget, Google's own mapping for its OpenAI-compatible endpoint
# (ai.google.dev/gemini-api/docs/openai: low/medium/high = 1K/8K/24K tokens, "none" turns thinking off);
# "minimal" gets the smallest of them.
_THINKING_BUDGETS = {"none": 0, "minimal": 1024, "low": 1024, "medium": 8192, "high": 24576}
_TOOL_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
# Image types Gemini reads (ai.google.dev/gemini-api/docs/image-understanding), by file extension,
# for http(s) image URLs, which carry no type of their own.
_IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".heic": "image/heic",
    ".heif": "image/heif",
}
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


def tool_call_id(request_id: str, choice: int, index: int) -> str:
    """Gemini's function calls carry no id: ours is stable for a request (a retry makes the same ones)."""
    digest = hashlib.sha256(f"{request_id}/{choice}/{index}".encode()).hexdigest()[:24]
    return f"call_{digest}"


def with_signature(call_id: str, signature: str | None) -> str:
    """The client-facing id: the call's id plus its thought signature, in id-safe base64url."""
    if not signature:
        return call_id
    return call_id + SIGNATURE_IN_ID + signature.replace("+", "-").replace("/", "_").rstrip("=")


def _split_signature(client_id: str) -> tuple[str, str | None]:
    call_id, found, signature = client_id.partition(SIGNATURE_IN_ID)
    if not found or not signature:
        return client_id, None
    standard = signature.replace("-", "+").replace("_", "/")
    return call_id, standard + "=" * (-len(standard) % 4)


def generate_content_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` body for an OpenAI chat body (already parsed; not modified)."""
    request = _Request()
    for name, value in body.items():
        if value is None or name in _IGNORED or value in _DEFAULTS.get(name, ()):
            continue
        handler = _FIELDS.get(name)
        if handler is None:
            raise InvalidRequestError(f"'{name}' is not supported by provider 'gemini'.", param=name)
        handler(request, value)
    if "messages" not in body:
        raise InvalidRequestError("'messages' is required.", param="messages")
    return request.json()


class _Request:
    def __init__(self) -> None:
        self.contents: list[dict[str, Any]] = []
        self.system: list[dict[str, Any]] = []
        self.declarations: list[dict[str, Any]] = []
        self.tool_config: dict[str, Any] | None = None
        self.generation: dict[str, Any] = {}

    def json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"contents": self.contents}
        if self.system:
            out["systemInstruction"] = {"parts": self.system}
        if self.declarations:
            out["tools"] = [{"functionDeclarations": self.declarations}]
        if self.tool_config is not None:
            out["toolConfig"] = {"functionCallingConfig": self.tool_config}
        if self.generation:
            out["generationConfig"] = self.generation
        return out

    # --- messages ---------------------------------------------------------------------------

    def messages(self, messages: Any) -> None:
        if not isinstance(messages, list) or not messages:
            raise InvalidRequestError("'messages' must be a non-empty list.", param="messages")
        names: dict[str, str] = {}  # tool call id -> function name, for the tool results that follow
        for i, message in enumerate(messages):
            param = f"messages[{i}]"
            if not isinstance(message, dict):
                raise InvalidRequestError(f"'{param}' must be an object.", param=param)
            role = message.get("role")
            if role in ("system", "developer"):
                self.system += [{"text": t} for t in _texts(message.get("content"), f"{param}.content") if t]
            elif role == "user":
                self._turn("user", _user_parts(message.get("content"), f"{param}.content"))
            elif role == "assistant":
                self._turn("model", _assistant_parts(message, param, names))
            elif role == "tool":
                self._tool_result(message, param, names)
            else:
                raise InvalidRequestError(f"Messages with role {role!r} are not supported.", param=f"{param}.role")

    def _turn(self, role: str, parts: list[dict[str, Any]]) -> None:
        if parts:  # Gemini rejects a content without parts (an assistant turn that said nothing)
            self.contents.append({"role": role, "parts": parts})

    def _tool_result(self, message: dict[str, Any], param: str, names: Mapping[str, str]) -> None:
        client_id = message.get("tool_call_id")
        if not isinstance(client_id, str) or client_id not in names:
            raise InvalidRequestError(
                f"'{param}.tool_call_id' must name a tool call of an earlier assistant message.",
                param=f"{param}.tool_call_id",
            )
        call_id, _ = _split_signature(client_id)
        output = "".join(_texts(message.get("content"), f"{param}.content"))
        # "output" is the key Gemini documents for a function's result (FunctionResponse.response).
        part = {"functionResponse": {"id": call_id, "name": names[client_id], "response": {"output": output}}}
        previous = self.contents[-1] if self.contents else None
        # The results of one turn's parallel calls go back together, in one user turn.
        if previous and previous["role"] == "user" and all("functionResponse" in p for p in previous["parts"]):
            previous["parts"].append(part)
        else:
            self.contents.append({"role": "user", "parts": [part]})

    # --- tools ------------------------------------------------------------------------------

    def tools(self, tools: Any) -> None:
        if not isinstance(tools, list):
            raise InvalidRequestError("'tools' must be a list.", param="tools")
        for i, tool in enumerate(tools):
            param = f"tools[{i}]"
            function = tool.get("function") if isinstance(tool, dict) else None
            if not isinstance(tool, dict) or tool.get("type") != "function" or not isinstance(function, dict):
                raise InvalidRequestError(f"'{param}': Gemini supports tools of type 'function' only.", param=param)
            declaration: dict[str, Any] = {"name": function.get("name")}
            if function.get("description"):
                declaration["description"] = function["description"]
            parameters = function.get("parameters")
            # Gemini rejects an OBJECT without properties: a function without arguments declares none.
            if isinstance(parameters, dict) and (parameters.get("properties") or parameters.get("type") != "object"):
                declaration["parameters"] = gemini_schema(parameters, param=f"{param}.function.parameters")
            self.declarations.append(declaration)

    def tool_choice(self, choice: Any) -> None:
        if isinstance(choice, str) and choice in _TOOL_MODES:
            self.tool_config = {"mode": _TOOL_MODES[choice]}
            return
        function = choice.get("function") if isinstance(choice, dict) else None
        if isinstance(choice, dict) and choice.get("type") == "function" and isinstance(function, dict):
            self.tool_config = {"mode": "ANY", "allowedFunctionNames": [function.get("name")]}
            return
        raise InvalidRequestError(
            "'tool_choice' must be 'none', 'auto', 'required' or a function for provider 'gemini'.",
            param="tool_choice",
        )

    # --- generation -------------------------------------------------------------------------

    def sampling(self, name: str, value: Any) -> None:
        self.generation[_GENERATION[name]] = value

    def stop(self, value: Any) -> None:
        sequences = [value] if isinstance(value, str) else value
        if not isinstance(sequences, list) or not all(isinstance(s, str) for s in sequences):
            raise InvalidRequestError("'stop' must be a string or a list of strings.", param="stop")
        if sequences:
            self.generation["stopSequences"] = sequences

    def response_format(self, value: Any) -> None:
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "text":
            return
        if kind == "json_object":
            self.generation["responseMimeType"] = "application/json"
            return
        spec = value.get("json_schema") if isinstance(value, dict) else None
        if kind == "json_schema" and isinstance(spec, dict):
            self.generation["responseMimeType"] = "application/json"
            if spec.get("schema") is not None:
                param = "response_format.json_schema.schema"
                self.generation["responseSchema"] = gemini_schema(spec["schema"], param=param)
            return
        raise InvalidRequestError(
            "'response_format' must be of type 'text', 'json_object' or 'json_schema'.", param="response_format"
        )

    def reasoning_effort(self, value: Any) -> None:
        if value not in _THINKING_BUDGETS:
            raise InvalidRequestError(
                f"'reasoning_effort' must be one of {', '.join(_THINKING_BUDGETS)}.", param="reasoning_effort"
            )
        self.generation["thinkingConfig"] = {"thinkingBudget": _THINKING_BUDGETS[value]}


def _sampler(name: str) -> Callable[[_Request, Any], None]:
    return lambda request, value: request.sampling(name, value)


_FIELDS: dict[str, Callable[[_Request, Any], None]] = {
    "messages": _Request.messages,
    "tools": _Request.tools,
    "tool_choice": _Request.tool_choice,
    "stop": _Request.stop,
    "response_format": _Request.response_format,
    "reasoning_effort": _Request.reasoning_effort,
    **{name: _sampler(name) for name in _GENERATION},
}


# --- message content ----------------------------------------------------------------------------


def _texts(content: Any, param: str) -> list[str]:
    """A text-only content: a string, or text parts (``refusal`` parts count as text)."""
    if isinstance(content, str):
        return [content]
    if content is None:
        return []
    if isinstance(content, list):
        texts = []
        for i, part in enumerate(content):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("text", "refusal"):
                raise InvalidRequestError(f"'{param}[{i}]': only text parts are allowed here.", param=f"{param}[{i}]")
            texts.append(str(part.get(kind) or ""))
        return texts
    raise InvalidRequestError(f"'{param}' must be a string or a list of parts.", param=param)


def _user_parts(content: Any, param: str) -> list[dict[str, Any]]:
    if isinstance(content, str):
        return [{"text": content}]
    if not isinstance(content, list):
        raise InvalidRequestError(f"'{param}' must be a string or a list of parts.", param=param)
    parts = []
    for i, part in enumerate(content):
        where = f"{param}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        converter = _PARTS.get(kind) if isinstance(kind, str) else None
        if converter is None:
            raise InvalidRequestError(f"'{where}': content parts of type {kind!r} are not supported.", param=where)
        parts.append(converter(part, where))
    return parts


def _text_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    return {"text": str(part.get("text") or "")}


def _image_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str):
        raise InvalidRequestError(f"'{param}.image_url.url' must be a string.", param=f"{param}.image_url.url")
    if url.startswith("data:"):
        return _inline_data(url, f"{param}.image_url.url")
    address = urlsplit(url)
    extension = address.path[address.path.rfind(".") :].lower() if "." in address.path else ""
    if address.scheme in ("http", "https") and extension in _IMAGE_TYPES:
        return {"fileData": {"mimeType": _IMAGE_TYPES[extension], "fileUri": url}}
    raise InvalidRequestError(
        f"'{param}.image_url.url': Gemini needs the image's type, which this URL does not show "
        f"(supported: {', '.join(sorted(_IMAGE_TYPES))}); send the image as a base64 data URL instead.",
        param=f"{param}.image_url.url",
    )


def _audio_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    audio = part.get("input_audio")
    audio = audio if isinstance(audio, dict) else {}
    mime = _AUDIO_TYPES.get(str(audio.get("format")))
    if mime is None or not isinstance(audio.get("data"), str):
        raise InvalidRequestError(
            f"'{param}.input_audio' needs base64 'data' and a 'format' of wav or mp3.", param=f"{param}.input_audio"
        )
    return {"inlineData": {"mimeType": mime, "data": audio["data"]}}


def _file_part(part: dict[str, Any], param: str) -> dict[str, Any]:
    file = part.get("file")
    data = file.get("file_data") if isinstance(file, dict) else None
    if not isinstance(data, str):
        raise InvalidRequestError(
            f"'{param}.file': Gemini needs the file's contents as a data URL in 'file_data' (file ids are OpenAI's).",
            param=f"{param}.file",
        )
    return _inline_data(data, f"{param}.file.file_data")


_PARTS: dict[str, Callable[[dict[str, Any], str], dict[str, Any]]] = {
    "text": _text_part,
    "image_url": _image_part,
    "input_audio": _audio_part,
    "file": _file_part,
}


def _inline_data(data_url: str, param: str) -> dict[str, Any]:
    """``data:<type>;base64,<data>`` as a Gemini ``Blob`` (base64 stays base64: it is what Gemini takes)."""
    header, comma, data = data_url.partition(",")
    mime = header.removeprefix("data:").removesuffix(";base64")
    if not comma or not header.endswith(";base64") or not mime or not data:
        raise InvalidRequestError(f"'{param}' must be a base64 data URL (data:<type>;base64,...).", param=param)
    return {"inlineData": {"mimeType": mime, "data": data}}


def _assistant_parts(message: dict[str, Any], param: str, names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [{"text": t} for t in _texts(message.get("content"), f"{param}.content") if t]
    calls = message.get("tool_calls") or []
    if not isinstance(calls, list):
        raise InvalidRequestError(f"'{param}.tool_calls' must be a list.", param=f"{param}.tool_calls")
    for j, call in enumerate(calls):
        where = f"{param}.tool_calls[{j}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(call, dict) or not isinstance(function, dict) or not isinstance(call.get("id"), str):
            raise InvalidRequestError(f"'{where}' must have an 'id' and a 'function'.", param=where)
        try:
            arguments = orjson.loads(function.get("arguments") or "{}")
        except orjson.JSONDecodeError:
            arguments = None
        if not isinstance(arguments, dict):
            raise InvalidRequestError(
                f"'{where}.function.arguments' must be a JSON object.", param=f"{where}.function.arguments"
            )
        call_id, signature = _split_signature(call["id"])
        names[call["id"]] = str(function.get("name"))
        part: dict[str, Any] = {"functionCall": {"id": call_id, "name": function.get("name"), "args": arguments}}
        if signature:
            part["thoughtSignature"] = signature
        elif j == 0:  # only a turn's first call is checked (and only by Gemini 3)
            part["thoughtSignature"] = FOREIGN_THOUGHT_SIGNATURE
        parts.append(part)
    return parts
