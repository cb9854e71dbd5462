"""Routing state shared by every router replica, kept in Redis: rate-limit windows and health.

Each operation is one Lua script (``lua/*.lua``, pieces joined by ``router.scripts``), sent by SHA
with EVALSHA: one round trip, atomic, timed by Redis's own clock. Nothing is cached in the process,
so replicas never disagree. Keys' and teams' limits are ``router.limits``'s, in the same Redis.

Keys, all under ``key_prefix`` (``mr:`` in production) and all expiring::

    <prefix>dep:<id>:r:<window>   requests counted in one rate-limit window
    <prefix>dep:<id>:t:<window>   estimated tokens counted in one rate-limit window
    <prefix>dep:<id>:fails        consecutive failures
    <prefix>dep:<id>:cd           present while the deployment cools down
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

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
        self._failure_threshold = health.failure_threshold
        self._cooldown_ms = math.ceil(health.cooldown_s * 1000)
        self._route_script = redis.register_script(scripts.lua_source(scripts.ROUTE))
        self._outcome_script = redis.register_script(scripts.lua_source(scripts.REPORT_OUTCOME))

    async def load_scripts(self) -> None:
        """Load the scripts into Redis at start, so the first Route is already a bare EVALSHA.

        Raises RedisError if Redis is unreachable, which makes this the start-up connectivity check.
        """
        for script in (self._route_script, self._outcome_script):
            await self.redis.script_load(script.script)

    def deployment_key(self, deployment_id: str) -> str:
        return f"{self.key_prefix}dep:{deployment_id}"

    async def pick(self, model: str, candidates: Sequence[Candidate], estimated_tokens: int) -> Pick:
        """Take a slot on the first usable candidate; RateLimitError / NoHealthyTargetError if none."""
        if not candidates:
            raise NoHealthyTargetError(f"no deployment of model {model!r} is left to try")
        args: list[int] = [self.window_ms, estimated_tokens, self.counter_ttl_ms]
        for candidate in candidates:
            args += (candidate.rpm, candidate.tpm)
        try:
            reply = await self._route_script(keys=[self.deployment_key(c.deployment_id) for c in candidates], args=args)
        except RedisError as exc:
            raise state_unavailable(exc) from exc
        return pick_of(reply, model)

    async def report_outcome(
        self, deployment_id: str, *, success: bool, status_code: int, retry_after_s: float
    ) -> bool:
        """Count a success or failure; returns whether the deployment is healthy afterwards."""
        demanded_ms = math.ceil(retry_after_s * 1000) if status_code == 429 and retry_after_s > 0 else 0
        try:
            healthy = await self._outcome_script(
                keys=[self.deployment_key(deployment_id)],
                args=[
                    1 if success else 0,
                    demanded_ms,
                    self._failure_threshold,
                    self._cooldown_ms,
                    _FAILURE_MEMORY_MS,
                ],
            )
        except RedisError as exc:
            raise state_unavailable(exc) from exc
        return bool(healthy)


def state_unavailable(exc: RedisError) -> ModelRouterError:
    log.warning("redis: %s", exc)
    return ModelRouterError(f"routing state in Redis is unavailable: {exc}", code="router_state_unavailable")
