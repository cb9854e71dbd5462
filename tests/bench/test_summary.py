"""The report's arithmetic: medians with spreads, added-over-direct, and the issue's goals."""

from __future__ import annotations

import pytest

from bench.report import render
from bench.results import BenchResults, LeakResult, LoadRound, StreamRound
from bench.stats import Spread, percentile
from bench.summary import added, goals

pytestmark = pytest.mark.bench


def _load(p50: float, p99: float, rps: float = 100.0, errors: int = 0) -> LoadRound:
    return LoadRound(int(rps), rps, errors, p50, p50, p99, 0.1, {"gateway": rps / 1000})


def _stream(ttft: float, total: float) -> StreamRound:
    return StreamRound(10, 0, ttft, ttft, total, total)


def _results(mr_p50: list[float], mr_rps: float, growth_to: float) -> BenchResults:
    results = BenchResults(started_at="2026-01-01 00:00", settings={"stream_chunks": 20})
    results.targets = ["direct", "modelrouter", "litellm"]
    results.latency = {
        "direct": [_load(0.1, 0.5), _load(0.2, 0.6), _load(0.1, 0.4)],
        "modelrouter": [_load(p, p + 2) for p in mr_p50],
        "litellm": [_load(30, 60)] * 3,
    }
    results.throughput = {
        16: {"direct": [_load(1, 2, 9000)], "modelrouter": [_load(5, 9, mr_rps)], "litellm": [_load(90, 200, 160)]}
    }
    results.streaming = {"direct": [_stream(0.3, 25)], "modelrouter": [_stream(1.0, 26)], "litellm": [_stream(12, 60)]}
    results.leak = LeakResult(16, 5000, 50000, 0, {"gateway": 100.0}, {"gateway": growth_to})
    return results


def test_spread_and_percentile() -> None:
    assert Spread.of([3.0, 1.0, 2.0]) == Spread(2.0, 1.0, 3.0)
    assert Spread.of([3.0, 1.0, 2.0]).fmt() == "2.00 (1.00-3.00)"
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50.0 and percentile(values, 99) == 99.0 and percentile(values, 100) == 100.0


def test_added_is_the_median_of_paired_rounds() -> None:
    results = _results([1.1, 1.4, 1.2], 900, 101)
    # Pairs: 1.1-0.1, 1.4-0.2, 1.2-0.1 -> 1.0, 1.2, 1.1 -> median 1.1
    assert added(results, "modelrouter", "p50_ms") == pytest.approx(1.1)


def test_goals_met() -> None:
    verdicts = {g.name: g.met for g in goals(_results([1.1, 1.4, 1.2], 900, 105))}
    assert all(verdicts.values()), verdicts


def test_goals_missed() -> None:
    verdicts = {g.name: g.met for g in goals(_results([5.0, 5.0, 5.0], 400, 125))}
    assert verdicts["added latency c=1 p50 ≤ 1.5 ms"] is False
    assert verdicts["added latency c=1 p99 ≤ 4.0 ms"] is False
    assert verdicts["c=16: throughput ≥ 5x LiteLLM"] is False  # 400 / 160 = 2.5x
    assert verdicts["c=16: no errors"] is True
    assert verdicts["RSS growth 5,000 → 50,000 requests ≤ 10%"] is False


def test_report_marks_a_busy_machine_provisional() -> None:
    results = _results([1.1, 1.4, 1.2], 900, 101)
    results.machine = {"other_load_cores": 0.9}
    assert "**Provisional:**" in render(results, None)
    results.machine = {"other_load_cores": 0.05}
    assert "**Provisional:**" not in render(results, None)


def test_report_says_how_fast_the_machine_ran_by_litellms_p50() -> None:
    results = _results([1.1, 1.4, 1.2], 900, 101)  # LiteLLM's c=1 p50: 30 ms in every round
    assert "LiteLLM's c=1 p50 is 30.00 ms in this run against 6.9 ms" in render(results, None)
    assert "about 4.3x as long as then" in render(results, None)
    del results.latency["litellm"]  # a run without LiteLLM has no such line
    assert "LiteLLM's c=1 p50 is" not in render(results, None)


def _with_baseline(
    ours_p50: list[float], base_p50: list[float], ours_rps: list[float], base_rps: list[float]
) -> BenchResults:
    results = _results([1.0, 1.0, 1.0], 1000, 100)
    results.baseline = "modelrouter@abc1234"
    results.targets.insert(2, results.baseline)
    results.latency["modelrouter"] = [_load(p, p + 2) for p in ours_p50]
    results.latency[results.baseline] = [_load(p, p + 2) for p in base_p50]
    results.throughput[16]["modelrouter"] = [_load(5, 9, r) for r in ours_rps]
    results.throughput[16][results.baseline] = [_load(5, 9, r) for r in base_rps]
    return results


def test_baseline_goals_pair_the_rounds_and_allow_the_baselines_own_spread() -> None:
    # Paired differences +0.05, +0.10, -0.05 ms: median +0.05, inside half the baseline's 2.8-3.0 range.
    results = _with_baseline([2.85, 3.0, 2.95], [2.8, 2.9, 3.0], [980, 1000, 1010], [1000, 1020, 1040])
    vs = [g for g in goals(results) if g.name.startswith("vs modelrouter@abc1234")]
    assert [(g.name, g.measured, g.met) for g in vs] == [
        ("vs modelrouter@abc1234: c=1 p50 within noise", "+0.05 ms (noise ±0.10 ms)", True),
        # Paired ratios 0.980, 0.980, 0.971: median -2.0%, just outside half the baseline's range
        # (40 req/s over its median 1020: ±1.96%).
        ("vs modelrouter@abc1234: c=16 throughput within noise", "-2.0% (noise ±2.0%)", False),
    ]
    assert "| vs modelrouter@abc1234: c=1 p50 within noise | +0.05 ms (noise ±0.10 ms) | ✅ met |" in render(
        results, None
    )


def test_baseline_goals_miss_a_slowdown_beyond_the_noise_and_are_absent_without_a_baseline() -> None:
    results = _with_baseline([3.3, 3.4, 3.35], [2.9, 3.0, 2.95], [800, 810, 790], [1000, 1010, 990])
    vs = {g.name: g for g in goals(results) if g.name.startswith("vs ")}
    assert vs["vs modelrouter@abc1234: c=1 p50 within noise"].met is False
    assert vs["vs modelrouter@abc1234: c=16 throughput within noise"].met is False
    assert not [g for g in goals(_results([1.0, 1.0, 1.0], 1000, 100)) if g.name.startswith("vs ")]
