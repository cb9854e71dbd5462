"""The workers' upstream client: it keeps no cookies (one client serves every caller of a provider, so
a cookie set on one caller's response must not travel on the next caller's request), and it merges
each path with its base URL once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp import web

from workers.providers._http import pooled_client


@pytest.fixture
async def upstream() -> AsyncIterator[str]:
    async def handler(request: web.Request) -> web.Response:
        response = web.json_response({"cookie": request.headers.get("Cookie")})
        response.set_cookie("__cf_bm", "caller-a-session", path="/")
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def test_a_cookie_set_for_one_caller_is_not_sent_for_the_next(upstream: str) -> None:
    client = pooled_client(upstream)
    try:
        first = await client.post("/chat/completions", json={})
        assert "__cf_bm" in first.headers["set-cookie"]  # the upstream did set one
        second = await client.post("/chat/completions", json={})
        assert second.json() == {"cookie": None}
        assert len(client.cookies) == 0
    finally:
        await client.aclose()


def test_an_upstream_client_refuses_preset_cookies() -> None:
    with pytest.raises(ValueError, match="no cookies"):
        pooled_client("http://127.0.0.1:1").cookies = {"a": "b"}


async def test_paths_merge_with_the_base_url_as_httpx_does_and_only_once(
    upstream: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    merges: list[object] = []
    httpx_merge = httpx.AsyncClient._merge_url

    def counted(self: httpx.AsyncClient, url: httpx.URL | str) -> httpx.URL:
        merges.append(url)
        return httpx_merge(self, url)

    monkeypatch.setattr(httpx.AsyncClient, "_merge_url", counted)
    client = pooled_client(upstream)
    try:
        first = client.build_request("POST", "/chat/completions").url
        assert str(first) == f"{upstream}/chat/completions"
        assert client.build_request("POST", "chat/completions").url == first
        for _ in range(3):
            assert client.build_request("POST", "/chat/completions").url == first
        assert merges == ["/chat/completions", "chat/completions"]  # each path merged once
        absolute = "http://elsewhere.example/v1/x"
        assert str(client.build_request("GET", absolute).url) == absolute
        assert (await client.post("/chat/completions", json={})).status_code == 200
    finally:
        await client.aclose()
