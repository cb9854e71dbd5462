"""Where a call goes when its target names the model's endpoint itself (a remote catalogue's ``handle``).

Ordinarily an adapter posts to its own paths under the target's base URL (``/chat/completions`` under
``https://api.openai.com/v1``). A catalogue entry instead names the full path of the model's endpoint
on the catalogue's host (``/fireworks/chat/completions``, ``/anthropic/v1/messages``), and requests
must reach exactly that path. The router sends it as the ``endpoint`` Target option, with the host
alone as the base URL. Which operation a path is, is each API's own knowledge, not the router's, so
each adapter declares the tails of its paths in an ``Endpoints`` and this module applies them:

- the handle names the endpoint whose tail it ends with (the longest: ``/chat/completions`` before
  ``/completions``), or the chat endpoint when it ends with none (a catalogue lists chat models);
- every operation the adapter sends to that endpoint goes to exactly the handle (for the Messages API
  chat and legacy completions alike);
- an API that streams on an endpoint of its own (TGI's ``/generate_stream``, Gemini's
  ``:streamGenerateContent``) streams on the handle with its tail swapped for the stream's;
- another operation goes where its ``endpoint:<operation>`` option (the entry's ``paths``) says, by the
  same rules, or is refused with a 400 before any upstream call. It is never guessed from the handle's
  prefix: a catalogue's host lays its paths out as it likes, and a guess would reach some other service
  with the catalogue's token.

Targets without the option (every deployment of the config) take the adapter's own path unchanged, at
the cost of one dict lookup.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from common.config import ENDPOINT_OPTION, endpoint_option
from common.errors import InvalidRequestError
from common.providers.base import ProviderCall


@dataclass(frozen=True, slots=True)
class Endpoints:
    """An adapter's endpoints, told apart by the tails of their paths."""

    # One tail per endpoint (path suffix), long enough to tell it from the adapter's other endpoints.
    tails: tuple[str, ...]
    # The chat endpoint's tail: what a handle that ends with none of ``tails`` is taken as.
    chat: str
    # A whole answer's tail -> its stream's, where the API streams on an endpoint of its own.
    streams: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Longest first, so a path ending with two tails is the more specific endpoint's.
        every = {*self.tails, *self.streams.values(), self.chat}
        object.__setattr__(self, "tails", tuple(sorted(every, key=len, reverse=True)))

    def path(self, call: ProviderCall, native: str) -> str:
        """The path to request for ``call``, whose own path on the adapter's API is ``native``."""
        handle = call.options.get(ENDPOINT_OPTION)
        if handle is None:
            return native
        return self._named_path(call, handle, native)

    def _named_path(self, call: ProviderCall, handle: str, native: str) -> str:
        wanted = self._tail(native) or native
        explicit = call.options.get(endpoint_option(call.operation))
        if explicit is not None:  # said for this operation: a path ending with no tail is trusted as it is
            path = self._at(explicit, self._tail(explicit) or wanted, wanted)
        else:
            path = self._at(handle, self._tail(handle) or self.chat, wanted)
        if path is None:
            streamed = "streamed " if wanted in self.streams.values() else ""
            raise InvalidRequestError(
                f"This model does not serve {streamed}{call.operation}: its endpoint is {handle}, and its "
                f"catalogue entry names no path for {call.operation}.",
                code="unsupported_operation",
            )
        return path

    def _at(self, endpoint: str, named: str, wanted: str) -> str | None:
        """Where ``wanted`` lives, given that ``endpoint`` is the endpoint ``named``; None if it is not there."""
        if named == wanted:
            return endpoint
        if self.streams.get(named) == wanted and endpoint.endswith(named):
            return endpoint[: len(endpoint) - len(named)] + wanted
        return None

    def _tail(self, path: str) -> str | None:
        return next((tail for tail in self.tails if path.endswith(tail)), None)
