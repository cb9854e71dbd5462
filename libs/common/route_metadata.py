"""Why a request went where it went, as every answer tells it: ``router_metadata`` in the body (the
worker writes it) and ``x-modelrouter-*`` response headers (the gateway sets them before the body).

Both sides build it here from the same Route answer (its ``Target`` and ``RouteExplanation``, which
the gateway copies into the ``Job``), so the body and the headers cannot disagree. A router that
explains nothing (from before explanations) routed by priority; its target serves the asked model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the generated protos are not a runtime dependency of common
    from modelrouter.router.v1 import router_pb2

DEFAULT_STRATEGY = "priority"
DEFAULT_REASON = "The first deployment by priority that is healthy and under its limits."
HEADER_PREFIX = "x-modelrouter-"
# What a header value may not carry: anything outside printable ASCII (HTTP/1.1 sends latin-1 at best,
# and a CR or LF would split the header).
_UNSAFE = re.compile(r"[^\x20-\x7e]")


def explain(explanation: router_pb2.RouteExplanation, requested_model: str) -> None:
    """Fill in what a router that explains nothing leaves out (in place, on the Job's copy)."""
    if not explanation.strategy:
        explanation.strategy = DEFAULT_STRATEGY
    if not explanation.requested_model:
        explanation.requested_model = requested_model


@dataclass(frozen=True, slots=True)
class RouteMetadata:
    selected_provider: str
    selected_model: str
    deployment_id: str
    strategy: str
    prompt_class: str | None  # auto routing's class of the prompt; None otherwise
    reason: str
    attempts: int

    @classmethod
    def of(
        cls, target: router_pb2.Target, explanation: router_pb2.RouteExplanation, attempts: int, requested_model: str
    ) -> RouteMetadata:
        return cls(
            selected_provider=target.provider,
            selected_model=target.model or explanation.requested_model or requested_model,
            deployment_id=target.deployment_id,
            strategy=explanation.strategy or DEFAULT_STRATEGY,
            prompt_class=explanation.prompt_class or None,
            reason=explanation.reason or DEFAULT_REASON,
            attempts=attempts,
        )

    def json(self, estimated_cost: Any) -> dict[str, Any]:
        """The body's ``router_metadata``; ``estimated_cost`` is the USD figure as the writer encodes
        it (None: the price is unknown)."""
        return {
            "selected_provider": self.selected_provider,
            "selected_model": self.selected_model,
            "deployment_id": self.deployment_id,
            "strategy": self.strategy,
            "prompt_class": self.prompt_class,
            "reason": self.reason,
            "estimated_cost": estimated_cost,
            "attempts": self.attempts,
        }

    def headers(self, estimated_cost: str | None) -> dict[str, str]:
        """The same facts as ``x-modelrouter-<field>`` headers (underscores as dashes); a field with no
        value (no prompt class, an unknown price) is left out."""
        out = {
            "x-modelrouter-selected-provider": _header_value(self.selected_provider),
            "x-modelrouter-selected-model": _header_value(self.selected_model),
            "x-modelrouter-deployment-id": _header_value(self.deployment_id),
            "x-modelrouter-strategy": _header_value(self.strategy),
            "x-modelrouter-reason": _header_value(self.reason),
            "x-modelrouter-attempts": str(self.attempts),
        }
        if self.prompt_class:
            out["x-modelrouter-prompt-class"] = _header_value(self.prompt_class)
        if estimated_cost is not None:
            out["x-modelrouter-estimated-cost"] = estimated_cost
        return out


def _header_value(text: str) -> str:
    if text.isascii() and text.isprintable():  # the common case, without the regex
        return text
    return _UNSAFE.sub("?", text)
