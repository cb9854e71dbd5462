"""The Markdown report: machine, settings, goals, then one table per measurement."""

from __future__ import annotations

from collections.abc import Callable

from bench.machine import BUSY_CORES
from bench.results import BenchResults
from bench.summary import (
    LITELLM_REFERENCE_P50_MS,
    added,
    cpu_per_1k,
    goals,
    litellm_pace,
    load_spread,
    stream_added,
    stream_spread,
)
from bench.targets import DIRECT, LITELLM

Add = Callable[[str], None]

SECTIONS = (
    "## Machine",
    "## Settings",
    "## Goals",
    "## Non-streaming latency, concurrency 1",
    "## Saturated throughput",
    "## Streaming, concurrency 1",
    "## CPU seconds per 1,000 requests",
    "## Memory",
    "## RSS growth (leak check)",
    "## Load generator",
)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:+.2f}"


def _mark(met: bool | None) -> str:
    return {True: "✅ met", False: "❌ missed", None: "— not measured"}[met]


def render(results: BenchResults, chart_name: str | None) -> str:
    lines: list[str] = []
    add = lines.append
    machine = results.machine
    other = float(machine.get("other_load_cores", 0.0))
    provisional = other > BUSY_CORES
    add(f"# ModelRouter benchmark — {results.started_at}")
    add("")
    if provisional:
        add(
            f"> **Provisional:** other work on this machine used {other:.2f} cores on average during the run "
            f"(threshold {BUSY_CORES}); the numbers are skewed by it. Re-run on an idle machine."
        )
        add("")
    add(
        "Each figure is the **median of the rounds**, with the lowest and highest round in brackets. "
        "*Added* = target minus direct, paired round by round. Targets alternate within each round."
    )
    if chart_name:
        add("")
        add(f"![latency and throughput]({chart_name})")
    add("")
    _machine(add, results)
    _settings(add, results)
    _goals(add, results)
    _latency(add, results)
    _throughput(add, results)
    _streaming(add, results)
    _cpu(add, results)
    _memory(add, results)
    _leak(add, results)
    _classifier(add, results)
    _client(add, results)
    return "\n".join(lines) + "\n"


def _machine(add: Add, results: BenchResults) -> None:
    m = results.machine
    add("## Machine")
    add("")
    add(f"- CPU: {m.get('cpu')} x {m.get('cores')} cores; memory {m.get('memory_gib')} GiB")
    add(
        f"- OS: {m.get('os')}, kernel {m.get('kernel')}; Python {m.get('python')} "
        f"(`sum(range(1000))` takes {m.get('python_speed_us')} µs here)"
    )
    add(f"- Load generator: {m.get('wrk')}; LiteLLM {m.get('litellm', 'not run')}")
    load = ", ".join(f"{v:.2f}" for v in m.get("load_average_at_start", []))
    add(f"- Load average at start: {load}; other work during the run: {m.get('other_load_cores', 0):.2f} cores")
    if (pace := litellm_pace(results)) is not None:
        add(
            f"- Pace: LiteLLM's c=1 p50 is {pace[0]:.2f} ms in this run against {LITELLM_REFERENCE_P50_MS} ms "
            f"when the goals were set, so everything here ran about {pace[1]:.1f}x as long as then"
        )
    add(f"- Run took {results.duration_s:.0f} s")
    add("")


def _settings(add: Add, results: BenchResults) -> None:
    s = results.settings
    add("## Settings")
    add("")
    for key in sorted(s):
        add(f"- {key}: {s[key]}")
    add("")


def _goals(add: Add, results: BenchResults) -> None:
    add("## Goals")
    add("")
    add("| goal (ModelRouter) | measured | |")
    add("|---|---|---|")
    for goal in goals(results):
        add(f"| {goal.name} | {goal.measured} | {_mark(goal.met)} |")
    add("")


def _latency(add: Add, results: BenchResults) -> None:
    add("## Non-streaming latency, concurrency 1")
    add("")
    add("| target | p50 ms | p90 ms | p99 ms | added p50 ms | added p99 ms | req/s | errors |")
    add("|---|---|---|---|---|---|---|---|")
    for name in results.targets:
        rounds = results.latency.get(name)
        if not rounds:
            continue
        direct = name == DIRECT
        add(
            f"| {name} | {load_spread(rounds, 'p50_ms').fmt()} | {load_spread(rounds, 'p90_ms').fmt()} | "
            f"{load_spread(rounds, 'p99_ms').fmt()} | {'' if direct else _ms(added(results, name, 'p50_ms'))} | "
            f"{'' if direct else _ms(added(results, name, 'p99_ms'))} | "
            f"{load_spread(rounds, 'rps').fmt(0)} | {sum(r.errors for r in rounds)} |"
        )
    add("")


def _throughput(add: Add, results: BenchResults) -> None:
    add("## Saturated throughput")
    add("")
    add("| concurrency | target | req/s | vs LiteLLM | p50 ms | p99 ms | errors |")
    add("|---|---|---|---|---|---|---|")
    for concurrency, by_target in sorted(results.throughput.items()):
        litellm = by_target.get(LITELLM)
        base = load_spread(litellm, "rps").median if litellm else None
        for name in results.targets:
            rounds = by_target.get(name)
            if not rounds:
                continue
            rps = load_spread(rounds, "rps")
            ratio = f"{rps.median / base:.1f}x" if base else "—"
            add(
                f"| {concurrency} | {name} | {rps.fmt(0)} | {ratio} | {load_spread(rounds, 'p50_ms').fmt()} | "
                f"{load_spread(rounds, 'p99_ms').fmt()} | {sum(r.errors for r in rounds)} |"
            )
    add("")


