"""``make bench``: ModelRouter vs LiteLLM vs direct, against one local mock upstream.

    python -m bench.run                 # the full run (report in bench/results/<date>.md)
    python -m bench.run --quick --no-litellm --out-dir /tmp/x   # seconds; what the smoke test runs
    python -m bench.run --against HEAD~5  # and the build of HEAD~5 beside this one, same rounds

Starts the mock upstream, a private NATS and Redis, the four ModelRouter services (pointed at the
mock through the ``openai`` adapter) and LiteLLM's proxy; checks each answers; then measures the leak
check, latency at c=1, saturated throughput, and streaming; writes the report, its JSON and a chart.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from bench import classifier, litellm_proxy, procstat
from bench.chart import render_chart
from bench.environment import Upstream, running
from bench.machine import OtherLoad, describe
from bench.phases import QUICK, Plan, leak_phase, load_phase, load_round, stream_phase
from bench.report import render
from bench.results import BenchResults

log = logging.getLogger("bench")
BENCH_DIR = Path(__file__).resolve().parent
DEFAULT_DATABASE = "postgresql+asyncpg://postgres@127.0.0.1:5432/modelrouter_bench"


@dataclass(frozen=True)
class Options:
    plan: Plan
    out_dir: Path
    workdir: Path
    database_url: str
    recreate_database: bool
    litellm: bool
    latency_ms: float
    chunk_interval_ms: float
    against: str | None = None  # a git revision measured beside this build (bench.baseline)


@dataclass(frozen=True)
class Output:
    report: Path
    data: Path
    chart: Path
    results: BenchResults


def run_bench(options: Options) -> Output:
    plan = options.plan
    started = datetime.now()
    clock = time.monotonic()
    workdir = options.workdir
    settings = {
        "rounds": plan.rounds,
        "latency_run_s": plan.latency_s,
        "throughput_run_s": plan.throughput_s,
        "concurrencies": list(plan.concurrencies),
        "stream_requests_per_round": plan.stream_requests,
        "stream_chunks": plan.stream_chunks,
        "upstream_latency_ms": options.latency_ms,
        "upstream_chunk_interval_ms": options.chunk_interval_ms,
        "modelrouter": "gateway → router → workers (openai adapter, HTTP to the mock) → accounting; "
        "auth, accounting and tracing on, spans exported nowhere; private NATS (GOMAXPROCS=1) and Redis",
        "litellm": f"{litellm_proxy.VERSION}, 1 worker" if options.litellm else "not run",
    }
    results = BenchResults(started_at=started.strftime("%Y-%m-%d %H:%M"), settings=settings, machine=describe())
    # Before the stack starts, so nothing else competes for the core it runs on.
    results.classifier = classifier.measure(repeat=20 if plan is QUICK else 200)
    upstream = Upstream(options.latency_ms, plan.stream_chunks, options.chunk_interval_ms)
    with running(
        workdir, upstream, options.database_url, options.recreate_database, options.litellm, options.against
    ) as env:
        targets, modelrouter = env.targets, env.modelrouter
        if env.baseline is not None:
            results.baseline = env.baseline.name
            settings["baseline"] = f"{env.baseline.name} ({options.against}), run beside this build, rounds alternating"
        if options.litellm:
            results.machine["litellm"] = litellm_proxy.installed_version()
        results.targets = [t.name for t in targets]
        results.backing = {t.name: list(t.backing_pids) for t in targets}
        other = OtherLoad()
        other.start({pid for t in targets for pid in [*t.pids.values(), *t.backing_pids.values()]})
        results.leak = leak_phase(modelrouter, plan, lambda n: log.info("leak check: %d requests", n))
        for target in targets:
            if target is not modelrouter:  # ModelRouter is warm from the leak check
                load_round(target, plan.leak_concurrency, plan.warmup_s)
        results.latency = load_phase(targets, plan.rounds, 1, plan.latency_s, "c=1")
        for concurrency in plan.concurrencies:
            results.throughput[concurrency] = load_phase(
                targets, plan.rounds, concurrency, plan.throughput_s, f"c={concurrency}"
            )
        results.streaming = stream_phase(targets, plan.rounds, plan.stream_requests, plan.stream_chunks)
        for target in targets:
            measured = {**target.pids, **target.backing_pids}
            memories = {name: procstat.memory(pid) for name, pid in measured.items()}
            results.memory[target.name] = {n: (m.rss_mib, m.peak_rss_mib) for n, m in memories.items()}
        results.machine["other_load_cores"] = round(other.cores(), 3)
    results.duration_s = time.monotonic() - clock
    return _write(results, options.out_dir, started)


def _write(results: BenchResults, out_dir: Path, started: datetime) -> Output:
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = started.strftime("%Y-%m-%d")
    report, data, chart = out_dir / f"{stem}.md", out_dir / f"{stem}.json", out_dir / f"{stem}.png"
    results.save(data)
    render_chart(results, chart)
    report.write_text(render(results, chart.name))
    return Output(report, data, chart, results)


def parse_options(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny run (seconds): one short round of each")
    parser.add_argument("--no-litellm", action="store_true", help="measure direct and ModelRouter only")
    parser.add_argument("--rounds", type=int, help="rounds per measurement (default 5; quick 1)")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR / "results")
    parser.add_argument("--workdir", type=Path, help="logs and configs (default bench/.work/run-<time>)")
    parser.add_argument(
        "--database-url",
        help="accounting database, migrated here; default: modelrouter_bench, dropped and created afresh",
    )
    parser.add_argument("--upstream-latency-ms", type=float, default=0.0)
    parser.add_argument("--chunk-interval-ms", type=float, default=1.0)
    parser.add_argument(
        "--against",
        metavar="REV",
        help="also measure the build of git revision REV, beside this one in the same rounds (bench.baseline)",
    )
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else Plan()
    if args.rounds:
        plan = dataclasses.replace(plan, rounds=args.rounds)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Options(
        plan=plan,
        out_dir=args.out_dir,
        workdir=args.workdir or BENCH_DIR / ".work" / f"run-{stamp}",
        database_url=args.database_url or DEFAULT_DATABASE,
        recreate_database=args.database_url is None,
        litellm=not args.no_litellm,
        latency_ms=args.upstream_latency_ms,
        chunk_interval_ms=args.chunk_interval_ms,
        against=args.against,
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    options = parse_options(argv)
    output = run_bench(options)
    print(f"report: {output.report}\nchart:  {output.chart}\ndata:   {output.data}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
