"""``python -m bench.classifier`` and the bench report's section on auto routing's classifier."""

from __future__ import annotations

import pytest

from bench.classifier import BUDGET_US, SETS, measure
from bench.report import render
from bench.results import BenchResults

pytestmark = pytest.mark.bench


def test_measure_reports_accuracy_per_set_and_the_cost_per_call() -> None:
    m = measure(repeat=2)
    assert m["classifier"] == "heuristic" and m["budget_us"] == BUDGET_US
    assert set(m["accuracy"]) == set(SETS) and all(0.9 <= a <= 1 for a in m["accuracy"].values())
    assert m["calls"] >= 2 * 280
    assert 0 < m["p50_us"] <= m["p99_us"] <= m["max_us"]
    assert m["long_prompt_p50_us"] > 0


def test_the_report_shows_the_classifier_when_measured() -> None:
    results = BenchResults(started_at="2026-01-01 00:00", settings={})
    assert "prompt classifier" not in render(results, None)
    results.classifier = {
        "classifier": "heuristic",
        "accuracy": {"prompt_classes.jsonl": 0.996, "prompt_classes_holdout.jsonl": 0.95},
        "calls": 56_800,
        "p50_us": 8.6,
        "p99_us": 20.6,
        "max_us": 190.0,
        "long_prompt_p50_us": 23.5,
        "long_prompt_p99_us": 76.0,
        "budget_us": 50.0,
    }
    text = render(results, None)
    assert "## Auto routing's prompt classifier" in text
    assert "p50 8.6 µs, p99 20.6 µs" in text and "prompt_classes_holdout.jsonl 95.0%" in text