def _streaming(add: Add, results: BenchResults) -> None:
    chunks = results.settings.get("stream_chunks")
    add("## Streaming, concurrency 1")
    add("")
    add(f"{chunks} content chunks per answer; time to the first `data:` event (TTFT) and to the end of the stream.")
    add("")
    add("| target | TTFT p50 ms | added | TTFT p99 ms | stream p50 ms | added | stream p99 ms | errors |")
    add("|---|---|---|---|---|---|---|---|")
    for name in results.targets:
        rounds = results.streaming.get(name)
        if not rounds:
            continue
        direct = name == DIRECT
        add(
            f"| {name} | {stream_spread(rounds, 'ttft_p50_ms').fmt()} | "
            f"{'' if direct else _ms(stream_added(results, name, 'ttft_p50_ms'))} | "
            f"{stream_spread(rounds, 'ttft_p99_ms').fmt()} | {stream_spread(rounds, 'total_p50_ms').fmt()} | "
            f"{'' if direct else _ms(stream_added(results, name, 'total_p50_ms'))} | "
            f"{stream_spread(rounds, 'total_p99_ms').fmt()} | {sum(r.errors for r in rounds)} |"
        )
    add("")


def _cpu(add: Add, results: BenchResults) -> None:
    add("## CPU seconds per 1,000 requests")
    add("")
    add("User + system CPU of each process during the saturated runs (from /proc/<pid>/stat), per 1,000 requests.")
    add("")
    add("| concurrency | target | process | CPU s / 1k requests |")
    add("|---|---|---|---|")
    for concurrency, by_target in sorted(results.throughput.items()):
        for name in results.targets:
            rounds = by_target.get(name)
            if not rounds:
                continue
            backing = set(results.backing.get(name, []))
            own = [p for p in rounds[0].cpu_s if p not in backing]
            for process in own:
                add(f"| {concurrency} | {name} | {process} | {cpu_per_1k(rounds, process).fmt(3)} |")
            if len(own) > 1:
                total = [sum(r.cpu_s[p] for p in own) / r.requests * 1000 for r in rounds if r.requests]
                add(f"| {concurrency} | {name} | **all services** | {sum(total) / len(total):.3f} |")
            for process in sorted(backing & set(rounds[0].cpu_s)):
                add(f"| {concurrency} | {name} | ({process}) | {cpu_per_1k(rounds, process).fmt(3)} |")
    add("")
    add("Processes in brackets are what the target relies on (the mock upstream; NATS and Redis for ModelRouter).")
    add("")


def _memory(add: Add, results: BenchResults) -> None:
    add("## Memory")
    add("")
    add("| target | process | RSS at end MiB | peak RSS MiB |")
    add("|---|---|---|---|")
    for name in results.targets:
        for process, (rss, peak) in results.memory.get(name, {}).items():
            add(f"| {name} | {process} | {rss:.1f} | {peak:.1f} |")
    add("")


def _leak(add: Add, results: BenchResults) -> None:
    leak = results.leak
    add("## RSS growth (leak check)")
    add("")
    if leak is None:
        add("Not measured in this run.")
        add("")
        return
    add(
        f"ModelRouter alone, plain and streamed requests alternating at concurrency {leak.concurrency}, "
        f"{leak.errors} errors."
        + (" The leak check's time budget ran out before its planned request count." if leak.stopped_by_budget else "")
    )
    add("")
    add(f"| service | RSS MiB after {leak.first_requests:,} requests | after {leak.total_requests:,} | growth |")
    add("|---|---|---|---|")
    for process in leak.rss_first_mib:
        add(
            f"| {process} | {leak.rss_first_mib[process]:.1f} | {leak.rss_total_mib[process]:.1f} | "
            f"{leak.growth_pct(process):+.1f}% |"
        )
    add("")


def _classifier(add: Add, results: BenchResults) -> None:
    c = results.classifier
    if not c:
        return
    add("## Auto routing's prompt classifier")
    add("")
    add(
        f"`{c['classifier']}`, per request with `model: auto` (in-process, {c['calls']:,} calls over the labelled "
        f"prompts; budget {c['budget_us']:g} µs): p50 {c['p50_us']:.1f} µs, p99 {c['p99_us']:.1f} µs "
        f"(CPU time: p50 {c.get('cpu_p50_us', 0):.1f} µs, p99 {c.get('cpu_p99_us', 0):.1f} µs); a 200 KB "
        f"prompt p50 {c['long_prompt_p50_us']:.1f} µs. Accuracy: "
        + ", ".join(f"{name} {value:.1%}" for name, value in c["accuracy"].items())
        + ". Other requests are not classified."
    )
    add("")


def _client(add: Add, results: BenchResults) -> None:
    add("## Load generator")
    add("")
    add("wrk's own CPU per 1,000 requests (it shares the two cores with the targets):")
    add("")
    add("| concurrency | target | wrk CPU s / 1k requests |")
    add("|---|---|---|")
    for concurrency, by_target in sorted(results.throughput.items()):
        for name in results.targets:
            rounds = by_target.get(name)
            if rounds:
                per_1k = [r.client_cpu_s / r.requests * 1000 for r in rounds if r.requests]
                value = f"{sorted(per_1k)[len(per_1k) // 2]:.3f}" if per_1k else "—"
                add(f"| {concurrency} | {name} | {value} |")
    add("")
    add(
        "Streaming is measured by the harness's own asyncio client (raw HTTP/1.1, httptools); its cost is the "
        "same for every target and cancels out of the *added* columns."
    )
