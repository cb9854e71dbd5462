"""``python -m bench.metrics_record`` times the gateway's per-request metrics recording for each case
and prints one row each, with a positive figure."""

from __future__ import annotations

import subprocess
import sys

import pytest

from scripts.stack import ROOT

pytestmark = pytest.mark.bench

CASES = ("success", "streamed success", "upstream failure", "key rate limit")


def test_every_case_is_timed() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.metrics_record", "--number", "200"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    rows = {}
    for line in done.stdout.splitlines()[1:]:
        name, _, figure = line.rpartition(" ")
        rows[name.strip()] = float(figure)
    assert set(CASES) <= set(rows), done.stdout
    assert all(rows[case] > 0 for case in CASES)
