"""Every adapter a catalogue family can map to, against its fake upstream served on the catalogue's host.

The deployment is the one the router makes of a catalogue entry (``catalog_models`` + ``build_target``),
called as a worker calls it (the adapter for the target's provider and base URL, the target's options,
the token as the key). Whatever the adapter's own paths and credential header, the upstream must see
the request on exactly the entry's ``handle`` and with exactly ``Authorization: OAuth <token>``.
"""

from __future__ import annotations

from typing import Any

import pytest

from common.config import parse_config
from common.errors import InvalidRequestError
from common.providers.base import Operation, ProviderAdapter, ProviderCall
from router.remote_catalog import catalog_models
from router.selection import build_target
from tests.contract.server import UpstreamServer, Wire
from tests.contract.upstreams import NETWORK_PROVIDERS, wire_of
from tests.integration.catalog_server import entry
from workers.providers import REGISTRY

pytestmark = pytest.mark.integration

TOKEN_ENV, TOKEN = "MR_TEST_CATALOG_ADAPTERS_TOKEN", "oauth-tok-3f9a"
MODEL = "cat-model-1"
HELLO = {"model": MODEL, "messages": [{"role": "user", "content": "What is the capital of France?"}]}
# Each family's chat handle, as a catalogue names it: the full path of the model's endpoint, under a
# prefix of the catalogue's own (so a path the adapter built from its own paths cannot pass).
HANDLES = {
    "openai": "/cat/openai/v1/chat/completions",
    "mistral": "/cat/mistral/v1/chat/completions",
    "anthropic": "/cat/anthropic/v1/messages",
    "cohere": "/cat/cohere/v2/chat",
    "ollama": "/cat/ollama/api/chat",
    "tgi": "/cat/tgi/generate",
    "gemini": f"/cat/gemini/v1beta/models/{MODEL}:generateContent",
}
# Where the stream goes when the API streams on an endpoint of its own, beside the handle's.
STREAMED = {
    "tgi": "/cat/tgi/generate_stream",
    "gemini": f"/cat/gemini/v1beta/models/{MODEL}:streamGenerateContent",
}
# Headers some adapters carry the key in outside a catalogue: a catalogue model must carry none.
OTHER_CREDENTIAL_HEADERS = frozenset({"x-api-key", "x-goog-api-key", "api-key"})


class CatalogueHost(UpstreamServer):
    """A provider's fake upstream under a path prefix, as a catalogue's host serves many models: records
    each request's path as it arrived, and lets the wire read the request without the prefix."""

    def __init__(self, wire: Wire, prefix: str) -> None:
        super().__init__(wire)
        self.prefix = prefix
        self.paths: list[str] = []

    async def _app(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope["path"]
        self._update(lambda: self.paths.append(path))
        await super()._app({**scope, "path": path.removeprefix(self.prefix)}, receive, send)


def catalogue_call(
    host: CatalogueHost, provider: str, operation: str, body: dict[str, Any], *, stream: bool = False, **extra: Any
) -> tuple[ProviderAdapter, ProviderCall]:
    config = parse_config(
        f"""
providers:
  cat:
    catalog: {{url: "http://127.0.0.1:{host.port}/catalogue/models.json", token_env: {TOKEN_ENV}, families: {{fam: {provider}}}}}
"""
    )
    cat = config.providers["cat"]
    assert cat.catalog is not None
    models = catalog_models("cat", cat, cat.catalog, [entry(MODEL, "fam", HANDLES[provider], **extra)])
    assert models.skipped == ()
    [(deployment, resolved)] = models.deployments
    target = build_target(deployment, resolved)
    assert (target.provider, target.api_key_env) == (provider, TOKEN_ENV)
    adapter = REGISTRY[target.provider](target.base_url)
    call = ProviderCall(
        request_id="req-cat-1",
        operation=operation,
        body=body,
        upstream_model=target.upstream_model,
        api_key=TOKEN,  # what the worker reads from TOKEN_ENV
        timeout_s=10,
        stream=stream,
        options=dict(target.options),
    )
    return adapter, call


async def run(adapter: ProviderAdapter, call: ProviderCall) -> None:
    try:
        if call.stream:
            assert [chunk async for chunk in adapter.stream(call)]
        else:
            await adapter.send(call)
    finally:
        await adapter.aclose()


def test_every_network_adapter_has_a_case() -> None:
    assert sorted(HANDLES) == NETWORK_PROVIDERS


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", NETWORK_PROVIDERS)
async def test_a_catalogue_chat_goes_to_exactly_its_handle(provider: str, stream: bool) -> None:
    with CatalogueHost(wire_of(provider), f"/cat/{provider}") as host:
        await run(*catalogue_call(host, provider, Operation.CHAT, HELLO, stream=stream))
    assert host.paths == [STREAMED.get(provider, HANDLES[provider]) if stream else HANDLES[provider]]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", NETWORK_PROVIDERS)
async def test_a_catalogue_chat_carries_the_oauth_header_and_no_other_credential(provider: str, stream: bool) -> None:
    with CatalogueHost(wire_of(provider), f"/cat/{provider}") as host:
        await run(*catalogue_call(host, provider, Operation.CHAT, HELLO, stream=stream))
    [received] = host.received
    assert received.headers["authorization"] == f"OAuth {TOKEN}"
    assert not OTHER_CREDENTIAL_HEADERS & set(received.headers)
    assert [name for name, value in received.headers.items() if TOKEN in value] == ["authorization"]


@pytest.mark.parametrize("provider", ["openai", "gemini"])
async def test_an_operation_the_handle_does_not_name_is_a_400_without_an_upstream_call(provider: str) -> None:
    with CatalogueHost(wire_of(provider), f"/cat/{provider}") as host:
        adapter, call = catalogue_call(host, provider, Operation.EMBEDDINGS, {"model": MODEL, "input": ["a", "bc"]})
        with pytest.raises(InvalidRequestError) as err:
            await run(adapter, call)
    assert host.paths == []
    assert err.value.to_dict()["error"]["type"] == "invalid_request_error"
    assert "embeddings" in err.value.message
    assert HANDLES[provider] in err.value.message


async def test_an_entrys_paths_say_where_its_other_operations_live() -> None:
    paths = {"embeddings": "/cat/openai/v1/embeddings", "completions": "/cat/openai/v1/completions"}
    with CatalogueHost(wire_of("openai"), "/cat/openai") as host:
        embed = catalogue_call(host, "openai", Operation.EMBEDDINGS, {"model": MODEL, "input": "abc"}, paths=paths)
        await run(*embed)
        legacy = {"model": MODEL, "prompt": "Say hi", "max_tokens": 5}
        await run(*catalogue_call(host, "openai", Operation.COMPLETIONS, legacy, stream=True, paths=paths))
        await run(*catalogue_call(host, "openai", Operation.CHAT, HELLO, paths=paths))
    assert host.paths == [paths["embeddings"], paths["completions"], HANDLES["openai"]]
    assert all(r.headers["authorization"] == f"OAuth {TOKEN}" for r in host.received)
