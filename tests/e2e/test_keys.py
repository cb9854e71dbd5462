"""Keys, teams and budgets through the four services as processes, as the README's walk-through does
it: the master key creates a key over the admin API, the key is used at once, its answers carry
OpenAI's x-ratelimit-* headers, its allow-list and limits refuse what they should (429
rate_limit_exceeded with Retry-After; 403 permission_error naming the model), its budget ends in 429
insufficient_quota with x-should-retry: false (which the OpenAI SDK honours: no retry), and once
revoked it is refused saying so. Seed 001's /auth endpoints, the CLI, and no secret in any log."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import httpx
import openai
import pytest

from gateway.prompt_estimate import IMAGE_TOKENS
from scripts.stack import ROOT
from tests.e2e.helpers import OwnStack, one_usage_row, own_stack

pytestmark = pytest.mark.e2e

MASTER = "sk-master-e2e-0123456789abcdef"
OPS = "sk-ops-e2e-0123456789abcdef"
HELLO = [{"role": "user", "content": "Hello there"}]


def config(u: str) -> str:
    return f"""
providers:
  fake: {{adapter: fake}}
deployments:
  - {{id: priced-{u}, model: priced, provider: fake, upstream_model: fake-1,
      price: {{prompt_per_1k: 1.0, completion_per_1k: 2.0}}}}
  - {{id: other-{u}, model: other, provider: fake}}
