"""The mock upstream the benchmark measures against, read with the harness's own HTTP client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from bench.http_client import HttpConnection
from bench.processes import ManagedProcess, free_port, mock_upstream, port_open
from bench.targets import CHAT_PATH, chat_body

pytestmark = pytest.mark.bench


@pytest.fixture(scope="module")
def mock_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    proc: ManagedProcess = mock_upstream(Path(tmp_path_factory.mktemp("mock")), port, 0.0, 5, 2.0)
    proc.start(lambda: port_open(port))
    yield port
    proc.stop()


async def test_plain_answer_is_an_openai_completion(mock_port: int) -> None:
    async with HttpConnection("127.0.0.1", mock_port) as conn:
        answer = await conn.send(conn.encode(CHAT_PATH, chat_body("m-1", stream=False), None))
        again = await conn.send(conn.encode(CHAT_PATH, chat_body("m-2", stream=False), None))  # keep-alive
    assert answer.status == 200 and again.status == 200
    body = orjson.loads(answer.body)
    assert body["object"] == "chat.completion" and body["model"] == "m-1"
    assert body["choices"][0]["message"]["content"] == "tok " * 5
    assert body["usage"] == {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14}
    assert orjson.loads(again.body)["model"] == "m-2"


async def test_stream_sends_the_configured_chunks_apart_then_usage_and_done(mock_port: int) -> None:
    async with HttpConnection("127.0.0.1", mock_port) as conn:
        answer = await conn.send(conn.encode(CHAT_PATH, chat_body("m", stream=True), None))
    assert answer.status == 200
    events = [line[len(b"data: ") :] for line in answer.body.split(b"\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    content = [c for c in chunks if c["choices"]]
    assert len(content) == 5
    assert "".join(c["choices"][0]["delta"]["content"] for c in content) == "tok " * 5
    assert content[-1]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 5
    # Five chunks 2 ms apart: the first event arrives well before the stream ends.
    assert answer.first_event_s is not None
    assert answer.total_s - answer.first_event_s >= 0.008


async def test_unknown_path_is_404(mock_port: int) -> None:
    async with HttpConnection("127.0.0.1", mock_port) as conn:
        answer = await conn.send(conn.encode("/v1/nope", b"{}", None))
    assert answer.status == 404
