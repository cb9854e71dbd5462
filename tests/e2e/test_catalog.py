"""A model from a provider's remote catalogue, through the whole stack: the router fetches the
catalogue (OAuth), the gateway routes a request for one of its models, a worker calls that model's
handle on the catalogue's host with the same OAuth header, and accounting prices it from the JSON.
The four services run as processes with a config of their own; the provider is a local fake."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import openai
import pytest
import yaml

from scripts.stack import Ports, Stack
from tests.e2e.conftest import KEY, free_port, migrate
from tests.integration.catalog_server import CatalogServer, entry

pytestmark = pytest.mark.e2e

TOKEN_ENV = "MR_E2E_CATALOG_TOKEN"
HELLO = [{"role": "user", "content": "What is the capital of France?"}]
PROMPT_PRICE, COMPLETION_PRICE = 0.7, 2.1


@dataclass
class CatalogStack:
    base_url: str
    database_url: str
    catalog: CatalogServer
    provider: str
    model: str  # the catalogue model's public name (its model_version)
    handle: str
    token: str

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(api_key=KEY, base_url=f"{self.base_url}/v1", max_retries=0)

    async def usage_row(self, request_id: str, timeout: float = 15.0) -> asyncpg.Record:
        deadline = time.monotonic() + timeout
        conn = await asyncpg.connect(self.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            while True:
                rows = await conn.fetch("SELECT * FROM usage_records WHERE request_id = $1", request_id)
                if rows or time.monotonic() > deadline:
                    assert len(rows) == 1, f"usage rows for {request_id}: {rows}"
                    return rows[0]
                await asyncio.sleep(0.1)
        finally:
            await conn.close()


async def _delete_stream(nats_url: str, stream: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(stream)
    except NotFoundError:
        pass
    finally:
        await nc.close()


@pytest.fixture(scope="module")
def catalog_stack(
    redis_url: str, nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[CatalogStack]:
    migrate(database_url)
    suffix = uuid.uuid4().hex[:8]
    token = f"oauth-{suffix}"
    # The handle is the full path of the model's endpoint (the adapter's own path is not appended).
    provider, model = f"cloud-{suffix}", f"gpt-cat-{suffix}"
    handle = f"/serving/gpt-cat-{suffix}/v1/chat/completions"
    catalog = CatalogServer(
        token=token,
        models=[
            entry(model, "gpt", handle, prompt=PROMPT_PRICE, completion=COMPLETION_PRICE),
            entry(f"odd-{suffix}", "unmapped", "/serving/odd/v1"),
        ],
    )
    catalog.start()
    workdir = tmp_path_factory.mktemp("catalog-stack")
    config = workdir / "modelrouter.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "providers": {
                    "fake": {"adapter": "fake"},
                    provider: {
                        "timeout_s": 10,
                        "catalog": {"url": catalog.catalog_url, "token_env": TOKEN_ENV, "families": {"gpt": "openai"}},
                    },
                },
                "deployments": [{"id": f"demo-{suffix}", "model": f"demo-{suffix}", "provider": "fake"}],
                "keys": [{"key": KEY, "id": "e2e-catalog"}],
            }
        )
    )
    ports = Ports(gateway=free_port(), router=free_port(), workers_health=free_port(), accounting_health=free_port())
    stack = Stack(
        ports=ports,
        log_dir=Path(workdir),
        env={
            "MODELROUTER_CONFIG": str(config),
            "REDIS_URL": redis_url,
            "NATS_URL": nats_url,
            "DATABASE_URL": database_url,
            # Streams and subjects of this stack's own: no other stack's workers take its jobs.
            "USAGE_STREAM": f"MR_USAGE_E2E_CAT_{suffix}",
            "USAGE_SUBJECT": f"mr.v1.usage.e2ecat{suffix}",
            "JOBS_SUBJECT": f"mr.v1.jobs.e2ecat{suffix}",
            "API_KEYS": "",
            "ACCEPT_TIMEOUT_S": "5",
            TOKEN_ENV: token,  # the router fetches with it, the workers call the models with it
        },
    )
    try:
        stack.start(timeout=60)
        yield CatalogStack(f"http://127.0.0.1:{ports.gateway}", database_url, catalog, provider, model, handle, token)
    finally:
        codes = stack.stop()
        catalog.stop()
        asyncio.run(_delete_stream(nats_url, f"MR_USAGE_E2E_CAT_{suffix}"))
    assert all(code == 0 for code in codes.values()), f"services did not exit cleanly: {codes}"


def _upstream_calls(stack: CatalogStack) -> list[Any]:
    return list(stack.catalog.received)


async def test_a_catalogue_model_is_served_by_its_handle_with_the_oauth_header(catalog_stack: CatalogStack) -> None:
    catalog_stack.catalog.reset()
    raw = catalog_stack.client().chat.completions.with_raw_response.create(model=catalog_stack.model, messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content == "The capital of France is Paris."

    [call] = _upstream_calls(catalog_stack)
    assert call.path == catalog_stack.handle
    assert call.headers["authorization"] == f"OAuth {catalog_stack.token}"
    assert call.model == catalog_stack.model

    row = await catalog_stack.usage_row(raw.headers["x-request-id"])
    assert row["status"] == "success"
    assert row["deployment_id"] == f"{catalog_stack.provider}/{catalog_stack.model}"
    assert row["upstream_model"] == catalog_stack.model
    assert completion.usage is not None
    expected = (
        completion.usage.prompt_tokens * PROMPT_PRICE + completion.usage.completion_tokens * COMPLETION_PRICE
    ) / 1000
    assert float(row["cost_usd"]) == pytest.approx(expected)


async def test_a_catalogue_model_streams_with_the_oauth_header(catalog_stack: CatalogStack) -> None:
    catalog_stack.catalog.reset()
    chunks = list(
        catalog_stack.client().chat.completions.create(model=catalog_stack.model, messages=HELLO, stream=True)
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The capital of France is Paris."
    [call] = _upstream_calls(catalog_stack)
    assert call.stream
    assert call.path == catalog_stack.handle
    assert call.headers["authorization"] == f"OAuth {catalog_stack.token}"


def test_an_operation_the_handle_does_not_name_is_a_400(catalog_stack: CatalogStack) -> None:
    catalog_stack.catalog.reset()
    with pytest.raises(openai.BadRequestError) as err:
        catalog_stack.client().embeddings.create(model=catalog_stack.model, input="hello")
    assert err.value.status_code == 400
    error = err.value.response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("invalid_request_error", "unsupported_operation")
    assert catalog_stack.handle in error["message"]
    assert _upstream_calls(catalog_stack) == []


def test_catalogue_models_are_listed_as_the_providers(catalog_stack: CatalogStack) -> None:
    models = {m.id: m.owned_by for m in catalog_stack.client().models.list()}
    assert models[catalog_stack.model] == catalog_stack.provider
    assert models[f"demo-{catalog_stack.model.removeprefix('gpt-cat-')}"] == "fake"
    assert not any(m.startswith("odd-") for m in models)  # its family maps to no adapter


def test_ready_details_show_the_catalogue(catalog_stack: CatalogStack) -> None:
    response = httpx.get(f"{catalog_stack.base_url}/ready")
    assert response.status_code == 200
    [shown] = response.json()["details"]["catalogs"]
    assert shown["provider"] == catalog_stack.provider
    assert (shown["models"], shown["skipped"], shown["last_error"]) == (1, 1, None)
    assert all(f["authorization"] == f"OAuth {catalog_stack.token}" for f in catalog_stack.catalog.catalog_fetches)
