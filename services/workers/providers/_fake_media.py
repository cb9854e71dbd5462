"""The fake provider's embeddings and images: deterministic, computed from the request's text, in
OpenAI's shapes (the embeddings list through ``openai_format.embeddings_response``, so ``float`` and
``base64`` come out exactly as OpenAI sends them)."""

from __future__ import annotations

import base64
import hashlib
import math
import struct
import time
import zlib
from collections.abc import Mapping
from typing import Any

import orjson

from common.errors import InvalidRequestError
from common.providers.base import ProviderCall, ProviderResponse, Usage
from workers.openai_format import embeddings_response
from workers.usage import estimate_prompt_tokens, estimate_tokens

MAX_DIMENSIONS = 4096  # above any real embedding model's (text-embedding-3-large: 3072)
# What one tiny fake image "costs" in output tokens, so image usage rows are not empty.
IMAGE_TOKENS = 64
IMAGE_SIDE = 8  # pixels: a fake image only has to be a valid one


# --- embeddings ---------------------------------------------------------------------------------


def embedding(text: str, dimensions: int) -> list[float]:
    """A unit-length vector that depends only on ``text`` and ``dimensions``. Values are float32 (as
    OpenAI's are), so the ``base64`` answer decodes to exactly the ``float`` answer's numbers."""
    raw = hashlib.shake_256(text.encode()).digest(4 * dimensions)
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dimensions}I", raw)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(v / norm for v in values))))


def _embedding_texts(value: Any) -> tuple[list[str], int | None]:
    """The texts to embed, and the token count when the input was token ids (which embed as their text)."""
    if isinstance(value, str):
        return [value], None
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value), None
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
        return [" ".join(map(str, value))], len(value)
    if (
        isinstance(value, list)
        and value
        and all(isinstance(v, list) and all(isinstance(t, int) for t in v) for v in value)
    ):
        return [" ".join(map(str, v)) for v in value], sum(len(v) for v in value)
    raise InvalidRequestError(
        "'input' must be a string, a list of strings, or token ids (a list of integers or of lists).",
        param="input",
    )


def embeddings(call: ProviderCall, default_dimensions: int) -> ProviderResponse:
    dimensions = call.body.get("dimensions")
    if dimensions is None:
        dimensions = default_dimensions
    if not isinstance(dimensions, int) or not 0 < dimensions <= MAX_DIMENSIONS:
        raise InvalidRequestError(f"'dimensions' must be an integer from 1 to {MAX_DIMENSIONS}.", param="dimensions")
    texts, token_count = _embedding_texts(call.body.get("input"))
    usage = Usage(prompt_tokens=token_count if token_count is not None else estimate_prompt_tokens(call.body))
    return embeddings_response(call, [embedding(text, dimensions) for text in texts], usage)


# --- images -------------------------------------------------------------------------------------


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(seed: bytes) -> bytes:
    """A tiny valid RGB PNG whose pixels depend only on ``seed``."""
    pixels = hashlib.shake_256(seed).digest(IMAGE_SIDE * IMAGE_SIDE * 3)
    row = IMAGE_SIDE * 3
    scanlines = b"".join(b"\x00" + pixels[y * row : (y + 1) * row] for y in range(IMAGE_SIDE))  # filter 0
    header = struct.pack(">IIBBBBB", IMAGE_SIDE, IMAGE_SIDE, 8, 2, 0, 0, 0)  # 8-bit RGB, no interlace
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(scanlines))
        + _png_chunk(b"IEND", b"")
    )


def _image_item(image: bytes, response_format: Any) -> Mapping[str, str]:
    encoded = base64.b64encode(image).decode()
    if response_format == "b64_json":
        return {"b64_json": encoded}
    # ``url`` (OpenAI's default for DALL-E): the fake has nowhere to host an image, and a data: URL
    # (RFC 2397) is a real URL that browsers and <img> tags open as they are, carrying the same bytes
    # and needing no network, so a client that never asks for b64_json still gets a usable image.
    return {"url": f"data:image/png;base64,{encoded}"}


def images(call: ProviderCall) -> ProviderResponse:
    prompt = call.body.get("prompt")
    if not isinstance(prompt, str) or not prompt:
        raise InvalidRequestError("'prompt' must be a non-empty string.", param="prompt")
    n = call.body.get("n") or 1
    if not isinstance(n, int) or n < 1:
        raise InvalidRequestError("'n' must be a positive integer.", param="n")
    response_format = call.body.get("response_format")
    data = [_image_item(png(f"{prompt}\x00{i}".encode()), response_format) for i in range(n)]
    prompt_tokens = estimate_tokens(len(prompt))
    usage = Usage(prompt_tokens=prompt_tokens, completion_tokens=IMAGE_TOKENS * n)
    # Usage in the GPT image models' shape (ImagesResponse.usage).
    body = {
        "created": int(time.time()),
        "data": data,
        "usage": {
            "input_tokens": usage.prompt_tokens,
            "output_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
            "input_tokens_details": {"text_tokens": usage.prompt_tokens, "image_tokens": 0},
        },
    }
    return ProviderResponse(orjson.dumps(body), usage)
