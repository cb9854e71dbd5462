"""``python -m bench.hops`` measures every hop and prints one table row each."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from common.grpc_io import IOMGR_IO_EXPERIMENTS
from scripts.stack import ROOT

pytestmark = pytest.mark.bench

HOPS = (
    "TCP round trip to another process",
    "grpc.aio unary call (trivial servicer)",
    "grpc.aio stream message and answer",
    "grpc.aio stream message and answer, 20 ms after the last",
    "NATS request/reply",
    "NATS request/reply, 20 ms after the last",
    "JetStream publish + ack",
    "Redis EVALSHA (redis-py)",
    "OpenTelemetry SDK span",
)


def test_every_hop_is_measured() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.hops", "--calls", "40"],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "GRPC_EXPERIMENTS"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    # Measured on the gRPC I/O engine the gateway and router run (common.grpc_io).
    assert f"GRPC_EXPERIMENTS={IOMGR_IO_EXPERIMENTS}" in done.stdout
    rows = {line.split(" | ")[0].lstrip("| "): line for line in done.stdout.splitlines() if line.startswith("| ")}
    for hop in HOPS:
        cells = rows[hop].strip("| ").split(" | ")
        p50_ms, cpu_ms = float(cells[1]), float(cells[2])
        assert 0 < p50_ms < 100, rows[hop]
        assert 0 <= cpu_ms < 100, rows[hop]
