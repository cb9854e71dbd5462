"""The analytics API, /user/stats and store_bodies through the four services as processes, on a
database of their own: every figure is checked against the requests this module made through the
gateway and the rows accounting stored for them."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import asyncpg  # type: ignore[import-untyped]
import httpx
import openai
import pytest

from tests.e2e.helpers import OwnStack, own_stack

pytestmark = pytest.mark.e2e

MASTER = "sk-master-analytics-0123456789"
CAP = 64  # store_bodies_max_bytes of this stack
LONG_PROMPT = "weather report " + "x" * 200


def config(u: str) -> str:
    return f"""
providers:
  fake: {{adapter: fake}}
  broken: {{adapter: fake, options: {{fail_status: "400"}}}}
deployments:
  - {{id: demo-{u}, model: demo, provider: fake, upstream_model: fake-1,
      price: {{prompt_per_1k: 0.5, completion_per_1k: 1.5}}}}
  - {{id: cheap-{u}, model: cheap, provider: fake, upstream_model: fake-2,
      price: {{prompt_per_1k: 0.01, completion_per_1k: 0.02}}}}
  - {{id: broken-{u}, model: broken, provider: broken}}
store_bodies: true
store_bodies_max_bytes: {CAP}
"""


async def _admin_sql(postgres_url: str, sql: str) -> None:
    conn = await asyncpg.connect(postgres_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def own_db(postgres_url: str) -> Iterator[str]:
    """A database of this module's own: the master key's "everything" is then exactly what it made."""
    name = f"mr_test_analytics_{uuid.uuid4().hex[:8]}"
    asyncio.run(_admin_sql(postgres_url, f'CREATE DATABASE "{name}"'))
    yield f"{postgres_url.rpartition('/')[0]}/{name}"
    asyncio.run(_admin_sql(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass
class Made:
    """What this module did through the gateway: the keys, and each key's request ids and answers."""

    stack: OwnStack
    keys: dict[str, dict[str, Any]]  # name -> the admin API's answer (with its secret)
    team: dict[str, Any]
    ids: dict[str, list[str]] = field(default_factory=dict)  # key name -> request ids, in order
    answers: dict[str, str] = field(default_factory=dict)  # request id -> the text the client got

    def http(self, key: str | None = None) -> httpx.Client:
        secret = MASTER if key is None else self.keys[key]["key"]
        return httpx.Client(base_url=self.stack.base_url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)

    def get(self, path: str, key: str | None = None, **params: Any) -> httpx.Response:
        with self.http(key) as client:
            return client.get(path, params=params)

    def ok(self, path: str, key: str | None = None, **params: Any) -> Any:
        response = self.get(path, key, **params)
        assert response.status_code == 200, response.text
        return response.json()

    async def rows(self, where: str = "true", *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.stack.database_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            return list(await conn.fetch(f"SELECT * FROM usage_records WHERE {where} ORDER BY started_at", *args))
        finally:
            await conn.close()


def _chat(made: Made, key: str, prompt: str, model: str = "demo", *, stream: bool = False) -> None:
    client = openai.OpenAI(api_key=made.keys[key]["key"], base_url=f"{made.stack.base_url}/v1", max_retries=0)
    messages: Any = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": prompt}]
    if stream:
        streamed = client.chat.completions.with_raw_response.create(model=model, messages=messages, stream=True)
        text = "".join(chunk.choices[0].delta.content or "" for chunk in streamed.parse() if chunk.choices)
        request_id = streamed.headers["x-request-id"]
    else:
        try:
            whole = client.chat.completions.with_raw_response.create(model=model, messages=messages)
            text = whole.parse().choices[0].message.content or ""
            request_id = whole.headers["x-request-id"]
        except openai.BadRequestError as exc:
            text, request_id = "", exc.response.headers["x-request-id"]
    made.ids.setdefault(key, []).append(request_id)
    made.answers[request_id] = text
    time.sleep(0.01)  # distinct started_at, so "newest first" is one order


@pytest.fixture(scope="module")
def made(redis_url: str, nats_url: str, own_db: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Made]:
    u = uuid.uuid4().hex[:8]
    with own_stack(
        config(u),
        redis_url=redis_url,
        nats_url=nats_url,
        database_url=own_db,
        workdir=Path(tmp_path_factory.mktemp("analytics")),
        env={"MODELROUTER_MASTER_KEY": MASTER},
    ) as stack:
        with httpx.Client(base_url=stack.base_url, headers={"Authorization": f"Bearer {MASTER}"}) as admin:
            team = admin.post("/admin/teams", json={"name": "analysts", "monthly_budget_usd": 500.0}).json()
            keys = {
                "a": admin.post(
                    "/admin/keys", json={"name": "a", "team_id": team["id"], "daily_budget_usd": 100.0}
                ).json(),
                "b": admin.post("/admin/keys", json={"name": "b"}).json(),
                "quiet": admin.post("/admin/keys", json={"name": "quiet", "store_bodies": False}).json(),
                "anthropic": admin.post("/admin/keys", json={"name": "anthropic"}).json(),
            }
        made = Made(stack, keys, team)
        _chat(made, "a", "alpha: what is the weather in Paris?")
        _chat(made, "a", "beta: count to three")
        _chat(made, "a", LONG_PROMPT)
        _chat(made, "a", "gamma: stream a poem", model="cheap", stream=True)
        _chat(made, "a", "delta: this one fails", model="broken")
        _chat(made, "b", "epsilon: the weather in Rome?")
        _chat(made, "b", "zeta: hello")
        _chat(made, "quiet", "eta: weather secret")
        claude = anthropic.Anthropic(api_key=keys["anthropic"]["key"], base_url=stack.base_url, max_retries=0)
        message = claude.messages.with_raw_response.create(
            model="demo", max_tokens=50, system="Be brief.", messages=[{"role": "user", "content": "theta: hi"}]
        )
        made.ids["anthropic"] = [message.headers["request-id"]]
        made.answers[message.headers["request-id"]] = "".join(
            b.text for b in message.parse().content if isinstance(b, anthropic.types.TextBlock)
        )
        expected = sum(len(ids) for ids in made.ids.values())

        async def stored() -> None:
            deadline = time.monotonic() + 20
            while len(await made.rows()) < expected:
                assert time.monotonic() < deadline, "usage rows did not all arrive"
                await asyncio.sleep(0.1)

        asyncio.run(stored())
        yield made


def _kept(text: str) -> str:
    """``text`` as store_bodies keeps it: cut at CAP bytes, the cut marked."""
    encoded = text.encode()
    if len(encoded) <= CAP:
        return text
    return f"{encoded[:CAP].decode(errors='ignore')}… [truncated: {len(encoded)} bytes]"


def _money(rows: list[asyncpg.Record]) -> float:
    """What the rows cost, as far as it is known (the unpriced broken deployment's rows are NULL)."""
    return float(sum(r["cost_usd"] for r in rows if r["cost_usd"] is not None))


# --- GET /v1/analytics/usage --------------------------------------------------------------------


async def test_usage_of_a_key_is_its_own_rows_summed(made: Made) -> None:
    rows = await made.rows("key_id = $1", made.keys["a"]["id"])
    assert len(rows) == 5
    got = made.ok("/v1/analytics/usage", "a", days=7)
    assert got["total_requests"] == 5
    assert got["total_cost_usd"] == pytest.approx(_money(rows), rel=1e-9)
    assert got["total_cost_usd"] > 0
    assert got["avg_latency_ms"] == pytest.approx(sum(r["latency_ms"] for r in rows) / 5, rel=1e-6)
    assert got["success_rate"] == pytest.approx(4 / 5)
    by_model = {m["model"]: m for m in got["by_model"]}
    assert {m: v["requests"] for m, v in by_model.items()} == {"demo": 3, "cheap": 1, "broken": 1}
    assert by_model["demo"]["cost_usd"] == pytest.approx(_money([r for r in rows if r["requested_model"] == "demo"]))
    assert got["by_model"][0]["model"] == "demo"  # most requests first
    assert got["by_provider"] == [{"provider": "fake", "requests": 5, "cost_usd": pytest.approx(_money(rows))}]
    today = datetime.now(UTC).date().isoformat()
    assert got["daily_stats"] == [{"date": today, "requests": 5, "cost_usd": pytest.approx(_money(rows))}]
    assert set(got) == {
        "total_requests",
        "total_cost_usd",
        "avg_latency_ms",
        "success_rate",
        "by_provider",
        "by_model",
        "daily_stats",
    }


async def test_the_master_key_sees_everything_and_filters_by_key_and_team(made: Made) -> None:
    everything = await made.rows()
    got = made.ok("/v1/analytics/usage", None)
    assert got["total_requests"] == len(everything) == 9
    assert got["total_cost_usd"] == pytest.approx(_money(everything), rel=1e-9)
    assert made.ok("/v1/analytics/usage", None, key_id=made.keys["b"]["id"])["total_requests"] == 2
    assert made.ok("/v1/analytics/usage", None, team_id=made.team["id"])["total_requests"] == 5
    listed = made.ok("/v1/analytics/requests", None, key_id=made.keys["b"]["id"])
    assert {r["id"] for r in listed["requests"]} == set(made.ids["b"])


def test_a_key_never_sees_another_keys_rows(made: Made) -> None:
    assert made.ok("/v1/analytics/usage", "b")["total_requests"] == 2
    listed = made.ok("/v1/analytics/requests", "b", per_page=100)
    assert {r["id"] for r in listed["requests"]} == set(made.ids["b"]) and listed["total"] == 2
    for other in made.ids["a"]:
        response = made.get(f"/v1/analytics/requests/{other}", "b")
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "invalid_request_error"
    refused = made.get("/v1/analytics/usage", "b", key_id=made.keys["a"]["id"])
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "key_id"
    refused = made.get("/v1/analytics/requests", "b", team_id=made.team["id"])
    assert refused.status_code == 403 and refused.json()["error"]["param"] == "team_id"


# --- GET /v1/analytics/requests -------------------------------------------------------------------


async def test_requests_newest_first_with_every_field(made: Made) -> None:
    got = made.ok("/v1/analytics/requests", "a")
    assert (got["total"], got["page"], got["per_page"], got["total_pages"]) == (5, 1, 20, 1)
    assert [r["id"] for r in got["requests"]] == list(reversed(made.ids["a"]))
    rows = {r["request_id"]: r for r in await made.rows("key_id = $1", made.keys["a"]["id"])}
    for item in got["requests"]:
        row = rows[item["id"]]
        assert set(item) == {
            "id",
            "created_at",
            "model",
            "provider",
            "prompt_preview",
            "input_tokens",
            "output_tokens",
            "total_cost_usd",
            "latency_ms",
            "status",
        }
        assert datetime.fromisoformat(item["created_at"]) == row["started_at"].replace(
            microsecond=row["started_at"].microsecond // 1000 * 1000
        )
        assert (item["model"], item["provider"], item["status"]) == (
            row["requested_model"],
            row["provider"],
            row["status"],
        )
        assert (item["input_tokens"], item["output_tokens"]) == (row["prompt_tokens"], row["completion_tokens"])
        if row["cost_usd"] is None:  # an unknown price: null, never 0
            assert item["total_cost_usd"] is None and row["price_unknown"]
        else:
            assert item["total_cost_usd"] == pytest.approx(float(row["cost_usd"]))
        assert item["latency_ms"] == pytest.approx(row["latency_ms"])
    first = got["requests"][-1]
    assert first["prompt_preview"] == "Be brief.\n\nalpha: what is the weather in Paris?"


def test_paging_edges(made: Made) -> None:
    pages = [made.ok("/v1/analytics/requests", "a", per_page=2, page=n) for n in (1, 2, 3, 4)]
    assert [p["total_pages"] for p in pages] == [3, 3, 3, 3] and all(p["total"] == 5 for p in pages)
    assert [len(p["requests"]) for p in pages] == [2, 2, 1, 0]
    seen = [r["id"] for p in pages for r in p["requests"]]
    assert seen == list(reversed(made.ids["a"]))  # every request once, none repeated across pages
    assert made.ok("/v1/analytics/requests", "a", per_page=100)["total_pages"] == 1


def test_filters_model_status_and_dates(made: Made) -> None:
    by_model = made.ok("/v1/analytics/requests", "a", model="cheap")
    assert [r["id"] for r in by_model["requests"]] == [made.ids["a"][3]] and by_model["total"] == 1
    errors = made.ok("/v1/analytics/requests", "a", status="error")
    assert [r["id"] for r in errors["requests"]] == [made.ids["a"][4]] and errors["total"] == 1
    successes = made.ok("/v1/analytics/requests", "a", status="success")
    assert successes["total"] == 4 and made.ids["a"][4] not in {r["id"] for r in successes["requests"]}
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert made.ok("/v1/analytics/requests", "a", start_date=tomorrow)["total"] == 0
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    ranged = made.ok("/v1/analytics/requests", "a", start_date=hour_ago, end_date=tomorrow, model="demo")
    assert ranged["total"] == 3 and {r["id"] for r in ranged["requests"]} == set(made.ids["a"][:3])
    assert made.ok("/v1/analytics/requests", "a", end_date=hour_ago)["total"] == 0


def test_search_finds_prompt_text_within_the_callers_scope(made: Made) -> None:
    found = made.ok("/v1/analytics/requests", "a", search="WEATHER")  # case-insensitive
    assert {r["id"] for r in found["requests"]} == {made.ids["a"][0], made.ids["a"][2]} and found["total"] == 2
    assert made.ok("/v1/analytics/requests", "a", search="weather", model="demo", status="success")["total"] == 2
    assert made.ok("/v1/analytics/requests", "a", search="100%_sure")["total"] == 0  # LIKE's wildcards are text
    everyone = made.ok("/v1/analytics/requests", None, search="weather")
    # b's request matches too; the quiet key's does not: its texts were never stored.
    assert {r["id"] for r in everyone["requests"]} == {made.ids["a"][0], made.ids["a"][2], made.ids["b"][0]}


# --- GET /v1/analytics/requests/{id} ----------------------------------------------------------------


async def test_request_detail_field_for_field(made: Made) -> None:
    request_id = made.ids["a"][0]
    [row] = await made.rows("request_id = $1", request_id)
    got = made.ok(f"/v1/analytics/requests/{request_id}", "a")
    assert got == {
        "id": request_id,
        "created_at": got["created_at"],
        "completed_at": got["completed_at"],
        "model": "demo",
        "provider": "fake",
        "prompt_text": "Be brief.\n\nalpha: what is the weather in Paris?",
        "response_text": _kept(made.answers[request_id]),
        "input_tokens": row["prompt_tokens"],
        "output_tokens": row["completion_tokens"],
        "total_tokens": row["total_tokens"],
        "input_cost_usd": pytest.approx(float(row["input_cost_usd"])),
        "output_cost_usd": pytest.approx(float(row["output_cost_usd"])),
        "total_cost_usd": pytest.approx(float(row["cost_usd"])),
        "latency_ms": pytest.approx(row["latency_ms"]),
        "status": "success",
        "error_message": None,
    }
    assert datetime.fromisoformat(got["created_at"]) <= datetime.fromisoformat(got["completed_at"])
    assert abs(datetime.fromisoformat(got["completed_at"]) - row["finished_at"]) < timedelta(milliseconds=1)
    # The master key reads any request.
    assert made.ok(f"/v1/analytics/requests/{request_id}", None)["id"] == request_id


def test_streamed_answer_text_is_kept(made: Made) -> None:
    request_id = made.ids["a"][3]
    got = made.ok(f"/v1/analytics/requests/{request_id}", "a")
    answer = made.answers[request_id]
    assert len(answer.encode()) > CAP  # the fake's answer is longer than this stack's cap
    # A stream stops being kept once past the cap: the size of what was not kept is not known.
    kept = answer.encode()[:CAP].decode(errors="ignore")
    assert re.fullmatch(re.escape(kept) + r"… \[truncated(: \d+ bytes)?\]", got["response_text"])


def test_long_texts_are_cut_and_marked(made: Made) -> None:
    got = made.ok(f"/v1/analytics/requests/{made.ids['a'][2]}", "a")
    prompt = "Be brief.\n\n" + LONG_PROMPT
    assert got["prompt_text"] == f"{prompt[:CAP]}… [truncated: {len(prompt)} bytes]"
    listed = made.ok("/v1/analytics/requests", "a", search="weather report")
    assert listed["requests"][0]["prompt_preview"] == f"{prompt[:CAP]}… [truncated: {len(prompt)} bytes]"[:100]


def test_failed_request_has_its_error(made: Made) -> None:
    got = made.ok(f"/v1/analytics/requests/{made.ids['a'][4]}", "a")
    assert got["status"] == "error" and got["error_message"] and got["response_text"] == ""
    assert got["prompt_text"] == "Be brief.\n\ndelta: this one fails"


def test_a_key_that_stores_no_bodies_has_none(made: Made) -> None:
    got = made.ok(f"/v1/analytics/requests/{made.ids['quiet'][0]}", "quiet")
    assert (got["prompt_text"], got["response_text"]) == (None, None)
    assert made.ok("/v1/analytics/requests", "quiet")["requests"][0]["prompt_preview"] is None


def test_the_anthropic_ingress_keeps_texts_too(made: Made) -> None:
    request_id = made.ids["anthropic"][0]
    got = made.ok(f"/v1/analytics/requests/{request_id}", "anthropic")
    assert got["prompt_text"] == "Be brief.\n\ntheta: hi"
    assert got["response_text"] == _kept(made.answers[request_id]) and made.answers[request_id]


def test_unknown_request_is_404(made: Made) -> None:
    response = made.get("/v1/analytics/requests/chatcmpl-nope", "a")
    assert response.status_code == 404
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == "request_not_found"


# --- bad parameters --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v1/analytics/usage", {"days": "0"}, "days"),
        ("/v1/analytics/usage", {"days": "366"}, "days"),
        ("/v1/analytics/usage", {"days": "week"}, "days"),
        ("/v1/analytics/usage", {"day": "3"}, "day"),
        ("/v1/analytics/requests", {"page": "0"}, "page"),
        ("/v1/analytics/requests", {"per_page": "101"}, "per_page"),
        ("/v1/analytics/requests", {"per_page": "1.5"}, "per_page"),
        ("/v1/analytics/requests", {"status": "ok"}, "status"),
        ("/v1/analytics/requests", {"start_date": "yesterday"}, "start_date"),
        ("/v1/analytics/requests", {"start_date": "2026-12-02", "end_date": "2026-12-01"}, "end_date"),
        ("/v1/analytics/requests", {"search": "x" * 201}, "search"),
        ("/user/stats", {"days": "1"}, "days"),
    ],
)
def test_bad_parameters_are_400_naming_them(made: Made, path: str, params: dict[str, str], param: str) -> None:
    response = made.get(path, "a", **params)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert set(error) == {"message", "type", "param", "code"}


