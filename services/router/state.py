"""Routing state shared by every router replica, kept in Redis: rate-limit windows and health.

Each operation is one Lua script (``lua/*.lua``, pieces joined by ``router.scripts``), sent by SHA
with EVALSHA: one round trip, atomic, timed by Redis's own clock. Nothing is cached in the process,
so replicas never disagree. Keys' and teams' limits are ``router.limits``'s, in the same Redis.

Keys, all under ``key_prefix`` (``mr:`` in production) and all expiring::

    <prefix>dep:<id>:r:<window>   requests counted in one rate-limit window
    <prefix>dep:<id>:t:<window>   estimated tokens counted in one rate-limit window
    <prefix>dep:<id>:fails        consecutive failures
    <prefix>dep:<id>:cd           present while the upstream asked the deployment to rest
    <prefix>dep:<id>:ej           ejected until this Unix ms (outlier detection, ``lua/health.lua``)
    <prefix>dep:<id>:nej          times ejected (each ejection lasts longer)
    <prefix>dep:<id>:probe        held by the one request probing an ejected deployment
    <prefix>dep:<id>:s            hash of statistics: requests, in flight, outcomes, latency
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from common.config import HealthConfig
from common.errors import ModelRouterError, NoHealthyTargetError, RateLimitError
from modelrouter.router.v1 import router_pb2
from router import scripts
from router.selection import Candidate

log = logging.getLogger(__name__)

ROUTE_OK, ROUTE_RATE_LIMITED, ROUTE_NO_HEALTHY = 0, 1, 2
# A failure counter nobody has touched for this long is forgotten, so idle keys do not live forever.
_FAILURE_MEMORY_MS = 3_600_000
# The newest sample's weight in the latency EWMAs: about the last ten attempts matter.
LATENCY_EWMA_WEIGHT = 0.2
# Upstream error codes saying the account's quota or credit is gone (OpenAI's, on a 429).
QUOTA_CODES = frozenset({"insufficient_quota"})
WINDOW_S = 60.0  # requests/tokens *per minute*


@dataclass(frozen=True, slots=True)
class Pick:
    """Indexes into the candidates Route was given."""

    chosen: int
    recent_failures: int
    fallbacks: tuple[int, ...]
    # For the answer's x-ratelimit-* headers: the key's rpm/tpm, else the chosen deployment's; None
    # where neither has that limit.
    requests: router_pb2.LimitState | None = None
    tokens: router_pb2.LimitState | None = None


def limit_state(limit: int, remaining: int, reset_ms: int) -> router_pb2.LimitState | None:
    """A script's (limit, remaining, reset ms) triple; -1s mean no such limit."""
    if limit < 0:
        return None
    return router_pb2.LimitState(limit=limit, remaining=remaining, reset_ms=reset_ms)


def pick_of(reply: list[int], model: str) -> Pick:
    """pick_deployment's answer (``lua/deployments.lua``) as a Pick, or its refusal raised."""
    status = reply[0]
    if status == ROUTE_OK:
        return Pick(
            chosen=reply[7] - 1,
            recent_failures=reply[8],
            fallbacks=tuple(i - 1 for i in reply[9:]),
            requests=limit_state(reply[1], reply[2], reply[3]),
            tokens=limit_state(reply[4], reply[5], reply[6]),
        )
    if status == ROUTE_RATE_LIMITED:
        raise RateLimitError(
            f"every deployment of model {model!r} is over its rate limit",
            retry_after_s=reply[1] / 1000,
        )
    raise NoHealthyTargetError(f"no healthy deployment of model {model!r} is available")


