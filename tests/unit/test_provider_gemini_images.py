"""OpenAI image generation bodies -> Gemini ``generateContent`` image requests, and the answers back.
Requests are compared with what the official google-genai SDK builds for the same settings, and
answers are validated against its ``GenerateContentResponse`` type."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from google.genai import _api_client, models, types

from common.errors import InvalidRequestError, UpstreamBadRequestError, UpstreamError
from common.providers.base import Operation, ProviderCall, Usage
from workers.providers._gemini_images import ASPECT_RATIOS, generate_images, image_of, image_request

PROMPT = "A small red square on a white background"
PNG_B64 = base64.b64encode(b"\x89PNG\r\n\x1a\nnot really a png").decode()


def sdk_request(prompt: str, aspect_ratio: str | None) -> dict[str, Any]:
    """What the SDK's ``generate_content`` sends on the Gemini API for an image-only answer."""
    config = types.GenerateContentConfig(
        response_modalities=["IMAGE"],
        image_config=types.ImageConfig(aspect_ratio=aspect_ratio) if aspect_ratio else None,
    )
    params = types._GenerateContentParameters(model="gemini-2.5-flash-image", contents=prompt, config=config)
    client = _api_client.BaseApiClient(api_key="unused")
    built = models._GenerateContentParameters_to_mldev(client, params.model_dump(exclude_none=True))
    built.pop("_url")
    return built


@pytest.mark.parametrize(
    ("size", "ratio"),
    [
        (None, None),
        ("auto", None),
        ("1024x1024", "1:1"),
        ("256x256", "1:1"),
        ("1792x1024", "16:9"),
        ("1024x1792", "9:16"),
        ("1536x1024", "3:2"),
        ("1024x1536", "2:3"),
        ("1536x864", "16:9"),
    ],
)
def test_the_request_is_the_sdks_with_the_size_as_an_aspect_ratio(size: str | None, ratio: str | None) -> None:
    body = {"model": "public", "prompt": PROMPT, "size": size, "n": 1, "response_format": "b64_json", "user": "u-1"}
    assert image_request(body) == sdk_request(PROMPT, ratio)


def test_every_aspect_ratio_is_one_the_sdk_documents_or_the_guide_adds() -> None:
    documented = types.ImageConfig.model_fields["aspect_ratio"].description or ""
    assert {r for r in ASPECT_RATIOS if f'"{r}"' not in documented} <= {"4:5", "5:4"}


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"size": "1000x300"}, "size"),  # 10:3
        ({"size": "large"}, "size"),
        ({"style": "vivid"}, "style"),
        ({"quality": "hd"}, "quality"),
        ({"quality": "high"}, "quality"),
        ({"background": "transparent"}, "background"),
        ({"moderation": "low"}, "moderation"),
        ({"output_format": "webp"}, "output_format"),
        ({"output_format": "png"}, "output_format"),
        ({"output_compression": 50}, "output_compression"),
        ({"partial_images": 2}, "partial_images"),
        ({"x_vendor_seed": 7}, "x_vendor_seed"),
    ],
)
def test_what_the_gemini_api_cannot_honour_is_refused_by_name(extra: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        image_request({"model": "public", "prompt": PROMPT, **extra})
    assert caught.value.param == param and param in caught.value.message


@pytest.mark.parametrize(
    "extra", [{"quality": "auto"}, {"quality": "standard"}, {"background": "opaque"}, {"moderation": "auto"}]
)
def test_defaults_that_change_nothing_are_accepted(extra: dict[str, Any]) -> None:
    assert image_request({"model": "public", "prompt": PROMPT, **extra}) == sdk_request(PROMPT, None)


def answer(*parts: dict[str, Any], finish: str = "STOP", **extra: Any) -> dict[str, Any]:
    body = {
        "candidates": [{"content": {"role": "model", "parts": list(parts)}, "finishReason": finish}],
        "usageMetadata": {"promptTokenCount": 14, "candidatesTokenCount": 1290, "totalTokenCount": 1304},
        **extra,
    }
    types.GenerateContentResponse.model_validate(body)  # a real answer's shape
    return body


def test_the_first_inline_image_of_the_answer_is_the_image() -> None:
    body = answer({"text": "Here it is:"}, {"inlineData": {"mimeType": "image/jpeg", "data": PNG_B64}})
    assert image_of(body) == ("image/jpeg", PNG_B64)


@pytest.mark.parametrize(
    "body",
    [
        answer(finish="IMAGE_SAFETY"),
        answer(finish="PROHIBITED_CONTENT"),
        {"promptFeedback": {"blockReason": "SAFETY"}},
    ],
    ids=["image-safety", "prohibited", "prompt-blocked"],
)
def test_a_filtered_image_is_a_content_policy_violation(body: dict[str, Any]) -> None:
    with pytest.raises(UpstreamBadRequestError) as caught:
        image_of(body)
    assert caught.value.code == "content_policy_violation"
    assert caught.value.status == 400 and not caught.value.retryable


def test_a_text_only_answer_is_an_upstream_error_quoting_the_text() -> None:
    with pytest.raises(UpstreamError) as caught:
        image_of(answer({"text": "I cannot draw that today."}))
    assert type(caught.value) is UpstreamError and "I cannot draw that today." in caught.value.message


def image_call(**body: Any) -> ProviderCall:
    return ProviderCall(
        request_id="req-img",
        operation=Operation.IMAGES,
        body={"model": "public", "prompt": PROMPT, **body},
        upstream_model="gemini-2.5-flash-image",
        api_key="k",
        timeout_s=5,
    )


async def test_n_images_are_n_requests_at_once_with_their_usage_added() -> None:
    sent: list[tuple[str, dict[str, Any]]] = []
    running = 0
    most = 0

    async def post(path: str, request: dict[str, Any]) -> dict[str, Any]:
        nonlocal running, most
        sent.append((path, request))
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.01)
        running -= 1
        return answer({"inlineData": {"mimeType": "image/png", "data": PNG_B64}})

    response = await generate_images(image_call(n=3, response_format="b64_json"), post, "models/m:generateContent")

    assert len(sent) == 3 and most == 3
    assert all(path == "models/m:generateContent" and request == sent[0][1] for path, request in sent)
    body = json.loads(response.body)
    assert body["data"] == [{"b64_json": PNG_B64}] * 3
    assert response.usage == Usage(prompt_tokens=42, completion_tokens=3870)
    assert body["usage"]["input_tokens"] == 42 and body["usage"]["output_tokens"] == 3870


async def test_urls_are_data_urls_of_the_returned_bytes() -> None:
    async def post(path: str, request: dict[str, Any]) -> dict[str, Any]:
        return answer({"inlineData": {"mimeType": "image/png", "data": PNG_B64}})

    for call in (image_call(), image_call(response_format="url")):  # url is OpenAI's default
        body = json.loads((await generate_images(call, post, "p")).body)
        assert body["data"] == [{"url": f"data:image/png;base64,{PNG_B64}"}]


async def test_one_failed_image_cancels_the_others() -> None:
    cancelled = 0

    async def post(path: str, request: dict[str, Any]) -> dict[str, Any]:
        nonlocal cancelled
        if not hasattr(post, "failed"):
            post.failed = True  # type: ignore[attr-defined]
            raise UpstreamError("boom")
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled += 1
            raise
        return {}

    with pytest.raises(UpstreamError, match="boom"):
        await generate_images(image_call(n=3), post, "p")
    await asyncio.sleep(0)  # let the cancellations land
    assert cancelled == 2
