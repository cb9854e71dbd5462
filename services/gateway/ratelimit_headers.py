"""OpenAI's ``x-ratelimit-*`` response headers, from the limit states the router answers with: the
key's own limits when it has them, else the chosen deployment's (``RouteResponse.requests/tokens``)."""

from __future__ import annotations

from modelrouter.router.v1 import router_pb2


def go_duration(ms: int) -> str:
    """A wait as OpenAI writes it (Go's duration format): ``20ms``, ``1s``, ``6m0s``, ``1h2m3.5s``."""
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    seconds = f"{rest / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{minutes}m{seconds}"
    return seconds


def limit_headers(requests: router_pb2.LimitState | None, tokens: router_pb2.LimitState | None) -> dict[str, str]:
    headers: dict[str, str] = {}
    for kind, state in (("requests", requests), ("tokens", tokens)):
        if state is not None and state.limit:
            headers[f"x-ratelimit-limit-{kind}"] = str(state.limit)
            headers[f"x-ratelimit-remaining-{kind}"] = str(state.remaining)
            headers[f"x-ratelimit-reset-{kind}"] = go_duration(state.reset_ms)
    return headers


def of(answer: router_pb2.RouteResponse | router_pb2.RouteError) -> dict[str, str]:
    """The headers of a Route's answer, or of its refusal (a 429 shows them too)."""
    return limit_headers(
        answer.requests if answer.HasField("requests") else None,
        answer.tokens if answer.HasField("tokens") else None,
    )
