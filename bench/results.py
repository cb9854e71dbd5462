"""What one benchmark run measured, per round, as plain dataclasses (saved as JSON beside the report)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class LoadRound:
    """One wrk run against one target."""

    requests: int
    rps: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    client_cpu_s: float
    # Process name -> CPU seconds it used during the run.
    cpu_s: dict[str, float] = field(default_factory=dict)

    def cpu_per_1k(self, process: str) -> float:
        return self.cpu_s[process] / self.requests * 1000 if self.requests else 0.0


@dataclass
class StreamRound:
    requests: int
    errors: int
    ttft_p50_ms: float
    ttft_p99_ms: float
    total_p50_ms: float
    total_p99_ms: float


@dataclass
class LeakResult:
    concurrency: int
    first_requests: int
    total_requests: int
    errors: int
    rss_first_mib: dict[str, float]
    rss_total_mib: dict[str, float]
    # The time budget ran out before the planned number of requests.
    stopped_by_budget: bool = False

    def growth_pct(self, process: str) -> float:
        first = self.rss_first_mib[process]
        return (self.rss_total_mib[process] - first) / first * 100 if first else 0.0


@dataclass
class BenchResults:
    started_at: str
    settings: dict[str, Any]
    machine: dict[str, Any] = field(default_factory=dict)
    targets: list[str] = field(default_factory=list)
    latency: dict[str, list[LoadRound]] = field(default_factory=dict)
    # Concurrency -> target -> rounds.
    throughput: dict[int, dict[str, list[LoadRound]]] = field(default_factory=dict)
    streaming: dict[str, list[StreamRound]] = field(default_factory=dict)
    # Target -> process -> (rss_mib, peak_rss_mib) at the end of the run.
    memory: dict[str, dict[str, tuple[float, float]]] = field(default_factory=dict)
    # Target -> names of its backing processes (mock upstream, NATS, Redis).
    backing: dict[str, list[str]] = field(default_factory=dict)
    leak: LeakResult | None = None
    # Auto routing's prompt classifier, measured in-process (bench.classifier.measure).
    classifier: dict[str, Any] = field(default_factory=dict)
    duration_s: float = 0.0
    # The target of an earlier commit's build run beside this one ("" when none: bench.baseline).
    baseline: str = ""

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self), indent=1, sort_keys=True))
