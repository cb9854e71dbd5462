"""The three things measured, as one shape: where to send requests, with which key and body, and
which processes to charge CPU and memory to."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import orjson

CHAT_PATH = "/v1/chat/completions"
PROMPT = [{"role": "user", "content": "Say something for the benchmark."}]

DIRECT = "direct"
MODELROUTER = "modelrouter"
# The same stack and requests on a key of the admin API with rpm, tpm, max_parallel, a budget and an
# allow-list (none of them reached): what governing a key costs.
MODELROUTER_GOVERNED = "modelrouter-governed"
LITELLM = "litellm"


def chat_body(model: str, stream: bool) -> bytes:
    body: dict[str, object] = {"model": model, "messages": PROMPT, "max_tokens": 32}
    if stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return orjson.dumps(body)


@dataclass
class Target:
    name: str
    port: int
    model: str
    key: str | None
    # Process name -> pid, e.g. {"gateway": 123, ...}; measured for CPU and memory.
    pids: Mapping[str, int] = field(default_factory=dict)
    # Processes the target relies on but that are not the target (the mock upstream, NATS, Redis):
    # measured too, reported apart.
    backing_pids: dict[str, int] = field(default_factory=dict)
    body_files: dict[bool, Path] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}{CHAT_PATH}"

    def body(self, stream: bool) -> bytes:
        return chat_body(self.model, stream)

    def write_bodies(self, workdir: Path) -> None:
        """wrk reads the body from a file; one per target and mode."""
        for stream in (False, True):
            path = workdir / f"body-{self.name}-{'stream' if stream else 'plain'}.json"
            path.write_bytes(self.body(stream))
            self.body_files[stream] = path
