"""The prompt's size in tokens, estimated before routing: what tpm limits count and what a key's
reservation holds until the request settles.

Four bytes of the JSON body a token (``BYTES_PER_TOKEN``) errs high for text (the JSON around it
counts too), which is the safe side for a limit. Not so for an image sent inline: a 20 MB base64
data URL is 27 MB of body, "6.7M tokens", while providers bill an image by its size on screen, not
its bytes (OpenAI: by 512-px tiles for some models, by 32-px patches up to a cap for others; a few
hundred to a few thousand tokens). So each inline image's bytes are left out and ``IMAGE_TOKENS``
counted for it instead, chosen above what one image is billed, so a reservation still holds it.
Only chat messages' content parts are walked: the body is already parsed, and a request without
parts costs one attribute read.
"""

from __future__ import annotations

from typing import Any

BYTES_PER_TOKEN = 4
# Above the most one image is billed by the vision models we serve (2048x768 px at high detail on a
# tile-based model is about 1,450 tokens; patch-based models cap an image at 1,536 patches).
IMAGE_TOKENS = 2500


def estimate_prompt_tokens(parsed: Any, body: bytes) -> int:
    inline = images = 0
    for message in getattr(parsed, "messages", None) or ():
        content = getattr(message, "content", None)
        if not isinstance(content, list):
            continue
        for part in content:
            url = _image_url(part)
            if url is not None:
                images += 1
                inline += len(url)
    return (len(body) - inline) // BYTES_PER_TOKEN + images * IMAGE_TOKENS


def _image_url(part: Any) -> str | None:
    """The URL of an image content part (``{"type": "image_url", "image_url": {"url": ...}}``)."""
    if not isinstance(part, dict) or part.get("type") != "image_url":
        return None
    image = part.get("image_url")
    url = image.get("url") if isinstance(image, dict) else image
    return url if isinstance(url, str) else None
