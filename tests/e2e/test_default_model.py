"""A body without ``model`` through the real gateway process, whose stack sets no default model
(neither ``DEFAULT_MODEL`` nor the config's ``default_model``): still OpenAI's 400, and still exactly
one usage record, as every request that reached the gateway with a valid key has."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.conftest import KEY, RunningStack
from tests.e2e.test_spine import one_row

pytestmark = pytest.mark.e2e


async def test_a_body_without_model_and_no_default_is_a_400_naming_model(running_stack: RunningStack) -> None:
    async with httpx.AsyncClient(base_url=running_stack.base_url) as http:
        answer = await http.post(
            "/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "What is the capital of France?"}]},
            headers={"Authorization": f"Bearer {KEY}"},
        )
    assert answer.status_code == 400
    assert answer.json() == {
        "error": {
            "message": "Missing required parameter: 'model'.",
            "type": "invalid_request_error",
            "param": "model",
            "code": None,
        }
    }
    row = await one_row(running_stack, answer.headers["x-request-id"])
    assert row["http_status"] == 400