"""


@pytest.fixture(scope="module")
def stack(
    redis_url: str, nats_url: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OwnStack]:
    u = uuid.uuid4().hex[:8]
    with own_stack(
        config(u),
        redis_url=redis_url,
        nats_url=nats_url,
        database_url=database_url,
        workdir=Path(tmp_path_factory.mktemp("keys")),
        env={
            "MODELROUTER_MASTER_KEY": MASTER,
            "API_KEYS": OPS,
            "LOG_LEVEL": "DEBUG",
        },
    ) as running:
        yield running


class Admin:
    def __init__(self, stack: OwnStack) -> None:
        self.http = httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {MASTER}"}, timeout=30)
        self.secrets: list[str] = []

    def create_key(self, **fields: Any) -> dict[str, Any]:
        response = self.http.post("/admin/keys", json={"name": f"k-{uuid.uuid4().hex[:6]}", **fields})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        self.secrets.append(created["key"])
        return created


@pytest.fixture(scope="module")
def admin(stack: OwnStack) -> Iterator[Admin]:
    made = Admin(stack)
    yield made
    made.http.close()


def chat(stack: OwnStack, key: str, model: str = "priced", **extra: Any) -> httpx.Response:
    body = {"model": model, "messages": HELLO, **extra}
    return httpx.post(
        f"{stack.base_url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_admin_api_needs_the_master_key(stack: OwnStack, admin: Admin) -> None:
    assert httpx.get(f"{stack.base_url}/admin/keys").status_code == 401
    refused = httpx.get(f"{stack.base_url}/admin/keys", headers={"Authorization": f"Bearer {OPS}"})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "master_key_required"
    invalid = admin.http.post("/admin/keys", json={"name": "x", "rpm": -1})
    assert invalid.status_code == 400 and invalid.json()["error"]["param"] == "rpm"


async def test_a_new_key_works_at_once_with_headers_and_is_refused_once_revoked(stack: OwnStack, admin: Admin) -> None:
    created = admin.create_key(rpm=5, tpm=100_000)
    assert created["key"].startswith("sk-mr-") and created["display"].endswith(created["key"][-4:])

    answer = chat(stack, created["key"])
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-ratelimit-limit-requests"] == "5"
    assert answer.headers["x-ratelimit-remaining-requests"] == "4"
    assert answer.headers["x-ratelimit-limit-tokens"] == "100000"
    assert answer.headers["x-ratelimit-reset-requests"].endswith("s")
    row = await one_usage_row(stack.database_url, answer.headers["x-request-id"])
    assert row["key_id"] == created["id"] and row["team_id"] is None

    revoked = admin.http.delete(f"/admin/keys/{created['id']}")
    assert revoked.status_code == 200 and revoked.json()["revoked_at"]
    refused = chat(stack, created["key"])
    assert refused.status_code == 401
    error = refused.json()["error"]
    assert error["code"] == "key_revoked" and "revoked" in error["message"]
    assert created["key"] not in refused.text


def test_a_key_over_its_rpm_is_refused_with_the_limit_the_use_and_the_wait(stack: OwnStack, admin: Admin) -> None:
    created = admin.create_key(rpm=2)
    assert [chat(stack, created["key"]).status_code for _ in range(2)] == [200, 200]
    refused = chat(stack, created["key"])
    assert refused.status_code == 429
    error = refused.json()["error"]
    assert error["code"] == "rate_limit_exceeded" and error["type"] == "rate_limit_error"
    assert "limit 2, used 2, requested 1" in error["message"] and "try again in" in error["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"


def test_an_inline_image_counts_against_tpm_as_an_image_not_as_its_base64(stack: OwnStack, admin: Admin) -> None:
    created = admin.create_key(tpm=100_000)
    image = "data:image/png;base64," + base64.b64encode(os.urandom(2_000_000)).decode()  # "667k tokens" of bytes
    content = [{"type": "text", "text": "What is in this picture?"}, {"type": "image_url", "image_url": {"url": image}}]
    answer = httpx.post(
        f"{stack.base_url}/v1/chat/completions",
        json={"model": "priced", "max_tokens": 10, "messages": [{"role": "user", "content": content}]},
        headers={"Authorization": f"Bearer {created['key']}"},
        timeout=60,
    )
    assert answer.status_code == 200, answer.text
    reserved = 100_000 - int(answer.headers["x-ratelimit-remaining-tokens"])
    assert IMAGE_TOKENS < reserved < IMAGE_TOKENS + 200  # one image, a few words, max_tokens 10


def test_the_allow_list_refuses_other_models_naming_them(stack: OwnStack, admin: Admin) -> None:
    created = admin.create_key(models=["priced"])
    assert chat(stack, created["key"]).status_code == 200
    refused = chat(stack, created["key"], model="other")
    assert refused.status_code == 403
    error = refused.json()["error"]
    assert error["type"] == "permission_error" and error["param"] == "model" and "`other`" in error["message"]
    listed = httpx.get(f"{stack.base_url}/v1/models", headers={"Authorization": f"Bearer {created['key']}"}).json()
    assert [m["id"] for m in listed["data"]] == ["priced"]


async def test_a_budget_ends_in_insufficient_quota_that_the_sdk_does_not_retry(stack: OwnStack, admin: Admin) -> None:
    created = admin.create_key(daily_budget_usd=0.1)
    client = openai.OpenAI(base_url=f"{stack.base_url}/v1", api_key=created["key"], max_retries=3)
    spent = 0
    with pytest.raises(openai.RateLimitError) as refused:
        for _ in range(50):
            client.chat.completions.create(model="priced", messages=HELLO, max_tokens=20)  # type: ignore[arg-type]
            spent += 1
    assert 0 < spent < 50
    error = refused.value.body
    assert isinstance(error, dict) and error["code"] == "insufficient_quota" and error["type"] == "insufficient_quota"
    assert "daily budget $0.10" in error["message"] and "resets at" in error["message"]
    assert refused.value.response.headers["x-should-retry"] == "false"
    rows = await _rows_of(stack, created["id"], at_least=spent + 1)
    # One row per request: the SDK did not retry the 429, and the refusal cost nothing.
    assert sorted((r["status"], r["http_status"]) for r in rows) == [("error", 429)] + [("success", 200)] * spent
    assert sum(float(r["cost_usd"]) for r in rows) <= 0.1


async def test_changing_a_budget_keeps_what_was_spent_and_usage_rows_carry_the_team(
    stack: OwnStack, admin: Admin
) -> None:
    team = admin.http.post("/admin/teams", json={"name": "search"})
    assert team.status_code == 201, team.text
    created = admin.create_key(team_id=team.json()["id"], daily_budget_usd=0.05)
    spent = 0
    while (answer := chat(stack, created["key"], max_tokens=10)).status_code == 200:
        spent += 1
        assert spent < 100
    assert answer.json()["error"]["code"] == "insufficient_quota" and spent > 0
    row = await one_usage_row(stack.database_url, answer.headers["x-request-id"])
    assert row["team_id"] == team.json()["id"] and row["http_status"] == 429
    # A bigger budget admits again; the spend of today is still counted against it.
    assert admin.http.patch(f"/admin/keys/{created['id']}", json={"daily_budget_usd": 0.1}).status_code == 200
    assert chat(stack, created["key"], max_tokens=10).status_code == 200
    assert admin.http.patch(f"/admin/keys/{created['id']}", json={"daily_budget_usd": 0.05}).status_code == 200
    again = chat(stack, created["key"], max_tokens=10)
    assert again.status_code == 429 and again.json()["error"]["code"] == "insufficient_quota"


async def test_auth_endpoints(stack: OwnStack, admin: Admin) -> None:
    created = admin.create_key()
    chat(stack, created["key"])
    as_key = {"Authorization": f"Bearer {created['key']}"}
    as_ops = {"Authorization": f"Bearer {OPS}"}
    async with httpx.AsyncClient(base_url=stack.base_url, timeout=30) as http:
        status = (await http.get("/auth/status", headers=as_key)).json()
        assert status["auth_enabled"] is True and status["key_id"] == created["id"] and status["role"] == "client"
        assert status["key"] == created["display"] and created["key"] not in json.dumps(status)

        assert (await http.get("/auth/metrics", headers=as_key)).status_code == 403
        await one_usage_row(stack.database_url, chat(stack, created["key"]).headers["x-request-id"])
        metrics = (await http.get("/auth/metrics", headers=as_ops)).json()
        mine = next(k for k in metrics["keys"] if k["key_id"] == created["id"])
        assert mine["requests"] == mine["successes"] == 2 and mine["failures"] == 0
        assert mine["key"] == created["display"] and mine["last_used"]

        reloaded = await http.post("/auth/reload-keys", headers=as_ops)
        assert reloaded.status_code == 200 and reloaded.json()["managed_keys"] >= 1


def test_the_cli_creates_a_key_that_works(stack: OwnStack, admin: Admin) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.keys",
            "create",
            "--name",
            "ci-bot",
            "--daily-budget",
            "5",
            "--models",
            "priced",
        ],
        cwd=ROOT,
        env={**os.environ, "MODELROUTER_URL": stack.base_url, "MODELROUTER_MASTER_KEY": MASTER},
        capture_output=True,
        text=True,
        check=True,
    )
    secret, record = done.stdout.split("\n", 1)
    admin.secrets.append(secret)
    assert json.loads(record)["daily_budget_usd"] == 5 and "key" not in json.loads(record)
    # (At this test's prices, the 4,096 output tokens reserved for a request without max_tokens would
    # cost more than the $5 budget: it says how much it may spend.)
    assert chat(stack, secret, max_tokens=50).status_code == 200
    unbounded = chat(stack, secret)
    assert unbounded.status_code == 429 and "may cost up to $8.2" in unbounded.json()["error"]["message"]
    assert chat(stack, secret, model="other").status_code == 403


def test_no_secret_reaches_any_log(stack: OwnStack, admin: Admin) -> None:
    """Runs last in this module: every secret it made, and the operator's and master keys, are
    looked for in every service's log (at DEBUG)."""
    assert admin.secrets
    logs = {p.name: p.read_text(errors="replace") for p in stack.stack.log_dir.glob("*.log")}
    assert {"gateway.log", "router.log", "workers.log", "accounting.log"} <= set(logs)
    for secret in [*admin.secrets, MASTER, OPS]:
        for name, text in logs.items():
            assert secret not in text, f"a secret is in {name}"


async def _rows_of(stack: OwnStack, key_id: str, at_least: int) -> list[Any]:
    """The key's usage rows once there are ``at_least`` (accounting writes them a moment later)."""
    conn = await asyncpg.connect(stack.database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        deadline = time.monotonic() + 15
        while True:
            rows = list(await conn.fetch("SELECT * FROM usage_records WHERE key_id = $1", key_id))
            if len(rows) >= at_least or time.monotonic() > deadline:
                await asyncio.sleep(0.3)  # and nothing more arrives after them
                return list(await conn.fetch("SELECT * FROM usage_records WHERE key_id = $1", key_id))
            await asyncio.sleep(0.1)
    finally:
        await conn.close()
