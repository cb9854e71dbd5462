"""Postgres unreachable, with the four services running as processes: a TCP proxy of the test's own
stands in front of Postgres (the machine's server is never touched) and the test stops it. Known keys
keep being served; admin writes answer 503 saying the database is unreachable, quickly, nothing
hangs; the usage of what was served meanwhile is not lost; once the proxy is back, writes work again
without a restart."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.e2e.helpers import OwnStack, one_usage_row, own_stack
from tests.integration.test_accounting_admin_outage import TcpProxy

pytestmark = pytest.mark.e2e

MASTER = "sk-master-outage-0123456789"
HELLO = {"model": "demo", "messages": [{"role": "user", "content": "Still there?"}]}
CONFIG = """
providers:
  fake: {adapter: fake}
deployments:
  - {id: demo-outage, model: demo, provider: fake, price: {prompt_per_1k: 0.001, completion_per_1k: 0.002}}
"""


class ThreadedProxy:
    """``TcpProxy`` on an event loop of its own thread: it must forward while the test's code blocks
    (starting the stack, synchronous HTTP calls)."""

    def __init__(self, host: str, port: int) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.proxy = TcpProxy(host, port)

    def _run(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(10)  # type: ignore[arg-type]

    def start(self) -> None:
        self._run(self.proxy.start())

    def stop(self) -> None:
        self._run(self.proxy.stop())

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@pytest.fixture(scope="module")
def proxy(postgres_url: str) -> Iterator[ThreadedProxy]:
    url = make_url(postgres_url)
    running = ThreadedProxy(url.host or "127.0.0.1", url.port or 5432)
    running.start()
    yield running
    running.close()


@pytest.fixture(scope="module")
def stack(
    redis_url: str, nats_url: str, database_url: str, proxy: ThreadedProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnStack]:
    through_proxy = make_url(database_url).set(host="127.0.0.1", port=proxy.proxy.port).render_as_string(False)
    with own_stack(
        CONFIG,
        redis_url=redis_url,
        nats_url=nats_url,
        database_url=through_proxy,
        workdir=Path(tmp_path_factory.mktemp("outage")),
        env={
            "MODELROUTER_MASTER_KEY": MASTER,
        },
    ) as running:
        yield running


def test_with_postgres_away_known_keys_work_writes_answer_503_and_all_recovers(
    stack: OwnStack, proxy: ThreadedProxy, database_url: str
) -> None:
    admin = httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=30)
    created = admin.post("/admin/keys", json={"name": "before", "rpm": 100, "daily_budget_usd": 1})
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    as_key = {"Authorization": f"Bearer {key}"}
    # Its budget counter is seeded now, while the ledger answers.
    assert httpx.post(f"{stack.base_url}/v1/chat/completions", json=HELLO, headers=as_key).status_code == 200

    proxy.stop()
    served_meanwhile = []
    for _ in range(3):
        answer = httpx.post(f"{stack.base_url}/v1/chat/completions", json=HELLO, headers=as_key, timeout=30)
        assert answer.status_code == 200, answer.text
        served_meanwhile.append(answer.headers["x-request-id"])
    started = time.monotonic()
    refused = admin.post("/admin/keys", json={"name": "during"})
    took = time.monotonic() - started
    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "database_unavailable" and "database is unreachable" in error["message"]
    assert took < 8.0, f"the admin write took {took:.1f}s"

    proxy.start()
    deadline = time.monotonic() + 30
    while (again := admin.post("/admin/keys", json={"name": "after"})).status_code != 201:
        assert again.status_code == 503 and time.monotonic() < deadline, again.text
        time.sleep(0.5)
    admin.close()
    # What was served while Postgres was away is billed once it is back.
    for request_id in served_meanwhile:
        row = asyncio.run(one_usage_row(database_url, request_id, timeout=60))
        assert row["status"] == "success" and row["key_id"] == created.json()["id"]
