"""The ``auth_scheme`` Target option: how a worker's HTTP adapters send the deployment's key."""

from __future__ import annotations

from common.config import AUTH_SCHEME_OPTION
from common.providers.base import Operation, ProviderCall
from workers.providers._http import authorization, key_header


def call(api_key: str | None, options: dict[str, str]) -> ProviderCall:
    return ProviderCall(
        request_id="r1",
        operation=Operation.CHAT,
        body={},
        upstream_model="m",
        api_key=api_key,
        timeout_s=5,
        options=options,
    )


def test_the_key_goes_as_bearer_by_default() -> None:
    assert authorization(call("sk-1", {})) == {"Authorization": "Bearer sk-1"}


def test_auth_scheme_option_names_the_scheme() -> None:
    assert authorization(call("tok-9", {AUTH_SCHEME_OPTION: "OAuth"})) == {"Authorization": "OAuth tok-9"}


def test_no_key_no_header() -> None:
    assert authorization(call(None, {AUTH_SCHEME_OPTION: "OAuth"})) == {}


def test_a_providers_own_key_header_gives_way_to_the_auth_scheme() -> None:
    assert key_header(call("ak-1", {}), "x-api-key") == {"x-api-key": "ak-1"}
    assert key_header(call("tok-9", {AUTH_SCHEME_OPTION: "OAuth"}), "x-api-key") == {"Authorization": "OAuth tok-9"}
    assert key_header(call(None, {AUTH_SCHEME_OPTION: "OAuth"}), "x-goog-api-key") == {}
