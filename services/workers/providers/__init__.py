"""Provider adapters, one file each, and the registry the worker looks ``Target.provider`` up in.

Adding a provider: a module here implementing ``common.providers.base.ProviderAdapter``, an entry
below, and a fake upstream + fixtures for the contract suite (see ``tests/contract/conftest.py``).
"""

from __future__ import annotations

from common.providers.base import ProviderAdapter
from workers.providers.anthropic import AnthropicAdapter
from workers.providers.cohere import CohereAdapter
from workers.providers.fake import FakeAdapter
from workers.providers.gemini import GeminiAdapter
from workers.providers.mistral import MistralAdapter
from workers.providers.ollama import OllamaAdapter
from workers.providers.openai import OpenAIAdapter
from workers.providers.tgi import TGIAdapter

REGISTRY: dict[str, type[ProviderAdapter]] = {
    "openai": OpenAIAdapter,
    "fake": FakeAdapter,
    "cohere": CohereAdapter,
    "mistral": MistralAdapter,
    "anthropic": AnthropicAdapter,
    "ollama": OllamaAdapter,
    "tgi": TGIAdapter,
    "gemini": GeminiAdapter,
}
