"""The workers' upstream client: it keeps no cookies (one client serves every caller of a provider, so
a cookie set on one caller's response must not travel on the next caller's request), merges each path
with its base URL once, and sends through its transport without httpx's auth and redirect machinery
(a redirect is answered as it is; a failed request still names its request)."""

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

    async def moved(request: web.Request) -> web.Response:
        raise web.HTTPFound("/v1/chat/completions")

    async def lines(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        await response.prepare(request)
        for n in range(3):
            await response.write(f"data: {n}\n\n".encode())
        return response

    app = web.Application()
    app.router.add_post("/v1/chat/completions", handler)
    app.router.add_post("/v1/moved", moved)
    app.router.add_post("/v1/stream", lines)
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


async def test_a_redirect_is_answered_as_it_is_never_followed(upstream: str) -> None:
    client = pooled_client(upstream)
    try:
        response = await client.post("/moved", json={})
        assert response.status_code == 302
        assert response.request.url.path == "/v1/moved"
        with pytest.raises(ValueError, match="redirects"):
            await client.post("/moved", json={}, follow_redirects=True)
        with pytest.raises(ValueError, match="authenticates"):
            await client.post("/chat/completions", json={}, auth=("user", "secret"))
    finally:
        await client.aclose()


async def test_a_streamed_answer_arrives_piece_by_piece(upstream: str) -> None:
    client = pooled_client(upstream)
    try:
        async with client.stream("POST", "/stream", json={}) as response:
            assert not response.is_closed
            assert [line async for line in response.aiter_lines() if line] == ["data: 0", "data: 1", "data: 2"]
        assert response.is_closed
    finally:
        await client.aclose()


async def test_a_failed_request_names_its_request_and_a_closed_client_refuses() -> None:
    client = pooled_client("http://127.0.0.1:1/v1")  # nothing listens on port 1
    with pytest.raises(httpx.TransportError) as failed:  # refused: httpx-aiohttp says ConnectTimeout
        await client.post("/chat/completions", json={})
    assert failed.value.request.url.path == "/v1/chat/completions"
    await client.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await client.post("/chat/completions", json={})
