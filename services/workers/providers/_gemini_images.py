"""Image generation on the Gemini API with its native image models (``gemini-2.5-flash-image``,
``gemini-3-pro-image-preview``; the deployment's ``upstream_model``): OpenAI's
``/v1/images/generations`` as ``POST /v1beta/models/{model}:generateContent`` asking for image output.

Wire format, from the Gemini API's image-generation guide (ai.google.dev/gemini-api/docs/image-generation)
and the official google-genai SDK (``google/genai/types.py``: ``GenerateContentConfig.response_modalities``,
``ImageConfig``, ``Part.inline_data`` / ``Blob``; ``google/genai/models.py``: ``_ImageConfig_to_mldev``):

- request ``{"contents": [{"role": "user", "parts": [{"text": <prompt>}]}], "generationConfig":
  {"responseModalities": ["IMAGE"], "imageConfig": {"aspectRatio"}}}``; the Gemini API takes no output
  MIME type, compression or person-generation setting (the SDK refuses them outside Vertex AI);
- answer: a ``GenerateContentResponse`` whose candidate parts hold the image as ``inlineData:
  {mimeType, data}`` (base64), with ``usageMetadata`` (images are billed as output tokens); an image
  the filters stopped ends with a ``finishReason`` such as ``IMAGE_SAFETY`` and no image part, a
  blocked prompt has ``promptFeedback.blockReason``.

Imagen's ``:predict`` is not used: Google deprecated Imagen on the Gemini API in favour of these
models, and the google-genai SDK (3.x, the one in this venv) no longer builds that request for it.

OpenAI's parameters: ``size`` -> the ``aspectRatio`` of (nearly) the same shape (the model picks the
pixel count, about one megapixel by default); ``n`` -> that many requests at once (one image each), their usage
added up; ``user`` has no effect on the image and is not sent. Values the Gemini API cannot honour
(another aspect ratio, an output format or compression, a transparent background, DALL-E's
``style``, ``hd`` or GPT image qualities, lowered moderation, partial images) and fields it has no
counterpart for are refused with a 400 naming them. The answer holds image bytes only: ``b64_json``
gets them as they are; ``url`` (OpenAI's default) gets a ``data:`` URL holding them, since there is
no hosted copy to point at.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from common.errors import InvalidRequestError, UpstreamBadRequestError, UpstreamError
from common.providers.base import ProviderCall, ProviderResponse, Usage
from workers.providers._gemini_response import candidates_of, prompt_blocked, usage_of

PROVIDER = "gemini"
# The guide's aspect ratios for image output.
ASPECT_RATIOS = frozenset({"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"})
# How far (in log of width/height) a size may be from the ratio it is served as: 3%, under half the
# gap between any two neighbouring ratios (5:4 and 4:3 are 6.5% apart), so the choice is unambiguous.
RATIO_TOLERANCE = 0.03
# finishReasons of a candidate whose image was withheld by the filters (google-genai ``FinishReason``).
_FILTERED = frozenset(
    {"SAFETY", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION"}
)

# OpenAI fields whose value is accepted only when it asks for nothing the Gemini API would do differently.
_DEFAULT_ONLY: Mapping[str, Callable[[Any], bool]] = {
    "quality": lambda v: v in (None, "auto", "standard"),
    "style": lambda v: v is None,
    "background": lambda v: v in (None, "auto", "opaque"),
    "moderation": lambda v: v in (None, "auto"),
    "output_format": lambda v: v is None,
    "output_compression": lambda v: v is None,
    "stream": lambda v: v in (None, False),
    "partial_images": lambda v: v in (None, 0),
}
_TRANSLATED = frozenset({"model", "prompt", "n", "size", "response_format"})
_NOT_SENT = frozenset({"user"})

Post = Callable[[str, dict[str, Any]], Awaitable[dict[str, Any]]]


def _refuse(param: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(f"'{param}' {why} with provider '{PROVIDER}'.", param=param)


def aspect_ratio(size: Any) -> str | None:
    """The aspect ratio of an OpenAI ``size`` (``WIDTHxHEIGHT``): the supported one within
    ``RATIO_TOLERANCE`` of its shape (DALL-E 3's 1792x1024 is 7:4, served as 16:9); None for ``auto``
    or unset."""
    if size in (None, "auto"):
        return None
    width, _, height = str(size).partition("x")
    if not (width.isdigit() and height.isdigit() and int(width) > 0 and int(height) > 0):
        raise _refuse("size", "must be WIDTHxHEIGHT or auto")
    shape = math.log(int(width) / int(height))
    nearest = min(ASPECT_RATIOS, key=lambda r: abs(_log_ratio(r) - shape))
    if abs(_log_ratio(nearest) - shape) > RATIO_TOLERANCE:
        raise _refuse("size", f"has an aspect ratio none of {', '.join(sorted(ASPECT_RATIOS))} is near")
    return nearest


def _log_ratio(ratio: str) -> float:
    width, height = ratio.split(":")
    return math.log(int(width) / int(height))


def image_request(body: Mapping[str, Any]) -> dict[str, Any]:
    """The ``generateContent`` body for one image of an OpenAI image generation body."""
    for name, value in body.items():
        accepted = _DEFAULT_ONLY.get(name)
        if accepted is not None:
            if not accepted(value):
                raise _refuse(name, f"cannot be {value!r}")
        elif name not in _TRANSLATED and name not in _NOT_SENT and value is not None:
            raise _refuse(name, "is not supported")
    prompt = body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise InvalidRequestError("'prompt' must be a non-empty string.", param="prompt")
    config: dict[str, Any] = {"responseModalities": ["IMAGE"]}
    if (ratio := aspect_ratio(body.get("size"))) is not None:
        config["imageConfig"] = {"aspectRatio": ratio}
    return {"contents": [{"role": "user", "parts": [{"text": prompt}]}], "generationConfig": config}


def image_of(answer: dict[str, Any]) -> tuple[str, str]:
    """(MIME type, base64 data) of the first image in an answer."""
    reasons: list[str] = []
    texts: list[str] = []
    for _, candidate in candidates_of(answer):
        content = candidate.get("content")
        for part in content.get("parts") or () if isinstance(content, dict) else ():
            inline = part.get("inlineData") if isinstance(part, dict) else None
            if isinstance(inline, dict) and isinstance(inline.get("data"), str):
                return str(inline.get("mimeType") or "image/png"), inline["data"]
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        if candidate.get("finishReason") in _FILTERED:
            reasons.append(str(candidate["finishReason"]))
    if prompt_blocked(answer) or reasons:
        blocked = answer.get("promptFeedback", {}).get("blockReason") if prompt_blocked(answer) else None
        raise UpstreamBadRequestError(
            f"The upstream provider ({PROVIDER}) generated no image: blocked by its safety filters "
            f"({', '.join(filter(None, [blocked, *reasons]))}).",
            code="content_policy_violation",
            upstream_status=200,
        )
    said = " ".join(texts).strip()
    raise UpstreamError(
        f"The upstream provider ({PROVIDER}) answered without an image" + (f": {said[:300]}" if said else ".")
    )


async def generate_images(call: ProviderCall, post: Post, path: str) -> ProviderResponse:
    """OpenAI's ``ImagesResponse`` for ``call``: ``n`` requests to ``path`` at once, an image from each."""
    request = image_request(call.body)
    n = call.body.get("n") or 1
    if not isinstance(n, int) or n < 1:
        raise InvalidRequestError("'n' must be a positive integer.", param="n")
    tasks = [asyncio.ensure_future(post(path, request)) for _ in range(n)]
    try:
        answers = await asyncio.gather(*tasks)
    except BaseException:  # one failed (or the call was cancelled): the others are not needed
        for task in tasks:
            task.cancel()
        raise
    images = [image_of(answer) for answer in answers]
    usage = Usage()
    for answer in answers:
        reported = usage_of(answer.get("usageMetadata")) or Usage()
        usage.prompt_tokens += reported.prompt_tokens
        usage.completion_tokens += reported.completion_tokens
        usage.cached_tokens += reported.cached_tokens
    as_url = call.body.get("response_format") != "b64_json"
    data = [{"url": f"data:{mime};base64,{b64}"} if as_url else {"b64_json": b64} for mime, b64 in images]
    body = {
        "created": int(time.time()),
        "data": data,
        # In the GPT image models' usage shape, the one OpenAI's images endpoint reports.
        "usage": {
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "input_tokens_details": {"text_tokens": usage.prompt_tokens, "image_tokens": 0},
        },
    }
    return ProviderResponse(orjson.dumps(body), usage)