def test_no_key_is_401(made: Made) -> None:
    assert httpx.get(f"{made.stack.base_url}/v1/analytics/usage").status_code == 401


# --- GET /v1/analytics/models -------------------------------------------------------------------


def test_models_with_their_prices(made: Made) -> None:
    got = {m["model_id"]: m for m in made.ok("/v1/analytics/models", "a")}
    assert set(got) == {"demo", "cheap", "broken"}
    assert got["demo"]["input_price_per_1m_tokens"] == 500.0 and got["demo"]["output_price_per_1m_tokens"] == 1500.0
    assert got["cheap"]["input_price_per_1m_tokens"] == 10.0 and got["cheap"]["output_price_per_1m_tokens"] == 20.0
    assert set(got["demo"]) == {
        "id",
        "model_id",
        "display_name",
        "provider",
        "input_price_per_1m_tokens",
        "output_price_per_1m_tokens",
        "context_window",
        "is_active",
    }
    assert (got["demo"]["provider"], got["demo"]["is_active"], got["demo"]["context_window"]) == ("fake", True, None)
    assert sorted(m["id"] for m in got.values()) == [1, 2, 3]


# --- GET /user/stats ------------------------------------------------------------------------------


async def test_user_stats_of_a_key_with_budgets(made: Made) -> None:
    rows = await made.rows("key_id = $1", made.keys["a"]["id"])
    spent = _money(rows)
    got = made.ok("/user/stats", "a")
    assert (got["key_id"], got["team_id"]) == (made.keys["a"]["id"], made.team["id"])
    period = {"requests": 5, "tokens": sum(r["total_tokens"] for r in rows), "cost_usd": pytest.approx(spent)}
    assert got["today"] == period and got["this_month"] == period
    assert got["budgets"]["key"] == {
        "daily": {
            "budget_usd": 100.0,
            "spent_usd": pytest.approx(spent),
            "remaining_usd": pytest.approx(100.0 - spent),
        },
        "monthly": None,
    }
    assert got["budgets"]["team"] == {
        "daily": None,
        "monthly": {
            "budget_usd": 500.0,
            "spent_usd": pytest.approx(spent),
            "remaining_usd": pytest.approx(500.0 - spent),
        },
    }
    assert [(m["model"], m["requests"]) for m in got["top_models"]] == [("demo", 3), ("broken", 1), ("cheap", 1)]


def test_user_stats_without_budgets(made: Made) -> None:
    got = made.ok("/user/stats", "b")
    assert got["today"]["requests"] == 2 and got["team_id"] is None
    assert got["budgets"] == {"key": {"daily": None, "monthly": None}, "team": None}
