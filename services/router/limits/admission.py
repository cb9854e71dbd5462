"""Route with an Admission, and Settle: one Lua script each (``lua/admit.lua``, ``lua/settle.lua``).

The admission script checks the key's and its team's rpm, tpm, parallel slots and budgets, picks the
deployment, and (on the request's first attempt) reserves everything under the request id, all in one
atomic step: exact across any number of router replicas. Keys (under the router's key prefix)::

    <prefix>key:<id>:...   <prefix>team:<id>:...   see lua/reservations.lua

When a budget's spend counter is missing the script says so instead of deciding; the counter is
then seeded from the usage ledger (``ledger``), only if still absent, and the script runs again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from collections.abc import Iterable, Sequence
from decimal import Decimal

from redis.exceptions import RedisError

from common.errors import ModelRouterError
from common.pricing import NANO_USD_PER_USD, InvalidPriceError, max_cost_nano_usd
from modelrouter.keys.v1 import keys_pb2
from modelrouter.router.v1 import router_pb2
from router import scripts
from router.limits import refusals
from router.limits.ledger import LedgerUnreachableError, SpendLedger
from router.selection import Candidate
from router.state import Pick, RouterState, limit_state, pick_of, state_unavailable

log = logging.getLogger(__name__)

_RATE_REFUSED, _BUDGET_REFUSED, _SEED_NEEDED = 3, 4, 5
NO_LIMIT = -1
DEFAULT_HOLD_S = 600
# A seeded counter outlives its window by this much: a request admitted just before the window ended
# still settles into it.
_SEED_OVERLAP_MS = 3_600_000
# Seeds then a retry; a counter that vanishes again at once (Redis flushed twice) gives up.
_SEED_ROUNDS = 3
_LIMIT_FIELDS = ("rpm", "tpm", "max_parallel", "daily_budget_usd", "monthly_budget_usd")


class KeyLimits:
    def __init__(self, state: RouterState, ledger: SpendLedger | None = None) -> None:
        self._state = state
        self._redis = state.redis
        self._prefix = state.key_prefix
        self._ledger = ledger
        self._admit_script = self._redis.register_script(scripts.lua_source(scripts.ADMIT))
        self._settle_script = self._redis.register_script(scripts.lua_source(scripts.SETTLE))
        # Counter key -> its seed in flight: concurrent requests of one key wait for one ledger query.
        self._seeding: dict[str, asyncio.Task[None]] = {}

    async def load_scripts(self) -> None:
        for script in (self._admit_script, self._settle_script):
            await self._redis.script_load(script.script)

    def subject_key(self, kind: str, subject_id: str) -> str:
        """The key base of a key ("key") or a team ("team")."""
        return f"{self._prefix}{kind}:{subject_id}"

    async def admit(
        self,
        request: router_pb2.RouteRequest,
        candidates: Sequence[Candidate],
        strategy_args: Sequence[str | float] = (),
        settlements: Sequence[router_pb2.Settlement] = (),
    ) -> Pick:
        """Pick a deployment for a governed request; KeyRateLimitError / KeyBudgetExceededError /
        LedgerUnreachableError (budget counter not rebuildable) when the key or team refuses it.
        ``strategy_args`` follow the candidates' limits, as ``RouterState.pick`` sends them.
        ``settlements`` (each ``folds_into`` this request) are applied first, in the same step."""
        admission = request.admission
        subjects = _subjects(request)
        first = admission.first
        tokens = request.estimated_tokens + admission.max_output_tokens
        budgeted = first and any(_has_budget(limits) for _, _, limits in subjects)
        keys = [self.subject_key(kind, subject_id) for kind, subject_id, _ in subjects]
        keys += [self._state.deployment_key(c.deployment_id) for c in candidates]
        numbers: list[int] = [
            1 if first else 0,
            (admission.hold_s or DEFAULT_HOLD_S) * 1000,
            tokens,
            _max_cost(candidates, request.estimated_tokens, admission.max_output_tokens) if budgeted else 0,
            len(subjects),
        ]
        for _, _, limits in subjects:
            numbers += _limit_args(limits)
        numbers.append(len(settlements))
        for settlement in settlements:
            numbers += (settlement.used_tokens, max(0, settlement.cost_nano_usd))
        args: list[int | float | str] = [
            self._state.window_ms,
            request.estimated_tokens,
            self._state.counter_ttl_ms,
            admission.request_id,
            " ".join(map(str, numbers)),
            *(settlement.request_id for settlement in settlements),
        ]
        for candidate in candidates:
            args += (candidate.rpm, candidate.tpm)
        args += strategy_args

        for _ in range(_SEED_ROUNDS):
            try:
                reply = await self._admit_script(keys=keys, args=args)
            except RedisError as exc:
                raise state_unavailable(exc) from exc
            if reply[0] != _SEED_NEEDED:
                return self._decided(reply, request.model, subjects)
            await self._seed(reply, subjects)
        raise ModelRouterError("a budget's spend counter kept vanishing from Redis", code="router_state_unavailable")

    def _decided(self, reply: list[int], model: str, subjects: list[tuple[str, str, keys_pb2.Limits]]) -> Pick:
        status = reply[0]
        if status < _RATE_REFUSED:  # admitted, or refused by the deployments as an ungoverned Route is
            return pick_of(reply, model)
        requests, tokens = limit_state(*reply[1:4]), limit_state(*reply[4:7])
        kind, subject_id, _ = subjects[reply[7] - 1]
        subject = f"{kind} {subject_id}"
        error: refusals.KeyRateLimitError | refusals.KeyBudgetExceededError
        if status == _RATE_REFUSED:
            error = refusals.rate_limited(subject, *reply[8:13])
        else:
            error = refusals.budget_exceeded(subject, *reply[8:14])
        error.requests, error.tokens = requests, tokens
        raise error

    async def _seed(self, reply: list[int | bytes], subjects: list[tuple[str, str, keys_pb2.Limits]]) -> None:
        """Seed every counter the script found missing, from the ledger, at once."""
        seeds = []
        for at in range(1, len(reply), 5):
            subject, _what, start_ms, end_ms, counter = reply[at : at + 5]
            kind, subject_id, _ = subjects[int(subject) - 1]
            key = counter.decode() if isinstance(counter, bytes) else str(counter)
            task = self._seeding.get(key)
            if task is None:
                task = asyncio.create_task(self._seed_one(key, kind, subject_id, int(start_ms), int(end_ms)))
                self._seeding[key] = task
                task.add_done_callback(lambda _, key=key: self._seeding.pop(key, None))  # type: ignore[misc]
            seeds.append(task)
        # shield: one waiter cancelled (its caller gone) must not cancel the seed others wait on
        await asyncio.gather(*(asyncio.shield(task) for task in seeds))

    async def _seed_one(self, counter: str, kind: str, subject_id: str, start_ms: int, end_ms: int) -> None:
        if self._ledger is None:
            raise LedgerUnreachableError("no ledger configured")
        who = {"key_id": subject_id} if kind == "key" else {"team_id": subject_id}
        spent = await self._ledger.spent_since(since_ms=start_ms, **who)
        try:
            # NX: a counter another replica seeded meanwhile has counted settlements since; keep it.
            created = await self._redis.set(counter, spent, nx=True, pxat=end_ms + _SEED_OVERLAP_MS)
        except RedisError as exc:
            raise state_unavailable(exc) from exc
        log.info("seeded %s with %d nano-USD from the ledger%s", counter, spent, "" if created else " (already set)")

    async def settle(self, settlements: Iterable[router_pb2.Settlement]) -> None:
        """End each request's reservations (idempotent). Several go in one pipeline round trip."""
        calls = [self._settle_call(s) for s in settlements]
        calls = [(keys, args) for keys, args in calls if keys]
        if not calls:
            return
        try:
            if len(calls) == 1:
                await self._settle_script(keys=calls[0][0], args=calls[0][1])
                return
            async with self._redis.pipeline(transaction=False) as pipe:
                for keys, args in calls:
                    await self._settle_script(keys=keys, args=args, client=pipe)
                await pipe.execute()
        except RedisError as exc:
            raise state_unavailable(exc) from exc

    def _settle_call(self, settlement: router_pb2.Settlement) -> tuple[list[str], list[int | str]]:
        keys = []
        if settlement.key_id:
            keys.append(self.subject_key("key", settlement.key_id))
        if settlement.team_id:
            keys.append(self.subject_key("team", settlement.team_id))
        return keys, list(_settle_args(settlement))


