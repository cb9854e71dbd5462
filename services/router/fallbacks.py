"""Route's decision across models: the asked model's route first, then the models the config names
as its fallbacks (``fallbacks: {gpt-4o: [claude-sonnet-4-5, ...]}``), each by the same rules (its own
strategy, its deployments' health and limits, and the context-window fit of the request's estimated
prompt plus ``max_tokens``). The answer explains itself (``RouteExplanation``).

A model without fallbacks takes the first branch of ``decide`` and nothing else: one pick, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

from common.errors import ContextLengthExceededError, ModelRouterError, NoHealthyTargetError, RateLimitError
from modelrouter.router.v1 import router_pb2
from router import strategies
from router.limits.admission import KeyLimits
from router.selection import Candidate, ModelRoute, RoutingTable
from router.state import Pick, RouterState


class RouteDecider:
    def __init__(self, table: RoutingTable, state: RouterState, limits: KeyLimits) -> None:
        self._table = table
        self._state = state
        self._limits = limits

    async def decide(
        self, request: router_pb2.RouteRequest, settlements: Sequence[router_pb2.Settlement] = ()
    ) -> router_pb2.RouteResponse:
        """``settlements`` (see ``limits.admission.folds_into``) go into the first admission script
        this decision runs; when it runs none (an unknown model, nothing usable), they are settled
        on their own."""
        pending = list(settlements)
        try:
            return await self._decide(request, pending)
        finally:
            if pending:
                await self._limits.settle(pending)

    async def _decide(
        self, request: router_pb2.RouteRequest, pending: list[router_pb2.Settlement]
    ) -> router_pb2.RouteResponse:
        route = self._table.route_of(request.model, request.prompt_class)
        tokens = request.estimated_tokens + request.max_tokens
        candidates = route.usable(request.exclude_deployments, tokens)
        if not route.fallbacks:
            if not candidates and route.sized:
                _raise_if_too_large(request, [route], tokens)
            pick = await self._pick(request, route, candidates, pending)
            return _answer(request, route, candidates, pick, route.reason, prompt_class=route.prompt_class)
        return await self._with_fallbacks(request, route, candidates, tokens, pending)

    async def _with_fallbacks(
        self,
        request: router_pb2.RouteRequest,
        asked: ModelRoute,
        candidates: list[Candidate],
        tokens: int,
        pending: list[router_pb2.Settlement],
    ) -> router_pb2.RouteResponse:
        routes = [asked, *(self._table.route_of(m) for m in asked.fallbacks if self._table.has_model(m))]
        first_error: ModelRouterError | None = None
        for n, route in enumerate(routes):
            usable = candidates if n == 0 else route.usable(request.exclude_deployments, tokens)
            if not usable:
                continue
            try:
                pick = await self._pick(request, route, usable, pending)
            except (NoHealthyTargetError, RateLimitError) as exc:
                first_error = first_error or exc
                continue
            reason = route.reason if n == 0 else _fallback_reason(asked.model, route)
            answer = _answer(request, route, usable, pick, reason, fallback=n > 0, prompt_class=asked.prompt_class)
            # What the gateway may fail over to once these run out: the later models' deployments
            # (each Route decides again; these only tell the gateway that trying on is worth it).
            for later in routes[n + 1 :]:
                answer.fallbacks.extend(c.target for c in later.usable(request.exclude_deployments, tokens))
            return answer
        if first_error is not None:
            raise first_error
        _raise_if_too_large(request, routes, tokens)
        raise NoHealthyTargetError(f"no deployment of model {asked.model!r} or its fallbacks is left to try")

    async def _pick(
        self,
        request: router_pb2.RouteRequest,
        route: ModelRoute,
        candidates: list[Candidate],
        pending: list[router_pb2.Settlement],
    ) -> Pick:
        args = route.strategy_args(candidates)
        if request.HasField("admission"):
            folded, pending[:] = pending[:], []  # applied by this script, whatever it answers
            return await self._limits.admit(request, candidates, args, folded)
        return await self._state.pick(route.model, candidates, request.estimated_tokens, args)


def _answer(
    request: router_pb2.RouteRequest,
    route: ModelRoute,
    candidates: Sequence[Candidate],
    pick: Pick,
    reason: str,
    fallback: bool = False,
    prompt_class: str = "",
) -> router_pb2.RouteResponse:
    response = router_pb2.RouteResponse(
        explanation=router_pb2.RouteExplanation(
            strategy=route.strategy,
            reason=reason,
            prompt_class=prompt_class,
            requested_model=request.model,
            fallback=fallback,
        )
    )
    response.target.CopyFrom(candidates[pick.chosen].target)
    response.target.recent_failures = pick.recent_failures
    response.fallbacks.extend(candidates[i].target for i in pick.fallbacks)
    if pick.requests is not None:
        response.requests.CopyFrom(pick.requests)
    if pick.tokens is not None:
        response.tokens.CopyFrom(pick.tokens)
    return response


def _fallback_reason(asked: str, route: ModelRoute) -> str:
    return (
        f"No deployment of {asked} could serve the request, so its fallback {route.model} did: "
        f"{strategies.REASONS[route.strategy]}."
    )


def _raise_if_too_large(request: router_pb2.RouteRequest, routes: Sequence[ModelRoute], tokens: int) -> None:
    """ContextLengthExceededError when no deployment of any of ``routes`` has a window ``tokens`` fit."""
    if any(c.fits(tokens) for route in routes for c in route.candidates):
        return
    largest = max((c.target.context_window for route in routes for c in route.candidates), default=0)
    raise ContextLengthExceededError(
        f"This request needs about {tokens} tokens (prompt estimate {request.estimated_tokens} plus max_tokens "
        f"{request.max_tokens}), more than the largest context window of model {request.model!r} "
        f"or its fallbacks ({largest}).",
        param="messages",
    )
