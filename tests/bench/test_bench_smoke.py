"""`make bench-smoke`: the benchmark harness end to end in a tiny configuration (no LiteLLM), against
the real ModelRouter stack (four services, a private NATS and Redis, Postgres) and the mock upstream."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from bench.report import SECTIONS
from scripts.stack import ROOT

pytestmark = pytest.mark.bench

SERVICES = ("gateway", "router", "workers", "accounting")


def _needs(tool: str, hint: str) -> None:
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} is not installed: {hint}")


async def _usage_rows(database_url: str) -> int:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return int(await conn.fetchval("SELECT count(*) FROM usage_records WHERE status = 'success'"))
    finally:
        await conn.close()


@pytest.fixture(scope="module")
def quick_run(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    _needs("wrk", "run `bash bench/setup.sh tools`")
    out = tmp_path_factory.mktemp("bench-out")
    command = [sys.executable, "-m", "bench.run", "--quick", "--no-litellm", "--out-dir", str(out)]
    command += ["--workdir", str(out / "work"), "--database-url", database_url]
    # The committed build beside this one (bench.baseline): its export, its own stack, its rounds.
    command += ["--against", "HEAD"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"bench.run failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    data_files = list(out.glob("*.json"))
    assert len(data_files) == 1, list(out.iterdir())
    return out, json.loads(data_files[0].read_text())


def test_report_has_every_section_and_chart(quick_run: tuple[Path, dict[str, Any]]) -> None:
    out, _ = quick_run
    (report,) = out.glob("*.md")
    text = report.read_text()
    for section in SECTIONS:
        assert section in text, f"missing {section!r}"
    assert "| modelrouter |" in text
    (chart,) = out.glob("*.png")
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.stat().st_size > 10_000, "the chart should hold three panels of bars"
    assert f"]({chart.name})" in text, "the report should embed the chart"


def _head() -> str:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout


def test_modelrouter_answered_every_request(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _, data = quick_run
    baseline = f"modelrouter@{_head().strip()}"
    assert data["targets"] == ["direct", "modelrouter", "modelrouter-governed", baseline]
    assert data["baseline"] == baseline
    for target in data["targets"]:
        for latency in data["latency"][target]:
            assert latency["requests"] > 0 and latency["errors"] == 0
            assert 0 < latency["p50_ms"] <= latency["p90_ms"] <= latency["p99_ms"]
        for concurrency in ("16", "64"):
            for run in data["throughput"][concurrency][target]:
                assert run["requests"] > 0 and run["errors"] == 0 and run["rps"] > 0
        for stream in data["streaming"][target]:
            assert stream["errors"] == 0
            assert 0 < stream["ttft_p50_ms"] <= stream["total_p50_ms"]
    # Through the real hop: ModelRouter is slower than going straight to the mock.
    assert data["latency"]["modelrouter"][0]["p50_ms"] > data["latency"]["direct"][0]["p50_ms"]


def test_cpu_and_memory_are_measured_per_service(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _, data = quick_run
    for concurrency in ("16", "64"):
        (run,) = data["throughput"][concurrency]["modelrouter"]
        for service in SERVICES:
            assert run["cpu_s"][service] > 0, (service, run["cpu_s"])
        assert run["client_cpu_s"] > 0
    for service in SERVICES:
        rss, peak = data["memory"]["modelrouter"][service]
        assert 10 < rss <= peak < 2048, (service, rss, peak)
    assert set(data["backing"]["modelrouter"]) == {"mock-upstream", "nats-server", "redis"}


def test_the_baseline_build_ran_as_its_own_stack_beside_this_one(quick_run: tuple[Path, dict[str, Any]]) -> None:
    """Its four services ran from the exported source (not this checkout's), on a NATS and Redis of
    their own, and the report weighs this build against it."""
    out, data = quick_run
    baseline = data["baseline"]
    (run,) = data["throughput"]["16"][baseline]
    assert set(SERVICES) <= set(run["cpu_s"]) and all(run["cpu_s"][s] > 0 for s in SERVICES)
    (ours,) = data["throughput"]["16"]["modelrouter"]
    for shared in ("mock-upstream",):
        assert shared in run["cpu_s"] and shared in ours["cpu_s"]
    commit = baseline.split("@")[1]
    source = out / "work" / "baseline" / f"src-{commit}"
    assert (source / "services" / "gateway" / "main.py").is_file()
    assert (source / "libs" / "protos" / "modelrouter" / "router" / "v1" / "router_pb2.py").is_file()
    log = (out / "work" / "baseline" / f"{baseline}-logs" / "gateway.log").read_text()
    assert log, "the baseline's gateway wrote its log where its stack keeps it"
    (report,) = out.glob("*.md")
    text = report.read_text()
    assert f"| vs {baseline}: c=1 p50 within noise |" in text
    assert f"| vs {baseline}: c=16 throughput within noise |" in text


def test_leak_check_took_both_snapshots(quick_run: tuple[Path, dict[str, Any]]) -> None:
    _, data = quick_run
    leak = data["leak"]
    assert leak["errors"] == 0
    assert 300 <= leak["first_requests"] < leak["total_requests"] and leak["total_requests"] >= 1_500
    assert set(leak["rss_first_mib"]) == set(leak["rss_total_mib"]) == set(SERVICES)
    assert all(v > 10 for v in leak["rss_total_mib"].values())


def test_accounting_recorded_the_bench_requests(quick_run: tuple[Path, dict[str, Any]], database_url: str) -> None:
    """Accounting stays on in the bench: the requests it sent reached Postgres."""
    _, data = quick_run
    rows = asyncio.run(_usage_rows(database_url))
    assert rows >= data["leak"]["total_requests"], rows
