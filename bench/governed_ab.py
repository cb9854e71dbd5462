"""What a governed key adds at c=1, quicker than ``make bench``: one stack (the bench's own: mock
upstream, private NATS and Redis, the four services), wrk at concurrency 1 on the ungoverned and the
governed key in turn, paired round by round.

    python -m bench.governed_ab [--rounds 8] [--seconds 3]

Prints each round's p50s and their difference, then the medians; the difference, not the absolute
figures, is what it is for (both targets share every round's machine state). Also counts Redis script
calls per request for each, which shows a settlement folded into the next admission (1.0) or not (2.0).
"""

from __future__ import annotations

import argparse
import logging
import re
import statistics
import subprocess
import sys

from bench.environment import Upstream, running
from bench.run import BENCH_DIR, DEFAULT_DATABASE
from bench.targets import Target
from bench.wrk import run_wrk


def _script_calls(redis_port: int) -> int:
    info = subprocess.run(
        ["redis-cli", "-p", str(redis_port), "info", "commandstats"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"cmdstat_evalsha:calls=(\d+)", info)
    return int(found.group(1)) if found else 0


def _measure(target: Target, seconds: float, redis_port: int) -> tuple[float, float]:
    """(p50 ms, script calls per request) of one c=1 run."""
    before = _script_calls(redis_port)
    result = run_wrk(target.url, target.body_files[False], target.key, 1, seconds)
    return result.p50_ms, (_script_calls(redis_port) - before) / max(1, result.requests)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    workdir = BENCH_DIR / ".work" / "governed-ab"
    with running(workdir, Upstream(), DEFAULT_DATABASE, True, False) as env:
        assert env.governed is not None
        redis_port = env.redis_port
        plain, governed, added = [], [], []
        for n in range(args.rounds):
            (a, calls_a), (b, calls_b) = (
                _measure(t, args.seconds, redis_port) for t in (env.modelrouter, env.governed)
            )
            plain.append(a)
            governed.append(b)
            added.append(b - a)
            print(
                f"round {n}: ungoverned {a:.3f} ms ({calls_a:.2f} scripts/request)  "
                f"governed {b:.3f} ms ({calls_b:.2f})  added {1000 * (b - a):+.0f} µs",
                flush=True,
            )
        low, high = 1000 * min(added), 1000 * max(added)
        print(
            f"median: ungoverned {statistics.median(plain):.3f} ms, governed {statistics.median(governed):.3f} ms, "
            f"added {1000 * statistics.median(added):+.0f} µs (rounds {low:+.0f} to {high:+.0f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