def folds_into(settlement: router_pb2.Settlement, request: router_pb2.RouteRequest) -> bool:
    """Whether ``admit`` can apply ``settlement`` in ``request``'s own script call: a governed
    request of the same key, whose subjects include every one the settlement holds on."""
    if not request.HasField("admission") or settlement.key_id != request.key_id:
        return False
    return not settlement.team_id or any(
        kind == "team" and subject_id == settlement.team_id for kind, subject_id, _ in _subjects(request)
    )


def _subjects(request: router_pb2.RouteRequest) -> list[tuple[str, str, keys_pb2.Limits]]:
    """Whom a governed request is admitted against: its key, and its team when the team has limits."""
    admission = request.admission
    subjects = [("key", request.key_id, admission.key_limits)]
    if admission.team_id and _any_limit(admission.team_limits):
        subjects.append(("team", admission.team_id, admission.team_limits))
    return subjects


def _settle_args(settlement: router_pb2.Settlement) -> tuple[str, int, int]:
    return settlement.request_id, settlement.used_tokens, max(0, settlement.cost_nano_usd)


def _any_limit(limits: keys_pb2.Limits) -> bool:
    return any(limits.HasField(field) for field in _LIMIT_FIELDS)


def _has_budget(limits: keys_pb2.Limits) -> bool:
    return limits.HasField("daily_budget_usd") or limits.HasField("monthly_budget_usd")


