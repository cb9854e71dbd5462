"""Where ModelRouter's CPU goes under load: py-spy samples every service while wrk drives the gateway.

    python -m bench.profile [--seconds 20] [--concurrency 16] [--stream]

Writes the collapsed stacks (py-spy's ``raw`` format) per service under the workdir and a summary
(top functions by own and by inclusive samples) to ``bench/results/profile-<date>[-stream].md``, with
each service's CPU from /proc over the same seconds. py-spy counts an event loop waiting in libuv's
``epoll_pwait`` (and gRPC's poller in ``epoll_wait``) as on CPU: without ``--native`` that wait is
part of ``Runner.run``'s own samples; with it, the summary leaves the waits out and says how many.
"""

from __future__ import annotations

import argparse
import logging
import re
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

from bench import procstat
from bench.environment import Upstream, running
from bench.run import BENCH_DIR, DEFAULT_DATABASE
from bench.wrk import WrkResult, run_wrk

log = logging.getLogger("bench")
TOP = 15
# Frames from ModelRouter's own code (py-spy names files relative to their source root).
LINE_NUMBER = re.compile(r":\d+\)$")
OWN_CODE = ("gateway/", "router/", "workers/", "accounting/", "common/")
# Native leaf frames of a thread blocked waiting for I/O, which py-spy does not recognise as idle.
IDLE_WAITS = ("epoll_wait (", "epoll_pwait (", "epoll_pwait2 (")


def py_spy() -> str:
    binary = Path(sys.executable).parent / "py-spy"
    if not binary.exists():
        raise RuntimeError("py-spy is not installed: run `bash bench/setup.sh` (it installs the bench extra)")
    return str(binary)


def record(pid: int, seconds: int, out: Path, native: bool) -> subprocess.Popen[bytes]:
    command = [py_spy(), "record", "-p", str(pid), "-d", str(seconds), "-r", "100", "-f", "raw", "-o", str(out)]
    # Native frames (gRPC's C core, uvloop) need the process paused per sample; otherwise sample
    # without pausing, so the profile slows what it measures less.
    command.append("--native" if native else "--nonblocking")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def read_stacks(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit():
            stacks[tuple(frames.split(";"))] += int(count)
    return stacks


def summarize(name: str, stacks: Counter[tuple[str, ...]], cpu: str = "") -> list[str]:
    """Top functions of one service, by own and by inclusive samples; waits in epoll left out."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    waiting = 0
    for frames, count in stacks.items():
        functions = [_function(frame) for frame in frames]
        if functions[-1].startswith(IDLE_WAITS):
            waiting += count
            continue
        own[functions[-1]] += count
        for function in set(functions):
            inclusive[function] += count
    on_cpu = sum(own.values())
    total = on_cpu or 1
    counted = f"{on_cpu} samples on CPU" + (f", {waiting} waiting in epoll left out" if waiting else "")
    lines = [f"### {name} ({counted})", ""]
    if cpu:
        lines += [cpu, ""]
    lines += ["| own % | function |", "|---|---|"]
    lines += [f"| {n / total * 100:.1f} | `{frame}` |" for frame, n in own.most_common(TOP)]
    lines += ["", "| inclusive % | function |", "|---|---|"]
    lines += [f"| {n / total * 100:.1f} | `{frame}` |" for frame, n in inclusive.most_common(TOP)]
    ours = [(frame, n) for frame, n in inclusive.most_common() if _is_own(frame)]
    lines += ["", "| inclusive % | ModelRouter function |", "|---|---|"]
    lines += [f"| {n / total * 100:.1f} | `{frame}` |" for frame, n in ours[:TOP]]
    return [*lines, ""]


def cpu_line(cpu_s: float, elapsed_s: float, rps: float) -> str:
    """A service's CPU over the sampled seconds, as a share of a core and per request."""
    per_request = f", {cpu_s / (rps * elapsed_s) * 1000:.2f} ms per request" if rps > 0 and elapsed_s > 0 else ""
    return f"CPU (utime+stime from /proc): {cpu_s / elapsed_s:.2f} of a core{per_request}."


def _function(frame: str) -> str:
    """``name (path:line)`` -> ``name (path)``: a function's samples summed over its lines."""
    return LINE_NUMBER.sub(")", frame)


def _is_own(frame: str) -> bool:
    _, _, location = frame.rpartition(" (")
    return location.startswith(OWN_CODE) and "/__main__.py" not in location and "/main.py" not in location


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stderr)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--stream", action="store_true", help="streamed requests instead of plain ones")
    parser.add_argument("--native", action="store_true", help="include C frames (pauses each process per sample)")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR / "results")
    args = parser.parse_args()
    stamp = datetime.now()
    workdir = BENCH_DIR / ".work" / f"profile-{stamp:%Y%m%d-%H%M%S}"
    with running(workdir, Upstream(), DEFAULT_DATABASE, True, with_litellm=False) as env:
        target = env.modelrouter
        run_wrk(target.url, target.body_files[args.stream], target.key, args.concurrency, 3)  # warm up
        load: list[WrkResult] = []
        driver = threading.Thread(
            target=lambda: load.append(
                run_wrk(target.url, target.body_files[args.stream], target.key, args.concurrency, args.seconds + 2)
            )
        )
        driver.start()
        cpu_before = {name: procstat.cpu_seconds(pid) for name, pid in target.pids.items()}
        started = time.monotonic()
        recorders = {
            name: record(pid, args.seconds, workdir / f"{name}.raw", args.native) for name, pid in target.pids.items()
        }
        for name, proc in recorders.items():
            _, err = proc.communicate()
            if proc.returncode != 0:
                raise RuntimeError(f"py-spy failed on {name}: {err.decode(errors='replace')[-1000:]}")
        elapsed = time.monotonic() - started
        cpu_used = {name: procstat.cpu_seconds(pid) - cpu_before[name] for name, pid in target.pids.items()}
        driver.join()
    mode = "streamed" if args.stream else "plain"
    lines = [
        f"# ModelRouter profile - {stamp:%Y-%m-%d %H:%M}",
        "",
        f"py-spy{' --native' if args.native else ''}, 100 Hz, {args.seconds} s per service, while wrk sent "
        f"{mode} requests at concurrency {args.concurrency}: {load[0].rps:.0f} req/s, p50 {load[0].p50_ms:.1f} ms, "
        f"{load[0].errors} errors. Raw stacks: `{workdir.relative_to(BENCH_DIR.parent)}`. "
        "`Runner.run` as an own frame is time inside uvloop's and gRPC's C code (I/O, callbacks) and, "
        "without `--native`, the loop's waits in epoll, which py-spy counts as on CPU: the CPU line "
        "under each service (from /proc) is what it really used.",
        "",
    ]
    for name in recorders:
        cpu = cpu_line(cpu_used[name], elapsed, load[0].rps)
        lines += summarize(name, read_stacks(workdir / f"{name}.raw"), cpu)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    suffix = ("-stream" if args.stream else "") + ("-native" if args.native else "")
    out = args.out_dir / f"profile-{stamp:%Y-%m-%d}{suffix}.md"
    out.write_text("\n".join(lines))
    print(f"profile: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
