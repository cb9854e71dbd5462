"""One client request as the dispatcher carries it: what the route handlers parsed (its model, body,
prompt estimate, key and limits), and what its answer learns on the way (the route that served it,
its price and usage) for the answer's headers and its usage event."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from common.pricing import Cost, billed_cost
from common.route_metadata import RouteMetadata
from gateway.analytics.bodies import BodyCapture
from modelrouter.events.v1 import events_pb2
from modelrouter.router.v1 import router_pb2


@dataclass(slots=True)
class Call:
    """One client request, as the dispatcher sees it."""

    request_id: str
    key_id: str
    endpoint: str
    operation: events_pb2.Operation
    model: str
    body: bytes
    stream: bool = False
    include_usage: bool = False
    estimated_tokens: int = 0
    max_tokens: int = 0  # the request's own output cap (0: none), for the router's context-window fit
    team_id: str = ""
    prompt_class: str = ""  # for model "auto": the classifier's class of the prompt
    # The key's and team's limits for the router (None: an ungoverned key), and once routed the
    # x-ratelimit-* headers of the answer.
    admission: router_pb2.Admission | None = None
    limit_headers: dict[str, str] = field(default_factory=dict)
    # Once an attempt answered: why its deployment was chosen and at what price (the answer's
    # x-modelrouter-* headers), and for a whole answer the usage it reported (its cost header).
    route: RouteMetadata | None = None
    price: router_pb2.Price | None = None
    usage: events_pb2.Usage | None = None
    _cost: Cost | None = field(default=None, init=False, repr=False)
    _costed: bool = field(default=False, init=False, repr=False)
    # Set when the key stores bodies: what the usage event's texts are taken from.
    bodies: BodyCapture | None = None
    started: float = field(default_factory=time.perf_counter)
    started_unix_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)

    def answer_cost(self) -> Cost | None:
        """A whole answer's cost at its deployment's price, as accounting bills it (None: the price is
        unknown, or one accounting refuses), computed once for its cost header and its settlement and
        metrics. Only once ``usage`` and ``price`` are known."""
        if not self._costed:
            assert self.usage is not None and self.price is not None
            usage = self.usage
            self._cost = billed_cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, self.price)
            self._costed = True
        return self._cost
