"""The profiler's summary: a loop waiting in epoll is not counted as CPU, and CPU per request."""

from __future__ import annotations

from collections import Counter

import pytest

from bench.profile import cpu_line, summarize

pytestmark = pytest.mark.bench

LOOP = ("run (uvloop/__init__.py:82)", "Loop__run (loop.c:1)")


def test_samples_waiting_in_epoll_are_left_out_of_the_percentages_and_counted_apart() -> None:
    stacks: Counter[tuple[str, ...]] = Counter(
        {
            (*LOOP, "epoll_pwait (libc.so.6)"): 60,  # the event loop asleep
            ("Thread.run (threading.py:9)", "epoll_wait (libc.so.6)"): 20,  # gRPC's poller asleep
            (*LOOP, "handle (gateway/routes/answer.py:12)"): 15,
            (*LOOP, "write (libc.so.6)"): 5,
        }
    )
    lines = summarize("gateway", stacks, "CPU (utime+stime from /proc): 0.20 of a core.")
    assert lines[0] == "### gateway (20 samples on CPU, 80 waiting in epoll left out)"
    assert lines[2] == "CPU (utime+stime from /proc): 0.20 of a core."
    assert "| 75.0 | `handle (gateway/routes/answer.py)` |" in lines
    assert "| 25.0 | `write (libc.so.6)` |" in lines
    assert not any("epoll" in line for line in lines[1:])


def test_without_waits_the_heading_says_only_the_samples() -> None:
    lines = summarize("router", Counter({(*LOOP, "pick (router/state.py:3)"): 4}))
    assert lines[:4] == ["### router (4 samples on CPU)", "", "| own % | function |", "|---|---|"]


def test_cpu_line_gives_the_share_of_a_core_and_the_cpu_per_request() -> None:
    # 3 CPU seconds over 10 s while 200 requests/s were answered: 0.3 of a core, 1.5 ms each.
    assert cpu_line(3.0, 10.0, 200.0) == "CPU (utime+stime from /proc): 0.30 of a core, 1.50 ms per request."
    assert cpu_line(3.0, 10.0, 0.0) == "CPU (utime+stime from /proc): 0.30 of a core."
