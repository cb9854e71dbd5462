"""The provider conformance suite: every adapter in ``workers.providers.REGISTRY`` that talks to a
network upstream is run through the same cases against a real local HTTP server speaking that
provider's wire format.

Adding a provider (say ``anthropic``) to the suite:

1. Register the adapter: ``REGISTRY["anthropic"] = AnthropicAdapter`` in ``workers/providers/__init__.py``.
   From then on this suite runs it and fails until steps 2-3 are done.
2. Write ``tests/contract/upstreams/anthropic.py`` defining ``WIRE``, an object with the methods of
   ``tests.contract.server.Wire``: ``base_path`` (what follows ``http://127.0.0.1:<port>`` in the
   adapter's base URL), ``stream_media_type``, ``read`` (pull the provider-neutral facts — API key,
   model, stream flag, tool names, tool results — out of a received request), ``answer`` /
   ``stream`` (a fixture as the provider sends it: JSON body, or the list of wire events in order
   with the provider's terminator), and ``error`` (the provider's error body for a status).
   ``upstreams/openai.py`` is the example.
3. Record the story of ``tests/contract/story.py`` in the provider's format under
   ``tests/contract/fixtures/anthropic/``: ``chat``, ``chat.stream``, ``tool_call``,
   ``tool_call.stream``, ``tool_result`` (same texts, tool call and usage numbers as ``story.py``),
   plus whatever ``WIRE.error`` needs. Streamed fixtures must cut the reply into ``REPLY_PIECES``.
   A provider without tool calling, cached-token counts, a way to forward unknown fields or a model
   name in its requests says so in ``WIRE.lacks`` (``server.FEATURES``); the cases then expect a
   refusal, a zero or no name instead (and a provider without tools needs no tool fixtures).

Nothing else: the cases in ``test_provider_conformance.py`` are provider-neutral. Providers that need
no network (``fake``) are listed in ``upstreams.OFFLINE_PROVIDERS`` and covered by unit tests instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from common.providers.base import ProviderAdapter
from tests.contract.server import UpstreamServer, lacks_of
from tests.contract.upstreams import NETWORK_PROVIDERS, wire_of
from workers.providers import REGISTRY


@pytest.fixture(scope="session", params=NETWORK_PROVIDERS)
def provider_server(request: pytest.FixtureRequest) -> Iterator[tuple[str, UpstreamServer]]:
    with UpstreamServer(wire_of(request.param)) as server:
        yield request.param, server


@pytest.fixture
def provider(provider_server: tuple[str, UpstreamServer]) -> str:
    return provider_server[0]


@pytest.fixture
def lacks(provider_server: tuple[str, UpstreamServer]) -> frozenset[str]:
    """What the provider's API does not have (``server.FEATURES``)."""
    return lacks_of(provider_server[1].wire)


@pytest.fixture
def upstream(provider_server: tuple[str, UpstreamServer]) -> UpstreamServer:
    """The provider's fake upstream, answering the plain reply until a test sets another scenario."""
    server = provider_server[1]
    server.reset()
    return server


@pytest.fixture
async def adapter(provider: str, upstream: UpstreamServer) -> AsyncIterator[ProviderAdapter]:
    instance = REGISTRY[provider](upstream.base_url)
    yield instance
    upstream.release()  # a test that failed while the upstream held a stream must not stall teardown
    await instance.aclose()
