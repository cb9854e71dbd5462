"""The measurements. Every phase runs its rounds with the targets alternating (the order rotating each
round), so a burst of load from elsewhere on the shared machine hits all targets alike."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import orjson

from bench import procstat
from bench.http_client import Answer, HttpConnection
from bench.results import LeakResult, LoadRound, StreamRound
from bench.stats import percentile
from bench.targets import CHAT_PATH, Target
from bench.wrk import run_wrk

log = logging.getLogger("bench")


@dataclass(frozen=True)
class Plan:
    rounds: int = 5
    latency_s: int = 3
    throughput_s: int = 3
    concurrencies: tuple[int, ...] = (16, 64)
    stream_requests: int = 100
    stream_chunks: int = 20
    leak_first: int = 5_000
    leak_total: int = 50_000
    leak_concurrency: int = 16
    # The leak check stops here even short of leak_total (a slow target must not push `make bench`
    # past its 15 minutes); the report then shows how far it got.
    leak_budget_s: int = 240
    warmup_s: int = 2


QUICK = Plan(
    rounds=1,
    latency_s=1,
    throughput_s=1,
    stream_requests=10,
    leak_first=300,
    leak_total=1_500,
    warmup_s=1,
)


def rotated(targets: Sequence[Target], round_no: int) -> list[Target]:
    shift = round_no % len(targets)
    return [*targets[shift:], *targets[:shift]]


def _all_pids(target: Target) -> dict[str, int]:
    return {**target.pids, **target.backing_pids}


def load_round(target: Target, connections: int, duration_s: int, stream: bool = False) -> LoadRound:
    """One wrk run, with the CPU every process of the target used meanwhile."""
    pids = _all_pids(target)
    before = {name: procstat.cpu_seconds(pid) for name, pid in pids.items()}
    result = run_wrk(target.url, target.body_files[stream], target.key, connections, duration_s)
    after = {name: procstat.cpu_seconds(pid) for name, pid in pids.items()}
    return LoadRound(
        requests=result.requests,
        rps=result.rps,
        errors=result.errors,
        p50_ms=result.p50_ms,
        p90_ms=result.p90_ms,
        p99_ms=result.p99_ms,
        client_cpu_s=result.client_cpu_s,
        cpu_s={name: after[name] - before[name] for name in pids},
    )


def load_phase(
    targets: Sequence[Target], rounds: int, connections: int, duration_s: int, label: str
) -> dict[str, list[LoadRound]]:
    out: dict[str, list[LoadRound]] = {t.name: [] for t in targets}
    for round_no in range(rounds):
        for target in rotated(targets, round_no):
            measured = load_round(target, connections, duration_s)
            log.info(
                "%s round %d %-12s %8.1f req/s  p50 %.2f ms  p99 %.2f ms  errors %d",
                label,
                round_no + 1,
                target.name,
                measured.rps,
                measured.p50_ms,
                measured.p99_ms,
                measured.errors,
            )
            out[target.name].append(measured)
    return out


def _stream_ok(answer: Answer, chunks: int) -> bool:
    if answer.status != 200 or answer.first_event_s is None:
        return False
    events = [line for line in answer.body.split(b"\n") if line.startswith(b"data:")]
    return len(events) >= chunks + 1 and events[-1].strip() == b"data: [DONE]"


async def _stream_round(target: Target, requests: int, chunks: int) -> StreamRound:
    ttft: list[float] = []
    total: list[float] = []
    errors = 0
    async with HttpConnection("127.0.0.1", target.port) as conn:
        request = conn.encode(CHAT_PATH, target.body(stream=True), target.key)
        for _ in range(requests):
            answer = await conn.send(request)
            if not _stream_ok(answer, chunks):
                errors += 1
                continue
            assert answer.first_event_s is not None
            ttft.append(answer.first_event_s * 1000)
            total.append(answer.total_s * 1000)
    if not ttft:
        return StreamRound(requests, errors, 0.0, 0.0, 0.0, 0.0)
    return StreamRound(
        requests=requests,
        errors=errors,
        ttft_p50_ms=percentile(ttft, 50),
        ttft_p99_ms=percentile(ttft, 99),
        total_p50_ms=percentile(total, 50),
        total_p99_ms=percentile(total, 99),
    )


def stream_phase(targets: Sequence[Target], rounds: int, requests: int, chunks: int) -> dict[str, list[StreamRound]]:
    out: dict[str, list[StreamRound]] = {t.name: [] for t in targets}
    for round_no in range(rounds):
        for target in rotated(targets, round_no):
            measured = asyncio.run(_stream_round(target, requests, chunks))
            log.info(
                "stream c=1 round %d %-12s TTFT p50 %.2f ms  total p50 %.2f ms  errors %d",
                round_no + 1,
                target.name,
                measured.ttft_p50_ms,
                measured.total_p50_ms,
                measured.errors,
            )
            out[target.name].append(measured)
    return out


async def _check(target: Target, chunks: int) -> None:
    async with HttpConnection("127.0.0.1", target.port) as conn:
        plain = await conn.send(conn.encode(CHAT_PATH, target.body(stream=False), target.key))
        if plain.status != 200:
            raise RuntimeError(f"{target.name} answered {plain.status}: {plain.body[:500]!r}")
        content = orjson.loads(plain.body)["choices"][0]["message"]["content"]
        if "tok" not in content:
            raise RuntimeError(f"{target.name} answered an unexpected completion: {plain.body[:500]!r}")
        streamed = await conn.send(conn.encode(CHAT_PATH, target.body(stream=True), target.key))
        if not _stream_ok(streamed, chunks):
            raise RuntimeError(f"{target.name} streamed an unexpected answer: {streamed.body[:800]!r}")


def check_target(target: Target, chunks: int) -> None:
    """One plain and one streamed request, answered correctly, before anything is measured."""
    asyncio.run(_check(target, chunks))


def leak_phase(target: Target, plan: Plan, on_progress: Callable[[int], None] | None = None) -> LeakResult:
    """Plain and streamed requests alternating at a fixed concurrency until ``plan.leak_first``
    requests, RSS of each process, then on to ``plan.leak_total``, RSS again."""
    served = errors = 0
    deadline = time.monotonic() + plan.leak_budget_s
    rate = 200.0  # requests/s; refined after each burst
    stream = False
    snapshots: list[dict[str, float]] = []
    marks: list[int] = []
    for goal in (plan.leak_first, plan.leak_total):
        # At least one burst before each snapshot: one burst of a fast target can pass both goals.
        bursts = 0
        while bursts == 0 or (served < goal and (not marks or time.monotonic() < deadline)):
            seconds = max(1, min(5, round((goal - served) / rate)))
            burst = run_wrk(target.url, target.body_files[stream], target.key, plan.leak_concurrency, seconds)
            served += burst.requests
            bursts += 1
            errors += burst.errors
            rate = max(burst.rps, 1.0)
            stream = not stream
            if on_progress is not None:
                on_progress(served)
        snapshots.append({name: procstat.memory(pid).rss_mib for name, pid in target.pids.items()})
        marks.append(served)
    short = served < plan.leak_total
    return LeakResult(plan.leak_concurrency, marks[0], marks[1], errors, snapshots[0], snapshots[1], short)