class RouterState:
    def __init__(
        self,
        redis: Redis,
        health: HealthConfig,
        *,
        key_prefix: str = "mr:",
        window_s: float = WINDOW_S,
    ) -> None:
        self.redis = redis
        self.key_prefix = key_prefix
        self.window_ms = round(window_s * 1000)
        # A window's counter is read while it is the current window and while it is the previous one.
        self.counter_ttl_ms = 2 * self.window_ms + 1000
        self._health_args = (
            health.failure_threshold,
            math.ceil(health.cooldown_s * 1000),
            math.ceil(health.max_ejection_s * 1000),
            health.max_ejection_share,
            _FAILURE_MEMORY_MS,
        )
        self._quota_cooldown_ms = math.ceil(health.quota_cooldown_s * 1000)
        self._route_script = redis.register_script(scripts.lua_source(scripts.ROUTE))
        self._outcome_script = redis.register_script(scripts.lua_source(scripts.HEALTH))
        self._overview_script = redis.register_script(scripts.lua_source(scripts.OVERVIEW))

    async def load_scripts(self) -> None:
        """Load the scripts into Redis at start, so the first Route is already a bare EVALSHA.

        Raises RedisError if Redis is unreachable, which makes this the start-up connectivity check.
        """
        for script in (self._route_script, self._outcome_script, self._overview_script):
            await self.redis.script_load(script.script)

    def deployment_key(self, deployment_id: str) -> str:
        return f"{self.key_prefix}dep:{deployment_id}"

    async def pick(
        self,
        model: str,
        candidates: Sequence[Candidate],
        estimated_tokens: int,
        strategy_args: Sequence[str | float] = (),
    ) -> Pick:
        """Take a slot on the candidate the strategy chooses (``strategy_args``, from
        ``router.strategies``; none for priority and cost: the first usable one); RateLimitError /
        NoHealthyTargetError if none is usable."""
        if not candidates:
            raise NoHealthyTargetError(f"no deployment of model {model!r} is left to try")
        args: list[int | float | str] = [self.window_ms, estimated_tokens, self.counter_ttl_ms]
        for candidate in candidates:
            args += (candidate.rpm, candidate.tpm)
        args += strategy_args
        try:
            reply = await self._route_script(keys=[self.deployment_key(c.deployment_id) for c in candidates], args=args)
        except RedisError as exc:
            raise state_unavailable(exc) from exc
        return pick_of(reply, model)

    async def report_outcome(
        self,
        deployment_id: str,
        *,
        success: bool,
        status_code: int,
        retry_after_s: float,
        error_code: str = "",
        latency_ms: float = 0.0,
        ttft_ms: float = 0.0,
        in_flight: bool = False,
        siblings: Sequence[str] = (),
    ) -> bool:
        """Count a success or failure; returns whether the deployment is healthy afterwards.

        ``siblings``: the other deployments of its model, whose ejections the cap counts.
        ``in_flight``: the pick counted this attempt in flight (its strategy reports every outcome).
        """
        try:
            healthy = await self._outcome_script(
                keys=[self.deployment_key(deployment_id), *(self.deployment_key(d) for d in siblings)],
                args=[
                    1 if success else 0,
                    self.window_ms,
                    self.counter_ttl_ms,
                    0 if success else self._demanded_rest_ms(status_code, retry_after_s, error_code),
                    *self._health_args,
                    max(latency_ms, 0.0),
                    max(ttft_ms, 0.0),
                    1 if in_flight else 0,
                    LATENCY_EWMA_WEIGHT,
                ],
            )
        except RedisError as exc:
            raise state_unavailable(exc) from exc
        return bool(healthy)

    async def read_overview(self, deployments: Sequence[Candidate], key_bases: Sequence[str]) -> list[Any]:
        """``lua/overview.lua``'s raw answer for ``deployments`` and the keys at ``key_bases``."""
        args: list[int] = [self.window_ms, 0, self.counter_ttl_ms, len(deployments)]
        for candidate in deployments:
            args += (candidate.rpm, candidate.tpm)
        try:
            reply: list[Any] = await self._overview_script(
                keys=[*(self.deployment_key(c.deployment_id) for c in deployments), *key_bases], args=args
            )
        except RedisError as exc:
            raise state_unavailable(exc) from exc
        return reply

    def _demanded_rest_ms(self, status_code: int, retry_after_s: float, error_code: str) -> int:
        """How long the upstream asked the deployment to rest: a 429's Retry-After; for a quota or
        credit that is gone (402, insufficient_quota), its Retry-After or the configured cooldown.
        0: an ordinary failure, for outlier detection."""
        asked = math.ceil(retry_after_s * 1000) if retry_after_s > 0 else 0
        if status_code == 402 or error_code in QUOTA_CODES:
            return asked or self._quota_cooldown_ms
        return asked if status_code == 429 else 0


def state_unavailable(exc: RedisError) -> ModelRouterError:
    log.warning("redis: %s", exc)
    return ModelRouterError(f"routing state in Redis is unavailable: {exc}", code="router_state_unavailable")
