"""Round figures reduced to medians with spreads, and the issue's goals checked against them."""

from __future__ import annotations

from dataclasses import dataclass

from bench.results import BenchResults, LoadRound, StreamRound
from bench.stats import Spread
from bench.targets import DIRECT, LITELLM, MODELROUTER, MODELROUTER_GOVERNED

# The goals of issue 3.
ADDED_P50_MS = 1.5
ADDED_P99_MS = 4.0
THROUGHPUT_VS_LITELLM = 5.0
GOVERNED_P50_MS = 0.2
ADDED_TTFT_MS = 2.0
ADDED_STREAM_MS = 3.0
RSS_GROWTH_PCT = 10.0
# LiteLLM's c=1 p50 on this machine when the goals were set: a run's own LiteLLM p50 against it
# says how fast the shared VM ran that day (its pace drifts by 2x between days).
LITELLM_REFERENCE_P50_MS = 6.9


def load_spread(rounds: list[LoadRound], field: str) -> Spread:
    return Spread.of([float(getattr(r, field)) for r in rounds])


def stream_spread(rounds: list[StreamRound], field: str) -> Spread:
    return Spread.of([float(getattr(r, field)) for r in rounds])


def added(results: BenchResults, target: str, field: str) -> float | None:
    """Median of (target - direct) per round, for a c=1 latency field."""
    if DIRECT not in results.latency or target not in results.latency:
        return None
    pairs = zip(results.latency[target], results.latency[DIRECT], strict=False)
    return Spread.of([getattr(t, field) - getattr(d, field) for t, d in pairs]).median


def stream_added(results: BenchResults, target: str, field: str) -> float | None:
    if DIRECT not in results.streaming or target not in results.streaming:
        return None
    pairs = zip(results.streaming[target], results.streaming[DIRECT], strict=False)
    return Spread.of([getattr(t, field) - getattr(d, field) for t, d in pairs]).median


def litellm_pace(results: BenchResults) -> tuple[float, float] | None:
    """LiteLLM's c=1 p50 in this run and how it compares with the reference (>1: a slower day)."""
    rounds = results.latency.get(LITELLM)
    if not rounds:
        return None
    p50 = load_spread(rounds, "p50_ms").median
    return p50, p50 / LITELLM_REFERENCE_P50_MS


def cpu_per_1k(rounds: list[LoadRound], process: str) -> Spread:
    return Spread.of([r.cpu_per_1k(process) for r in rounds])


@dataclass(frozen=True)
class Goal:
    name: str
    measured: str
    met: bool | None  # None: not measured in this run


def goals(results: BenchResults) -> list[Goal]:
    out: list[Goal] = []
    p50, p99 = added(results, MODELROUTER, "p50_ms"), added(results, MODELROUTER, "p99_ms")
    out.append(_limit(f"added latency c=1 p50 ≤ {ADDED_P50_MS} ms", p50, ADDED_P50_MS, "ms"))
    out.append(_limit(f"added latency c=1 p99 ≤ {ADDED_P99_MS} ms", p99, ADDED_P99_MS, "ms"))
    for concurrency, by_target in sorted(results.throughput.items()):
        mr = by_target.get(MODELROUTER)
        ll = by_target.get(LITELLM)
        if mr is None:
            continue
        errors = sum(r.errors for r in mr)
        out.append(Goal(f"c={concurrency}: no errors", f"{errors} errors", errors == 0))
        if ll is not None:
            ratio = load_spread(mr, "rps").median / max(load_spread(ll, "rps").median, 1e-9)
            name = f"c={concurrency}: throughput ≥ {THROUGHPUT_VS_LITELLM:g}x LiteLLM"
            out.append(Goal(name, f"{ratio:.1f}x", ratio >= THROUGHPUT_VS_LITELLM))
        else:
            out.append(Goal(f"c={concurrency}: throughput ≥ 5x LiteLLM", "LiteLLM not run", None))
    out += _governed_goals(results)
    out += baseline_goals(results)
    ttft = stream_added(results, MODELROUTER, "ttft_p50_ms")
    whole = stream_added(results, MODELROUTER, "total_p50_ms")
    out.append(_limit(f"streaming TTFT ≤ direct + {ADDED_TTFT_MS} ms", ttft, ADDED_TTFT_MS, "ms"))
    out.append(_limit(f"20-chunk stream ≤ direct + {ADDED_STREAM_MS} ms", whole, ADDED_STREAM_MS, "ms"))
    if results.leak is not None:
        worst = max(results.leak.growth_pct(p) for p in results.leak.rss_first_mib)
        leak = results.leak
        name = f"RSS growth {leak.first_requests:,} → {leak.total_requests:,} requests ≤ {RSS_GROWTH_PCT:g}%"
        out.append(Goal(name, f"worst {worst:+.1f}%", worst <= RSS_GROWTH_PCT))
    return out


