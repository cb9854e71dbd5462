"""For end-to-end modules that run a stack of their own (a config of their own, e.g. providers pointing at
fake upstreams): start the four services isolated on the shared NATS/Redis/Postgres, read the usage
rows they write, and read what the Anthropic SDK got back (messages, event streams)."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anthropic
import asyncpg  # type: ignore[import-untyped]
from anthropic.types import Message, TextBlock, ToolUseBlock

from scripts.stack import Ports, Stack
from tests.e2e.conftest import free_port, migrate


@dataclass(frozen=True)
class OwnStack:
    stack: Stack
    base_url: str  # the gateway, e.g. http://127.0.0.1:PORT
    database_url: str


@contextmanager
def own_stack(
    config_yaml: str,
    *,
    redis_url: str,
    nats_url: str,
    database_url: str,
    workdir: Path,
    env: Mapping[str, str] | None = None,
) -> Iterator[OwnStack]:
    """The four services on ``config_yaml`` with ``env`` added, on NATS names of their own: usage goes
    to a JetStream stream of this stack's (deleted afterwards) and jobs to a subject only its workers
    take, so another stack's workers (other keys in their environment) never serve its requests.
    Fails if a service does not exit 0 on SIGTERM."""
    migrate(database_url)
    suffix = uuid.uuid4().hex[:10]
    config = workdir / "modelrouter.yaml"
    config.write_text(config_yaml)
    stream = f"MR_USAGE_E2E_{suffix}"
    ports = Ports(gateway=free_port(), router=free_port(), workers_health=free_port(), accounting_health=free_port())
    stack = Stack(
        ports=ports,
        log_dir=workdir,
        env={
            "MODELROUTER_CONFIG": str(config),
            "REDIS_URL": redis_url,
            "NATS_URL": nats_url,
            "DATABASE_URL": database_url,
            "USAGE_STREAM": stream,
            "USAGE_SUBJECT": f"mr.v1.usage.e2e{suffix}",
            "JOBS_SUBJECT": f"mr.v1.jobs.e2e{suffix}",
            # Keys, the admin API and the ledger's spend queries of this stack's own.
            "KEYS_BUCKET": f"MR_KEYS_E2E_{suffix}",
            "ADMIN_SUBJECT": f"mr.v1.admin.e2e{suffix}",
            "LEDGER_SUBJECT": f"mr.v1.ledger.e2e{suffix}",
            "ANALYTICS_SUBJECT": f"mr.v1.analytics.e2e{suffix}",
            "API_KEYS": "",
            "OTEL_EXPORTER_OTLP_ENDPOINT": "",  # no collector here: spans stay in the processes
            "DRAIN_TIMEOUT_S": "10",
            **(env or {}),
        },
    )
    try:
        stack.start(timeout=60)
        yield OwnStack(stack, f"http://127.0.0.1:{ports.gateway}", database_url)
    finally:
        codes = stack.stop()
        asyncio.run(delete_stream(nats_url, stream))
        asyncio.run(delete_stream(nats_url, f"KV_MR_KEYS_E2E_{suffix}"))  # the keys bucket's stream
    assert all(code == 0 for code in codes.values()), f"services did not exit cleanly: {codes}"


async def delete_stream(nats_url: str, stream: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    nc = await nats.connect(nats_url)
    try:
        await nc.jetstream().delete_stream(stream)
    except NotFoundError:
        pass
    finally:
        await nc.close()


async def usage_rows(database_url: str, request_id: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return list(await conn.fetch("SELECT * FROM usage_records WHERE request_id = $1", request_id))
    finally:
        await conn.close()


async def one_usage_row(database_url: str, request_id: str, timeout: float = 15.0) -> asyncpg.Record:
    """The request's usage row, once accounting wrote it; fails unless there is exactly one."""
    deadline = time.monotonic() + timeout
    while not (rows := await usage_rows(database_url, request_id)):
        assert time.monotonic() < deadline, f"no usage row for {request_id} within {timeout}s"
        await asyncio.sleep(0.1)
    assert len(rows) == 1, rows
    return rows[0]


# --- what the Anthropic SDK got ----------------------------------------------------------------------

if TYPE_CHECKING:  # generic for type checkers only
    from anthropic.lib.streaming import ParsedMessageStreamEvent

    StreamEvent = ParsedMessageStreamEvent[Any]
# The SDK's helper events (text, input_json) ride along with the raw ones; order is checked on these.
RAW_EVENTS = frozenset(
    {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    }
)


def usage_seen(message: Message) -> tuple[int, int, int]:
    # No cache read may be reported as 0 or left out (null): both mean none.
    usage = message.usage
    return usage.input_tokens, usage.output_tokens, usage.cache_read_input_tokens or 0


def text_of(message: Message) -> str | None:
    texts = [block.text for block in message.content if isinstance(block, TextBlock)]
    return "".join(texts) if texts else None


def tool_use_of(message: Message) -> ToolUseBlock:
    calls = [block for block in message.content if isinstance(block, ToolUseBlock)]
    assert len(calls) == 1, message.content
    return calls[0]


@dataclass
class StreamedBlock:
    block: Any  # the content_block of its content_block_start
    deltas: list[Any]


def blocks_of(events: Sequence[StreamEvent]) -> list[StreamedBlock]:
    """The content blocks of a stream, after checking its raw events come in Anthropic's order:
    message_start, then per block (indices 0, 1, …) start, deltas, stop; message_delta, message_stop."""
    raw = [e for e in events if e.type in RAW_EVENTS]
    assert raw[0].type == "message_start" and [e.type for e in raw[-2:]] == ["message_delta", "message_stop"], [
        e.type for e in raw
    ]
    blocks: list[StreamedBlock] = []
    open_block: StreamedBlock | None = None
    for event in raw[1:-2]:
        if event.type == "content_block_start":
            assert open_block is None and event.index == len(blocks), [e.type for e in raw]
            open_block = StreamedBlock(event.content_block, [])
        elif event.type == "content_block_delta":
            assert open_block is not None and event.index == len(blocks), [e.type for e in raw]
            open_block.deltas.append(event.delta)
        else:
            assert event.type == "content_block_stop" and open_block is not None and event.index == len(blocks)
            blocks.append(open_block)
            open_block = None
    assert open_block is None, "a content block was never stopped"
    return blocks


def stream(client: anthropic.Anthropic, **params: Any) -> tuple[list[StreamEvent], Message]:
    """Every event the SDK yields for ``messages.stream(**params)``, and the message it assembled."""
    with client.messages.stream(**params) as events:
        seen: list[StreamEvent] = list(events)
        final: Message = events.get_final_message()
        return seen, final