def _limit_args(limits: keys_pb2.Limits) -> tuple[int, int, int, int, int]:
    return (
        limits.rpm if limits.HasField("rpm") else NO_LIMIT,
        limits.tpm if limits.HasField("tpm") else NO_LIMIT,
        limits.max_parallel if limits.HasField("max_parallel") else NO_LIMIT,
        _budget_nano(limits.daily_budget_usd) if limits.HasField("daily_budget_usd") else NO_LIMIT,
        _budget_nano(limits.monthly_budget_usd) if limits.HasField("monthly_budget_usd") else NO_LIMIT,
    )


@functools.lru_cache(maxsize=4096)  # a key's budget is the same on each of its requests
def _budget_nano(usd: float) -> int:
    """Rounded down: a budget never allows more than it says. A nonsensical one allows nothing."""
    if not math.isfinite(usd) or usd < 0:
        return 0
    return math.floor(Decimal(repr(usd)) * NANO_USD_PER_USD)


def _max_cost(candidates: Sequence[Candidate], prompt_tokens: int, max_output_tokens: int) -> int:
    """The most the request may cost on any of the model's deployments: a failover to a pricier one
    is then still covered by the reservation. A deployment with a broken price reserves nothing more."""
    prices = {(c.target.price.prompt_per_1k, c.target.price.completion_per_1k) for c in candidates}
    # Usually one deployment is at least as dear as every other on both prices: price only that one.
    dearest = (max(p for p, _ in prices), max(c for _, c in prices))
    if dearest in prices:
        try:
            return max_cost_nano_usd(prompt_tokens, max_output_tokens, *dearest)
        except InvalidPriceError:
            pass
    most = 0
    for prompt_per_1k, completion_per_1k in prices:
        try:
            most = max(most, max_cost_nano_usd(prompt_tokens, max_output_tokens, prompt_per_1k, completion_per_1k))
        except InvalidPriceError:
            continue
    return most