def _governed_goals(results: BenchResults) -> list[Goal]:
    """Issue 15's targets: a governed key's c=1 added p50 within GOVERNED_P50_MS of an ungoverned
    one's (same run), and its c=16 throughput still >= 5x LiteLLM's."""
    if MODELROUTER_GOVERNED not in results.latency:
        return []
    governed, plain = added(results, MODELROUTER_GOVERNED, "p50_ms"), added(results, MODELROUTER, "p50_ms")
    extra = governed - plain if governed is not None and plain is not None else None
    out = [_limit(f"governed key: c=1 p50 ≤ ungoverned + {GOVERNED_P50_MS} ms", extra, GOVERNED_P50_MS, "ms")]
    by_target = results.throughput.get(16, {})
    gov, ll = by_target.get(MODELROUTER_GOVERNED), by_target.get(LITELLM)
    if gov is not None and ll is not None:
        ratio = load_spread(gov, "rps").median / max(load_spread(ll, "rps").median, 1e-9)
        name = f"governed key: c=16 throughput ≥ {THROUGHPUT_VS_LITELLM:g}x LiteLLM"
        out.append(Goal(name, f"{ratio:.1f}x", ratio >= THROUGHPUT_VS_LITELLM))
    return out


def baseline_goals(results: BenchResults) -> list[Goal]:
    """Issue 16's: against an earlier commit's build run beside this one (``--against``), c=1 p50 and
    c=16 throughput within the noise. Rounds alternate the targets, so each round pairs the two builds
    seconds apart: the change's cost is the median of the paired differences, and the noise is half
    the range the earlier build's own rounds spanned (a difference inside it is one the same build
    shows between rounds)."""
    base = results.baseline
    if not base or base not in results.latency or MODELROUTER not in results.latency:
        return []
    out = []
    ours, theirs = results.latency[MODELROUTER], results.latency[base]
    slower = Spread.of([a.p50_ms - b.p50_ms for a, b in zip(ours, theirs, strict=False)]).median
    spread = load_spread(theirs, "p50_ms")
    noise = (spread.high - spread.low) / 2
    out.append(Goal(f"vs {base}: c=1 p50 within noise", f"{slower:+.2f} ms (noise ±{noise:.2f} ms)", slower <= noise))
    by_target = results.throughput.get(16, {})
    if MODELROUTER in by_target and base in by_target:
        ours, theirs = by_target[MODELROUTER], by_target[base]
        ratio = Spread.of([a.rps / max(b.rps, 1e-9) for a, b in zip(ours, theirs, strict=False)]).median
        rps = load_spread(theirs, "rps")
        noise_pct = (rps.high - rps.low) / 2 / max(rps.median, 1e-9) * 100
        change = (ratio - 1) * 100
        measured = f"{change:+.1f}% (noise ±{noise_pct:.1f}%)"
        out.append(Goal(f"vs {base}: c=16 throughput within noise", measured, -change <= noise_pct))
    return out


def _limit(name: str, value: float | None, limit: float, unit: str) -> Goal:
    if value is None:
        return Goal(name, "not measured", None)
    return Goal(name, f"{value:+.2f} {unit}", value <= limit)
